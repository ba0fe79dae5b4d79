//! Runs real AIPerf 0.13.0 (`aiperf profile --scenario inferencex-agentx-mvp`) against a test's
//! simulator, as InferenceX runs it, for the tests that compare kvsweep with it.

use std::path::{Path, PathBuf};
use std::process::Output;

use super::sim::SimServer;

/// A working folder for an AIPerf run: AIPerf's ZeroMQ socket paths live under its TMPDIR and
/// must stay under 108 characters, so it is short and under /tmp.
pub fn short_tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("tempdir")
}

/// Copies carried kv-cache-tester traces (trace_0277 has subagents) into `dir/traces`.
pub fn carried_traces(dir: &Path, names: &[&str]) -> PathBuf {
    let to = dir.join("traces");
    std::fs::create_dir_all(&to).expect("traces dir");
    let from = super::repo_root().join("traces/samples/kv-cache-tester");
    for n in names {
        let file = format!("trace_{n}.json");
        std::fs::copy(from.join(&file), to.join(&file)).expect("copy trace");
    }
    to
}

/// o200k_base as tiktoken caches it: AIPerf's `--tokenizer builtin` cannot download it offline;
/// the tiktoken-rs crate kvsweep builds with ships the same file.
pub fn tiktoken_cache(dir: &Path) -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    let src = std::fs::read_dir(home.join("registry/src"))
        .expect("cargo registry")
        .flatten()
        .flat_map(|index| {
            std::fs::read_dir(index.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|krate| krate.path().join("assets/o200k_base.tiktoken"))
        .find(|p| p.is_file() && p.to_string_lossy().contains("tiktoken-rs-"))
        .expect("tiktoken-rs's o200k_base.tiktoken in the cargo registry");
    let cache = dir.join("tiktoken");
    std::fs::create_dir_all(&cache).expect("tiktoken cache");
    std::fs::copy(src, cache.join("fb374d419588a4632f3f557e76b4b70aebbca790")).expect("copy");
    cache
}

/// Runs `aiperf profile --scenario inferencex-agentx-mvp` on `traces` against `sim` with
/// `users` lanes for `duration_s` with `--random-seed seed`, writing its artifacts to `artifacts`. `tmp` must be
/// a short path: AIPerf's ZeroMQ socket paths live under TMPDIR and must stay under 108
/// characters. Short runs need `--unsafe-override` (the scenario's 900 s minimum becomes a
/// warning, `submission_valid: false`); priming bursts at once (`--burst-phase-starts`) rather
/// than spread over the traces' recorded lead.
pub fn profile_agentx(
    sim: &SimServer,
    traces: &Path,
    artifacts: &Path,
    tmp: &Path,
    users: u32,
    duration_s: u32,
    seed: u64,
) -> Output {
    let aiperf = super::require_tool("aiperf");
    std::process::Command::new(aiperf)
        .env("TMPDIR", tmp)
        .env("TIKTOKEN_CACHE_DIR", tiktoken_cache(tmp))
        .args([
            "profile",
            "--scenario",
            "inferencex-agentx-mvp",
            "--url",
            &sim.base,
        ])
        .args([
            "--model",
            "llama-3.1-8b",
            "--endpoint-type",
            "chat",
            "--streaming",
        ])
        .args([
            "--tokenizer",
            "builtin",
            "--custom-dataset-type",
            "weka_trace",
        ])
        .arg("--input-file")
        .arg(traces)
        .args(["--concurrency", &users.to_string()])
        .args(["--benchmark-duration", &duration_s.to_string()])
        .args(["--random-seed", &seed.to_string()])
        .args([
            "--trajectory-start-min-ratio",
            "0.25",
            "--trajectory-start-max-ratio",
            "0.75",
        ])
        .args([
            "--failed-request-threshold",
            "0.10",
            "--trace-idle-gap-cap-seconds",
            "300",
        ])
        .args(["--unsafe-override", "--burst-phase-starts"])
        .args([
            "--ui-type",
            "none",
            "--no-gpu-telemetry",
            "--output-artifact-dir",
        ])
        .arg(artifacts)
        .output()
        .expect("aiperf runs")
}
