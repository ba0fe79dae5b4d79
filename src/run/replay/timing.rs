//! The timing arithmetic of a replay's schedule, apart from the clock so that it is tested
//! without one: when a request is due, how a session is skipped into, how arrivals and the
//! ramp-up are spaced, which endpoint a session sticks to, and what a long prompt is sent as.

use std::time::{Duration, Instant};

use crate::base::rng::mix;
use crate::base::workload::replay::{OnLong, ReplayArgs, Timing};
use crate::data::trace::TraceRequest;

/// The endpoint a session sticks to, chosen by its hash scope: subagents and every turn of a
/// session reach the server that holds its prefix.
pub(super) fn endpoint_index(scope: u64, endpoints: usize) -> usize {
    (mix(scope) % endpoints.max(1) as u64) as usize
}

/// The hash scope of a session's `pass`-th replay: a recycled session is a new user with new
/// content.
pub fn pass_scope(session_scope: u64, pass: u64) -> u64 {
    mix(session_scope ^ pass.wrapping_mul(0xA5A5_A5A5))
}

/// A uniform draw in (0, 1] from the seeded mixer.
pub(super) fn unit(key: u64) -> f64 {
    (mix(key) >> 11) as f64 / (1u64 << 53) as f64
}

/// Seconds between the `n`-th open-loop session arrival and the next, at `rate` per second.
pub(super) fn arrival_gap(
    arrival: crate::base::workload::control::Arrival,
    rate: f64,
    seed: u64,
    n: u32,
) -> f64 {
    match arrival {
        crate::base::workload::control::Arrival::Constant => 1.0 / rate,
        // An exponential gap from a seeded uniform draw.
        crate::base::workload::control::Arrival::Poisson => {
            -(1.0 - unit(seed ^ u64::from(n) ^ 0x4F50_454E))
                .max(1e-12)
                .ln()
                / rate
        }
    }
}

/// Seconds after the start that closed-loop `user` sends its first request: the first
/// `initial` users spread evenly over `--ramp-up`, the ones the adaptive controller may add
/// later at once.
pub(super) fn ramp_delay(ramp_up: f64, user: u32, initial: u32) -> f64 {
    if user < initial {
        ramp_up.max(0.0) * f64::from(user) / f64::from(initial)
    } else {
        0.0
    }
}

/// Requests of a session of `len` skipped when it is started part-way in: a fraction drawn
/// from `scope` within [`--advance-min`, `--advance-max`] (0 without `--advance-max`).
pub(super) fn advance_skip(
    c: &crate::base::workload::control::ControlArgs,
    scope: u64,
    len: usize,
) -> usize {
    if c.advance_max <= 0.0 {
        return 0;
    }
    let lo = c.advance_min.clamp(0.0, 1.0);
    let hi = c.advance_max.clamp(lo, 1.0);
    ((lo + (hi - lo) * unit(scope ^ 0x4144_5641)) * len as f64) as usize
}

/// The prompt length and hash ids `req` is sent with under `--max-context`: cut to the limit
/// (and to the whole blocks within it) with `--on-long truncate`, `None` (not sent) with
/// `skip`. The warm-up uses it too, so that it warms a share of what is actually sent.
pub(super) fn as_sent<'a>(
    args: &ReplayArgs,
    req: &'a TraceRequest,
    block_size: u32,
) -> Option<(u32, &'a [u64])> {
    let (input, hash_ids) = (req.input_tokens, &req.hash_ids[..]);
    if args.max_context == 0 || input <= args.max_context {
        return Some((input, hash_ids));
    }
    match args.on_long {
        OnLong::Skip => None,
        OnLong::Truncate => {
            let blocks = (args.max_context / block_size.max(1)) as usize;
            Some((args.max_context, &hash_ids[..hash_ids.len().min(blocks)]))
        }
    }
}

/// When `req` is due: with `--fixed-schedule` at its trace offset from the session's start
/// (`started`, where the request `first_offset` was sent); otherwise after the previous answer
/// (`prev_done`) by the `--timing` strategy's wait. `None`: at once (the first request of a
/// closed-loop session).
pub(super) fn due(
    args: &ReplayArgs,
    req: &TraceRequest,
    first_offset: f64,
    started: Instant,
    prev_done: Option<Instant>,
) -> Option<Instant> {
    let wait =
        |secs: f64| Duration::from_secs_f64((secs.min(args.max_delay) * args.time_scale).max(0.0));
    let at_offset = || {
        started
            + Duration::from_secs_f64(((req.offset_s - first_offset) * args.time_scale).max(0.0))
    };
    if args.fixed_schedule {
        return Some(at_offset());
    }
    let done = prev_done?;
    Some(match args.timing {
        Timing::ThinkOnly => done + wait(req.think_time_s),
        Timing::ApiScaled => done + wait(req.think_time_s + req.api_time_s * args.api_time_scale),
        Timing::Original => done.max(at_offset()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> ReplayArgs {
        crate::base::workload::replay::parse(extra).expect("test arguments parse")
    }

    fn req(offset_s: f64, think_time_s: f64, api_time_s: f64) -> TraceRequest {
        TraceRequest {
            offset_s,
            input_tokens: 10,
            output_tokens: 1,
            hash_ids: vec![],
            think_time_s,
            api_time_s,
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_closed_loop_session_starts_at_once() {
        let a = args(&[]);
        assert_eq!(
            due(&a, &req(5.0, 1.0, 0.0), 0.0, Instant::now(), None),
            None
        );
    }

    #[test]
    fn think_only_waits_the_scaled_think_time_after_the_answer() {
        let a = args(&["--time-scale", "0.5"]);
        let done = Instant::now();
        let at = due(&a, &req(100.0, 4.0, 9.0), 0.0, done, Some(done)).expect("after an answer");
        assert_eq!(at - done, 2000 * MS);
    }

    #[test]
    fn waits_are_capped_by_max_delay_before_scaling() {
        let a = args(&["--max-delay", "3", "--time-scale", "2"]);
        let done = Instant::now();
        let at = due(&a, &req(0.0, 50.0, 0.0), 0.0, done, Some(done)).expect("after an answer");
        assert_eq!(at - done, 6000 * MS);
    }

    #[test]
    fn api_scaled_adds_the_scaled_api_time() {
        let a = args(&["--timing", "api-scaled", "--api-time-scale", "0.5"]);
        let done = Instant::now();
        let at = due(&a, &req(0.0, 1.0, 4.0), 0.0, done, Some(done)).expect("after an answer");
        assert_eq!(at - done, 3000 * MS);
    }

    #[test]
    fn original_keeps_trace_spacing_but_never_sends_before_the_answer() {
        let a = args(&["--timing", "original"]);
        let started = Instant::now();
        let early = started + 1000 * MS;
        let at = due(&a, &req(12.0, 0.0, 0.0), 10.0, started, Some(early)).expect("answered");
        assert_eq!(
            at - started,
            2000 * MS,
            "the trace's spacing from the first request"
        );
        let late = started + 5000 * MS;
        let at = due(&a, &req(12.0, 0.0, 0.0), 10.0, started, Some(late)).expect("answered");
        assert_eq!(at, late, "never before the previous answer");
    }

    #[test]
    fn fixed_schedule_ignores_answers() {
        let a = args(&["--fixed-schedule", "--time-scale", "0.1"]);
        let started = Instant::now();
        let at = due(&a, &req(30.0, 99.0, 0.0), 0.0, started, None).expect("always scheduled");
        assert_eq!(at - started, 3000 * MS);
        let at = due(&a, &req(1.0, 0.0, 0.0), 5.0, started, None).expect("always scheduled");
        assert_eq!(
            at, started,
            "an offset before the first is sent at the start"
        );
    }

    #[test]
    fn a_long_prompt_is_cut_to_max_context_or_skipped() {
        let mut long = req(0.0, 0.0, 0.0);
        long.input_tokens = 1000;
        long.hash_ids = (0..16).collect();
        let a = args(&["--max-context", "300", "--on-long", "truncate"]);
        let (input, ids) = as_sent(&a, &long, 64).expect("truncated, not skipped");
        assert_eq!(
            (input, ids.len()),
            (300, 4),
            "300 tokens: 4 whole 64-token blocks"
        );
        let a = args(&["--max-context", "300"]);
        assert!(as_sent(&a, &long, 64).is_none(), "skipped by default");
        let a = args(&["--max-context", "1000"]);
        let (input, ids) = as_sent(&a, &long, 64).expect("within the limit");
        assert_eq!((input, ids.len()), (1000, 16));
        let (input, _) = as_sent(&args(&[]), &long, 64).expect("no limit");
        assert_eq!(input, 1000);
    }

    #[test]
    fn constant_arrivals_are_evenly_spaced() {
        for n in 0..5 {
            assert_eq!(
                arrival_gap(crate::base::workload::control::Arrival::Constant, 4.0, 1, n),
                0.25
            );
        }
    }

    #[test]
    fn poisson_arrivals_are_seeded_and_average_the_rate() {
        let gaps: Vec<f64> = (0..20_000)
            .map(|n| arrival_gap(crate::base::workload::control::Arrival::Poisson, 2.0, 7, n))
            .collect();
        assert!(gaps.iter().all(|g| g.is_finite() && *g >= 0.0));
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean gap {mean}");
        assert_eq!(
            gaps[3],
            arrival_gap(crate::base::workload::control::Arrival::Poisson, 2.0, 7, 3)
        );
        assert_ne!(
            gaps[3],
            arrival_gap(crate::base::workload::control::Arrival::Poisson, 2.0, 8, 3)
        );
    }

    #[test]
    fn ramp_up_spreads_the_first_users_and_not_the_added_ones() {
        assert_eq!(ramp_delay(10.0, 0, 4), 0.0);
        assert_eq!(ramp_delay(10.0, 2, 4), 5.0);
        assert_eq!(ramp_delay(10.0, 4, 4), 0.0, "added by the controller later");
        assert_eq!(ramp_delay(-3.0, 2, 4), 0.0, "a negative ramp is none");
    }

    #[test]
    fn advance_skip_stays_within_the_asked_fraction() {
        let mut c = args(&[]).control;
        assert_eq!(
            advance_skip(&c, 42, 100),
            0,
            "no --advance-max: from the start"
        );
        c.advance_min = 0.2;
        c.advance_max = 0.5;
        for scope in 0..500 {
            let skip = advance_skip(&c, scope, 100);
            assert!((20..=50).contains(&skip), "{skip}");
        }
        assert_eq!(advance_skip(&c, 9, 100), advance_skip(&c, 9, 100));
    }

    #[test]
    fn sessions_stick_to_one_endpoint_and_recycled_passes_get_new_scopes() {
        for scope in 0..100 {
            assert!(endpoint_index(scope, 3) < 3);
            assert_eq!(endpoint_index(scope, 0), 0, "no endpoint count is one");
        }
        let spread: std::collections::HashSet<_> = (0..100).map(|s| endpoint_index(s, 3)).collect();
        assert_eq!(spread.len(), 3, "sessions spread over every endpoint");
        assert_ne!(pass_scope(5, 0), pass_scope(5, 1));
        assert_eq!(pass_scope(5, 1), pass_scope(5, 1));
    }
}
