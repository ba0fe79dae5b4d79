//! Soak under faults: the replay against a simulated server that fails, rate-limits, stalls,
//! cuts streams and crashes part-way (then comes back on the same port). The client must keep
//! going, account for every request exactly once, and hold its memory flat. And a replay killed
//! with SIGKILL at a random moment leaves files that parse and that lack only its last second.
//!
//! Short in the suite (20 s); `KVSWEEP_SOAK_SECONDS=600 cargo test --test it soak::` for the long run.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{csv_rows, repo_root};

fn soak_seconds() -> f64 {
    std::env::var("KVSWEEP_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20.0)
}

/// A simulated server with every fault on, on `port`.
fn faulty_sim(port: u16, fail_status: &str, exit_after_s: Option<f64>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kvsweep"));
    cmd.args([
        "sim-server",
        "--model",
        "llama-3.1-8b",
        "--instant",
        "--port",
    ])
    .arg(port.to_string())
    .args(["--fail-rate", "0.05", "--fail-status", fail_status])
    .args([
        "--stall-ms",
        "1500",
        "--stall-rate",
        "0.03",
        "--drop-stream-rate",
        "0.05",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(s) = exit_after_s {
        cmd.args(["--exit-after-s", &s.to_string()]);
    }
    cmd.spawn().expect("sim-server starts")
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the simulator did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn the_replay_survives_every_fault_and_accounts_for_every_request() {
    let seconds = soak_seconds();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    // The first server crashes a third of the way in; a second one takes its port.
    let mut first = faulty_sim(port, "429", Some(seconds / 3.0));
    wait_listening(port);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("soak");
    let traces = repo_root().join("traces/samples/kv-cache-tester");
    let mut replay = Command::new(env!("CARGO_BIN_EXE_kvsweep"))
        .args(["replay", "--url", &format!("http://127.0.0.1:{port}")])
        .arg("--traces")
        .arg(&traces)
        .args([
            "--users",
            "8",
            "--recycle",
            "--time-scale",
            "0.01",
            "--max-context",
            "32000",
        ])
        .args([
            "--duration",
            &seconds.to_string(),
            "--drain",
            "3",
            "--request-timeout",
            "1",
        ])
        .args(["--max-consecutive-errors", "0", "--rate-limit-retries", "1"])
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("replay starts");
    let started = Instant::now();
    let mut second: Option<(Child, f64)> = None;
    let mut rss: Vec<(f64, u64)> = Vec::new();
    let status = loop {
        if let Some(st) = replay.try_wait().expect("wait") {
            break st;
        }
        let t = started.elapsed().as_secs_f64();
        assert!(t < seconds + 90.0, "the replay did not finish");
        if second.is_none() && first.try_wait().expect("wait").is_some() {
            second = Some((faulty_sim(port, "500", None), t));
        }
        if let Some(kib) = rss_kib(replay.id()) {
            rss.push((t, kib));
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let _ = first.kill();
    let (mut second, restarted_at) = second.expect("the first server crashed and a second started");
    let _ = second.kill();
    let _ = second.wait();

    // Every request once: ids unique, and with the abandoned ones they are every id handed out.
    let rows = csv_rows(&out.join("requests.csv"));
    let mut ids: Vec<u64> = rows
        .iter()
        .map(|r| r["request_id"].parse().expect("id"))
        .collect();
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "a request is in requests.csv twice");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metadata.json")).expect("meta"))
            .expect("json");
    let abandoned = meta["abandoned_requests"].as_u64().expect("abandoned");
    assert_eq!(
        ids.last().map_or(0, |m| m + 1),
        n as u64 + abandoned,
        "ids handed out = rows + abandoned"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary"))
            .expect("json");
    let count = |k: &str| summary["requests"][k].as_u64().expect(k);
    assert_eq!(count("total"), n as u64, "{summary}");
    assert_eq!(count("ok") + count("failed"), count("total"), "{summary}");

    // Each fault was met, and the client kept going after the crash.
    let has = |f: &dyn Fn(&std::collections::HashMap<String, String>) -> bool| rows.iter().any(f);
    // A 429 is retried after its Retry-After: the row says how many attempts it took.
    assert!(
        has(&|r| r["http_status"] == "429" || r["attempts"] != "1"),
        "no 429 met"
    );
    assert!(has(&|r| r["http_status"] == "500"), "no 500 recorded");
    assert!(has(&|r| r["status"] == "timeout"), "no stall timed out");
    assert!(
        has(&|r| r["status"] == "error" && r["http_status"] == "200"),
        "no cut stream"
    );
    let after: Vec<_> = rows
        .iter()
        .filter(|r| {
            r["status"] == "ok" && r["sent_s"].parse::<f64>().expect("sent") > restarted_at + 1.0
        })
        .collect();
    assert!(!after.is_empty(), "nothing succeeded after the restart");
    assert!(status.code().is_some(), "the replay was killed");

    // Flat memory: the second half's peak is within 1.5× (+32 MiB) of the first half's.
    let half = seconds / 2.0;
    let peak = |lo: f64, hi: f64| {
        rss.iter()
            .filter(|(t, _)| (lo..hi).contains(t))
            .map(|p| p.1)
            .max()
            .unwrap_or(0)
    };
    let (early, late) = (peak(1.0, half), peak(half, seconds));
    eprintln!(
        "soak: {seconds} s, {n} requests, {abandoned} abandoned, peak RSS {early} KiB in the \
         first half, {late} KiB in the second"
    );
    assert!(early > 0 && late > 0, "RSS samples: {rss:?}");
    assert!(
        late as f64 <= early as f64 * 1.5 + 32.0 * 1024.0,
        "RSS grew from {early} KiB to {late} KiB"
    );
}

/// The replay's arguments for the kill test: 4 users, ~10 answers a second, so a second's rows
/// stay far below `CsvLog`'s 64 KiB spill and only the once-a-second flush puts them on disk.
fn steady_replay(base: &str, out: &std::path::Path, duration_s: u32) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kvsweep"));
    cmd.args(["replay", "--url", base, "--traces"])
        .arg(repo_root().join("traces/samples/kv-cache-tester"))
        .args([
            "--users",
            "4",
            "--time-scale",
            "0.001",
            "--max-context",
            "32000",
        ])
        .args(["--ignore-eos", "--drain", "0", "--duration"])
        .arg(duration_s.to_string())
        .arg("--out")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// What a request's row says that does not depend on timing or on the other users.
fn request_facts(
    rows: &[std::collections::HashMap<String, String>],
) -> std::collections::HashMap<(String, String), Vec<String>> {
    rows.iter()
        .map(|r| {
            let facts = [
                "trace_input_tokens",
                "prompt_tokens",
                "completion_tokens",
                "status",
            ]
            .map(|k| r[k].clone())
            .to_vec();
            ((r["session"].clone(), r["request_index"].clone()), facts)
        })
        .collect()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

#[test]
fn a_sigkill_leaves_parseable_files_that_keep_every_row_flushed_before_it() {
    use common::sim::SimServer;
    let sim_args = ["--model", "llama-3.1-8b", "--speed", "20"];
    let (complete_sim, killed_sim) = (SimServer::start(&sim_args), SimServer::start(&sim_args));
    let dir = tempfile::tempdir().expect("tempdir");
    let (complete_out, killed_out) = (dir.path().join("complete"), dir.path().join("killed"));
    let mut complete = steady_replay(&complete_sim.base, &complete_out, 9)
        .spawn()
        .expect("replay starts");
    let mut killed = steady_replay(&killed_sim.base, &killed_out, 60)
        .spawn()
        .expect("replay starts");
    // Killed once ten rows are on disk, then up to 2 s later, a different moment on every run:
    // mid-run and with rows to compare, however fast this machine answers.
    let rows_on_disk = || {
        std::fs::read_to_string(killed_out.join("requests.csv"))
            .map_or(0, |t| t.matches('\n').count().saturating_sub(1))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while rows_on_disk() < 10 {
        assert!(Instant::now() < deadline, "no ten rows on disk in 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs_f64(2.0 * unix_now().fract()));
    let rows_before_kill = rows_on_disk();
    killed.kill().expect("SIGKILL");
    killed.wait().expect("wait");
    assert!(
        complete.wait().expect("wait").success(),
        "the complete run failed"
    );

    // Every file parses, and the run says it did not finish.
    let json = |name: &str| -> serde_json::Value {
        let path = killed_out.join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} does not parse: {e}"))
    };
    assert_eq!(json("status.json")["status"], "running");
    let metadata = json("metadata.json");
    assert_eq!(metadata["completed"], false);
    // Nobody passed --engine-label: the replay knew the simulator by its /v1/models.
    assert_eq!(metadata["engine"], "sim");
    assert_eq!(metadata["simulated"], true);
    if killed_out.join("summary.json").exists() {
        json("summary.json");
    }
    let text = std::fs::read_to_string(killed_out.join("requests.csv")).expect("requests.csv");
    assert!(text.ends_with('\n'), "requests.csv ends in a torn row");
    let killed_rows = csv_rows(&killed_out.join("requests.csv"));
    csv_rows(&killed_out.join("periods.csv"));

    // The rows flushed before the kill are all still there: a kill loses only what the
    // replay had not yet written (rows are flushed every second as the run goes).
    assert!(
        killed_rows.len() >= rows_before_kill,
        "{} rows after the kill, {rows_before_kill} on disk just before it",
        killed_rows.len()
    );

    // What is there is what a complete run says of the same requests.
    let complete_facts = request_facts(&csv_rows(&complete_out.join("requests.csv")));
    let killed_facts = request_facts(&killed_rows);
    assert!(killed_facts.len() >= 10, "{} rows", killed_facts.len());
    for (key, facts) in &killed_facts {
        assert_eq!(
            complete_facts.get(key),
            Some(facts),
            "request {key:?} differs from the complete run's"
        );
    }
}
