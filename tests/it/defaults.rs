//! Every subcommand run with only its required arguments, on the carried sample traces: it
//! succeeds, or it stops and says exactly what it needs. A new user's first command is the bare
//! one, so a default that fails (a 70B model on one card, a server that is not there) is a bug.
//! `slurm submit` is left to tests/it/slurm.rs, which submits to a real Slurm, and `test
//! cache-rate` and `test working-set` to tests/it/testers.rs: their defaults are the seed tester's
//! schedule (up to five minutes for each of 21 hit rates), a real benchmark's length rather than a
//! test's.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::sim::SimServer;
use common::{json, kvsweep, kvsweep_err, kvsweep_ok, repo_root, run, stderr};

fn samples() -> PathBuf {
    repo_root().join("traces/samples/kv-cache-tester")
}

fn one_sample() -> PathBuf {
    samples().join("trace_0538.json")
}

fn spec() -> PathBuf {
    repo_root().join("tests/fixtures/defaults/spec.yaml")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn trace_and_planning_commands_succeed_on_the_samples() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = |name: &str| dir.path().join(name);
    let spec = spec();
    let matrix = kvsweep_ok(&["matrix", s(&spec)]);
    assert!(
        matrix.contains("defaults_cpu_tp1_users2_offloadon"),
        "{matrix}"
    );
    kvsweep_ok(&[
        "render",
        s(&spec),
        "--cell",
        "defaults_cpu_tp1_users2_offloadon",
        "--out",
        s(&d("render")),
    ]);
    assert!(d("render/run.sh").is_file());
    assert!(kvsweep_ok(&["kv-size", "--preset", "llama-3.1-70b"]).contains("KV per token"));
    assert!(kvsweep_ok(&["trace", "analyze", s(&samples())]).contains("growth"));
    let jsonl = d("c.jsonl");
    kvsweep_ok(&[
        "trace",
        "convert",
        s(&one_sample()),
        "--to",
        "mooncake",
        "--out",
        s(&jsonl),
    ]);
    kvsweep_ok(&["trace", "synth", s(&jsonl), "--out", s(&d("synth.jsonl"))]);
    kvsweep_ok(&[
        "trace",
        "generate",
        "--sessions",
        "2",
        "--out",
        s(&d("gen")),
    ]);
    assert_eq!(std::fs::read_dir(d("gen")).expect("gen").count(), 2);
    let oracle_configs = repo_root().join("sweeps/oracle");
    let config = |name: &str| oracle_configs.join(name);
    for command in ["analyze-buckets", "audit-buckets"] {
        kvsweep_ok(&[
            "oracle",
            command,
            "--trace",
            s(&samples()),
            "--config",
            s(&config("trace-llama70b-h200.json")),
            "--output-dir",
            s(&d(command)),
        ]);
        assert_eq!(
            json(&d(command).join("metadata.json"))["status"],
            "complete"
        );
    }
    kvsweep_ok(&[
        "oracle",
        "estimate-multi-agent",
        "--config",
        s(&config("multi-agent-llama70b-h200.json")),
        "--output-dir",
        s(&d("estimate")),
    ]);
    kvsweep_ok(&[
        "oracle",
        "calibrate-multi-agent",
        "--trace",
        s(&samples()),
        "--bucket-config",
        s(&config("trace-llama8b-1x1-small-kv.json")),
        "--heuristic-config",
        s(&config("multi-agent-llama70b-h200.json")),
        "--output-dir",
        s(&d("calibrate")),
    ]);
}

#[test]
fn the_oracle_picks_the_smallest_tp_that_holds_the_weights() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("o");
    // Llama 3.1 70B (141 GB of bf16 weights) on H200s: one card cannot hold it, two can.
    let stdout = kvsweep_ok(&["oracle", s(&samples()), "--out", s(&out)]);
    assert!(
        stdout.starts_with("deployment: tp 2 (the smallest TP of h200"),
        "{stdout}"
    );
    let meta = json(&out.join("metadata.json"));
    assert_eq!(meta["status"], "complete");
    assert_eq!(meta["tp_choice"]["tp"], 2);
    assert_eq!(meta["config"]["model_profile"]["tp_size"], 2);
    // A TP given on the command line is taken as it is.
    let given = kvsweep_ok(&[
        "oracle",
        s(&samples()),
        "--out",
        s(&dir.path().join("g")),
        "--model",
        "llama-3.1-8b",
        "--tp",
        "4",
    ]);
    assert!(
        given.starts_with("deployment: tp 4 (given with --tp)"),
        "{given}"
    );
    // A model no node of the runner holds says so and what to give instead.
    let err = kvsweep_err(&[
        "oracle",
        s(&samples()),
        "--out",
        s(&dir.path().join("x")),
        "--model",
        "deepseek-r1",
        "--runner",
        "h100",
    ]);
    assert!(
        err.contains("leave no KV budget on one node of h100"),
        "{err}"
    );
    assert!(err.contains("--kv-gb-per-card"), "{err}");
}

#[test]
fn commands_that_need_more_say_what() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = run(kvsweep()
        .args([
            "artifacts",
            "download",
            "--repo",
            "o/r",
            "--run",
            "1",
            "--out",
        ])
        .arg(dir.path().join("a"))
        .env_remove("GITHUB_TOKEN"));
    assert!(!err.status.success());
    assert!(
        stderr(&err).contains("set GITHUB_TOKEN"),
        "{}",
        stderr(&err)
    );
    for command in [
        &["slurm", "status"][..],
        &["slurm", "cancel"],
        &["slurm", "resubmit", "--failed"],
    ] {
        let out = run(kvsweep().args(command).current_dir(dir.path()));
        assert!(!out.status.success(), "{command:?}");
        assert!(
            stderr(&out).contains("give the manifest or the sweep directory"),
            "{command:?}: {}",
            stderr(&out)
        );
    }
    let err = kvsweep_err(&[
        "collect",
        "--out",
        s(&dir.path().join("c")),
        s(&dir.path().join("none")),
    ]);
    assert!(err.contains("does not exist"), "{err}");
}

/// Port 8000 is every default's: the bare sim-server's, the clients', and run-cell's engine's.
/// The tests that use it take turns.
static DEFAULT_PORT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn default_port() -> std::sync::MutexGuard<'static, ()> {
    DEFAULT_PORT.lock().unwrap_or_else(|e| e.into_inner())
}

/// `kvsweep sim-server` with `args` on its default port (8000), which is where every client
/// command looks by default.
fn default_server(args: &[&str]) -> SimServer {
    let server = SimServer::start_exactly(args);
    assert_eq!(server.base, "http://127.0.0.1:8000");
    server
}

#[test]
fn client_commands_find_a_server_on_the_default_port() {
    let _port = default_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = |name: &str| dir.path().join(name);
    // No server yet: the replay says where it looked.
    let err = kvsweep_err(&[
        "replay",
        "--traces",
        s(&one_sample()),
        "--out",
        s(&d("none")),
    ]);
    assert!(
        err.contains("cannot reach the server at http://127.0.0.1:8000"),
        "{err}"
    );

    // The bare server starts and is ready on 8000. The one the clients use is `--instant` (an
    // argument of the server, not of the client commands under test), which keeps the testers'
    // default runs short.
    drop(default_server(&[]));
    let _server = default_server(&["--instant"]);

    // The replay keeps the trace's think times by default; trace_0165's add up to 55 s, so it
    // runs here with a second's think before each request instead.
    let short = d("trace_0165_1s.json");
    let mut trace = json(&samples().join("trace_0165.json"));
    let requests = trace["requests"].as_array_mut().expect("requests");
    for (i, r) in requests.iter_mut().enumerate() {
        r["t"] = serde_json::json!(i as f64);
        r["think_time"] = serde_json::json!(if i == 0 { 0.0 } else { 1.0 });
    }
    std::fs::write(&short, trace.to_string()).expect("write the trace");
    kvsweep_ok(&["replay", "--traces", s(&short), "--out", s(&d("replay"))]);
    assert_eq!(json(&d("replay/status.json"))["status"], "ok");
    let rows = common::csv_rows(&d("replay/requests.csv"));
    assert_eq!(rows.len(), 7, "trace_0165 has 7 requests");
    assert!(rows.iter().all(|r| r["status"] == "ok"), "{rows:?}");

    // The scraper runs until it is stopped; a SIGTERM ends it cleanly with its files written.
    let mut metrics = kvsweep()
        .args(["metrics", "--url", "http://127.0.0.1:8000", "--out"])
        .arg(d("metrics"))
        .spawn()
        .expect("metrics starts");
    // Every scrape is a row of metrics_raw.csv (metrics.csv leaves out the idle start).
    let raw = d("metrics/metrics_raw.csv");
    let scraped = || raw.is_file() && !common::csv_rows(&raw).is_empty();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !scraped() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    Command::new("kill")
        .args(["-TERM", &metrics.id().to_string()])
        .status()
        .expect("kill");
    assert!(metrics.wait().expect("wait").success());
    assert!(scraped(), "a scrape was recorded");
    assert_eq!(json(&d("metrics/metrics_meta.json"))["engine"], "vllm");
    kvsweep_ok(&["metrics", "plot", s(&d("metrics"))]);

    kvsweep_ok(&["test", "single-prompt", "--output-dir", s(&d("single"))]);
    assert!(d("single/summary.csv").is_file());
}

#[test]
fn spec_commands_run_and_collect_a_sweep() {
    let _port = default_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = |name: &str| dir.path().join(name);
    let spec = spec();
    kvsweep_ok(&[
        "run-cell",
        s(&spec),
        "--cell",
        "defaults_cpu_tp1_users2_offloadoff",
        "--out",
        s(&d("cell")),
    ]);
    assert_eq!(json(&d("cell/status.json"))["status"], "ok");
    kvsweep_ok(&["sweep", s(&spec), "--local", "--out", s(&d("sweep"))]);
    assert!(d("sweep/report.html").is_file());
    kvsweep_ok(&["collect", "--out", s(&d("collected")), s(&d("cell"))]);
    assert!(d("collected/summary.csv").is_file());
    kvsweep_ok(&[
        "compare",
        "--out",
        s(&d("compare")),
        s(&d("sweep")),
        s(&d("collected")),
    ]);
}
