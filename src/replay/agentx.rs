//! The AgentX scenario's lane start and warm-up, and its failed-request gate
//! (`--scenario agentx`; the rules and their flags are [`crate::workload::agentx`]).
//!
//! Sources, each rule with the one it follows:
//! - Start position: each lane's trace starts at a turn `k` drawn uniformly from
//!   `[int(min·n), int(max·n)]` of its `n` turns, kept at most `n - 2` so at least one turn is
//!   profiled after the warm-up (AIPerf 0.13.0 `timing/trajectory_source.py`,
//!   `_build_trajectory_for_lane`; InferenceX `build_replay_cmd`: "Sample each trajectory's warmup
//!   start position uniformly from [25%, 75%] of the trace's turn count, clamped by AIPerf to leave
//!   at least one profile turn after warmup").
//! - Cache primed up to there: turn `k` is sent whole, asking for one token, before timing
//!   (AIPerf's WARMUP phase replays each stream's last turn before t*, its prefix back-seeded).
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

use super::schedule::{endpoint_index, pass_scope};
use crate::artifact::schema::LaneStart;
use crate::openai::client::{self, Outcome, PromptBody, PromptEncoding};
use crate::openai::preflight::{Endpoint, Preflight};
use crate::rng::mix;
use crate::trace::Session;
use crate::trace::prompt::{PromptBuilder, PromptState};
use crate::workload::agentx::{CacheBust, Rules};
use crate::workload::replay::ReplayArgs;

/// A uniform draw in [0, 1) from the seeded mixer.
fn unit(key: u64) -> f64 {
    (mix(key) >> 11) as f64 / (1u64 << 53) as f64
}

/// The turn a lane starts a trace of `n` turns at (its cache primed up to and including it), or
/// `None` when the trace has too few turns to split into a warm-up and a profiled part (AIPerf
/// skips such traces at trajectory selection).
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
pub fn extra_warmup(k: usize, n: usize, wanted: u32) -> usize {
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

/// Starts the first `users` sessions (one per lane) at their start turns: primes each up to its
/// start turn and sends its extra warm-up turns, all lanes at once, before timing. Returns each
/// lane's start; the sessions' index in `sessions` is the lane.
pub(super) async fn warm_lanes(
    cx: &WarmupContext<'_>,
    sessions: &[Session],
    users: u32,
    rules: &Rules,
) -> Vec<LaneStart> {
    let Some(ratio) = rules.start_ratio else {
        return Vec::new();
    };
    let lanes = sessions
        .iter()
        .take(users as usize)
        .enumerate()
        .map(|(lane, s)| warm_lane(cx, lane as u32, s, ratio, rules.warmup_requests_per_lane));
    futures_util::future::join_all(lanes).await
}

async fn warm_lane(
    cx: &WarmupContext<'_>,
    lane: u32,
    session: &Session,
    ratio: (f64, f64),
    extra: u32,
) -> LaneStart {
    let n = session.requests.len();
    let scope = pass_scope(session.scope, 0);
    let Some(k) = start_turn(ratio, mix(cx.args.seed ^ scope ^ u64::from(lane)), n) else {
        return LaneStart {
            lane,
            session: session.id.clone(),
            turns: n,
            start_turn: 0,
            warmup_requests: 0,
            profile_from: 0,
        };
    };
    let last = k + extra_warmup(k, n, extra);
    let endpoint = &cx.endpoints[endpoint_index(scope, cx.endpoints.len())];
    let timeout = Duration::from_secs_f64(cx.args.request_timeout.max(1.0));
    let mut state = PromptState::default();
    let mut answered = 0;
    for (i, req) in session.requests.iter().enumerate().take(last + 1).skip(k) {
        cx.builder.build(
            &mut state,
            scope,
            session.block_size,
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
        let m = client::send(cx.client, &endpoint.url, &session.id, body, timeout, || {}).await;
        if m.outcome() == Outcome::Ok {
            answered += 1;
        }
    }
    LaneStart {
        lane,
        session: session.id.clone(),
        turns: n,
        start_turn: k,
        warmup_requests: answered,
        profile_from: last + 1,
    }
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
        crate::workload::replay::parse(extra)
            .expect("test arguments parse")
            .agentx
            .rules()
    }

    #[test]
    fn the_scenario_recycles_lanes_forces_output_lengths_and_caps_waits() {
        let args = crate::workload::replay::parse(&["--scenario", "agentx"]).expect("parses");
        let a = scenario_args(args.clone(), &args.agentx.rules());
        assert!(a.recycle && a.ignore_eos);
        assert_eq!(a.max_delay, 300.0, "the trace idle cap");
        let plain = crate::workload::replay::parse(&["--max-delay", "60"]).expect("parses");
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
