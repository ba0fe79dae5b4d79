//! `kvsweep render` on one AgentX job of an InferenceX master config (an object of the list
//! `kvsweep matrix` prints, as a GitHub job receives it): the engine command is InferenceX's
//! recorded one (the job's parallelism, MTP, offload and the model's own flags), the image and
//! model are the job's, the replay is InferenceX's, and jobs we do not run are refused with what
//! is supported.

use std::io::Read as _;
use std::path::Path;

use serde_json::Value;

use crate::common::{kvsweep, repo_root, run, stderr};

/// The real AgentX single-node jobs of the fixture master configs, as the generator printed them.
fn agentic_jobs() -> Vec<Value> {
    let path = repo_root().join("tests/fixtures/inferencex/golden/agentic.json.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("golden"))
        .read_to_string(&mut text)
        .expect("gzip");
    serde_json::from_str(&text).expect("json")
}

/// The first job matching every `(key, value)` pair.
fn job(pairs: &[(&str, Value)]) -> Value {
    agentic_jobs()
        .into_iter()
        .find(|j| pairs.iter().all(|(k, v)| &j[*k] == v))
        .unwrap_or_else(|| panic!("no job with {pairs:?}"))
}

/// Renders `job` (written to a file) and returns the script, or the error.
fn render(dir: &Path, job: &Value, extra: &[&str]) -> Result<String, String> {
    let file = dir.join("job.json");
    std::fs::write(&file, job.to_string()).expect("write job");
    let out_dir = dir.join("cell");
    let out = run(kvsweep()
        .arg("render")
        .arg(&file)
        .args(["--cell", job["exp-name"].as_str().expect("exp-name")])
        .args(["--traces", "/data/traces"])
        .arg("--out")
        .arg(&out_dir)
        .args(extra));
    if !out.status.success() {
        return Err(stderr(&out));
    }
    Ok(std::fs::read_to_string(out_dir.join("run.sh")).expect("run.sh"))
}

/// The engine command of a script (its continued lines), on one line.
fn engine_line(script: &str) -> String {
    let mut words = Vec::new();
    let mut lines = script
        .lines()
        .skip_while(|l| !l.contains("start_bg \"$SERVER_LOG\""));
    for line in lines.by_ref() {
        let line = line.trim();
        match line.strip_suffix('\\') {
            Some(continued) => words.push(continued.trim().to_owned()),
            None => {
                words.push(line.to_owned());
                break;
            }
        }
    }
    assert!(!words.is_empty(), "no engine command in the script");
    words.join(" ")
}

/// The cell.json the script writes (its heredoc).
fn cell_json(dir: &Path) -> Value {
    let script = std::fs::read_to_string(dir.join("cell/run.sh")).expect("run.sh");
    let line = script
        .lines()
        .skip_while(|l| !l.contains("<<'KVSWEEP_CELL_JSON'"))
        .nth(1)
        .expect("cell.json heredoc");
    serde_json::from_str(line).expect("cell.json")
}

#[test]
fn a_vllm_dep_mtp_job_with_simple_cpu_offload_renders_inferencexs_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let j = job(&[
        ("framework", "vllm".into()),
        ("runner", "cluster:b200-dgxc".into()),
        ("dp-attn", true.into()),
        ("spec-decoding", "mtp".into()),
        ("kv-offloading", "dram".into()),
    ]);
    assert_eq!(j["kv-offload-backend"]["name"], "vllm-simple");
    let script = render(dir.path(), &j, &[]).expect("renders");
    let line = engine_line(&script);
    let tp = j["tp"].as_u64().expect("tp");
    let conc = j["conc"].as_u64().expect("conc");
    let gb = j["total-cpu-dram-gb"].as_u64().expect("gb");
    for expected in [
        format!("--entrypoint vllm {}", j["image"].as_str().expect("image")),
        format!("serve {}", j["model"].as_str().expect("model")),
        format!("--tensor-parallel-size 1 --data-parallel-size {tp}"),
        "--enable-expert-parallel".into(),
        // InferenceX's own flags for the model, from its job script.
        "--kv-cache-dtype fp8 --block-size 256 --max-model-len 1048576".into(),
        r#""rejection_sample_method": "synthetic", "synthetic_acceptance_length": 2.49"#.into(),
        format!("--max-num-seqs {}", 2 * conc / tp),
        // InferenceX's CPU_BYTES_PER_RANK: total-cpu-dram-gb (decimal) over the GPUs.
        format!("\"cpu_bytes_to_use_per_rank\": {}", gb * 1_000_000_000 / tp),
        r#""enable_cross_layers_blocks": "true""#.into(),
        "PYTHONHASHSEED=42".into(),
        "VLLM_USE_V2_MODEL_RUNNER=1".into(),
        "--enable-prompt-tokens-details".into(),
    ] {
        assert!(line.contains(&expected), "{expected}\nnot in: {line}");
    }
    let cell = cell_json(dir.path());
    assert_eq!(
        cell["runner"], "b200",
        "cluster:b200-dgxc runs on runners/b200.yaml"
    );
    assert_eq!(cell["cell"]["users"], j["conc"]);
    assert_eq!(cell["duration_s"], j["duration"]);
    assert_eq!(cell["offload_backend"], "simple-cpu");
}

#[test]
fn an_sglang_hicache_job_renders_hierarchical_cache_dp_attention_and_eagle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let j = job(&[
        ("framework", "sglang".into()),
        ("runner", "cluster:b200-dgxc".into()),
        ("dp-attn", true.into()),
        ("kv-offloading", "dram".into()),
    ]);
    assert_eq!(j["kv-offload-backend"]["name"], "hicache");
    let line = engine_line(&render(dir.path(), &j, &[]).expect("renders"));
    let tp = j["tp"].as_u64().expect("tp");
    for expected in [
        format!("--model-path {}", j["model"].as_str().expect("model")),
        format!("--tp {tp}"),
        format!("--dp {tp}"),
        "--enable-dp-attention".into(),
        "--enable-hierarchical-cache".into(),
        "--speculative-algorithm EAGLE --speculative-num-steps 3".into(),
        "--mem-fraction-static".into(),
    ] {
        assert!(line.contains(&expected), "{expected}\nnot in: {line}");
    }
}

#[test]
fn a_job_without_offload_has_no_offload_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let j = job(&[
        ("framework", "vllm".into()),
        ("pp", 1.into()),
        ("runner", "cluster:h200-dgxc".into()),
        ("kv-offloading", "none".into()),
    ]);
    let line = engine_line(&render(dir.path(), &j, &[]).expect("renders"));
    assert!(
        !line.contains("kv-transfer-config") && !line.contains("kv_offloading"),
        "{line}"
    );
    assert_eq!(cell_json(dir.path())["cell"]["offload"], "off");
}

#[test]
fn jobs_we_do_not_run_are_refused_with_what_is_supported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let multi = job(&[("framework", "dynamo-sglang".into())]);
    let trt = job(&[("framework", "trt".into())]);
    let atom = job(&[("framework", "atom".into())]);
    let mooncake = job(&[
        ("framework", "vllm".into()),
        ("runner", "cluster:b200-dgxc".into()),
    ]);
    let mut mooncake = mooncake;
    mooncake["kv-offloading"] = "dram".into();
    mooncake["kv-offload-backend"] =
        serde_json::json!({"name": "mooncake", "version": "0.3.11.post1"});
    for (j, field) in [
        (&multi, "prefill"),
        (&trt, "framework"),
        (&atom, "framework"),
        (&mooncake, "kv-offload-backend.name"),
    ] {
        let err = render(dir.path(), j, &[]).expect_err("refused");
        assert!(err.contains(&format!("field `{field}`")), "{err}");
        assert!(
            err.contains("kvsweep renders single-node AgentX jobs"),
            "{err}"
        );
        assert!(err.contains("job.json:1:"), "located: {err}");
    }
}

#[test]
fn a_runner_label_without_a_runner_file_needs_runner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let j = job(&[
        ("framework", "sglang".into()),
        ("runner", "cluster:b300-nv".into()),
    ]);
    let err = render(dir.path(), &j, &[]).expect_err("no b300 runner file");
    assert!(err.contains("give --runner"), "{err}");
    render(dir.path(), &j, &["--runner", "b200"]).expect("renders on b200");
    let script = dir.path().join("cell/run.sh");
    let out = run(std::process::Command::new("bash").arg("-n").arg(&script));
    assert!(out.status.success(), "{}", stderr(&out));
    crate::common::assert_shellcheck_clean([&script]);
}
