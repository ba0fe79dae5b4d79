//! The AgentX scenario's lane start and warm-up, and its failed-request gate
//! (`--scenario agentx`; the rules and their flags are [`crate::base::workload::agentx`]).
//!
//! Sources, each rule with the one it follows:
//! - Start position: AIPerf 0.13.0's wall-clock snapshot (`trajectory.rs`): each lane draws
//!   an instant t* in [min, max] of its trace's span with numpy's generator seeded from
//!   sha256("{seed}:{trace}:{lane}"), and every stream live there (the root, subagents in flight)
//!   resumes at its first turn after t* (`timing/trajectory_source.py`,
//!   `_build_timestamped_trajectory`). Where nothing is live at t*, AIPerf's fallback for traces
//!   without timestamps: a turn `k` drawn uniformly from `[int(min·n), int(max·n)]`, at most
//!   `n - 2` ([`start_turn`]; kvsweep draws it with its own mixer, not numpy's `choice`).
//! - Cache primed up to there: each live stream's last turn before t* is sent whole, asking for
//!   one token, before timing (AIPerf's WARMUP phase, its prefix back-seeded), all at once
//!   (`--burst-phase-starts`); profiling then sends each lane's streams at their recorded
//!   spacing from its earliest one.
//! - Warm-up requests per lane: then `--warmup-requests-per-lane` more turns, one token each, no
//!   waits (`build_replay_cmd`: "advance every trajectory lane by this many additional one-token
//!   requests with no idle delay. Profiling begins after those requests drain and resumes from the
//!   resulting live state"); never past the last turn but one.
//! - Profiling window: `--duration` and every result count only from the end of the warm-up
//!   (the replay's clock starts after it).
//! - Failed-request threshold: the run stops, failed, once failed/total of the profiled requests
//!   exceeds the threshold, checked from `max(users, 10)` requests on (AIPerf 0.13.0
//!   `records/records_manager.py`, its grace floor); at the end the same share gates the
//!   result (InferenceX validates with `--failed-request-threshold` again after the run).
//! - Recorded assistant responses: a kvsweep prompt is always built from the trace (its hash
//!   ids), never from the server's answer, which is what AIPerf's default pre-canned mode does
//!   (`AIPERF_DATASET_WEKA_LIVE_ASSISTANT_RESPONSES=0` in `build_replay_cmd`).

use std::sync::Arc;
use std::time::Duration;

use super::timing::{endpoint_index, pass_scope};
use super::trajectory::{Resume, Snapshot, Stream, Timeline};
use crate::base::rng::mix;
use crate::base::workload::agentx::{CacheBust, Rules};
use crate::base::workload::replay::ReplayArgs;
use crate::data::artifact::schema::{LaneStart, SubagentStart};
use crate::data::trace::Session;
use crate::data::trace::prompt::{PromptBuilder, PromptState};
use crate::run::openai::client::{self, Outcome, PromptBody, PromptEncoding};
use crate::run::openai::preflight::{Endpoint, Preflight};

/// A uniform draw in [0, 1) from the seeded mixer.
fn unit(key: u64) -> f64 {
    (mix(key) >> 11) as f64 / (1u64 << 53) as f64
}

/// The fallback start: the turn a lane starts a trace of `n` turns at (its cache primed up to and
/// including it), or `None` when the trace has too few turns to split into a warm-up and a
/// profiled part (AIPerf skips such traces at trajectory selection).
pub fn start_turn(ratio: (f64, f64), key: u64, n: usize) -> Option<usize> {
    match n {
        0 | 1 => None,
        2 => Some(0),
        _ => {
            let lo = ((ratio.0 * n as f64) as usize).min(n - 2);
            let hi = ((ratio.1 * n as f64) as usize).min(n - 2).max(lo);
            Some(lo + ((unit(key) * (hi - lo + 1) as f64) as usize).min(hi - lo))
        }
    }
}

/// How many one-token turns follow the start turn `k` of `n` in the warm-up: `wanted`, but
/// leaving at least one turn to profile.
fn extra_warmup(k: usize, n: usize, wanted: u32) -> usize {
    (wanted as usize).min(n.saturating_sub(k + 2))
}

/// `args` with what the scenario's rules imply for the replay's own flags: lanes recycle, the
/// trace's output lengths are forced, and no wait inside a trajectory tree is longer than
/// `--trace-idle-gap-cap`. kvsweep caps each stream's waits; AIPerf caps the tree's idle time
/// (a wait while another stream of the tree is busy is not idle there), so kvsweep's cap is the
/// stricter of the two.
pub(super) fn scenario_args(mut args: ReplayArgs, rules: &Rules) -> ReplayArgs {
    args.recycle |= rules.recycle;
    args.ignore_eos |= rules.ignore_eos;
    if let Some(cap) = rules.trace_idle_gap_cap_s {
        args.max_delay = args.max_delay.min(cap);
    }
    args
}

/// The per-run marker `--cache-bust first-turn-prefix` mixes into every prompt, from the clock:
/// AIPerf's marker digests a per-benchmark id the same way.
pub(super) fn cache_bust_marker(rules: &Rules) -> Option<u64> {
    (rules.cache_bust == CacheBust::FirstTurnPrefix).then(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        mix(nanos ^ u64::from(std::process::id()))
    })
}

/// What the warm-up needs from the run being prepared.
pub(super) struct WarmupContext<'a> {
    pub(super) client: &'a reqwest::Client,
    pub(super) args: &'a ReplayArgs,
    pub(super) endpoints: &'a [Endpoint],
    pub(super) builder: &'a PromptBuilder,
    pub(super) encoding: &'a PromptEncoding,
    pub(super) pre: &'a Preflight,
}

/// Starts `users` lanes at their sampled instants, lane `i` on session `i` (wrapping, as AIPerf's
/// sequential sampler does: lane `n + i` replays session `i` in its second pass): primes each
/// stream live there (the root and its live subagents) up to its last turn before it, sends the
/// root's extra warm-up turns, all lanes at once, before timing. Returns each lane's start and
/// where its first play resumes.
pub(super) async fn warm_lanes(
    cx: &WarmupContext<'_>,
    sessions: &[Session],
    users: u32,
    rules: &Rules,
) -> Vec<(LaneStart, Resume)> {
    let Some(ratio) = rules.start_ratio else {
        return Vec::new();
    };
    if sessions.is_empty() {
        return Vec::new();
    }
    let lanes = (0..users).map(|lane| {
        let n = sessions.len() as u32;
        let session = &sessions[(lane % n) as usize];
        warm_lane(cx, lane, u64::from(lane / n), session, ratio, rules)
    });
    futures_util::future::join_all(lanes).await
}

/// The lane's start: AIPerf's wall-clock snapshot, or, where the trace has nothing live at any
/// instant AIPerf could draw, its fallback turn-count rule.
fn lane_plan(
    session: &Session,
    seed: u64,
    lane: u32,
    ratio: (f64, f64),
    rules: &Rules,
) -> (Option<Snapshot>, Option<usize>) {
    let timeline = Timeline::new(session, rules.trace_idle_gap_cap_s);
    match timeline.snapshot(ratio, seed, &session.id, lane as usize) {
        Some(snap) => {
            let primed = snap.root.as_ref().and_then(Stream::primed_turn);
            (Some(snap), primed)
        }
        None => (
            None,
            start_turn(
                ratio,
                mix(seed ^ pass_scope(session.scope, 0) ^ u64::from(lane)),
                session.requests.len(),
            ),
        ),
    }
}

async fn warm_lane(
    cx: &WarmupContext<'_>,
    lane: u32,
    pass: u64,
    session: &Session,
    ratio: (f64, f64),
    rules: &Rules,
) -> (LaneStart, Resume) {
    let n = session.requests.len();
    let scope = pass_scope(session.scope, pass);
    let cap = rules.trace_idle_gap_cap_s.unwrap_or(f64::INFINITY);
    let (snapshot, primed) = lane_plan(session, cx.args.seed, lane, ratio, rules);
    // The root's first profiled turn: after its primer and extra warm-up turns; its next turn
    // at t* when nothing of it is primed; past its end when all its turns were before t*.
    let (last_warm, root_from) = match (primed, &snapshot) {
        (Some(k), _) => {
            let last = k + extra_warmup(k, n, rules.warmup_requests_per_lane);
            (Some(last), last + 1)
        }
        (None, Some(snap)) => (None, snap.root.as_ref().map_or(n, |r| r.next_turn)),
        (None, None) => (None, 0),
    };
    let mut answered = 0;
    if let Some(last) = last_warm {
        answered += prime(cx, &session.id, scope, session, primed.unwrap_or(0)..=last).await;
    }
    let mut subagents = Vec::new();
    for s in snapshot.iter().flat_map(|snap| &snap.children) {
        let Some(child) = s.child.and_then(|i| session.children.get(i)) else {
            continue;
        };
        if let Some(k) = s.primed_turn() {
            answered += prime(cx, &child.id, scope, child, k..=k).await;
        }
        subagents.push(SubagentStart {
            session: child.id.clone(),
            start_turn: s.primed_turn(),
            profile_from: s.next_turn,
        });
    }
    let resume = match &snapshot {
        Some(snap) => snap.resume(root_from, cap),
        None => legacy_resume(session, primed, root_from, cap),
    };
    let start = LaneStart {
        lane,
        session: session.id.clone(),
        turns: n,
        t_star_s: snapshot.as_ref().map(|s| s.t_star_s),
        start_turn: primed.unwrap_or(0),
        warmup_requests: answered,
        profile_from: root_from,
        subagents,
    };
    (start, resume)
}

/// The fallback's resume: the root from `root_from`, the subagents that start after the primed
/// turn at their time from the turn after it.
fn legacy_resume(session: &Session, primed: Option<usize>, root_from: usize, cap: f64) -> Resume {
    let offset = |i: usize| {
        session
            .requests
            .get(i)
            .map_or(f64::INFINITY, |r| r.offset_s)
    };
    let (history_until, from) = match primed {
        Some(k) => (offset(k), offset(k + 1)),
        None => (0.0, 0.0),
    };
    Resume {
        root_from,
        root_delay_s: 0.0,
        children: session
            .children
            .iter()
            .enumerate()
            .filter(|(_, c)| c.start_s >= history_until)
            .map(|(i, c)| (i, 0, (c.start_s - from).clamp(0.0, cap)))
            .collect(),
    }
}

/// Sends `turns` of `stream` whole, one token each, in order; returns how many were answered.
async fn prime(
    cx: &WarmupContext<'_>,
    id: &str,
    scope: u64,
    stream: &Session,
    turns: std::ops::RangeInclusive<usize>,
) -> u64 {
    let endpoint = &cx.endpoints[endpoint_index(scope, cx.endpoints.len())];
    let timeout = Duration::from_secs_f64(cx.args.request_timeout.max(1.0));
    let mut state = PromptState::default();
    let mut answered = 0;
    let (skip, take) = (*turns.start(), turns.end() + 1);
    for (i, req) in stream.requests.iter().enumerate().take(take).skip(skip) {
        cx.builder.build(
            &mut state,
            scope,
            stream.block_size,
            &req.hash_ids,
            req.input_tokens,
            cx.pre.template_tokens,
            mix(scope ^ 0x5741_524D ^ i as u64),
        );
        let body = PromptBody::new(
            &cx.pre.model,
            Arc::new(state.tokens().to_vec()),
            cx.encoding.clone(),
            1,
            false,
        );
        let m = client::send(cx.client, &endpoint.url, id, body, timeout, || {}).await;
        if m.outcome() == Outcome::Ok {
            answered += 1;
        }
    }
    answered
}

/// The failed-request threshold: counts the profiled requests and says when the share failed
/// passes it.
pub(super) struct FailureGate {
    threshold: Option<f64>,
    /// Requests counted before the share is judged: AIPerf's grace floor, max(concurrency, 10).
    floor: u64,
    total: u64,
    failed: u64,
}

impl FailureGate {
    pub(super) fn new(threshold: Option<f64>, users: u32) -> Self {
        Self {
            threshold,
            floor: u64::from(users).max(10),
            total: 0,
            failed: 0,
        }
    }

    /// Counts one finished request; `Some(why)` once the run must stop.
    pub(super) fn record(&mut self, ok: bool) -> Option<String> {
        self.total += 1;
        self.failed += u64::from(!ok);
        self.exceeded().filter(|_| self.total >= self.floor)
    }

    /// Why the result fails the gate, judged on every request counted.
    pub(super) fn exceeded(&self) -> Option<String> {
        let threshold = self.threshold?;
        let share = self.failed as f64 / self.total.max(1) as f64;
        (share > threshold).then(|| {
            format!(
                "{} of {} profiled requests failed ({:.1}%), over --failed-request-threshold {}",
                self.failed,
                self.total,
                share * 100.0,
                threshold
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_turns_stay_in_the_range_and_leave_a_turn_to_profile() {
        for n in 3..60 {
            for key in 0..200 {
                let k = start_turn((0.25, 0.75), key, n).expect("splittable");
                let lo = ((0.25 * n as f64) as usize).min(n - 2);
                let hi = ((0.75 * n as f64) as usize).min(n - 2);
                assert!((lo..=hi).contains(&k), "n {n}: {k} outside {lo}..={hi}");
            }
        }
    }

    #[test]
    fn start_turns_cover_the_range_and_follow_the_key() {
        let seen: std::collections::BTreeSet<_> = (0..500)
            .map(|key| start_turn((0.25, 0.75), key, 20).expect("splittable"))
            .collect();
        assert_eq!(seen, (5..=15).collect(), "every turn from 25% to 75%");
        assert_eq!(
            start_turn((0.25, 0.75), 7, 20),
            start_turn((0.25, 0.75), 7, 20)
        );
    }

    #[test]
    fn short_traces_start_at_the_first_turn_or_not_at_all() {
        assert_eq!(start_turn((0.25, 0.75), 1, 0), None);
        assert_eq!(start_turn((0.25, 0.75), 1, 1), None);
        assert_eq!(start_turn((0.25, 0.75), 1, 2), Some(0));
        assert_eq!(start_turn((1.0, 1.0), 1, 3), Some(1), "capped at n - 2");
    }

    #[test]
    fn extra_warmup_leaves_a_turn_to_profile() {
        assert_eq!(extra_warmup(5, 20, 10), 10);
        assert_eq!(extra_warmup(5, 10, 10), 3, "turns 6, 7, 8; 9 is profiled");
        assert_eq!(extra_warmup(8, 10, 10), 0);
        assert_eq!(extra_warmup(0, 2, 10), 0);
    }

    fn rules(extra: &[&str]) -> Rules {
        crate::base::workload::replay::parse(extra)
            .expect("test arguments parse")
            .agentx
            .rules()
    }

    #[test]
    fn the_scenario_recycles_lanes_forces_output_lengths_and_caps_waits() {
        let args = crate::base::workload::replay::parse(&["--scenario", "agentx"]).expect("parses");
        let a = scenario_args(args.clone(), &args.agentx.rules());
        assert!(a.recycle && a.ignore_eos);
        assert_eq!(a.max_delay, 300.0, "the trace idle cap");
        let plain = crate::base::workload::replay::parse(&["--max-delay", "60"]).expect("parses");
        assert_eq!(scenario_args(plain.clone(), &plain.agentx.rules()), plain);
    }

    #[test]
    fn each_run_busts_the_cache_with_its_own_marker() {
        let bust = rules(&["--cache-bust", "first-turn-prefix"]);
        let first = cache_bust_marker(&bust).expect("a marker");
        std::thread::sleep(Duration::from_millis(2));
        assert_ne!(
            cache_bust_marker(&bust),
            Some(first),
            "a rerun gets another"
        );
        assert_eq!(cache_bust_marker(&rules(&[])), None);
    }

    #[test]
    fn the_gate_waits_for_the_floor_then_stops_past_the_threshold() {
        let mut g = FailureGate::new(Some(0.10), 4);
        for _ in 0..3 {
            assert_eq!(g.record(false), None, "under the floor of 10");
        }
        for _ in 0..6 {
            assert_eq!(g.record(true), None);
        }
        let why = g.record(true).expect("3 of 10 failed");
        assert!(
            why.starts_with("3 of 10 profiled requests failed (30.0%)"),
            "{why}"
        );
    }

    #[test]
    fn the_gate_accepts_the_threshold_itself_and_is_off_without_one() {
        let mut g = FailureGate::new(Some(0.10), 20);
        for i in 0..20 {
            assert_eq!(g.record(i >= 2), None);
        }
        assert_eq!(g.exceeded(), None, "2 of 20 is 10%: not over");
        let mut off = FailureGate::new(None, 1);
        for _ in 0..30 {
            assert_eq!(off.record(false), None);
        }
    }
}
