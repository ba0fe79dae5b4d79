//! `kvsweep test`: the synthetic cache testers against the simulated server, whose cache size
//! is set, so the cliffs they must find are known.

use crate::common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::sim::SimServer;
use common::{csv_rows, json, kvsweep, kvsweep_err, kvsweep_ok, stderr};
use serde_json::Value;

/// Llama 3.1 8B takes 128 KiB a token: 1.048576 GB is 500 blocks of 16 = 8,000 tokens; 1 GiB of
/// offload is 512 blocks = 8,192 tokens.
const HBM_TOKENS: f64 = 8000.0;
const OFFLOAD_TOKENS: f64 = 8192.0;

fn sim(extra: &[&str]) -> SimServer {
    let mut args = vec!["--model", "llama-3.1-8b", "--kv-cache-gb", "1.048576"];
    args.extend_from_slice(extra);
    SimServer::start(&args)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

fn num(row: &HashMap<String, String>, key: &str) -> f64 {
    row[key]
        .parse()
        .unwrap_or_else(|_| panic!("{key} = `{}` in {row:?}", row[key]))
}

/// `kvsweep test cache-rate` at fixed concurrency on 1,024-token prompts, plus `extra`.
fn fixed_cache_rate(
    base: &str,
    out: &Path,
    working_set: &str,
    rates: &[&str],
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = [
        "test",
        "cache-rate",
        "--url",
        base,
        "--context-sizes",
        "1024",
        "--working-set-size",
        working_set,
        "--mode",
        "fixed",
        "--output-tokens",
        "2",
        "--output-dir",
        s(out),
        "--cache-hit-rates",
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect();
    args.extend(rates.iter().map(|r| (*r).to_owned()));
    args.extend(extra.iter().map(|e| (*e).to_owned()));
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn png_ok(path: &Path) {
    let decoder = png::Decoder::new(std::fs::File::open(path).expect("png exists"));
    let reader = decoder.read_info().expect("a PNG");
    assert!(reader.info().width >= 800, "{}", path.display());
}

#[test]
fn single_prompt_measures_a_miss_then_a_hit_at_each_size() {
    let sim = sim(&["--instant"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("sp");
    kvsweep_ok(&[
        "test",
        "single-prompt",
        "--url",
        &sim.base,
        "--min-tokens",
        "512",
        "--max-tokens",
        "2048",
        "--num-iterations",
        "2",
        "--output-tokens",
        "4",
        "--output-dir",
        s(&out),
    ]);
    let rows = csv_rows(&out.join("single_prompt_results.csv"));
    assert_eq!(
        rows.len(),
        3 * 2 * 2,
        "3 sizes × 2 iterations × cold and warm"
    );
    for r in &rows {
        let (cached, prompt) = (num(r, "cached_tokens"), num(r, "prompt_tokens"));
        assert_eq!(prompt, num(r, "context_tokens"), "{r:?}");
        match r["phase"].as_str() {
            "cold" => assert_eq!(cached, 0.0, "{r:?}"),
            _ => assert!(cached >= prompt - 32.0, "{r:?}"),
        }
    }
    let summary = csv_rows(&out.join("summary.csv"));
    let sizes: Vec<&str> = summary
        .iter()
        .map(|r| r["context_tokens"].as_str())
        .collect();
    assert_eq!(sizes, ["512", "1024", "2048"]);
    png_ok(&out.join("ttft_vs_context.png"));
    let index = std::fs::read_to_string(out.join("index.html")).expect("index");
    assert!(
        index.contains("ttft_vs_context.png") && index.contains("summary.csv"),
        "{index}"
    );
}

#[test]
fn cache_rate_sends_exactly_the_target_share_of_cached_tokens() {
    let sim = sim(&["--instant"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("cr");
    kvsweep_ok(&strs(&fixed_cache_rate(
        &sim.base,
        &out,
        "4096",
        &["0", "25", "50", "100"],
        &["--concurrency", "4", "--ramp-duration", "0.3"],
    )));
    let summary = csv_rows(&out.join("summary_ctx1024.csv"));
    assert_eq!(summary.len(), 4);
    for r in &summary {
        let (target, measured) = (
            num(r, "cache_hit_rate") / 100.0,
            num(r, "measured_hit_rate"),
        );
        assert!((measured - target).abs() <= 0.05, "{r:?}");
        assert_eq!(r["peak_concurrency"], "4");
    }
    // Request by request: the prompt's share of cached tokens is the target (the last block of a
    // fully cached prompt, 16 of 1,024 tokens, is computed again). A request the server could
    // not serve from its cache on a loaded machine is allowed, not the rule.
    let detail = csv_rows(&out.join("detailed_results_ctx1024.csv"));
    for target in [0.0, 0.25, 0.5, 1.0] {
        let shares: Vec<f64> = detail
            .iter()
            .filter(|r| r["phase"] == "measure" && r["ok"] == "true")
            .filter(|r| (num(r, "target_hit_rate") - target).abs() < 1e-9)
            .map(|r| num(r, "cached_tokens") / num(r, "prompt_tokens"))
            .collect();
        let exact = shares
            .iter()
            .filter(|s| (*s - target).abs() <= 0.02)
            .count();
        assert!(
            shares.len() >= 4 && exact * 10 >= shares.len() * 9,
            "target {target}: {shares:?}"
        );
    }
    png_ok(&out.join("performance_vs_cache_rate_1024.png"));
    assert!(out.join("run_command.sh").is_file());
}

#[test]
fn cache_rate_ramps_concurrency_until_the_ttft_limit() {
    // A modelled (not instant) server at half speed: 2,048-token misses take ~150 ms each.
    let sim = sim(&["--speed", "0.5"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("ramp");
    kvsweep_ok(&[
        "test",
        "cache-rate",
        "--url",
        &sim.base,
        "--context-sizes",
        "2048",
        "--working-set-size",
        "6000",
        "--cache-hit-rates",
        "0",
        "100",
        "--ramp-duration",
        "0.5",
        "--test-duration",
        "4",
        "--num-retries",
        "1",
        "--output-tokens",
        "2",
        "--max-ttft",
        "0.3",
        "--start-concurrency",
        "1",
        "--concurrency-increment",
        "6",
        "--output-dir",
        s(&out),
    ]);
    let phases = csv_rows(&out.join("phase_metadata_ctx2048.csv"));
    let ramp = |step: &str| -> Vec<&HashMap<String, String>> {
        phases
            .iter()
            .filter(|r| r["step"] == step && r["phase"] == "ramp")
            .collect()
    };
    // Misses: the ramp goes over the limit and stops there.
    let misses = ramp("ctx2048_hit0");
    assert_eq!(
        misses.last().expect("levels")["within_ttft_limit"],
        "false",
        "{misses:?}"
    );
    // Hits carry more load within the same limit.
    let summary = csv_rows(&out.join("summary_ctx2048.csv"));
    let peak = |rate: &str| {
        summary
            .iter()
            .find(|r| r["cache_hit_rate"] == rate)
            .and_then(|r| r["peak_concurrency"].parse::<u32>().ok())
            .unwrap_or(0)
    };
    assert!(peak("100") > peak("0"), "{summary:?}");
    png_ok(&out.join("ramp_ctx2048_cache0.png"));
}

fn within_a_step(cliff: &Value, capacity: f64, step: f64) {
    let last = cliff["last_fit_tokens"].as_f64().expect("last fit");
    let first = cliff["first_miss_tokens"].as_f64().expect("first miss");
    assert!(
        last - step <= capacity && capacity <= first + step,
        "capacity {capacity} vs cliff {cliff}"
    );
}

#[test]
fn working_set_finds_the_hbm_and_the_offload_cliff() {
    let tiered = sim(&["--instant", "--offload-gb", "1"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("ws");
    let stdout = kvsweep_ok(&[
        "test",
        "working-set",
        "--url",
        &tiered.base,
        "--context-sizes",
        "1024",
        "--min-working-set-size",
        "2048",
        "--max-working-set-size",
        "24576",
        "--working-set-increments",
        "12",
        "--output-tokens",
        "1",
        "--kv-model",
        "llama-3.1-8b",
        "--output-dir",
        s(&out),
    ]);
    assert!(stdout.contains("HBM cliff between"), "{stdout}");
    let cliffs = json(&out.join("cliffs.json"));
    let c = &cliffs[0];
    within_a_step(&c["hbm"], HBM_TOKENS, 2048.0);
    within_a_step(&c["offload"], HBM_TOKENS + OFFLOAD_TOKENS, 2048.0);
    // Bytes: 128 KiB a token.
    let bytes = c["hbm"]["first_miss_bytes"].as_f64().expect("bytes");
    assert_eq!(
        bytes,
        c["hbm"]["first_miss_tokens"].as_f64().expect("tokens") * 131_072.0
    );
    png_ok(&out.join("performance_vs_working_set_1024.png"));

    // Without an offload tier there is one cliff.
    let plain = sim(&["--instant"]);
    let out = dir.path().join("ws-plain");
    kvsweep_ok(&[
        "test",
        "working-set",
        "--url",
        &plain.base,
        "--context-sizes",
        "1024",
        "--min-working-set-size",
        "2048",
        "--max-working-set-size",
        "16384",
        "--working-set-increments",
        "8",
        "--output-tokens",
        "1",
        "--output-dir",
        s(&out),
    ]);
    let c = &json(&out.join("cliffs.json"))[0];
    within_a_step(&c["hbm"], HBM_TOKENS, 2048.0);
    assert!(c["offload"].is_null(), "{c}");
}

#[test]
fn a_killed_run_resumes_without_repeating_a_finished_step() {
    let sim = sim(&["--instant"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("resume");
    let args = fixed_cache_rate(
        &sim.base,
        &out,
        "4096",
        &["0", "50", "100"],
        &["--concurrency", "2", "--ramp-duration", "1.5"],
    );
    let mut child = kvsweep().args(&args).spawn().expect("start");
    let progress = out.join("progress.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = std::fs::read_to_string(&progress)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["finished"].as_array().map(Vec::len))
            .unwrap_or(0);
        if done >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no step finished");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().expect("kill");
    child.wait().expect("wait");
    let before: Vec<HashMap<String, String>> = csv_rows(&out.join("phase_metadata_ctx1024.csv"))
        .into_iter()
        .filter(|r| r["step"] == "ctx1024_hit0")
        .collect();
    assert!(!before.is_empty());

    let out2 = kvsweep().args(&args).output().expect("resume");
    assert!(out2.status.success(), "{}", stderr(&out2));
    assert!(
        stderr(&out2).contains("ctx1024_hit0 already measured, skipped"),
        "{}",
        stderr(&out2)
    );
    let phases = csv_rows(&out.join("phase_metadata_ctx1024.csv"));
    let after: Vec<&HashMap<String, String>> = phases
        .iter()
        .filter(|r| r["step"] == "ctx1024_hit0")
        .collect();
    assert_eq!(after.len(), before.len());
    assert!(after.iter().zip(&before).all(|(a, b)| *a == b));
    for step in ["ctx1024_hit0", "ctx1024_hit50", "ctx1024_hit100"] {
        let measures = phases
            .iter()
            .filter(|r| r["step"] == step && r["phase"] == "measure")
            .count();
        assert_eq!(measures, 1, "{step}: {phases:?}");
    }
    // Other settings in the same directory are refused, not mixed in.
    let err = kvsweep_err(&[
        "test",
        "cache-rate",
        "--url",
        &sim.base,
        "--context-sizes",
        "2048",
        "--working-set-size",
        "4096",
        "--output-dir",
        s(&out),
    ]);
    assert!(err.contains("--force-restart"), "{err}");
}

#[test]
fn report_redraws_and_combine_overlays_runs() {
    let sim = sim(&["--instant"]);
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["a", "b"] {
        kvsweep_ok(&strs(&fixed_cache_rate(
            &sim.base,
            &dir.path().join(name),
            "2048",
            &["0", "100"],
            &["--concurrency", "2", "--ramp-duration", "0.2"],
        )));
    }
    let a = dir.path().join("a");
    std::fs::remove_file(a.join("performance_vs_cache_rate_1024.png")).expect("rm");
    kvsweep_ok(&["test", "report", s(dir.path())]);
    png_ok(&a.join("performance_vs_cache_rate_1024.png"));
    let index = std::fs::read_to_string(dir.path().join("index.html")).expect("index");
    assert!(
        index.contains("a/performance_vs_cache_rate_1024.png") && index.contains("b/"),
        "{index}"
    );
    let combined = dir.path().join("combined");
    kvsweep_ok(&[
        "test",
        "combine",
        "--output-dirs",
        s(&a),
        s(&dir.path().join("b")),
        "--labels",
        "before",
        "after",
        "--output",
        s(&combined),
    ]);
    let rows = csv_rows(&combined.join("summary_comparison.csv"));
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().any(|r| r["label"] == "after"));
    png_ok(&combined.join("input_throughput_ctx1024.png"));
}

#[test]
fn bad_settings_are_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("x");
    let err = kvsweep_err(&[
        "test",
        "cache-rate",
        "--url",
        "http://127.0.0.1:9",
        "--context-sizes",
        "1024",
        "--working-set-size",
        "4096",
        "--cache-hit-rates",
        "120",
        "--output-dir",
        s(&out),
    ]);
    assert!(err.contains("120"), "{err}");
    let err = kvsweep_err(&[
        "test",
        "single-prompt",
        "--url",
        "http://127.0.0.1:9",
        "--output-dir",
        s(&out),
        "--force-restart",
    ]);
    assert!(err.contains("cannot reach the server"), "{err}");
    let err = kvsweep_err(&[
        "test",
        "working-set",
        "--context-sizes",
        "1024",
        "--min-working-set-size",
        "5000",
        "--max-working-set-size",
        "100",
        "--output-dir",
        s(&dir.path().join("w")),
    ]);
    assert!(err.contains("--min-working-set-size"), "{err}");
}

#[test]
fn a_sweep_cell_can_run_a_tester_instead_of_a_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = common::write(
        dir.path(),
        "spec.yaml",
        "name: ws\nmodel:\n  name: llama-3.1-8b\n  preset: llama-3.1-8b\nengine: sim\nrunners: [cpu]\n\
         tester:\n  kind: working-set\n  context_sizes: [1024]\n  min_working_set_size: 4096\n\
         \x20 max_working_set_size: 12288\n  working_set_increments: 3\n  output_tokens: 1\n\
         tp: [1]\nusers: [1]\noffload: [\"off\"]\n",
    );
    let runners = dir.path().join("runners");
    std::fs::create_dir(&runners).expect("mkdir");
    std::fs::copy(
        common::repo_root().join("runners/h100.yaml"),
        runners.join("h100.yaml"),
    )
    .expect("copy");
    common::write(
        &runners,
        "cpu.yaml",
        "name: cpu\nvendor: cpu\ngpu: simulated H100\ngpus_per_node: 8\nhbm_gb_per_gpu: 80\n\
         hbm_bandwidth_tb_s: 3.35\nbf16_tflops: 989\nhost_dram_gb: 2048\nhost_link_gb_s: 50\n\
         slurm:\n  gres_type: null\n  partition: null\ncontainer: none\n\
         github:\n  labels: [ubuntu-latest]\nengines:\n  sim:\n    args: [--runner, h100, --instant, --kv-cache-gb, \"1.048576\"]\n\
         \x20   offload:\n      \"off\": {}\n",
    );
    let out = dir.path().join("cell");
    let zip = dir.path().join("cell.zip");
    let run = kvsweep()
        .env("KVSWEEP_RUNNERS_DIR", &runners)
        .arg("run-cell")
        .arg(&spec)
        .args([
            "--cell",
            "ws_cpu_tp1_users1_offloadoff",
            "--port",
            "0",
            "--out",
            s(&out),
            "--zip",
            s(&zip),
        ])
        .output()
        .expect("run-cell");
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(json(&out.join("status.json"))["status"], "ok");
    let cliffs = json(&out.join("tester/cliffs.json"));
    within_a_step(&cliffs[0]["hbm"], HBM_TOKENS, 4096.0);
    assert!(
        out.join("metrics.csv").is_file(),
        "the scraper ran beside the tester"
    );
    // The tester's files travel in the artifact.
    let names: Vec<String> = zip::ZipArchive::new(std::fs::File::open(&zip).expect("zip"))
        .expect("a zip")
        .file_names()
        .map(|n| n.map(|n| n.into_owned()).expect("an entry name"))
        .collect();
    assert!(names.iter().any(|n| n == "tester/cliffs.json"), "{names:?}");
    // collect says why such a cell is not in the sweep's tables.
    let collected = dir.path().join("collected");
    let run = kvsweep()
        .args(["collect", s(&out), "--out", s(&collected)])
        .output()
        .expect("collect");
    assert!(
        stderr(&run).contains("kvsweep test working-set"),
        "{}",
        stderr(&run)
    );
}

#[test]
fn a_tester_cell_renders_a_clean_script_and_specs_say_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let head = "name: t\nmodel:\n  name: llama-3.1-8b\n  preset: llama-3.1-8b\nengine: vllm\nrunners: [h200]\n\
                tp: [1]\nusers: [1]\noffload: [\"off\"]\n";
    let spec = common::write(
        dir.path(),
        "t.yaml",
        &format!(
            "{head}tester:\n  kind: cache-rate\n  context_sizes: [8000, 32000]\n  working_set_size: 2000000\n"
        ),
    );
    let out = dir.path().join("r");
    kvsweep_ok(&[
        "render",
        s(&spec),
        "--cell",
        "t_h200_tp1_users1_offloadoff",
        "--out",
        s(&out),
    ]);
    let script = std::fs::read_to_string(out.join("run.sh")).expect("run.sh");
    let test = &common::script_plan(&script)["workload"]["test"]["tester"]["cache-rate"];
    assert_eq!(
        test["context_sizes"],
        serde_json::json!([8000, 32000]),
        "{test}"
    );
    assert_eq!(test["working_set_size"], 2_000_000, "{test}");
    assert!(
        script.contains(
            r#"test --plan "$OUT_DIR/cell.json" --url "$BASE_URL" --output-dir "$OUT_DIR/tester""#
        ),
        "{script}"
    );
    common::assert_shellcheck_clean([out.join("run.sh")]);

    let bad_kind = common::write(
        dir.path(),
        "k.yaml",
        &format!("{head}tester:\n  kind: fast\n"),
    );
    let err = kvsweep_err(&["matrix", s(&bad_kind)]);
    assert!(
        err.contains("tester.kind") && err.contains("k.yaml"),
        "{err}"
    );
    let reserved = common::write(
        dir.path(),
        "r.yaml",
        &format!("{head}tester:\n  kind: single-prompt\n  url: http://x\n"),
    );
    let err = kvsweep_err(&["matrix", s(&reserved)]);
    assert!(err.contains("tester.url"), "{err}");
    let neither = common::write(dir.path(), "n.yaml", head);
    let err = kvsweep_err(&["matrix", s(&neither)]);
    assert!(err.contains("tester:") && err.contains("traces:"), "{err}");
}
