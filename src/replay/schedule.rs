//! Scheduling: the users, sessions and subagents of a run, when each request is sent, and how
//! its measurement reaches the collector.
//!
//! The timing arithmetic (when a request is due, how a session is skipped into, how arrivals are
//! spaced) is in plain functions so that it is tested apart from the clock.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::rng::mix;
use crate::trace::TraceRequest;
use crate::trace::prompt::PromptState;

use super::control;
use super::exchange::{RecordBase, exchange};
use super::state::Run;
use super::trajectory::{Resume, Timeline};
use crate::openai::client::PromptBody;
use crate::workload::replay::{OnLong, ReplayArgs, Timing};

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
fn unit(key: u64) -> f64 {
    (mix(key) >> 11) as f64 / (1u64 << 53) as f64
}

/// Seconds between the `n`-th open-loop session arrival and the next, at `rate` per second.
fn arrival_gap(arrival: crate::workload::control::Arrival, rate: f64, seed: u64, n: u32) -> f64 {
    match arrival {
        crate::workload::control::Arrival::Constant => 1.0 / rate,
        // An exponential gap from a seeded uniform draw.
        crate::workload::control::Arrival::Poisson => {
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
fn ramp_delay(ramp_up: f64, user: u32, initial: u32) -> f64 {
    if user < initial {
        ramp_up.max(0.0) * f64::from(user) / f64::from(initial)
    } else {
        0.0
    }
}

/// Requests of a session of `len` skipped when it is started part-way in: a fraction drawn
/// from `scope` within [`--advance-min`, `--advance-max`] (0 without `--advance-max`).
fn advance_skip(c: &crate::workload::control::ControlArgs, scope: u64, len: usize) -> usize {
    if c.advance_max <= 0.0 {
        return 0;
    }
    let lo = c.advance_min.clamp(0.0, 1.0);
    let hi = c.advance_max.clamp(lo, 1.0);
    ((lo + (hi - lo) * unit(scope ^ 0x4144_5641)) * len as f64) as usize
}

/// Starts the users (or, with --fixed-schedule, every session at its time; with
/// --request-rate, sessions at that rate) and waits for them.
pub(super) async fn drive(run: Arc<Run>) {
    let mut tasks = tokio::task::JoinSet::new();
    if run.args.fixed_schedule {
        for index in 0..run.sessions.len() {
            let run = run.clone();
            tasks.spawn(async move {
                let session = &run.sessions[index];
                let at = run.start + Duration::from_secs_f64(session.start_s * run.args.time_scale);
                tokio::time::sleep_until(at.into()).await;
                replay_session(run.clone(), 0, index, 0, at, false).await;
            });
        }
    } else if let Some(rate) = run.args.control.request_rate {
        let rate = rate.max(1e-6);
        let mut at = run.start;
        for n in 0u32.. {
            if run.deadline.is_some_and(|d| at >= d) {
                break;
            }
            sleep_until_precise(at).await;
            let Some((index, pass)) = run.next_session().await else {
                break;
            };
            run.arrivals.fetch_add(1, Ordering::Relaxed);
            let run2 = run.clone();
            tasks.spawn(async move {
                run2.active_users.fetch_add(1, Ordering::Relaxed);
                replay_session(run2.clone(), n, index, pass, Instant::now(), false).await;
                run2.active_users.fetch_sub(1, Ordering::Relaxed);
            });
            let gap = arrival_gap(run.args.control.arrival, rate, run.args.seed, n);
            at += Duration::from_secs_f64(gap);
        }
    } else {
        let initial = *run.target_users.borrow();
        let max = run.args.control.max_users.unwrap_or(initial).max(initial);
        for user in 0..max {
            let run = run.clone();
            let delay = ramp_delay(run.args.ramp_up, user, initial);
            tasks.spawn(async move {
                tokio::time::sleep(Duration::from_secs_f64(delay)).await;
                user_loop(&run, user).await;
            });
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// One closed-loop user: while the target user count includes it, takes sessions and replays
/// them; parked while the adaptive controller wants fewer users.
async fn user_loop(run: &Arc<Run>, user: u32) {
    let mut target = run.target_users.subscribe();
    let mut first = true;
    loop {
        let wanted = async { target.wait_for(|t| user < *t).await.is_ok() };
        let until_deadline = async {
            match run.deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        let go = tokio::select! {
            ok = wanted => ok,
            _ = until_deadline => false,
        };
        if !go || run.expired() {
            return;
        }
        run.active_users.fetch_add(1, Ordering::Relaxed);
        let mut ran_out = false;
        while !run.expired() && user < *run.target_users.borrow() {
            let Some((index, pass)) = run.next_session().await else {
                ran_out = true;
                break;
            };
            let advance = first || run.args.control.advance_all_users;
            first = false;
            replay_session(run.clone(), user, index, pass, Instant::now(), advance).await;
        }
        run.active_users.fetch_sub(1, Ordering::Relaxed);
        if ran_out {
            return;
        }
    }
}

/// Replays one session (and its subagents) as `user`, starting at `started`; `advance` starts
/// it part-way in (--advance-min/--advance-max).
async fn replay_session(
    run: Arc<Run>,
    user: u32,
    index: usize,
    pass: u64,
    started: Instant,
    advance: bool,
) {
    let session = &run.sessions[index];
    let scope = pass_scope(session.scope, pass);
    // An AgentX lane resumes its first play where its warm-up left it.
    let resume = run.starts.get(&(index, pass));
    let skip = match resume {
        Some(r) => r.root_from,
        None if advance => advance_skip(&run.args.control, scope, session.requests.len()),
        None => 0,
    };
    let mut children = session_children(&run, user, index, scope, started, resume, skip);
    let plan = Play {
        user,
        context: 0,
        session_id: &session.id,
        scope,
        block_size: session.block_size,
        // A resumed root whose turns were all before t* sends none; a part-way start sends at
        // least the session's last turn.
        skip: match resume {
            Some(_) => skip,
            None => skip.min(session.requests.len().saturating_sub(1)),
        },
        fresh: pass == 0 && skip == 0,
        started,
    };
    // Under --burst-phase-starts AIPerf sends a lane's streams at their spacing from its
    // earliest one: the root waits its share.
    if let Some(delay) = resume.map(|r| r.root_delay_s).filter(|d| *d > 0.0) {
        let at = started + Duration::from_secs_f64(delay * run.args.time_scale);
        match &run.system_idle {
            Some(idle) => idle_wait(&run, idle, at).await,
            None => sleep_until_precise(at).await,
        }
    }
    play(&run, &plan, &session.requests, &mut children).await;
    for (_, child) in children {
        let _ = child.await;
    }
    // Only now has the whole session, subagents included, stopped sending: before, another user
    // could be admitted under --max-working-set-tokens while this one's subagents still ran.
    run.admission.leave(user);
}

/// Starts a session's subagents at their start times, in the parent's hash `scope`: from their
/// first turn at their time from the session's start (started at request `skip`, from that
/// request's time, leaving out those that started before the request before it), or, resumed
/// by the AgentX warm-up, the ones `resume` names from their turn and delay (the others are
/// history).
fn session_children(
    run: &Arc<Run>,
    user: u32,
    index: usize,
    scope: u64,
    started: Instant,
    resume: Option<&Resume>,
    skip: usize,
) -> Vec<Subagent> {
    let session = &run.sessions[index];
    let rules = run.args.agentx.rules();
    let cap = rules.trace_idle_gap_cap_s.unwrap_or(f64::INFINITY);
    // AIPerf joins a subagent at the parent's first turn at or after its end.
    let joins = if rules.join_subagents && !session.children.is_empty() {
        Timeline::new(session, rules.trace_idle_gap_cap_s).join_turns()
    } else {
        vec![None; session.children.len()]
    };
    let offset = |i: usize| {
        session
            .requests
            .get(i)
            .map_or(f64::INFINITY, |r| r.offset_s)
    };
    let (history_until, from) = match skip {
        0 => (0.0, 0.0),
        _ => (offset(skip - 1), offset(skip)),
    };
    let starts: Vec<(usize, usize, f64)> = match resume {
        Some(r) => r.children.clone(),
        None => session
            .children
            .iter()
            .enumerate()
            .filter(|(_, c)| c.start_s >= history_until)
            .map(|(ci, c)| (ci, 0, (c.start_s - from).clamp(0.0, cap)))
            .collect(),
    };
    starts
        .into_iter()
        .filter(|(ci, _, _)| *ci < session.children.len())
        .map(|(ci, from, delay)| {
            let run = run.clone();
            let at = started + Duration::from_secs_f64(delay * run.args.time_scale);
            let handle = tokio::spawn(async move {
                match &run.system_idle {
                    Some(idle) => {
                        idle_wait(&run, idle, at).await;
                        if run.expired() {
                            return;
                        }
                    }
                    None => {
                        if run.deadline.is_some_and(|d| at >= d) {
                            return;
                        }
                        tokio::time::sleep_until(at.into()).await;
                    }
                }
                let child = &run.sessions[index].children[ci];
                let plan = Play {
                    user,
                    context: ci as u32 + 1,
                    session_id: &child.id,
                    scope,
                    block_size: child.block_size,
                    skip: from,
                    fresh: false,
                    started: at,
                };
                play(&run, &plan, &child.requests, &mut Vec::new()).await;
                run.admission.leave_context(user, plan.context);
            });
            // A resumed subagent whose join turn the root has passed runs in the background.
            let join = joins[ci].filter(|j| resume.is_none_or(|r| *j >= r.root_from));
            (join, handle)
        })
        .collect()
}

/// A running subagent: the parent turn that joins it (`None`: the session's end), and its task.
type Subagent = (Option<usize>, tokio::task::JoinHandle<()>);

/// With `--scenario agentx`, waits for the subagents that parent turn `turn` joins (and any
/// earlier join left waiting) to finish.
async fn join_subagents(run: &Run, children: &mut Vec<Subagent>, turn: usize) {
    if children.is_empty() || !run.args.agentx.rules().join_subagents {
        return;
    }
    let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(children)
        .into_iter()
        .partition(|(join, _)| join.is_some_and(|j| j <= turn));
    *children = rest;
    for (_, child) in due {
        let _ = child.await;
    }
}

/// Which requests of which session `play` sends, as whom.
struct Play<'a> {
    user: u32,
    /// Which of the user's contexts: 0 its session, `k + 1` the session's `k`-th subagent.
    context: u32,
    session_id: &'a str,
    scope: u64,
    block_size: u32,
    /// Requests skipped at the start (--advance-min/--advance-max).
    skip: usize,
    /// A session's first replay from its first request: its first turn should find nothing
    /// of it cached.
    fresh: bool,
    started: Instant,
}

/// Sends a list of requests in order, with the run's timing strategy.
/// `children` are the session's subagents, joined before the turns that follow them (AgentX).
async fn play(
    run: &Arc<Run>,
    p: &Play<'_>,
    requests: &[TraceRequest],
    children: &mut Vec<Subagent>,
) {
    let args = &run.args;
    let (user, scope, block_size, started) = (p.user, p.scope, p.block_size, p.started);
    let mut state = PromptState::default();
    let mut prev_done: Option<Instant> = None;
    let mut prev_input = 0u32;
    let first_offset = requests.get(p.skip).map_or(0.0, |r| r.offset_s);
    let mut pending = tokio::task::JoinSet::new();
    let adaptive = args.control.max_users.is_some();
    for (i, req) in requests.iter().enumerate().skip(p.skip) {
        // The adaptive controller took this user away: leave the session.
        if adaptive && user >= *run.target_users.borrow() {
            break;
        }
        join_subagents(run, children, i).await;
        let scheduled =
            due(args, req, first_offset, started, prev_done).unwrap_or_else(Instant::now);
        if let Some(idle) = &run.system_idle {
            // AgentX: the lane waits out its gap (the idle cap may shorten it) and keeps its
            // trace until the deadline rather than leaving it for a new one.
            idle_wait(run, idle, scheduled).await;
            if run.expired() {
                break;
            }
        } else {
            if let Some(d) = run.deadline
                && scheduled >= d
            {
                // The user is still thinking when the run ends: it thinks until then, instead
                // of starting its next session at once (every user bursting through first
                // turns in the run's last think time, which no steady state has).
                tokio::time::sleep_until(d.into()).await;
                break;
            }
            sleep_until_precise(scheduled).await;
        }

        let Some((input, hash_ids)) = as_sent(args, req, block_size) else {
            continue;
        };
        let id = run.next_id.fetch_add(1, Ordering::Relaxed);
        // A chat template adds its own tokens around the message; the message makes up the rest.
        run.builder.build(
            &mut state,
            scope,
            block_size,
            hash_ids,
            input,
            run.template_tokens,
            mix(scope ^ id),
        );
        // Open-loop sends overlap the next prompt's build, so they get a copy; a closed-loop
        // send borrows the session's tokens until its answer is in.
        let tokens = if args.fixed_schedule {
            Arc::new(state.tokens().to_vec())
        } else {
            state.lend()
        };
        let body = PromptBody::new(
            &run.model,
            tokens.clone(),
            run.encoding.clone(),
            req.output_tokens,
            args.ignore_eos,
        );
        // What the server should not have cached: the part beyond the previous prompt of this
        // session, or everything when the session sat idle past --cache-max-age.
        let warm =
            prev_done.is_some_and(|d| d.elapsed().as_secs_f64() <= args.control.cache_max_age);
        let new_tokens = if warm {
            input.saturating_sub(prev_input)
        } else {
            input
        };
        prev_input = input;
        let record = RecordBase {
            id,
            user,
            session: p.session_id.to_owned(),
            index: i as u32,
            endpoint: endpoint_index(scope, run.endpoints.len()),
            scheduled_s: run.since_start(scheduled),
            trace_input: input,
            trace_output: req.output_tokens,
            fresh: p.fresh && i == 0,
        };
        let admit = control::AdmitRequest {
            user,
            context: p.context,
            input_tokens: input,
            output_tokens: req.output_tokens,
            new_tokens,
        };
        if args.fixed_schedule {
            let run = run.clone();
            pending.spawn(async move { exchange(&run, record, body, admit).await });
        } else {
            if !exchange(run, record, body, admit).await {
                // Held by admission until the deadline: the session ends here.
                break;
            }
            prev_done = Some(Instant::now());
            state.restore(tokens);
        }
    }
    while pending.join_next().await.is_some() {}
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

/// Waits until `at` under the system-idle cap, or until the run's deadline if that comes first.
async fn idle_wait(run: &Run, idle: &super::idle_gap::SystemIdle, at: Instant) {
    let deadline = async {
        match run.deadline {
            Some(d) => tokio::time::sleep_until(d.into()).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = idle.wait_until(at) => {}
        () = deadline => {}
    }
}

/// When `req` is due: with `--fixed-schedule` at its trace offset from the session's start
/// (`started`, where the request `first_offset` was sent); otherwise after the previous answer
/// (`prev_done`) by the `--timing` strategy's wait. `None`: at once (the first request of a
/// closed-loop session).
fn due(
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

/// Waits until `deadline` to within tens of microseconds. tokio's timer wakes on whole
/// milliseconds, which alone would make the schedule delay ~1 ms; the last millisecond is spent
/// yielding to other tasks instead, so the wait costs CPU only while nothing else is ready.
async fn sleep_until_precise(deadline: Instant) {
    let coarse = deadline
        .checked_sub(Duration::from_millis(2))
        .unwrap_or(deadline);
    if coarse > Instant::now() {
        tokio::time::sleep_until(coarse.into()).await;
    }
    while Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> ReplayArgs {
        crate::workload::replay::parse(extra).expect("test arguments parse")
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
                arrival_gap(crate::workload::control::Arrival::Constant, 4.0, 1, n),
                0.25
            );
        }
    }

    #[test]
    fn poisson_arrivals_are_seeded_and_average_the_rate() {
        let gaps: Vec<f64> = (0..20_000)
            .map(|n| arrival_gap(crate::workload::control::Arrival::Poisson, 2.0, 7, n))
            .collect();
        assert!(gaps.iter().all(|g| g.is_finite() && *g >= 0.0));
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean gap {mean}");
        assert_eq!(
            gaps[3],
            arrival_gap(crate::workload::control::Arrival::Poisson, 2.0, 7, 3)
        );
        assert_ne!(
            gaps[3],
            arrival_gap(crate::workload::control::Arrival::Poisson, 2.0, 8, 3)
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
