//! `kvsweep replay` against `kvsweep sim-server`: prompt fidelity on the sample traces, timing,
//! reproducibility, bad input, failing servers and killed runs.

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::sim::SimServer;
use common::{json, kvsweep, run, write};
use kvsweep::data::artifact::schema::PeriodRow;

fn sample(name: &str) -> PathBuf {
    common::repo_root()
        .join("traces/samples/kv-cache-tester")
        .join(name)
}

fn replay(sim: &SimServer, out: &Path, extra: &[&str]) -> std::process::Output {
    run(kvsweep()
        .args([
            "replay",
            "--url",
            &sim.base,
            "--out",
            out.to_str().expect("utf-8"),
            "--engine-label",
            "sim",
        ])
        .args(extra))
}

fn rows(out: &Path) -> Vec<HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(out.join("requests.csv")).expect("requests.csv");
    let headers = reader.headers().expect("headers").clone();
    reader
        .records()
        .map(|r| {
            let r = r.expect("a complete row");
            headers
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

/// Replays sample trace files with three users and no waits; returns the results directory and
/// the traces as kvsweep reads them.
fn replay_samples(
    sim: &SimServer,
    files: &[&str],
    extra: &[&str],
) -> (tempfile::TempDir, kvsweep::data::trace::TraceSet) {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths: Vec<PathBuf> = files.iter().map(|f| sample(f)).collect();
    let mut args: Vec<&str> = vec!["--users", "3", "--time-scale", "0"];
    args.extend_from_slice(extra);
    for p in &paths {
        args.extend(["--traces", p.to_str().expect("utf-8")]);
    }
    let out = replay(sim, dir.path(), &args);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let opts = kvsweep::data::trace::LoadOptions {
        format: kvsweep::plan::spec::TraceFormat::Auto,
        jsonl_block_size: Some(512),
        strict: true,
    };
    (
        dir,
        kvsweep::data::trace::load(&paths, opts).expect("traces"),
    )
}

/// Cached tokens an unbounded vLLM-style cache gives request `i` of a session: the longest run of
/// leading hash ids it shares with an earlier request, in 16-token blocks, never the last token.
fn predicted_hits(
    requests: &[kvsweep::data::trace::TraceRequest],
    i: usize,
    block_size: u32,
) -> u64 {
    let full = |r: &kvsweep::data::trace::TraceRequest| {
        r.hash_ids.len().min((r.input_tokens / block_size) as usize)
    };
    let mine = &requests[i].hash_ids[..full(&requests[i])];
    let shared = requests[..i]
        .iter()
        .map(|p| {
            p.hash_ids[..full(p)]
                .iter()
                .zip(mine)
                .take_while(|(a, b)| a == b)
                .count()
        })
        .max()
        .unwrap_or(0) as u64;
    let cap = u64::from(requests[i].input_tokens - 1) / 16 * 16;
    (shared * u64::from(block_size)).min(cap)
}

#[test]
fn every_prompt_has_the_trace_length_and_exactly_the_predicted_cache_hits() {
    // Sessions without subagents run strictly in order, so "earlier" is well defined; three
    // users replay different files (different hash scopes) at the same time.
    let files = [
        "trace_0538.json",
        "trace_0057.json",
        "trace_0460.json",
        "trace_0165.json",
        "trace_0174.json",
        "trace_0614.json",
        "trace_0638.json",
    ];
    let sim = SimServer::start(&[
        "--instant",
        "--kv-cache-gb",
        "100000",
        "--model",
        "llama-3.1-8b",
    ]);
    let (dir, set) = replay_samples(&sim, &files, &[]);
    let sessions: HashMap<&str, &kvsweep::data::trace::Session> =
        set.sessions.iter().map(|s| (s.id.as_str(), s)).collect();
    let rows = rows(dir.path());
    assert_eq!(
        rows.len(),
        set.sessions.iter().map(|s| s.requests.len()).sum::<usize>()
    );
    let mut hits_seen = 0;
    for row in &rows {
        assert_eq!(row["status"], "ok", "{row:?}");
        let session = sessions[row["session"].as_str()];
        let i: usize = row["request_index"].parse().expect("index");
        let req = &session.requests[i];
        assert_eq!(
            row["prompt_tokens"],
            req.input_tokens.to_string(),
            "{} #{i}: prompt length",
            session.id
        );
        let expected = predicted_hits(&session.requests, i, session.block_size);
        assert_eq!(
            row["cached_tokens"],
            expected.to_string(),
            "{} #{i}: cached tokens",
            session.id
        );
        hits_seen += usize::from(expected > 0);
    }
    assert!(
        hits_seen > rows.len() / 2,
        "the sample sessions reuse their context"
    );
    let summary = json(&dir.path().join("summary.json"));
    assert_eq!(summary["completed"], true);
    assert_eq!(summary["simulated"], true);
    assert_eq!(json(&dir.path().join("status.json"))["status"], "ok");
    let meta = json(&dir.path().join("metadata.json"));
    assert_eq!(meta["completed"], true);
    assert_eq!(meta["traces"]["files"], 7);
    assert_eq!(meta["models"]["data"][0]["id"], "llama-3.1-8b");
}

const TIMED: &str = r#"{"id": "timed", "block_size": 64, "requests": [
  {"t": 0, "in": 100, "out": 3, "hash_ids": [1], "think_time": 0, "api_time": 0.2},
  {"t": 5, "in": 150, "out": 3, "hash_ids": [1, 2], "think_time": 0.3, "api_time": 0.2},
  {"t": 6, "in": 200, "out": 3, "hash_ids": [1, 2, 3], "think_time": 0.5, "api_time": 0.2}]}"#;

/// The CSV's times are rounded to the microsecond.
const CSV_ROUNDING_S: f64 = 1e-5;

fn secs(r: &HashMap<String, String>, col: &str) -> f64 {
    r[col].parse().expect("f64")
}

/// The requests of a one-session run in trace order: (scheduled_s, sent_s, done_s).
fn timeline(rows: &[HashMap<String, String>]) -> Vec<(f64, f64, f64)> {
    let mut rows: Vec<_> = rows.iter().collect();
    rows.sort_by_key(|r| r["request_index"].parse::<u32>().expect("index"));
    rows.iter()
        .map(|r| (secs(r, "scheduled_s"), secs(r, "sent_s"), secs(r, "done_s")))
        .collect()
}

/// Each request after the first is scheduled its wait after the answer before it, and sent no
/// sooner than scheduled. The check is on the schedule, which the replay computes from the
/// answer (no timer in it), not on when a loaded machine got round to sending: scheduled within
/// `apart` of its wait, `apart` being half the distance to the other strategy's wait, so a
/// strategy mistaken for another fails.
fn assert_waited(rows: &[HashMap<String, String>], wants: [f64; 2], apart: f64) {
    let t = timeline(rows);
    assert_eq!(t.len(), wants.len() + 1, "{t:?}");
    for (w, want) in t.windows(2).zip(wants) {
        let ((_, _, done), (scheduled, sent, _)) = (w[0], w[1]);
        let (waited, went) = (scheduled - done, sent - scheduled);
        assert!(
            waited >= want - CSV_ROUNDING_S && went >= -CSV_ROUNDING_S,
            "scheduled {waited} s after the answer and sent {went} s after that, vs wait {want}"
        );
        assert!(
            waited < want + apart,
            "scheduled {waited} s after the answer vs wait {want}"
        );
    }
}

#[test]
fn think_times_are_honoured_by_each_timing_strategy() {
    let sim = SimServer::start(&["--instant"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = write(dir.path(), "timed.json", TIMED);
    let trace = trace.to_str().expect("utf-8");
    let run = |name: &str, extra: &[&str]| {
        let out_dir = dir.path().join(name);
        let out = replay(&sim, &out_dir, &[&["--traces", trace], extra].concat());
        assert!(out.status.success(), "{}", common::stderr(&out));
        rows(&out_dir)
    };
    // Think times 0.3 and 0.5 s; with the API times (0.2 s) at scale 2, 0.7 and 0.9 s.
    assert_waited(&run("think", &[]), [0.3, 0.5], 0.2);
    let api = ["--timing", "api-scaled", "--api-time-scale", "2"];
    assert_waited(&run("api", &api), [0.7, 0.9], 0.2);

    // The trace's own spacing, scaled by 0.1: requests are due 0.5 and 0.6 s after the session
    // started, or when the answer before them came if that is later; never the think time after
    // the answer (which would put the last 0.5 s after the second's answer).
    let t = timeline(&run(
        "original",
        &["--timing", "original", "--time-scale", "0.1"],
    ));
    assert_eq!(t.len(), 3, "{t:?}");
    // The instant simulator answered the first long before the second was due, so the second
    // was scheduled at its offset: that dates the session's start.
    assert!(t[1].0 > t[0].2 + 0.1, "{t:?}");
    let started = t[1].0 - 0.5;
    assert!(started <= t[0].0 + CSV_ROUNDING_S, "{t:?}");
    let ((_, _, done), (scheduled, sent, _)) = (t[1], t[2]);
    if done < started + 0.6 {
        assert!(
            (scheduled - (started + 0.6)).abs() <= 2.0 * CSV_ROUNDING_S,
            "the last is due 0.6 s after the start, at {}: {t:?}",
            started + 0.6
        );
    } else {
        assert!(scheduled >= done && scheduled < done + 0.25, "{t:?}");
    }
    assert!(sent >= scheduled - CSV_ROUNDING_S, "{t:?}");
}

#[test]
fn the_same_seed_replays_the_same_sessions_in_the_same_order() {
    let sim = SimServer::start(&["--instant"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let traces = common::repo_root().join("traces/samples/kv-cache-tester");
    let order = |name: &str, seed: &str| {
        let out_dir = dir.path().join(name);
        let out = replay(
            &sim,
            &out_dir,
            &[
                "--traces",
                traces.to_str().expect("utf-8"),
                "--time-scale",
                "0",
                "--seed",
                seed,
                "--duration",
                "2",
                "--max-context",
                "20000",
            ],
        );
        assert!(out.status.success(), "{}", common::stderr(&out));
        let mut r = rows(&out_dir);
        r.sort_by_key(|r| r["request_id"].parse::<u64>().expect("id"));
        // Top-level sessions in the order they started (subagents start together and may race).
        let mut sessions: Vec<String> = Vec::new();
        for row in &r {
            let top = row["session"]
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            if !sessions.contains(&top) {
                sessions.push(top);
            }
        }
        sessions.truncate(20);
        sessions
    };
    let a = order("a", "7");
    assert_eq!(a, order("b", "7"));
    assert_ne!(a, order("c", "8"));
}

#[test]
fn malformed_records_are_counted_or_fatal_with_strict() {
    let sim = SimServer::start(&["--instant"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = write(
        dir.path(),
        "bad.json",
        "{\"requests\": [\n{\"t\": 0, \"in\": 100, \"out\": 2, \"hash_ids\": [1]},\n{\"t\": 1, \"in\": \"many\", \"out\": 2, \"hash_ids\": [1]}\n]}",
    );
    let out_dir = dir.path().join("lenient");
    let out = replay(
        &sim,
        &out_dir,
        &["--traces", trace.to_str().expect("utf-8")],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        common::stderr(&out).contains("bad.json:3: field `in`"),
        "{}",
        common::stderr(&out)
    );
    assert_eq!(
        json(&out_dir.join("metadata.json"))["traces"]["skipped_records"],
        1
    );
    assert_eq!(rows(&out_dir).len(), 1);

    let out = replay(
        &sim,
        &dir.path().join("strict"),
        &["--traces", trace.to_str().expect("utf-8"), "--strict"],
    );
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("bad.json:3: field `in`"),
        "{}",
        common::stderr(&out)
    );
}

#[test]
fn an_unreachable_server_is_one_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let out = run(kvsweep().args([
        "replay",
        "--url",
        &format!("http://127.0.0.1:{port}"),
        "--traces",
        sample("trace_0538.json").to_str().expect("utf-8"),
        "--out",
        dir.path().to_str().expect("utf-8"),
    ]));
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(err.contains("cannot reach the server"), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.contains("error")).count(),
        1,
        "{err}"
    );
    assert_eq!(json(&dir.path().join("status.json"))["status"], "failed");
}

#[test]
fn more_than_ten_percent_failures_fail_the_run() {
    let sim = SimServer::start(&[
        "--instant",
        "--fail-rate",
        "0.4",
        "--fail-status",
        "500",
        "--seed",
        "3",
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    // The preflight request may itself fail; try a few seeds' worth of runs until one starts.
    let traces = common::repo_root().join("traces/samples/kv-cache-tester");
    let mut started = false;
    for attempt in 0..5 {
        let out_dir = dir.path().join(attempt.to_string());
        let out = replay(
            &sim,
            &out_dir,
            &[
                "--traces",
                traces.to_str().expect("utf-8"),
                "--time-scale",
                "0",
                "--users",
                "4",
                "--duration",
                "3",
                "--max-context",
                "20000",
            ],
        );
        let status = json(&out_dir.join("status.json"));
        if common::stderr(&out).contains("one-token test request") {
            continue;
        }
        started = true;
        assert!(!out.status.success());
        assert_eq!(status["status"], "failed");
        assert!(
            status["reason"]
                .as_str()
                .expect("reason")
                .contains("more than 10%"),
            "{status}"
        );
        let summary = json(&out_dir.join("summary.json"));
        assert!(summary["requests"]["error_rate"].as_f64().expect("rate") > 0.2);
        break;
    }
    assert!(started, "the preflight failed every time");
}

#[test]
fn a_killed_run_leaves_parseable_files_marked_incomplete() {
    let sim = SimServer::start(&["--model", "llama-3.1-8b", "--speed", "10"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let traces = common::repo_root().join("traces/samples/kv-cache-tester");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvsweep"))
        .args([
            "replay",
            "--url",
            &sim.base,
            "--traces",
            traces.to_str().expect("utf-8"),
            "--users",
            "8",
            "--time-scale",
            "0.01",
            "--assessment-period",
            "1",
        ])
        .args(["--out", dir.path().to_str().expect("utf-8")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("replay starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while rows_if_any(dir.path()) < 10 {
        assert!(Instant::now() < deadline, "no rows after 30 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    let rows = rows(dir.path());
    assert!(rows.len() >= 10);
    let metadata = json(&dir.path().join("metadata.json"));
    assert_eq!(metadata["completed"], false);
    // The simulator's speed, typed, for collect to put the figures into the modelled time.
    assert_eq!(metadata["simulator"]["speed"], 10.0, "{metadata}");
    assert_eq!(json(&dir.path().join("summary.json"))["completed"], false);
    assert_eq!(json(&dir.path().join("status.json"))["status"], "running");
    // Whole rows, every column there.
    let periods = PeriodRow::read(dir.path()).expect("periods.csv");
    assert!(!periods.is_empty());
}

fn rows_if_any(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("requests.csv"))
        .map_or(0, |t| t.lines().count().saturating_sub(1))
}

#[test]
fn duration_ends_the_run_even_with_subagents_due_later() {
    // trace_0277's subagents start minutes into the session; the run must not wait for them.
    let sim = SimServer::start(&["--instant"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = replay(
        &sim,
        dir.path(),
        &[
            "--traces",
            sample("trace_0277.json").to_str().expect("utf-8"),
            "--duration",
            "2",
        ],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let summary = json(&dir.path().join("summary.json"));
    assert_eq!(summary["completed"], true);
    // By the replay's own clock, the run was over before the first subagent was due (79 s).
    assert!(
        summary["duration_s"].as_f64().expect("duration") < 79.0,
        "{summary}"
    );
}

#[test]
fn chat_prompts_are_exact_too() {
    // The same fidelity through /v1/chat/completions: text made of single-token words, sized so
    // that the chat template's own tokens plus the message make exactly the trace's input.
    let files = ["trace_0538.json", "trace_0057.json", "trace_0460.json"];
    let sim = SimServer::start(&["--instant", "--kv-cache-gb", "100000"]);
    let (dir, set) = replay_samples(&sim, &files, &["--api", "chat"]);
    let sessions: HashMap<&str, &kvsweep::data::trace::Session> =
        set.sessions.iter().map(|s| (s.id.as_str(), s)).collect();
    // The simulator's template starts "<|im_start|>user\n": its tokens come before the message.
    let tok = kvsweep::base::tokenizer::Tokenizer::load(None).expect("o200k");
    let head = tok.encode("<|im_start|>user\n").expect("encode").len() as u64;
    let meta = json(&dir.path().join("metadata.json"));
    let template = meta["chat_template_tokens"]
        .as_u64()
        .expect("template tokens");
    assert!(template > head);
    let rows = rows(dir.path());
    assert_eq!(
        rows.len(),
        set.sessions.iter().map(|s| s.requests.len()).sum::<usize>()
    );
    for row in &rows {
        let session = sessions[row["session"].as_str()];
        let i: usize = row["request_index"].parse().expect("index");
        let req = &session.requests[i];
        assert_eq!(
            row["prompt_tokens"],
            req.input_tokens.to_string(),
            "{} #{i}",
            session.id
        );
        // Shared message tokens: the common hash blocks, cut by the message's own length (the
        // template's tokens come out of the message). The template's head is shared by all.
        let message = u64::from(req.input_tokens) - template;
        let full = |r: &kvsweep::data::trace::TraceRequest| {
            r.hash_ids
                .len()
                .min((r.input_tokens / session.block_size) as usize)
        };
        let blocks = session.requests[..i]
            .iter()
            .map(|p| {
                p.hash_ids[..full(p)]
                    .iter()
                    .zip(&req.hash_ids[..full(req)])
                    .take_while(|(a, b)| a == b)
                    .count()
            })
            .max()
            .unwrap_or(0) as u64;
        let earlier_message =
            |p: &kvsweep::data::trace::TraceRequest| u64::from(p.input_tokens) - template;
        let shared = (blocks * u64::from(session.block_size)).min(message).min(
            session.requests[..i]
                .iter()
                .map(earlier_message)
                .max()
                .unwrap_or(0),
        );
        let expected = ((head + shared) / 16 * 16).min(u64::from(req.input_tokens - 1) / 16 * 16);
        assert_eq!(
            row["cached_tokens"],
            expected.to_string(),
            "{} #{i}: cached tokens",
            session.id
        );
    }
}

#[test]
fn fixed_schedule_sends_at_the_timestamps_without_waiting_for_answers() {
    // Answers take 300 ms (a stall on every request); the schedule sends every 100 ms anyway.
    let sim = SimServer::start(&["--instant", "--stall-ms", "300"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let lines: String = (0..5)
        .map(|i| format!("{{\"session_id\": \"a\", \"timestamp\": {}, \"input_length\": 600, \"output_length\": 2, \"hash_ids\": [1, 2]}}\n", i * 100))
        .collect();
    let trace = write(dir.path(), "sched.jsonl", &lines);
    let out_dir = dir.path().join("out");
    let out = replay(
        &sim,
        &out_dir,
        &[
            "--traces",
            trace.to_str().expect("utf-8"),
            "--fixed-schedule",
        ],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let mut sent: Vec<(f64, f64, f64)> = rows(&out_dir)
        .iter()
        .map(|r| (secs(r, "scheduled_s"), secs(r, "sent_s"), secs(r, "done_s")))
        .collect();
    sent.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(sent.len(), 5);
    // Scheduled at the timestamps exactly, sent no sooner, and each sent before the answer to the
    // one before it came back: no send waited for an answer.
    for (i, &(scheduled, s, _)) in sent.iter().enumerate() {
        let offset = scheduled - sent[0].0;
        assert!(
            (offset - 0.1 * i as f64).abs() <= CSV_ROUNDING_S,
            "request {i} scheduled {offset:.6} s after the first"
        );
        assert!(s >= scheduled - CSV_ROUNDING_S, "request {i} sent early");
    }
    for pair in sent.windows(2) {
        assert!(
            pair[1].1 < pair[0].2,
            "a send at {} waited for the answer done at {}",
            pair[1].1,
            pair[0].2
        );
    }
}

#[test]
fn recycle_max_context_and_timeouts() {
    let sim = SimServer::start(&["--instant"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = write(dir.path(), "t.json", TIMED);
    let t = trace.to_str().expect("utf-8");

    // One 3-request session, recycled for 1.5 s with 0.3-0.5 s think times: at least two passes.
    let out_dir = dir.path().join("recycle");
    let out = replay(
        &sim,
        &out_dir,
        &["--traces", t, "--recycle", "--duration", "1.5"],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        rows(&out_dir).len() >= 4,
        "{} requests",
        rows(&out_dir).len()
    );

    // --max-context 160: the 200-token request is skipped, or truncated to 160 tokens.
    let out_dir = dir.path().join("skip");
    assert!(
        replay(
            &sim,
            &out_dir,
            &["--traces", t, "--time-scale", "0", "--max-context", "160"]
        )
        .status
        .success()
    );
    assert_eq!(rows(&out_dir).len(), 2);
    let out_dir = dir.path().join("truncate");
    assert!(
        replay(
            &sim,
            &out_dir,
            &[
                "--traces",
                t,
                "--time-scale",
                "0",
                "--max-context",
                "160",
                "--on-long",
                "truncate"
            ]
        )
        .status
        .success()
    );
    let r = rows(&out_dir);
    assert_eq!(r.len(), 3);
    assert!(r.iter().any(|r| r["prompt_tokens"] == "160"));

    // A server slower than --request-timeout: every request times out and the run fails.
    let slow = SimServer::start(&["--instant", "--stall-ms", "3000"]);
    let out_dir = dir.path().join("timeout");
    let out = replay(
        &slow,
        &out_dir,
        &["--traces", t, "--time-scale", "0", "--request-timeout", "1"],
    );
    assert!(!out.status.success());
    let r = rows(&out_dir);
    assert_eq!(r.len(), 3);
    assert!(
        r.iter().all(
            |r| r["status"] == "timeout" && r["error"].contains("no complete answer within 1s")
        ),
        "{r:?}"
    );
    assert_eq!(json(&out_dir.join("status.json"))["status"], "failed");
}

#[test]
fn answers_still_streaming_after_the_drain_are_abandoned_and_counted() {
    let sim = SimServer::start(&["--instant", "--stall-ms", "8000"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = write(dir.path(), "t.json", TIMED);
    let _ = replay(
        &sim,
        &dir.path().join("out"),
        &[
            "--traces",
            trace.to_str().expect("utf-8"),
            "--duration",
            "1",
            "--drain",
            "1",
        ],
    );
    // The preflight waits out one stall; the run itself then ends 1 s + 1 s after it starts, by
    // its own clock before the stalled answer (8 s) could come back.
    let summary = json(&dir.path().join("out/summary.json"));
    assert!(
        summary["duration_s"].as_f64().expect("duration") < 8.0,
        "{summary}"
    );
    let meta = json(&dir.path().join("out/metadata.json"));
    assert_eq!(meta["abandoned_requests"], 1);
    assert!(rows(&dir.path().join("out")).is_empty());
}
