//! The AgentX replay scenario (`kvsweep replay --scenario agentx`): its rules against
//! `kvsweep sim-server`, and side by side with AIPerf 0.13.0's `inferencex-agentx-mvp` scenario
//! on the same carried traces against the same simulator.

use crate::common;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use common::aiperf::carried_traces as traces;
use common::sim::SimServer;
use kvsweep::data::artifact::schema::{AgentxRecord, JsonArtifact};

/// Runs `kvsweep replay` with `extra` into `dir/kv`; returns the directory, whether it
/// succeeded and its stderr.
fn replay(sim: &SimServer, traces: &Path, dir: &Path, extra: &[&str]) -> (PathBuf, bool, String) {
    let out_dir = dir.join("kv");
    let out = common::run(
        common::kvsweep()
            .args(["replay", "--url", &sim.base, "--api", "chat", "--traces"])
            .arg(traces)
            .arg("--out")
            .arg(&out_dir)
            .args(extra),
    );
    (out_dir, out.status.success(), common::stderr(&out))
}

fn num(r: &HashMap<String, String>, col: &str) -> f64 {
    r[col]
        .parse()
        .unwrap_or_else(|_| panic!("{col} = `{}`", r[col]))
}

/// The longest time nothing was in flight between the first request's start and the last
/// one's end, from (start, end) intervals.
fn largest_idle_gap(mut spans: Vec<(f64, f64)>) -> f64 {
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut busy_until = f64::NEG_INFINITY;
    let mut gap = 0.0f64;
    for (start, end) in spans {
        if busy_until > f64::NEG_INFINITY {
            gap = gap.max(start - busy_until);
        }
        busy_until = busy_until.max(end);
    }
    gap
}

/// The rows of requests.csv.
fn requests(dir: &Path) -> Vec<HashMap<String, String>> {
    common::csv_rows(&dir.join("requests.csv"))
}

/// The profiled rows of the lane replaying `session` (its root and subagents), earliest first.
fn lane_rows<'a>(
    rows: &'a [HashMap<String, String>],
    session: &str,
) -> Vec<&'a HashMap<String, String>> {
    let tree = format!("{session}/");
    let mut lane: Vec<_> = rows
        .iter()
        .filter(|r| r["session"] == session || r["session"].starts_with(&tree))
        .collect();
    lane.sort_by(|a, b| num(a, "sent_s").total_cmp(&num(b, "sent_s")));
    lane
}

#[test]
fn lanes_start_part_way_primed_warmed_and_profiled_from_there() {
    let sim = SimServer::start(&["--speed", "50"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let traces = traces(dir.path(), &["0012", "0019", "0021", "0277"]);
    let (out, ok, err) = replay(
        &sim,
        &traces,
        dir.path(),
        &[
            "--scenario",
            "agentx",
            "--users",
            "4",
            "--duration",
            "4",
            "--warmup-requests-per-lane",
            "2",
        ],
    );
    assert!(ok, "{err}");
    let record = AgentxRecord::read(&out).expect("agentx.json");
    assert_eq!(record.start_ratio, Some((0.25, 0.75)));
    assert_eq!(record.system_idle_gap_cap_s, Some(10.0));
    assert_eq!(record.trace_idle_gap_cap_s, Some(300.0));
    assert!(record.cache_bust_marker.is_some(), "agentx busts the cache");
    assert_eq!(record.lanes.len(), 4, "one lane per user");
    let rows = requests(&out);
    for l in &record.lanes {
        assert!(
            l.t_star_s.is_some(),
            "the carried traces have timestamps: {l:?}"
        );
        let extra = 2.min(l.turns - l.start_turn - 2);
        let primed_subagents = l
            .subagents
            .iter()
            .filter(|s| s.start_turn.is_some())
            .count();
        assert_eq!(
            l.warmup_requests as usize,
            1 + extra + primed_subagents,
            "{l:?}"
        );
        assert_eq!(l.profile_from, l.start_turn + 1 + extra, "{l:?}");
        // The lane's first profiled request is the turn after the warm-up of one of its live
        // streams, found cached when that stream was primed.
        let first = *lane_rows(&rows, &l.session)
            .first()
            .unwrap_or_else(|| panic!("{} sent nothing", l.session));
        let stream = (
            first["session"].as_str(),
            num(first, "request_index") as usize,
        );
        let primed = if stream == (l.session.as_str(), l.profile_from) {
            true
        } else {
            let s = l
                .subagents
                .iter()
                .find(|s| (s.session.as_str(), s.profile_from) == stream)
                .unwrap_or_else(|| panic!("{stream:?} is not where {l:?} resumes"));
            s.start_turn.is_some()
        };
        if primed {
            assert!(
                num(first, "cached_tokens") > 0.5 * num(first, "prompt_tokens"),
                "{}: primed up to its start, yet {first:?}",
                l.session
            );
        }
    }
    let metadata = common::json(&out.join("metadata.json"));
    let warmed: u64 = record.lanes.iter().map(|l| l.warmup_requests).sum();
    assert_eq!(
        metadata["warmup_requests"], warmed,
        "warm-up is not profiled"
    );
}

#[test]
fn the_system_idle_cap_sends_what_the_trace_would_leave_waiting() {
    let sim = SimServer::start(&["--speed", "50"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let traces = traces(dir.path(), &["0019"]);
    let (out, ok, err) = replay(
        &sim,
        &traces,
        dir.path(),
        &[
            "--scenario",
            "agentx",
            "--system-idle-gap-cap",
            "0.2",
            "--warmup-requests-per-lane",
            "0",
            "--duration",
            "4",
        ],
    );
    assert!(ok, "{err}");
    let trace: serde_json::Value = common::json(&traces.join("trace_0019.json"));
    let think: Vec<f64> = trace["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter(|r| r["type"] != "subagent")
        .map(|r| r["think_time"].as_f64().unwrap_or(0.0).min(300.0))
        .collect();
    let rows = requests(&out);
    assert!(rows.len() >= 3, "{rows:?}");
    let sent: Vec<f64> = rows.iter().map(|r| num(r, "sent_s")).collect();
    let span =
        sent.iter().cloned().fold(0.0, f64::max) - sent.iter().cloned().fold(f64::MAX, f64::min);
    // With one user nothing else is in flight during a think time: the trace's own waits add
    // up to more than the whole run, so only the cap can have sent these requests.
    let waited: f64 = rows
        .iter()
        .map(|r| num(r, "request_index") as usize)
        .skip(1)
        .map(|i| think[i])
        .sum();
    assert!(
        waited > span + 1.0,
        "the trace waits {waited} s, the run took {span} s"
    );
    let record = AgentxRecord::read(&out).expect("agentx.json");
    assert!(
        record.system_idle_jumps >= 1 && record.system_idle_skipped_s > 1.0,
        "{record:?}"
    );
}

#[test]
fn the_failed_request_threshold_stops_the_run_and_fails_it() {
    let sim = SimServer::start(&["--speed", "50", "--fail-rate", "0.5"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let traces = traces(dir.path(), &["0012", "0019"]);
    let (out, ok, err) = replay(
        &sim,
        &traces,
        dir.path(),
        &[
            "--scenario",
            "agentx",
            "--users",
            "2",
            "--duration",
            "120",
            "--time-scale",
            "0.01",
        ],
    );
    assert!(!ok, "half the requests failed, yet the replay succeeded");
    assert!(err.contains("--failed-request-threshold 0.1"), "{err}");
    let status = common::json(&out.join("status.json"));
    assert_eq!(status["status"], "failed");
    assert!(
        status["reason"]
            .as_str()
            .is_some_and(|r| r.contains("profiled requests failed"))
    );
    let metadata = common::json(&out.join("metadata.json"));
    assert_eq!(metadata["completed"], false, "stopped before its end");
    assert!(
        requests(&out).len() >= 10,
        "judged only from the grace floor on"
    );
}

/// One record of AIPerf's profile_export.jsonl, as far as the comparison reads it.
struct AiperfRecord {
    phase: String,
    conversation: String,
    /// The trace file the request came from (`source_trace_id`).
    trace: String,
    root: String,
    turn: usize,
    /// AIPerf's count of the prompt's tokens (`input_sequence_length`).
    input_tokens: f64,
    start_s: f64,
    end_s: f64,
    prompt_tokens: f64,
    cached_tokens: f64,
}

fn aiperf_records(path: &Path) -> Vec<AiperfRecord> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let m = &v["metadata"];
            let metric = |k: &str| v["metrics"][k]["value"].as_f64().unwrap_or(0.0);
            let ns = |k: &str| m[k].as_f64().unwrap_or_else(|| panic!("{k} in {line}")) / 1e9;
            AiperfRecord {
                phase: m["benchmark_phase"].as_str().expect("phase").to_owned(),
                conversation: m["conversation_id"]
                    .as_str()
                    .expect("conversation")
                    .to_owned(),
                trace: m["source_trace_id"].as_str().expect("trace").to_owned(),
                root: m["root_correlation_id"].as_str().expect("root").to_owned(),
                turn: m["turn_index"].as_u64().expect("turn") as usize,
                input_tokens: metric("input_sequence_length"),
                start_s: ns("request_start_ns"),
                end_s: ns("request_end_ns"),
                prompt_tokens: metric("usage_prompt_tokens"),
                cached_tokens: metric("usage_prompt_cache_read_tokens"),
            }
        })
        .collect()
}

fn hit_rate(cached: f64, prompt: f64) -> f64 {
    cached / prompt.max(1.0)
}

/// The side-by-side seed: with it every lane profiles 3 requests within 20 s of the trace (so a
/// 30 s run sees them in both tools) and trace_0277's lane resumes two subagents mid-flight
/// (agent_002 at turn 11, agent_003 at turn 14) beside its root (turn 4); the lanes' first
/// requests of different streams are at least 6 s apart in the trace, more than the two tools'
/// waits differ (AIPerf waits `t` minus the previous `api_time`, kvsweep the recorded
/// `think_time`, its rounding).
const SEED: u64 = 1220;

/// AIPerf 0.13.0 `--scenario inferencex-agentx-mvp` and `kvsweep replay --scenario agentx` on the
/// same four carried traces, 4 users, [`SEED`], 30 s each, against one simulator. AIPerf 0.13.0
/// has no `--warmup-requests-per-lane` (InferenceX runs AIPerf main): kvsweep runs with 0 extra
/// warm-up requests to match it, and AIPerf gets InferenceX's other flags. Every lane primes the
/// same streams at the same turns in both and profiles the same first 3 requests.
#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs aiperf 0.13.0")]
fn agentx_matches_aiperf_inferencex_agentx_mvp_side_by_side() {
    let sim = SimServer::start(&["--speed", "20"]);
    let dir = common::aiperf::short_tempdir("agx");
    let traces = traces(dir.path(), &["0012", "0019", "0021", "0277"]);
    let artifacts = dir.path().join("aiperf");
    let out = common::aiperf::profile_agentx(&sim, &traces, &artifacts, dir.path(), 4, 30, SEED);
    assert!(
        out.status.success(),
        "aiperf failed:\n{}",
        common::stderr(&out)
    );
    let (kv, ok, err) = replay(
        &sim,
        &traces,
        dir.path(),
        &[
            "--scenario",
            "agentx",
            "--users",
            "4",
            "--seed",
            &SEED.to_string(),
            "--duration",
            "30",
            "--warmup-requests-per-lane",
            "0",
        ],
    );
    assert!(ok, "{err}");

    // Start turns: per lane (one trace each), the streams primed before timing and their
    // turns are the same in both: the root's last turn before the lane's instant t* and each
    // subagent's live at t* (AIPerf's warm-up records; kvsweep's agentx.json).
    let ap = aiperf_records(&artifacts.join("profile_export.jsonl"));
    let record = AgentxRecord::read(&kv).expect("agentx.json");
    let kv_rows = requests(&kv);
    assert_eq!(record.lanes.len(), 4, "kvsweep: one lane per user");
    let mut figures = Vec::new();
    let mut lane_roots = BTreeSet::new();
    for l in &record.lanes {
        // AIPerf's lane is the tree its root's primer started (a recycled lane starts others).
        let root = ap
            .iter()
            .find(|r| r.phase == "warmup" && r.conversation == l.session)
            .map(|r| r.root.as_str())
            .unwrap_or_else(|| panic!("AIPerf primed no root of {}", l.session));
        assert!(lane_roots.insert(root), "AIPerf: one trajectory per lane");
        let lane: Vec<&AiperfRecord> = ap.iter().filter(|r| r.root == root).collect();
        assert!(
            lane.iter().all(|r| r.trace == l.session),
            "one trace per tree"
        );
        let ap_primed: BTreeSet<(String, usize)> = lane
            .iter()
            .filter(|r| r.phase == "warmup")
            .map(|r| (r.conversation.clone(), r.turn))
            .collect();
        let kv_primed: BTreeSet<(String, usize)> =
            std::iter::once((l.session.clone(), l.start_turn))
                .chain(
                    l.subagents
                        .iter()
                        .filter_map(|s| Some((aiperf_conversation(&s.session), s.start_turn?))),
                )
                .collect();
        assert_eq!(
            kv_primed, ap_primed,
            "{}: primed streams and turns",
            l.session
        );
        assert_eq!(l.warmup_requests as usize, ap_primed.len(), "{l:?}");

        // The first 3 profiled requests of the lane: the same stream, turn and prompt size.
        let mut ap_profiled: Vec<&&AiperfRecord> =
            lane.iter().filter(|r| r.phase == "profiling").collect();
        ap_profiled.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
        let ap_all: Vec<(String, usize, f64)> = ap_profiled
            .iter()
            .map(|r| (r.conversation.clone(), r.turn, r.input_tokens))
            .collect();
        let ap_first: Vec<(String, usize, f64)> = ap_all.iter().take(3).cloned().collect();
        let kv_lane = lane_rows(&kv_rows, &l.session);
        let user = kv_lane
            .first()
            .map(|r| r["user"].clone())
            .unwrap_or_else(|| panic!("kvsweep profiled nothing of {}", l.session));
        let kv_all: Vec<(String, usize, f64)> = kv_lane
            .iter()
            .filter(|r| r["user"] == user)
            .map(|r| {
                (
                    aiperf_conversation(&r["session"]),
                    num(r, "request_index") as usize,
                    num(r, "prompt_tokens"),
                )
            })
            .collect();
        let kv_first: Vec<(String, usize, f64)> = kv_all.iter().take(3).cloned().collect();
        assert_eq!(
            kv_first.len(),
            3,
            "{}: kvsweep profiled {kv_first:?}",
            l.session
        );
        // Which of a lane's concurrent streams (a parent and the subagents it resumed) sends
        // first depends on how fast the engine answers, not on the sampling: so each of either
        // tool's first 3 is a request the other profiled too, with the same prompt size, and
        // every stream among them starts profiling at the same turn in both. A lane of one
        // stream has one order, so there the first 3 are the same 3 in the same order.
        let first_turn = |all: &[(String, usize, f64)], c: &str| {
            all.iter().find(|(s, _, _)| s == c).map(|(_, t, _)| *t)
        };
        for (mine, theirs, who) in [
            (&kv_first, &ap_all, "AIPerf"),
            (&ap_first, &kv_all, "kvsweep"),
        ] {
            for (c, t, tokens) in mine.iter() {
                let (_, _, other) = theirs
                    .iter()
                    .find(|(s, u, _)| s == c && u == t)
                    .unwrap_or_else(|| panic!("{}: {who} did not profile {c} turn {t}", l.session));
                // kvsweep's prompt is the trace's tokens exactly; AIPerf's
                // `input_sequence_length` is its builtin tokenizer's count of the text it
                // synthesized for them, a few tokens off.
                assert!(
                    (tokens / other - 1.0).abs() < 0.01,
                    "{c} turn {t}: prompt tokens {tokens} and {who}'s {other}"
                );
                assert_eq!(
                    first_turn(&kv_all, c),
                    first_turn(&ap_all, c),
                    "{}: the first profiled turn of {c}",
                    l.session
                );
            }
        }
        let streams = |v: &[(String, usize, f64)]| -> BTreeSet<String> {
            v.iter().map(|(c, _, _)| c.clone()).collect()
        };
        if streams(&kv_all).len() == 1 && streams(&ap_all).len() == 1 {
            let order = |v: &[(String, usize, f64)]| -> Vec<usize> {
                v.iter().map(|(_, t, _)| *t).collect()
            };
            assert_eq!(
                order(&kv_first),
                order(&ap_first),
                "{}: first profiled turns",
                l.session
            );
        }
        figures.push((l.session.clone(), kv_primed, kv_first, ap_first));
    }

    // Profiled requests: both tools wait the trace's think times under the same caps.
    let ap_profiled: Vec<&AiperfRecord> = ap.iter().filter(|r| r.phase == "profiling").collect();
    let ratio = kv_rows.len() as f64 / ap_profiled.len() as f64;
    assert!(
        (0.5..=2.0).contains(&ratio),
        "kvsweep {} vs AIPerf {} profiled",
        kv_rows.len(),
        ap_profiled.len()
    );

    // The largest system-idle gap stays under the 10 s cap (plus scheduling slack) in both.
    let ap_gap = largest_idle_gap(ap_profiled.iter().map(|r| (r.start_s, r.end_s)).collect());
    let kv_gap = largest_idle_gap(
        kv_rows
            .iter()
            .map(|r| (num(r, "sent_s"), num(r, "done_s")))
            .collect(),
    );
    assert!(
        ap_gap < 13.0 && kv_gap < 13.0,
        "idle gaps: AIPerf {ap_gap} s, kvsweep {kv_gap} s"
    );

    // Input tokens: kvsweep's prompts are exactly the trace's; AIPerf's (its builtin
    // tokenizer's text, counted by the server) within 2 %. Hit rates within 5 points: both
    // prime each lane up to its start and then extend the same contexts.
    let kv_prompt: f64 = kv_rows.iter().map(|r| num(r, "prompt_tokens")).sum();
    let kv_trace: f64 = kv_rows.iter().map(|r| num(r, "trace_input_tokens")).sum();
    let kv_cached: f64 = kv_rows.iter().map(|r| num(r, "cached_tokens")).sum();
    assert_eq!(kv_prompt, kv_trace);
    let ap_prompt: f64 = ap_profiled.iter().map(|r| r.prompt_tokens).sum();
    let ap_cached: f64 = ap_profiled.iter().map(|r| r.cached_tokens).sum();
    let ap_trace: f64 = ap_profiled
        .iter()
        .map(|r| trace_input(&traces, &r.conversation, r.turn))
        .sum();
    assert!(
        (ap_prompt / ap_trace - 1.0).abs() < 0.02,
        "AIPerf {ap_prompt} vs trace {ap_trace}"
    );
    let (kv_hit, ap_hit) = (
        hit_rate(kv_cached, kv_prompt),
        hit_rate(ap_cached, ap_prompt),
    );
    assert!(
        (kv_hit - ap_hit).abs() < 0.05,
        "hit rates: kvsweep {kv_hit}, AIPerf {ap_hit}"
    );
    eprintln!(
        "side by side: profiled kvsweep {} / AIPerf {}; input tokens {kv_prompt} / {ap_prompt}; \
         hit rate {kv_hit:.3} / {ap_hit:.3}; largest idle gap {kv_gap:.2} s / {ap_gap:.2} s; \
         lanes (trace, primed, first 3 profiled kvsweep, AIPerf) {figures:?}",
        kv_rows.len(),
        ap_profiled.len(),
    );
}

/// AIPerf's name of a kvsweep session: `trace/agent` is AIPerf's `trace::sa:agent`.
fn aiperf_conversation(session: &str) -> String {
    match session.split_once('/') {
        Some((trace, agent)) => format!("{trace}::sa:{agent}"),
        None => session.to_owned(),
    }
}

/// The trace's input tokens of AIPerf's `conversation` (`trace_N` or `trace_N::sa:agent`)
/// turn `turn`.
fn trace_input(traces: &Path, conversation: &str, turn: usize) -> f64 {
    let (root, agent) = match conversation.split_once("::sa:") {
        Some((root, agent)) => (root, Some(agent)),
        None => (conversation, None),
    };
    let trace = common::json(&traces.join(format!("{root}.json")));
    let mut requests = &trace["requests"];
    if let Some(agent) = agent {
        requests = requests
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["agent_id"] == agent))
            .map(|r| &r["requests"])
            .unwrap_or_else(|| panic!("no subagent {agent} in {root}"));
    }
    requests
        .as_array()
        .expect("requests")
        .iter()
        .filter(|r| r["type"] != "subagent")
        .nth(turn)
        .and_then(|r| r["in"].as_f64())
        .unwrap_or_else(|| panic!("no turn {turn} in {conversation}"))
}

#[test]
fn a_spec_runs_the_scenario_with_replay_scenario_agentx() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = common::write(
        dir.path(),
        "spec.yaml",
        "name: agx\nmodel: {name: llama-3.1-8b, preset: llama-3.1-8b}\nengine: sim\n\
         runners: [cpu]\ntraces: {path: traces}\n\
         replay: {scenario: agentx, warmup_requests_per_lane: 1}\n\
         tp: [1]\nusers: [2]\noffload: [\"off\"]\n",
    );
    let out = dir.path().join("out");
    common::kvsweep_ok(&[
        "render",
        spec.to_str().expect("utf-8"),
        "--cell",
        "agx_cpu_tp1_users2_offloadoff",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    let script = std::fs::read_to_string(out.join("run.sh")).expect("script");
    let replay = &common::script_plan(&script)["workload"]["replay"];
    assert_eq!(replay["scenario"], "agentx", "{replay}");
    assert_eq!(replay["warmup_requests_per_lane"], 1, "{replay}");
    let bad = common::write(
        dir.path(),
        "bad.yaml",
        &std::fs::read_to_string(&spec)
            .expect("spec")
            .replace("scenario: agentx", "scenario: agentz"),
    );
    let err = common::kvsweep_err(&["matrix", bad.to_str().expect("utf-8")]);
    assert!(err.contains("agentz"), "{err}");
}

#[test]
fn a_parents_turn_waits_for_the_subagents_that_end_before_it() {
    let sim = SimServer::start(&["--speed", "50"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let traces = traces(dir.path(), &["0277"]);
    // t* at the trace's start: the root from turn 0, every subagent spawned at its time. As in
    // AIPerf, a subagent joins the parent's first turn after it that starts at or after its end:
    // agent_001 (t 79 s, ends 139 s) joins turn 1 (228 s); agent_002 (ends 348 s) and
    // agent_003 (ends 403 s) join turn 7 (763 s); agent_004 (ends 1061 s) runs in the
    // background.
    let (out, ok, err) = replay(
        &sim,
        &traces,
        dir.path(),
        &[
            "--scenario",
            "agentx",
            "--trajectory-start-min-ratio",
            "0",
            "--trajectory-start-max-ratio",
            "0",
            "--warmup-requests-per-lane",
            "0",
            "--time-scale",
            "0.01",
            "--duration",
            "25",
        ],
    );
    assert!(ok, "{err}");
    let all = requests(&out);
    // The first play of the tree: before the lane replays trace_0277 again.
    let replay = all
        .iter()
        .filter(|r| r["session"] == "trace_0277" && r["request_index"] == "0")
        .map(|r| num(r, "sent_s"))
        .nth(1)
        .unwrap_or(f64::INFINITY);
    let rows: Vec<_> = all.iter().filter(|r| num(r, "sent_s") < replay).collect();
    let sent = |turn: &str| {
        rows.iter()
            .find(|r| r["session"] == "trace_0277" && r["request_index"] == turn)
            .map(|r| num(r, "sent_s"))
    };
    let done = |agent: &str| {
        let agent = format!("trace_0277/{agent}");
        let mine: Vec<_> = rows.iter().filter(|r| r["session"] == agent).collect();
        assert!(!mine.is_empty(), "{agent} never ran");
        mine.iter().map(|r| num(r, "done_s")).fold(0.0, f64::max)
    };
    let turn1 = sent("1").unwrap_or_else(|| panic!("turn 1 was never sent: {rows:?}"));
    assert!(turn1 >= done("agent_001"), "turn 1 joins agent_001");
    // A loaded machine may not reach turn 7 in the run; when it does, it came after both.
    if let Some(turn7) = sent("7") {
        assert!(
            turn7 >= done("agent_002").max(done("agent_003")),
            "turn 7 joins agent_002 and agent_003"
        );
    }
}
