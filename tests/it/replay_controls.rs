//! Replay controls against `kvsweep sim-server` and its fault flags: the adaptive controller,
//! token budgets, admission limits, the circuit breaker, 429 Retry-After, warm-cache detection
//! and --reset-cache, warm start and advance, open-loop arrivals, several endpoints.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use common::json;
use common::sim::SimServer;
use kvsweep::base::workload::control::Arrival;
use kvsweep::data::artifact::schema::{JsonArtifact, PeriodRow, Summary};

fn traces() -> PathBuf {
    common::repo_root().join("traces/samples/kv-cache-tester")
}

/// Runs a replay against `urls` with `extra` flags into a fresh directory; returns it and
/// whether the replay succeeded.
fn replay(urls: &[&str], extra: &[&str]) -> (tempfile::TempDir, bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = common::kvsweep();
    cmd.arg("replay");
    for u in urls {
        cmd.args(["--url", u]);
    }
    cmd.arg("--traces")
        .arg(traces())
        .args(["--engine-label", "sim", "--out"])
        .arg(dir.path())
        .args(extra);
    let out = common::run(&mut cmd);
    let ok = out.status.success();
    (dir, ok, common::stderr(&out))
}

fn f(r: &HashMap<String, String>, col: &str) -> f64 {
    r[col]
        .parse()
        .unwrap_or_else(|_| panic!("{col} = `{}`", r[col]))
}

#[test]
fn the_adaptive_controller_settles_on_the_largest_user_count_within_the_target() {
    let sim = SimServer::start(&[]);
    let (dir, ok, err) = replay(
        &[&sim.base],
        &[
            "--max-users",
            "16",
            "--start-users",
            "1",
            "--max-ttft",
            "0.8",
            "--ttft-metric",
            "p90",
            "--ttft-window",
            "1",
            "--assessment-period",
            "2",
            "--duration",
            "40",
            "--time-scale",
            "0",
            "--recycle",
            "--max-context",
            "8000",
            "--on-long",
            "truncate",
            "--drain",
            "2",
        ],
    );
    assert!(ok, "{err}");
    let a = Summary::read(dir.path())
        .expect("summary.json")
        .adaptive
        .expect("the controller's state");
    let steps = &a.steps;
    let capacity = a.capacity_users.expect("a capacity");
    assert!(a.settled, "{a:#?}");
    assert!((1..16).contains(&capacity), "{a:#?}");
    // Stated bound: ttft_window × (2·log2(max_users) + 2) = 10 decisions, plus the periods in
    // which nothing finished (they wait for an answer).
    let settled_at = steps
        .iter()
        .position(|s| s.users == capacity && s.next_users == capacity)
        .expect("a step holding the capacity");
    assert!(
        settled_at <= 10 + 4,
        "settled after {settled_at} steps: {a:#?}"
    );
    // One more user than the capacity missed the target at some point.
    assert!(
        steps.iter().any(|s| s.users > capacity && !s.within_target),
        "{a:#?}"
    );
    // Once there, the controller holds: the last steps stay at the capacity.
    let tail = &steps[steps.len().saturating_sub(3)..];
    assert!(tail.iter().all(|s| s.users == capacity), "{a:#?}");
    let periods = PeriodRow::read(dir.path()).expect("periods.csv");
    assert!(periods.iter().any(|p| p.users > 1), "users were added");
}

#[test]
fn token_budgets_hold_over_a_window_to_the_bucket_bound() {
    // The bucket admits `rate` tokens a second plus its burst (0.6 s of budget) and at most one
    // request beyond: over a minute that is the budget within 5 %; over the 15 s looked at here
    // the same bound, stated exactly (a minute-long run would spend a minute proving it again).
    let (budget, window, largest_prompt) = (240_000.0, 15.0, 2_000.0);
    let rate = budget / 60.0;
    let bound = rate * window + rate * 0.6 + largest_prompt;
    let sim = SimServer::start(&["--instant"]);
    let (dir, ok, err) = replay(
        &[&sim.base],
        &[
            "--users",
            "8",
            "--duration",
            "17",
            "--time-scale",
            "0",
            "--recycle",
            "--max-context",
            "2000",
            "--on-long",
            "truncate",
            "--itpm-budget",
            "240000",
            "--otpm-budget",
            "600000",
            "--drain",
            "1",
        ],
    );
    assert!(ok, "{err}");
    let reqs = common::csv_rows(&dir.path().join("requests.csv"));
    let sent: Vec<_> = reqs.iter().filter(|r| f(r, "sent_s") < window).collect();
    let input: f64 = sent.iter().map(|r| f(r, "trace_input_tokens")).sum();
    let output: f64 = sent.iter().map(|r| f(r, "trace_output_tokens")).sum();
    assert!(
        input <= bound && input >= rate * window * 0.9,
        "input tokens in the first {window} s: {input} for {rate}/s (at most {bound})"
    );
    assert!(
        output <= 600_000.0 / 60.0 * (window + 0.6) + 2_000.0,
        "{output}"
    );
    let periods = PeriodRow::read(dir.path()).expect("periods.csv");
    assert!(periods.iter().any(|p| p.itpm_fill.is_some()));
}

#[test]
fn admission_limits_the_requests_in_flight() {
    let sim = SimServer::start(&["--speed", "4"]);
    let (dir, ok, err) = replay(
        &[&sim.base],
        &[
            "--users",
            "6",
            "--duration",
            "8",
            "--time-scale",
            "0",
            "--recycle",
            "--max-context",
            "4000",
            "--on-long",
            "truncate",
            "--max-concurrent-requests",
            "2",
            "--drain",
            "10",
        ],
    );
    assert!(ok, "{err}");
    let reqs = common::csv_rows(&dir.path().join("requests.csv"));
    assert!(reqs.len() >= 4);
    let mut events: Vec<(f64, i32)> = reqs
        .iter()
        .flat_map(|r| [(f(r, "sent_s"), 1), (f(r, "done_s"), -1)])
        .collect();
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut live = 0;
    let mut most = 0;
    for (_, d) in events {
        live += d;
        most = most.max(live);
    }
    assert!(most <= 2, "{most} requests in flight at once");
    assert!(
        reqs.iter().any(|r| f(r, "schedule_delay_ms") > 100.0),
        "requests waited for admission"
    );
}

#[test]
fn the_circuit_breaker_trips_on_a_wall_of_errors() {
    // Half the requests fail: three in a row come soon (the preflight retries through them).
    let failing = SimServer::start(&["--instant", "--fail-rate", "0.5", "--fail-status", "500"]);
    let (dir, ok, err) = replay(
        &[&failing.base],
        &[
            "--users",
            "2",
            "--duration",
            "30",
            "--time-scale",
            "0",
            "--recycle",
            "--max-consecutive-errors",
            "3",
            "--circuit-breaker-window",
            "30",
        ],
    );
    assert!(!ok, "{err}");
    let status = json(&dir.path().join("status.json"));
    assert_eq!(status["status"], "failed");
    assert!(
        status["reason"]
            .as_str()
            .expect("reason")
            .contains("circuit breaker: 3 errors in a row"),
        "{status}"
    );
    let summary = json(&dir.path().join("summary.json"));
    assert!(
        summary["duration_s"].as_f64().expect("duration") < 20.0,
        "stopped early"
    );
}

#[test]
fn rate_limited_requests_are_sent_again_after_retry_after() {
    let sim = SimServer::start(&["--instant", "--fail-rate", "0.2", "--fail-status", "429"]);
    let (dir, ok, err) = replay(
        &[&sim.base],
        &[
            "--users",
            "3",
            "--duration",
            "8",
            "--time-scale",
            "0",
            "--recycle",
            "--max-context",
            "4000",
            "--on-long",
            "truncate",
            "--drain",
            "10",
        ],
    );
    assert!(ok, "{err}");
    let reqs = common::csv_rows(&dir.path().join("requests.csv"));
    let retried: Vec<_> = reqs.iter().filter(|r| f(r, "attempts") > 1.0).collect();
    assert!(!retried.is_empty(), "some requests met a 429");
    // Every request got through, but one whose resend (Retry-After: 1 s) would have gone after
    // the 8 s deadline: that one keeps its 429.
    assert!(
        reqs.iter()
            .all(|r| r["status"] == "ok"
                || (r["http_status"] == "429" && f(r, "done_s") + 1.0 >= 8.0)),
        "every request got through"
    );
    for r in &retried {
        assert!(
            f(r, "schedule_delay_ms") >= 1000.0 * (f(r, "attempts") - 1.0) * 0.95,
            "waited Retry-After (1 s) per resend: {r:?}"
        );
    }
    let summary = json(&dir.path().join("summary.json"));
    assert!(summary["requests"]["rate_limited_resends"].as_u64() > Some(0));
}

#[test]
fn a_cache_left_warm_is_flagged_and_reset_cache_clears_it() {
    let sim = SimServer::start(&["--instant"]);
    let args = [
        "--users",
        "3",
        "--duration",
        "3",
        "--time-scale",
        "0",
        "--max-context",
        "8000",
        "--on-long",
        "truncate",
    ];
    let warning = |dir: &tempfile::TempDir| {
        json(&dir.path().join("metadata.json"))["warm_cache_warning"].clone()
    };
    let (first, ok, err) = replay(&[&sim.base], &args);
    assert!(ok, "{err}");
    assert!(warning(&first).is_null(), "a fresh server is cold");
    let (second, ok, err) = replay(&[&sim.base], &args);
    assert!(ok, "{err}");
    assert!(
        warning(&second)
            .as_str()
            .is_some_and(|w| w.contains("warm")),
        "{}",
        warning(&second)
    );
    assert!(err.contains("warning:"), "{err}");
    let mut with_reset = args.to_vec();
    with_reset.push("--reset-cache");
    let (third, ok, err) = replay(&[&sim.base], &with_reset);
    assert!(ok, "{err}");
    assert!(warning(&third).is_null(), "{}", warning(&third));
    assert_eq!(
        json(&third.path().join("metadata.json"))["cache_reset"],
        true
    );
}

#[test]
fn warm_start_and_advance_shape_the_first_requests() {
    let sim = SimServer::start(&["--instant"]);
    let (dir, ok, err) = replay(
        &[&sim.base],
        &[
            "--users",
            "2",
            "--duration",
            "3",
            "--time-scale",
            "0",
            "--warm-prefix-pct",
            "0.5",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        json(&dir.path().join("metadata.json"))["warmup_requests"],
        2
    );
    let reqs = common::csv_rows(&dir.path().join("requests.csv"));
    // Each user's first request: the first turn of a warmed session.
    let mut first_turns: HashMap<String, &HashMap<String, String>> = HashMap::new();
    for r in &reqs {
        let e = first_turns.entry(r["user"].clone()).or_insert(r);
        if f(r, "sent_s") < f(e, "sent_s") {
            *e = r;
        }
    }
    assert_eq!(first_turns.len(), 2);
    for r in first_turns.values() {
        assert_eq!(r["request_index"], "0");
        let share = f(r, "cached_tokens") / f(r, "prompt_tokens");
        assert!(
            (0.3..=0.6).contains(&share),
            "half the first prompt was warmed: {share}"
        );
    }

    let (dir, ok, err) = replay(
        &[&sim.base],
        &[
            "--users",
            "2",
            "--duration",
            "3",
            "--time-scale",
            "0",
            "--advance-min",
            "0.5",
            "--advance-max",
            "0.5",
            "--min-requests",
            "4",
        ],
    );
    assert!(ok, "{err}");
    let reqs = common::csv_rows(&dir.path().join("requests.csv"));
    let mut first_index: HashMap<String, f64> = HashMap::new();
    for r in &reqs {
        let e = first_index.entry(r["session"].clone()).or_insert(f64::MAX);
        *e = e.min(f(r, "request_index"));
    }
    assert!(
        first_index.values().any(|i| *i >= 2.0),
        "users started part-way into their sessions: {first_index:?}"
    );
}

#[test]
fn open_loop_arrivals_start_sessions_at_the_requested_rate() {
    let sim = SimServer::start(&["--instant"]);
    let (dir, ok, err) = replay(
        &[&sim.base],
        &[
            "--request-rate",
            "4",
            "--arrival",
            "constant",
            "--duration",
            "5",
            "--time-scale",
            "0",
            "--recycle",
            "--drain",
            "2",
        ],
    );
    assert!(ok, "{err}");
    let o = Summary::read(dir.path())
        .expect("summary.json")
        .open_loop
        .expect("open-loop figures");
    assert!((18..=21).contains(&o.sessions_started), "{o:?}");
    assert!((3.6..=4.2).contains(&o.achieved_sessions_per_s), "{o:?}");
    assert_eq!(o.arrival, Arrival::Constant, "as asked");
}

#[test]
fn sessions_stick_to_one_endpoint_and_each_endpoint_has_its_own_rows() {
    let a = SimServer::start(&["--instant"]);
    let b = SimServer::start(&["--instant"]);
    let (dir, ok, err) = replay(
        &[&a.base, &b.base],
        &[
            "--users",
            "6",
            "--duration",
            "4",
            "--time-scale",
            "0",
            "--recycle",
            "--assessment-period",
            "2",
        ],
    );
    assert!(ok, "{err}");
    let mut reqs = common::csv_rows(&dir.path().join("requests.csv"));
    // One replay of a session by a user: with --recycle a user can come back to a session, as a
    // new user with a new hash scope (and endpoint), starting again at its first request.
    reqs.sort_by(|a, b| f(a, "sent_s").total_cmp(&f(b, "sent_s")));
    let mut passes: HashMap<(String, String), u32> = HashMap::new();
    let mut by_session: HashMap<(String, String, u32), HashSet<String>> = HashMap::new();
    for r in &reqs {
        let key = (r["session"].clone(), r["user"].clone());
        let pass = passes.entry(key.clone()).or_default();
        if r["request_index"] == "0" {
            *pass += 1;
        }
        by_session
            .entry((key.0, key.1, *pass))
            .or_default()
            .insert(r["endpoint"].clone());
    }
    assert!(by_session.values().all(|e| e.len() == 1), "{by_session:?}");
    let used: HashSet<&String> = reqs.iter().map(|r| &r["endpoint"]).collect();
    assert_eq!(used.len(), 2, "both endpoints served sessions");
    let periods = PeriodRow::read(dir.path()).expect("periods.csv");
    for e in ["all", a.base.as_str(), b.base.as_str()] {
        assert!(periods.iter().any(|p| p.endpoint == e), "rows for {e}");
    }
    let summary = json(&dir.path().join("summary.json"));
    assert_eq!(summary["endpoints"].as_array().expect("endpoints").len(), 2);
}

#[test]
fn load_shaping_caps_the_working_set_and_the_new_tokens_of_a_period() {
    let sim = SimServer::start(&["--instant"]);
    // A working set of one token: only one user's session is live at a time.
    let (dir, ok, err) = replay(
        &[&sim.base],
        &[
            "--users",
            "3",
            "--duration",
            "4",
            "--time-scale",
            "0",
            "--recycle",
            "--max-working-set-tokens",
            "1",
            "--drain",
            "5",
        ],
    );
    assert!(ok, "{err}");
    let reqs = common::csv_rows(&dir.path().join("requests.csv"));
    for a in &reqs {
        for b in &reqs {
            if a["user"] != b["user"] {
                // The CSV keeps microseconds: back-to-back requests may touch within rounding.
                let eps = 1e-4;
                let overlap =
                    f(a, "sent_s") + eps < f(b, "done_s") && f(b, "sent_s") + eps < f(a, "done_s");
                assert!(!overlap, "users {} and {} overlapped", a["user"], b["user"]);
            }
        }
    }

    // One new token a period: a session's first turn (all new) waits for a period of its own.
    let (dir, ok, err) = replay(
        &[&sim.base],
        &[
            "--users",
            "4",
            "--duration",
            "4",
            "--time-scale",
            "0",
            "--recycle",
            "--max-new-tokens-per-period",
            "1",
            "--assessment-period",
            "1",
            "--drain",
            "5",
        ],
    );
    assert!(ok, "{err}");
    let reqs = common::csv_rows(&dir.path().join("requests.csv"));
    let mut per_period: HashMap<u64, u32> = HashMap::new();
    for r in reqs.iter().filter(|r| r["request_index"] == "0") {
        *per_period.entry(f(r, "sent_s") as u64).or_default() += 1;
    }
    assert!(per_period.values().all(|n| *n <= 1), "{per_period:?}");
    assert!(
        per_period.len() >= 2,
        "first turns spread over periods: {per_period:?}"
    );
}

/// The latest send in `requests.csv` and `summary.json`'s count of requests admission still held
/// at the deadline.
fn last_send_and_unsent(dir: &std::path::Path) -> (f64, u64) {
    let reqs = common::csv_rows(&dir.join("requests.csv"));
    assert!(!reqs.is_empty(), "some requests were sent");
    let last = reqs.iter().map(|r| f(r, "sent_s")).fold(f64::MIN, f64::max);
    let summary = json(&dir.join("summary.json"));
    let unsent = summary["requests"]["unsent_at_deadline"]
        .as_u64()
        .expect("summary.json: requests.unsent_at_deadline");
    (last, unsent)
}

#[test]
fn no_request_is_sent_after_the_deadline_under_any_admission_control() {
    // Four users who always want to send (no think time) against controls that let fewer go:
    // at the deadline some wait for admission. The drain is long enough for them to get it.
    let sim = SimServer::start(&["--speed", "4"]);
    let duration = 3.0;
    for control in [
        &["--max-concurrent-requests", "1"][..],
        &["--max-working-set-tokens", "1"],
        &["--itpm-budget", "60000"],
        &["--otpm-budget", "600"],
    ] {
        let mut flags = vec![
            "--users",
            "4",
            "--duration",
            "3",
            "--time-scale",
            "0",
            "--recycle",
            "--max-context",
            "4000",
            "--on-long",
            "truncate",
            "--drain",
            "20",
        ];
        flags.extend_from_slice(control);
        let (dir, ok, err) = replay(&[&sim.base], &flags);
        assert!(ok, "{control:?}: {err}");
        let (last, unsent) = last_send_and_unsent(dir.path());
        assert!(
            last <= duration,
            "{control:?}: a request was sent at {last} s of a {duration} s run"
        );
        assert!(
            unsent >= 1,
            "{control:?}: users were waiting for admission at the deadline, and are counted: {unsent}"
        );
        assert!(
            err.contains("not sent"),
            "{control:?}: said on stderr: {err}"
        );
    }
}

/// Two kv-cache-tester traces in 64-token blocks: `long` opens with a prompt of 2600 tokens (over
/// twice a 1024-token --max-context), `short` with one of 640.
fn warm_traces(dir: &std::path::Path) {
    let ids = |from: u32, n: u32| {
        (from..from + n)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let long = format!(
        r#"{{"id": "long", "block_size": 64, "requests": [
        {{"t": 0, "type": "s", "in": 2600, "out": 4, "hash_ids": [{}]}},
        {{"t": 1, "type": "s", "in": 2700, "out": 4, "hash_ids": [{}]}}]}}"#,
        ids(1, 41),
        ids(1, 43)
    );
    let short = format!(
        r#"{{"id": "short", "block_size": 64, "requests": [
        {{"t": 0, "type": "s", "in": 640, "out": 4, "hash_ids": [{}]}}]}}"#,
        ids(1001, 10)
    );
    common::write(dir, "long.json", &long);
    common::write(dir, "short.json", &short);
}

#[test]
fn the_warm_up_is_the_stated_share_of_what_is_sent_and_within_max_context() {
    let traces = tempfile::tempdir().expect("tempdir");
    warm_traces(traces.path());
    // The server refuses any prompt longer than --max-context (plus the answer's few tokens):
    // a warm-up cut from the untruncated 2600-token prompt would be refused.
    let sim = SimServer::start(&["--instant", "--max-model-len", "1100"]);
    let run = |share: &str| {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = common::run(
            common::kvsweep()
                .args(["replay", "--url", &sim.base, "--traces"])
                .arg(traces.path())
                .args(["--engine-label", "sim", "--out"])
                .arg(dir.path())
                .args(["--users", "2", "--duration", "3", "--time-scale", "0"])
                .args(["--max-context", "1024", "--on-long", "truncate"])
                .args(["--warm-prefix-pct", share, "--reset-cache"]),
        );
        (dir, out)
    };
    let (dir, out) = run("0.5");
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(
        json(&dir.path().join("metadata.json"))["warmup_requests"],
        2,
        "both warm-ups were within the server's context"
    );
    let reqs = common::csv_rows(&dir.path().join("requests.csv"));
    for session in ["long", "short"] {
        let first = reqs
            .iter()
            .find(|r| r["session"] == session && r["request_index"] == "0")
            .unwrap_or_else(|| panic!("{session}'s first turn in {reqs:?}"));
        // What was sent: the prompt cut to 1024 (long) or whole (short), half of it warmed,
        // in whole 64-token blocks (512 and 320 tokens: both whole).
        let sent = f(first, "prompt_tokens");
        assert_eq!(sent, if session == "long" { 1024.0 } else { 640.0 });
        assert_eq!(
            f(first, "cached_tokens"),
            sent / 2.0,
            "{session}: the server found half of what was sent cached: {first:?}"
        );
    }

    // A percentage where a share is meant is refused, not clamped to everything.
    let (_, out) = run("50");
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(
        err.contains("--warm-prefix-pct") && err.contains("not a share from 0 to 1"),
        "{err}"
    );
}

/// A kv-cache-tester trace whose 400-token session runs a 500-token subagent from 0.1 s for
/// about three seconds (three turns a second apart), and sends its own second turn after 4 s.
fn subagent_trace(dir: &std::path::Path, name: &str, first_id: u32) {
    let ids = |n: u32| {
        (first_id..first_id + n)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let (p, s) = (ids(7), ids(8));
    let sub = (0..4)
        .map(|k| {
            format!(
                r#"{{"t": {k}, "type": "s", "in": 500, "out": 4, "hash_ids": [{s}], "think_time": 1.0}}"#
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    common::write(
        dir,
        &format!("{name}.json"),
        &format!(
            r#"{{"id": "{name}", "block_size": 64, "requests": [
            {{"t": 0, "type": "s", "in": 400, "out": 4, "hash_ids": [{p}]}},
            {{"t": 0.1, "type": "subagent", "agent_id": "sub", "requests": [{sub}]}},
            {{"t": 5, "type": "s", "in": 400, "out": 4, "hash_ids": [{p}], "think_time": 4.0}}]}}"#
        ),
    );
}

#[test]
fn the_working_set_counts_a_parent_and_its_running_subagents() {
    let traces = tempfile::tempdir().expect("tempdir");
    subagent_trace(traces.path(), "a", 1);
    subagent_trace(traces.path(), "b", 101);
    let sim = SimServer::start(&["--instant"]);
    let cap = 1000.0;
    // The second user arrives at 1 s (--ramp-up 2), while the first one's subagent runs: its
    // session (404 tokens) and subagent (504) leave no room for another 400-token session.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = common::run(
        common::kvsweep()
            .args(["replay", "--url", &sim.base, "--traces"])
            .arg(traces.path())
            .args(["--engine-label", "sim", "--out"])
            .arg(dir.path())
            .args(["--users", "2", "--ramp-up", "2", "--duration", "30"])
            .args(["--max-working-set-tokens", "1000"]),
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let reqs = common::csv_rows(&dir.path().join("requests.csv"));
    assert_eq!(reqs.len(), 12, "every turn of both sessions: {reqs:?}");

    // Each context (a user's session, or one of its subagents) is live from its first send to
    // its last answer (a session's: the last answer of the session or its subagents), holding
    // the tokens of its latest turn.
    let eps = 1e-4;
    let users: HashSet<&String> = reqs.iter().map(|r| &r["user"]).collect();
    assert_eq!(users.len(), 2);
    let working_set_at = |t: f64, except_user: &str| -> f64 {
        let mut live = 0.0;
        for user in users.iter().filter(|u| u.as_str() != except_user) {
            let rows: Vec<_> = reqs.iter().filter(|r| &&r["user"] == user).collect();
            let contexts: HashSet<&String> = rows.iter().map(|r| &r["session"]).collect();
            let session_end = rows.iter().map(|r| f(r, "done_s")).fold(0.0, f64::max);
            for context in contexts {
                let turns: Vec<_> = rows.iter().filter(|r| &r["session"] == context).collect();
                let start = turns
                    .iter()
                    .map(|r| f(r, "sent_s"))
                    .fold(f64::MAX, f64::min);
                let end = if context.contains('/') {
                    turns.iter().map(|r| f(r, "done_s")).fold(0.0, f64::max)
                } else {
                    session_end
                };
                let latest = turns
                    .iter()
                    .filter(|r| f(r, "sent_s") <= t)
                    .max_by(|a, b| f(a, "sent_s").total_cmp(&f(b, "sent_s")));
                if let Some(r) = latest
                    && start <= t
                    && t < end - eps
                {
                    live += f(r, "trace_input_tokens") + f(r, "trace_output_tokens");
                }
            }
        }
        live
    };
    // Each user's first send: what the cap admits.
    for user in &users {
        let first = reqs
            .iter()
            .filter(|r| &&r["user"] == user)
            .min_by(|a, b| f(a, "sent_s").total_cmp(&f(b, "sent_s")))
            .expect("a first send");
        let t = f(first, "sent_s");
        let live = working_set_at(t, user);
        assert!(
            live == 0.0 || live + f(first, "trace_input_tokens") <= cap,
            "user {user} started at {t} s beside a working set of {live} tokens (cap {cap}): {reqs:?}"
        );
    }
    // And the second user did wait: it started after the first one's subagent finished.
    let starts: Vec<f64> = users
        .iter()
        .map(|u| {
            reqs.iter()
                .filter(|r| &&r["user"] == u)
                .map(|r| f(r, "sent_s"))
                .fold(f64::MAX, f64::min)
        })
        .collect();
    assert!(
        starts.iter().copied().fold(0.0, f64::max) > 2.5,
        "the second user waited past its 1 s ramp-up: {starts:?}"
    );
}
