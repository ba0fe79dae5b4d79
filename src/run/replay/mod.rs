//! `kvsweep replay`: replays agentic traces against an OpenAI-compatible server and measures it.
//!
//! Each user takes a session and replays its requests in order: send, wait for the whole answer,
//! wait the think time, send the next. Subagents run beside their parent from their start time.
//! Prompts are token ids built so that the server sees exactly the prefix sharing the trace's hash
//! ids describe (`trace::prompt`). Results go to `--out` as the run goes (`output`).
//!
//! The parts: `args` (the flags), `target` (the endpoints' preflight, on `openai::preflight`),
//! `warmup`, `state` (what a running replay shares), `schedule` (users, sessions, when each
//! request goes), `exchange` (one request, its 429 retries and its record), [`control`]
//! (admission), [`feedback`] (the circuit breaker and the adaptive controller), `output` (the
//! result files) and `progress` (what the terminal shows); this module runs them in order and
//! says how the run ended.

pub mod agentx;
mod client_cpu;
pub mod control;
mod exchange;
pub mod feedback;
mod idle_gap;
pub mod output;
mod progress;
mod saturation;
mod schedule;
mod state;
mod target;
mod timing;
mod trajectory;
mod warmup;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::base::rng::mix;
use crate::base::shutdown::Shutdown;
pub use crate::base::shutdown::StopSignal;
use crate::data::artifact::schema::{
    AgentxRecord, CellState, JsonArtifact, Metadata, OpenLoop, Simulator, Status, TraceSetInfo,
};
use crate::data::tally::RequestRecord;
use crate::data::trace::{self, Session};
use crate::run::openai::client::{Outcome, PromptEncoding};
use crate::run::openai::preflight::{Endpoint, Prompts};
use crate::run::openai::vocabulary;
use output::{Collector, FLUSH_EVERY};
use progress::Progress;
use state::{Prompting, Run};

pub use crate::base::workload::replay::{OnLong, ReplayArgs, Timing};
pub use timing::pass_scope;

/// How a replay ended; `status.json` in its output directory says the same.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayOutcome {
    /// `Ok` or `Failed`.
    pub status: CellState,
    pub reason: String,
    /// Whether a signal (or the caller's stop) ended it early.
    pub interrupted: bool,
    pub requests: u64,
    pub errors: u64,
}

/// `kvsweep replay` on `runtime`, stopped early by `shutdown`.
pub fn run(args: &ReplayArgs, runtime: &Handle, shutdown: &Shutdown) -> Result<()> {
    let outcome = runtime.block_on(async { replay(args.clone(), shutdown.stop()?).await })?;
    if outcome.status != CellState::Ok {
        bail!("the replay failed: {}", outcome.reason);
    }
    Ok(())
}

/// Replays the traces into `args.out` until they, the duration or `stop` end it.
pub async fn replay(args: ReplayArgs, mut stop: StopSignal) -> Result<ReplayOutcome> {
    args.validate()?;
    let rules = args.agentx.rules();
    let args = agentx::scenario_args(args, &rules);
    let (set, sessions) = load_sessions(&args)?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.users as usize * 2 + 8)
        .tcp_nodelay(true)
        .build()
        .context("cannot build the HTTP client")?;
    let prompts = Prompts::new(args.api, args.tokenizer.as_deref())?;
    let endpoints: Vec<Endpoint> = args
        .url
        .iter()
        .map(|u| Endpoint::new(u, prompts.path))
        .collect();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let started_at = SystemTime::now();
    let mut metadata = Metadata {
        format_version: Metadata::VERSION,
        command: std::env::args().collect(),
        kvsweep_version: crate::VERSION.to_owned(),
        engine: args.engine_label.clone(),
        url: args.url.clone(),
        api: args.api,
        users: args.users,
        duration_s: args.duration,
        timing: args.timing,
        time_scale: args.time_scale,
        seed: args.seed,
        prompt_token_ids: matches!(prompts.encoding, PromptEncoding::Ids)
            .then(|| [prompts.range.lo, vocabulary::highest(prompts.range)]),
        traces: TraceSetInfo {
            files: set.files.len(),
            sessions: sessions.len(),
            digest: set.digest.clone(),
            skipped_records: set.skipped.len(),
            skipped: set
                .skipped
                .iter()
                .take(100)
                .map(ToString::to_string)
                .collect(),
        },
        started_at: unix(started_at),
        ..Metadata::default()
    };
    metadata.write(&args.out)?;
    Status::new(CellState::Running, "the replay has not finished").write(&args.out)?;

    let pre = match target::prepare(&client, &args, &endpoints, &prompts).await {
        Ok(v) => v,
        Err(e) => {
            Status::new(CellState::Failed, format!("{e:#}")).write(&args.out)?;
            return Err(e);
        }
    };
    let engine = target::engine_label(&args, &pre);
    metadata.engine = Some(engine.clone());
    metadata.simulated = Some(engine == "sim");
    metadata.model = Some(pre.model.clone());
    metadata.simulator = Simulator::from_models(&pre.models);
    metadata.models = Some(pre.models.clone());
    metadata.chat_template_tokens = Some(pre.template_tokens);
    metadata.endpoints = Some(args.url.clone());
    metadata.cache_reset = Some(args.control.reset_cache);
    metadata.write(&args.out)?;

    let marker = agentx::cache_bust_marker(&rules);
    let builder = trace::prompt::PromptBuilder {
        seed: args.seed ^ marker.unwrap_or(0),
        range: prompts.range,
    };
    let encoding = prompts.encoding;
    let users = args.initial_users();
    let warmed = warmup::warm_up(
        &client, &args, &endpoints, &sessions, &builder, &encoding, &pre, users,
    )
    .await;
    let lanes = agentx::warm_lanes(
        &agentx::WarmupContext {
            client: &client,
            args: &args,
            endpoints: &endpoints,
            builder: &builder,
            encoding: &encoding,
            pre: &pre,
        },
        &sessions,
        users,
        &rules,
    )
    .await;
    let warmed = warmed + lanes.iter().map(|(l, _)| l.warmup_requests).sum::<u64>();
    metadata.warmup_requests = Some(warmed);
    metadata.write(&args.out)?;

    let mut collector = Collector::create(
        &args.out,
        args.assessment_period.max(0.1),
        &engine,
        &args.url,
        &args.control,
        args.warmup_window,
    )?;
    let (tx, rx) = mpsc::unbounded_channel();
    let mut run = Run::new(
        args.clone(),
        client,
        endpoints,
        sessions,
        Prompting {
            encoding,
            template_tokens: pre.template_tokens,
            model: pre.model,
            builder,
        },
        users,
        tx,
    );
    let n = run.sessions.len();
    run.starts = lanes
        .iter()
        .map(|(l, resume)| {
            (
                (l.lane as usize % n, u64::from(l.lane) / n as u64),
                resume.clone(),
            )
        })
        .collect();
    let run = Arc::new(run);
    let mut gate = agentx::FailureGate::new(rules.failed_request_threshold, users);
    let (reason, abandoned, duration) =
        watch(&run, &mut collector, rx, &mut stop, &mut gate).await?;
    let completed = reason.is_none();
    if let Some(rate) = args.control.request_rate {
        let started = run.arrivals.load(Ordering::Relaxed);
        collector.set_open_loop(OpenLoop {
            requested_sessions_per_s: rate,
            arrival: args.control.arrival,
            sessions_started: started,
            // Arrivals stop at --duration; without one they run the whole replay.
            achieved_sessions_per_s: started as f64
                / if args.duration > 0.0 {
                    args.duration.min(duration)
                } else {
                    duration
                }
                .max(1e-9),
        });
    }
    let unsent = run.unsent_at_deadline.load(Ordering::Relaxed);
    collector.set_unsent_at_deadline(unsent);
    if unsent > 0 {
        eprintln!(
            "replay: {unsent} requests were still held by admission control at the end of --duration and were not sent"
        );
    }
    collector.write_summary(duration, completed)?;
    let warning = collector.warm_cache_warning();
    if let Some(w) = &warning {
        eprintln!("replay: warning: {w}");
    }
    metadata.warm_cache_warning = Some(warning);
    metadata.finished_at = Some(unix(SystemTime::now()));
    metadata.completed = completed;
    metadata.abandoned_requests = Some(abandoned);
    metadata.write(&args.out)?;

    let p = collector.progress();
    let interrupted = matches!(reason, Some(Stop::Signal(_)));
    let (mut status, mut why) = verdict(reason, p.requests, abandoned, collector.error_rate());
    if let (CellState::Ok, Some(over)) = (&status, gate.exceeded()) {
        (status, why) = (CellState::Failed, over);
    }
    if *args.agentx != crate::base::workload::agentx::AgentxArgs::default() {
        let (skipped_s, jumps) = run.system_idle.as_ref().map_or((0.0, 0), |i| i.skipped());
        AgentxRecord {
            format_version: AgentxRecord::VERSION,
            start_ratio: rules.start_ratio,
            warmup_requests_per_lane: rules.warmup_requests_per_lane,
            system_idle_gap_cap_s: rules.system_idle_gap_cap_s,
            trace_idle_gap_cap_s: rules.trace_idle_gap_cap_s,
            failed_request_threshold: rules.failed_request_threshold,
            cache_bust_marker: marker,
            lanes: lanes.into_iter().map(|(l, _)| l).collect(),
            system_idle_skipped_s: skipped_s,
            system_idle_jumps: jumps,
        }
        .write(&args.out)?;
    }
    Status::new(status, why.clone()).write(&args.out)?;
    eprintln!(
        "replay{}: {} requests, {} failed, TTFT p50 {:.1} ms, cache hit rate {:.1}%, results in {}",
        if engine == "sim" {
            " (simulated server)"
        } else {
            ""
        },
        p.requests,
        p.errors,
        p.ttft_p50_ms,
        p.hit_rate * 100.0,
        args.out.display()
    );
    Ok(ReplayOutcome {
        status,
        reason: why,
        interrupted,
        requests: p.requests,
        errors: p.errors,
    })
}

/// Loads the traces and keeps the sessions with at least `--min-requests`, in the seed's order;
/// AgentX lanes keep the file-name order (AIPerf's weka loader samples its traces sequentially:
/// lane `i` takes trace `i`, wrapping).
pub(crate) fn load_sessions(args: &ReplayArgs) -> Result<(trace::TraceSet, Vec<Session>)> {
    let set = trace::load(
        &args.traces,
        trace::LoadOptions {
            format: args.format,
            jsonl_block_size: args.block_size,
            strict: args.strict,
        },
    )?;
    let mut sessions: Vec<Session> = set
        .sessions
        .iter()
        .filter(|s| s.total_requests() >= args.min_requests)
        .cloned()
        .collect();
    if sessions.is_empty() {
        bail!("no session has at least {} requests", args.min_requests);
    }
    if args.agentx.rules().start_ratio.is_none() {
        shuffle(&mut sessions, args.seed);
    }
    Ok((set, sessions))
}

/// Fisher-Yates with the seeded mixer: the same seed gives the same order.
fn shuffle<T>(items: &mut [T], seed: u64) {
    for i in (1..items.len()).rev() {
        let j = (mix(seed ^ i as u64) % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// Runs the users and collects their records until they finish, the drain after `--duration`
/// ends, the circuit breaker trips or `stop` fires. Returns why it stopped early (if it did),
/// the requests abandoned in flight, and the run's length in seconds.
async fn watch(
    run: &Arc<Run>,
    collector: &mut Collector,
    mut rx: mpsc::UnboundedReceiver<RequestRecord>,
    stop: &mut StopSignal,
    gate: &mut agentx::FailureGate,
) -> Result<(Option<Stop>, usize, f64)> {
    let args = &run.args;
    let mut controller = args
        .control
        .max_users
        .map(|max| feedback::Controller::new(&args.control, *run.target_users.borrow(), max));
    let mut workers = tokio::spawn(schedule::drive(run.clone()));
    let progress = Progress::new();
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    let mut breaker = feedback::Breaker::new(
        args.control.max_consecutive_errors,
        args.control.circuit_breaker_window,
    );
    let mut saturation = saturation::SaturationWatch::new(args.stop_when_saturated);
    let reason = loop {
        tokio::select! {
            Some(r) = rx.recv() => {
                collector.add(&r)?;
                if let (Some(w), Some(ttft)) = (saturation.as_mut(), r.ttft_ms) {
                    w.record_ttft(r.sent_s, ttft);
                }
                if let Some(why) = breaker.record(r.outcome == Outcome::Ok, r.done_s) {
                    break Some(Stop::Breaker(why));
                }
                if let Some(why) = gate.record(r.outcome == Outcome::Ok) {
                    break Some(Stop::Breaker(why));
                }
            }
            _ = &mut workers => break None,
            _ = flush.tick() => {
                collector.flush()?;
                let now = run.since_start(Instant::now());
                let active = run.active_users.load(Ordering::Relaxed);
                let closed = collector.close_period(now, active, run.admission.bucket_fill(), false)?;
                if let (Some(c), Some(period)) = (controller.as_mut(), closed) {
                    if let Some(next) = c.on_period(period.index, &period.ttft, period.decode_tps_sum, period.decode_n) {
                        run.target_users.send_replace(next);
                    }
                    collector.set_adaptive(c.summary());
                }
                progress.show(now, active, collector.progress());
                if let Some(why) = saturation.as_mut().and_then(|w| w.sample(now, run.in_flight.load(Ordering::Relaxed))) {
                    break Some(Stop::Saturated(why));
                }
                if run.deadline.is_some_and(|d| Instant::now() >= d + Duration::from_secs_f64(args.drain.max(0.0))) {
                    break None;
                }
            }
            why = &mut *stop => break Some(Stop::Signal(why)),
        }
    };
    workers.abort();
    let abandoned = run.in_flight.load(Ordering::SeqCst);
    while let Ok(r) = rx.try_recv() {
        collector.add(&r)?;
    }
    let duration = run.since_start(Instant::now());
    collector.close_period(duration, 0, run.admission.bucket_fill(), true)?;
    collector.flush()?;
    progress.finish();
    Ok((reason, abandoned, duration))
}

/// The run's status (`ok` or `failed`) and its reason: stopped early, nothing finished, or more
/// than 10% of requests failed is a failure.
fn verdict(
    reason: Option<Stop>,
    requests: u64,
    abandoned: usize,
    error_rate: f64,
) -> (CellState, String) {
    match reason {
        Some(Stop::Signal(r) | Stop::Breaker(r)) => (CellState::Failed, r),
        // What it recorded is kept: an invalid point with its reason, not a failed cell.
        Some(Stop::Saturated(r)) => (CellState::Partial, r),
        None if requests == 0 => (
            CellState::Failed,
            format!(
                "no request finished within the duration and drain ({abandoned} abandoned in flight)"
            ),
        ),
        None if error_rate > 0.10 => (
            CellState::Failed,
            format!(
                "{:.1}% of requests failed (more than 10%)",
                error_rate * 100.0
            ),
        ),
        None => (CellState::Ok, "completed".to_owned()),
    }
}

/// Why a run stopped before its end.
enum Stop {
    /// A signal or the caller's stop (run-cell's engine watch).
    Signal(String),
    /// The circuit breaker: a wall of errors.
    Breaker(String),
    /// The over-saturation stop: the queue kept growing (`--stop-when-saturated`).
    Saturated(String),
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_permutation_fixed_by_the_seed() {
        let mut a: Vec<u32> = (0..50).collect();
        let mut b = a.clone();
        let mut c = a.clone();
        shuffle(&mut a, 7);
        shuffle(&mut b, 7);
        shuffle(&mut c, 8);
        assert_eq!(a, b, "the same seed gives the same order");
        assert_ne!(a, c, "another seed gives another order");
        assert_ne!(a, (0..50).collect::<Vec<_>>(), "the order is shuffled");
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (0..50).collect::<Vec<_>>(),
            "nothing lost or doubled"
        );
    }

    #[test]
    fn shuffle_of_one_or_none_is_a_no_op() {
        let mut one = [3];
        shuffle(&mut one, 1);
        assert_eq!(one, [3]);
        shuffle::<u8>(&mut [], 1);
    }

    #[test]
    fn verdict_fails_early_stops_empty_runs_and_error_walls() {
        let (s, why) = verdict(
            Some(Stop::Signal("interrupted (SIGINT)".into())),
            100,
            0,
            0.0,
        );
        assert_eq!(
            (s, why.as_str()),
            (CellState::Failed, "interrupted (SIGINT)")
        );
        let (s, why) = verdict(Some(Stop::Breaker("5 errors in a row".into())), 100, 0, 0.0);
        assert_eq!((s, why.as_str()), (CellState::Failed, "5 errors in a row"));
        let (s, why) = verdict(None, 0, 3, 0.0);
        assert_eq!(s, CellState::Failed);
        assert!(why.contains("3 abandoned"), "{why}");
        let (s, why) = verdict(None, 10, 0, 0.25);
        assert_eq!(s, CellState::Failed);
        assert!(why.starts_with("25.0% of requests failed"), "{why}");
    }

    #[test]
    fn verdict_accepts_up_to_ten_percent_errors() {
        assert_eq!(
            verdict(None, 10, 0, 0.10),
            (CellState::Ok, "completed".to_owned())
        );
        assert_eq!(verdict(None, 1, 0, 0.0).0, CellState::Ok);
    }

    #[test]
    fn unix_time_counts_from_the_epoch() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1500);
        assert!((unix(t) - 1.5).abs() < 1e-9);
        assert_eq!(unix(SystemTime::UNIX_EPOCH - Duration::from_secs(1)), 0.0);
    }
}
