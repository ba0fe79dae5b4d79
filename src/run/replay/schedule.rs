//! Scheduling: the users, sessions and subagents of a run, when each request is sent, and how
//! its measurement reaches the collector.
//!
//! The timing arithmetic (when a request is due, how a session is skipped into, how arrivals are
//! spaced) is in [`super::timing`], tested apart from the clock.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::base::rng::mix;
use crate::data::trace::TraceRequest;
use crate::data::trace::prompt::PromptState;

use super::control;
use super::exchange::{RecordBase, exchange};
use super::state::Run;
use super::timing::{
    advance_skip, arrival_gap, as_sent, due, endpoint_index, pass_scope, ramp_delay,
};
use super::trajectory::{Resume, Timeline};
use crate::run::openai::client::PromptBody;

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
