//! `kvsweep replay`: replays agentic traces against an OpenAI-compatible server and measures it.
//!
//! Each user takes a session and replays its requests in order: send, wait for the whole answer,
//! wait the think time, send the next. Subagents run beside their parent from their start time.
//! Prompts are token ids built so that the server sees exactly the prefix sharing the trace's hash
//! ids describe (`trace::prompt`). Results go to `--out` as the run goes (`output`).

pub mod client;
pub mod control;
mod output;
pub mod vocabulary;

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};

use crate::artifact::write_json_atomic;
use crate::sim::rng::mix;
use crate::spec::TraceFormat;
use crate::tokenizer::Tokenizer;
use crate::trace::prompt::{ChatWords, PromptBuilder, PromptState, TokenRange};
use crate::trace::{self, Session, TraceRequest};
use client::{Outcome, PromptBody, PromptEncoding};
use output::{Collector, FLUSH_EVERY, RequestRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    /// `/v1/completions` with token-id prompts: exact lengths, no tokenizer involved.
    Completions,
    /// `/v1/chat/completions` with text.
    Chat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Timing {
    /// Wait only the trace's think time between a response and the next request.
    ThinkOnly,
    /// Think time plus the original API time × --api-time-scale.
    ApiScaled,
    /// Keep the trace's own request spacing (`t`), never sending before the previous answer.
    Original,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnLong {
    Skip,
    Truncate,
}

/// Replay agentic traces against a server and measure TTFT, inter-token latency, throughput and
/// cache hits.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// The server's base URL (http://host:port); repeat for several endpoints (each session
    /// sticks to one).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: Vec<String>,
    /// Model name to request (default: the first model /v1/models lists).
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long, value_enum, default_value = "completions")]
    pub api: Api,
    /// The served model's Hugging Face tokenizer.json: chat prompts are made of its words
    /// (default: tiktoken o200k_base), completions prompts of ids inside its vocabulary.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Trace files or directories (repeatable).
    #[arg(long, required = true)]
    pub traces: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    pub format: TraceFormatArg,
    /// Tokens per hash id in JSON Lines traces [default: 512 for Mooncake, 16 for Qwen-Bailian].
    #[arg(long)]
    pub block_size: Option<u32>,
    /// A malformed trace record stops the run instead of being skipped.
    #[arg(long)]
    pub strict: bool,
    /// Concurrent users, each replaying one session at a time.
    #[arg(long, default_value_t = 1)]
    pub users: u32,
    /// Stop sending after this many seconds (0: when the sessions run out).
    #[arg(long, default_value_t = 0.0)]
    pub duration: f64,
    /// Spread the users' first requests evenly over this many seconds instead of sending them all
    /// at once.
    #[arg(long, default_value_t = 0.0)]
    pub ramp_up: f64,
    /// Seconds after --duration to wait for answers still streaming; requests still running then
    /// are abandoned (counted in metadata.json, not in requests.csv).
    #[arg(long, default_value_t = 30.0)]
    pub drain: f64,
    /// Start sessions again (as new users, with fresh content) when they run out.
    #[arg(long)]
    pub recycle: bool,
    #[arg(long, value_enum, default_value = "think-only")]
    pub timing: Timing,
    /// Multiplies every wait.
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    #[arg(long, default_value_t = 1.0)]
    pub api_time_scale: f64,
    /// Longest single wait, seconds (before --time-scale).
    #[arg(long, default_value_t = 600.0)]
    pub max_delay: f64,
    /// Longest prompt, tokens (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub max_context: u32,
    #[arg(long, value_enum, default_value = "skip")]
    pub on_long: OnLong,
    /// Leave out sessions with fewer requests.
    #[arg(long, default_value_t = 1)]
    pub min_requests: usize,
    /// Fixes session order and prompt content.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Ask the server to generate exactly the trace's output length.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Send every request at its trace timestamp, without waiting for earlier answers (Mooncake style).
    #[arg(long)]
    pub fixed_schedule: bool,
    /// Seconds before an unanswered request counts as a timeout.
    #[arg(long, default_value_t = 600.0)]
    pub request_timeout: f64,
    /// Seconds per row of periods.csv.
    #[arg(long, default_value_t = 30.0)]
    pub assessment_period: f64,
    /// Results directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Names the engine in the results; `sim` marks them simulated [default: `sim` when the
    /// server's /v1/models says it is kvsweep's simulator, else `unknown`].
    #[arg(long)]
    pub engine_label: Option<String>,
    #[command(flatten)]
    pub control: control::ControlArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TraceFormatArg {
    Auto,
    Kvct,
    Mooncake,
    Bailian,
}

impl From<TraceFormatArg> for TraceFormat {
    fn from(f: TraceFormatArg) -> Self {
        match f {
            TraceFormatArg::Auto => TraceFormat::Auto,
            TraceFormatArg::Kvct => TraceFormat::Kvct,
            TraceFormatArg::Mooncake => TraceFormat::Mooncake,
            TraceFormatArg::Bailian => TraceFormat::Bailian,
        }
    }
}

/// One server the run sends to.
struct Endpoint {
    base: String,
    /// `/v1/completions` or `/v1/chat/completions` under `base`.
    url: String,
}

/// Shared state of a run.
struct Run {
    args: ReplayArgs,
    client: reqwest::Client,
    endpoints: Vec<Endpoint>,
    admission: control::Admission,
    /// How many users may be active (the adaptive controller moves it).
    target_users: tokio::sync::watch::Sender<u32>,
    /// Sessions started by the open-loop arrival process.
    arrivals: AtomicU64,
    encoding: PromptEncoding,
    /// Prompt tokens the chat template adds around the message (0 for completions).
    template_tokens: u32,
    model: String,
    builder: PromptBuilder,
    start: Instant,
    deadline: Option<Instant>,
    /// Sessions not yet taken, with the pass they belong to.
    queue: Mutex<VecDeque<(usize, u64)>>,
    sessions: Vec<Session>,
    next_id: AtomicU64,
    active_users: AtomicUsize,
    /// Requests sent and not yet recorded.
    in_flight: AtomicUsize,
    records: mpsc::UnboundedSender<RequestRecord>,
}

impl Run {
    fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    fn since_start(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.start).as_secs_f64()
    }

    async fn next_session(&self) -> Option<(usize, u64)> {
        let mut q = self.queue.lock().await;
        let next = q.pop_front()?;
        if self.args.recycle {
            q.push_back((next.0, next.1 + 1));
        }
        Some(next)
    }
}

/// How a replay ended; `status.json` in its output directory says the same.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayOutcome {
    /// `ok` or `failed`.
    pub status: &'static str,
    pub reason: String,
    /// Whether a signal (or the caller's stop) ended it early.
    pub interrupted: bool,
    pub requests: u64,
    pub errors: u64,
}

/// A future that resolves, with the reason, when the replay must stop early and flush.
pub type StopSignal = std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>>;

/// SIGINT or SIGTERM: how a replay run from the command line is stopped.
pub fn stop_on_signals() -> Result<StopSignal> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot watch SIGTERM")?;
    Ok(Box::pin(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "interrupted (SIGINT)".to_owned(),
            _ = term.recv() => "terminated (SIGTERM)".to_owned(),
        }
    }))
}

pub fn run(args: &ReplayArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(async { replay(args.clone(), stop_on_signals()?).await })?;
    if outcome.status != "ok" {
        bail!("the replay failed: {}", outcome.reason);
    }
    Ok(())
}

/// Tries of the one-token test request on a 429 or 5xx answer.
const PREFLIGHT_ATTEMPTS: u32 = 8;

/// How an API's prompts are sent.
struct Prompts {
    /// `/v1/completions` or `/v1/chat/completions`.
    path: &'static str,
    encoding: PromptEncoding,
    /// The ids prompts are built from: for completions, inside the vocabulary of `--tokenizer`
    /// where one is given; for chat, indices into the tokenizer's words.
    range: TokenRange,
    /// The `--tokenizer` the range came from, named in the preflight's advice.
    tokenizer: Option<PathBuf>,
}

impl Prompts {
    fn new(api: Api, tokenizer: Option<&Path>) -> Result<Self> {
        let default = TokenRange::default();
        let (path, encoding, range) = match api {
            Api::Completions => {
                let range = match tokenizer {
                    Some(path) => vocabulary::ids_within(Tokenizer::load(Some(path))?.vocab_size())
                        .with_context(|| format!("--tokenizer {}", path.display()))?,
                    None => default,
                };
                ("/v1/completions", PromptEncoding::Ids, range)
            }
            Api::Chat => {
                let words = ChatWords::from_tokenizer(&Tokenizer::load(tokenizer)?, default)?;
                (
                    "/v1/chat/completions",
                    PromptEncoding::Words(Arc::new(words)),
                    default,
                )
            }
        };
        Ok(Self {
            path,
            encoding,
            range,
            tokenizer: tokenizer.map(Path::to_owned),
        })
    }
}

/// A server checked and ready for prompts: what the synthetic testers share with the replay.
pub struct Target {
    pub client: reqwest::Client,
    /// `/v1/completions` or `/v1/chat/completions` of the server.
    pub url: String,
    pub base: String,
    pub encoding: PromptEncoding,
    pub model: String,
    /// Prompt tokens the chat template adds (0 for completions).
    pub template_tokens: u32,
    pub range: TokenRange,
}

/// Builds a client for up to `connections` concurrent requests and runs the preflight
/// (`/v1/models`, then a one-token request) against `base_url`.
pub async fn connect(
    base_url: &str,
    model: Option<&str>,
    api: Api,
    tokenizer: Option<&Path>,
    connections: usize,
) -> Result<Target> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections * 2 + 8)
        .tcp_nodelay(true)
        .build()
        .context("cannot build the HTTP client")?;
    let prompts = Prompts::new(api, tokenizer)?;
    let base = base_url.trim_end_matches('/').to_owned();
    let endpoint = Endpoint {
        url: format!("{base}{}", prompts.path),
        base,
    };
    let pre = preflight(&client, model, &endpoint, &prompts).await?;
    Ok(Target {
        client,
        url: endpoint.url,
        base: endpoint.base,
        encoding: prompts.encoding,
        model: pre.model,
        template_tokens: pre.template_tokens,
        range: prompts.range,
    })
}

/// What the preflight learned about the server.
struct Preflight {
    model: String,
    models: Value,
    /// Prompt tokens the chat template adds (0 for completions).
    template_tokens: u32,
}

/// `GET /v1/models`, then one tiny request: a wrong URL or a refusing server is one clear error.
/// For chat, the tiny request is one word, so its `prompt_tokens` minus one is what the chat
/// template adds to every prompt. For completions, a second one sends the highest token id the
/// prompts will use: a server whose vocabulary is smaller stops the run here, with what to pass,
/// instead of failing every request.
async fn preflight(
    client: &reqwest::Client,
    model: Option<&str>,
    endpoint: &Endpoint,
    prompts: &Prompts,
) -> Result<Preflight> {
    let base = endpoint.base.as_str();
    let models_url = format!("{base}/v1/models");
    let resp = client
        .get(&models_url)
        .send()
        .await
        .with_context(|| format!("cannot reach the server at {base}"))?;
    let status = resp.status();
    let models: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{models_url} answered HTTP {status}: {models}");
    }
    let model = match model {
        Some(m) => m.to_owned(),
        None => models["data"][0]["id"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("{models_url} lists no model; give --model"))?,
    };
    let range = prompts.range;
    let m = test_request(client, endpoint, &model, prompts, range.lo).await;
    if m.outcome() != Outcome::Ok {
        let error = m.error.unwrap_or_default();
        let advice = match prompts.encoding {
            PromptEncoding::Ids if vocabulary::blames_vocabulary(&error) => {
                format!("\n{}", vocabulary_advice(prompts))
            }
            _ => String::new(),
        };
        bail!("the server at {base} refused a one-token test request: {error}{advice}");
    }
    if let PromptEncoding::Ids = prompts.encoding {
        let top = vocabulary::highest(range);
        let m = test_request(client, endpoint, &model, prompts, top).await;
        if m.is_transient() {
            bail!(
                "the server at {base} failed a test request {PREFLIGHT_ATTEMPTS} times: {}",
                m.error.unwrap_or_default()
            );
        }
        if m.outcome() != Outcome::Ok {
            bail!(
                "the server at {base} took token id {} but refused token id {top}, the highest that completions prompts use: {}\n{}",
                range.lo,
                m.error.unwrap_or_default(),
                vocabulary_advice(prompts)
            );
        }
    }
    let template_tokens = match prompts.encoding {
        PromptEncoding::Ids => 0,
        PromptEncoding::Words(_) => m
            .usage
            .map(|u| u.prompt_tokens.saturating_sub(1))
            .context("the server's answer to the test request has no usage: its chat prompts cannot be sized")?,
    };
    Ok(Preflight {
        model,
        models,
        template_tokens,
    })
}

/// Sends a one-token prompt of `token` (for chat, the word standing for it), with a few more
/// tries where the failure is transient (busy, rate-limiting, a stalled or cut answer), so that a
/// flaky server is not mistaken for one that refuses the request.
async fn test_request(
    client: &reqwest::Client,
    endpoint: &Endpoint,
    model: &str,
    prompts: &Prompts,
    token: u32,
) -> client::Measured {
    let body = PromptBody::new(
        model,
        Arc::new(vec![token]),
        prompts.encoding.clone(),
        1,
        false,
    );
    let mut attempts = 0;
    loop {
        attempts += 1;
        let m = client::send(
            client,
            &endpoint.url,
            "kvsweep-preflight",
            body.clone(),
            Duration::from_secs(60),
            || {},
        )
        .await;
        if !m.is_transient() || attempts >= PREFLIGHT_ATTEMPTS {
            return m;
        }
        tokio::time::sleep(m.retry_after.unwrap_or(Duration::from_millis(500))).await;
    }
}

/// What to pass when the served model's vocabulary is smaller than the completions prompts' ids.
fn vocabulary_advice(prompts: &Prompts) -> String {
    let top = vocabulary::highest(prompts.range);
    match &prompts.tokenizer {
        None => format!(
            "The served model's vocabulary is smaller than the ids completions prompts use (up to {top}): give --tokenizer with its tokenizer.json, so that they keep to its ids."
        ),
        Some(path) => format!(
            "The served model's vocabulary is smaller than that of --tokenizer {} (ids up to {top}): give the served model's own tokenizer.json.",
            path.display()
        ),
    }
}

/// The engine's name in the results: `--engine-label`, else `sim` for the simulator (whose
/// /v1/models are owned by `kvsweep-sim`), so that a simulated run is marked as one even when
/// nobody said so.
fn engine_label(args: &ReplayArgs, pre: &Preflight) -> String {
    let simulator = pre.models["data"]
        .as_array()
        .is_some_and(|d| d.iter().any(|m| m["owned_by"] == "kvsweep-sim"));
    match &args.engine_label {
        Some(label) => label.clone(),
        None if simulator => "sim".to_owned(),
        None => "unknown".to_owned(),
    }
}

/// Replays the traces into `args.out` until they, the duration or `stop` end it.
pub async fn replay(args: ReplayArgs, mut stop: StopSignal) -> Result<ReplayOutcome> {
    if args.users == 0 {
        bail!("--users must be at least 1");
    }
    let set = trace::load(
        &args.traces,
        trace::LoadOptions {
            format: args.format.into(),
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
    // The same seed gives the same order.
    for i in (1..sessions.len()).rev() {
        let j = (mix(args.seed ^ i as u64) % (i as u64 + 1)) as usize;
        sessions.swap(i, j);
    }

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.users as usize * 2 + 8)
        .tcp_nodelay(true)
        .build()
        .context("cannot build the HTTP client")?;
    let prompts = Prompts::new(args.api, args.tokenizer.as_deref())?;
    let endpoints: Vec<Endpoint> = args
        .url
        .iter()
        .map(|u| {
            let base = u.trim_end_matches('/').to_owned();
            Endpoint {
                url: format!("{base}{}", prompts.path),
                base,
            }
        })
        .collect();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let started_at = SystemTime::now();
    let mut metadata = json!({
        "command": std::env::args().collect::<Vec<_>>(),
        "kvsweep_version": crate::VERSION,
        "engine": args.engine_label,
        "url": args.url,
        "api": format!("{:?}", args.api).to_lowercase(),
        "users": args.users,
        "duration_s": args.duration,
        "timing": format!("{:?}", args.timing),
        "time_scale": args.time_scale,
        "seed": args.seed,
        // The lowest and highest token id of completions prompts (none for chat).
        "prompt_token_ids": matches!(prompts.encoding, PromptEncoding::Ids)
            .then(|| [prompts.range.lo, vocabulary::highest(prompts.range)]),
        "traces": {
            "files": set.files.len(),
            "sessions": sessions.len(),
            "digest": set.digest,
            "skipped_records": set.skipped.len(),
            "skipped": set.skipped.iter().take(100).map(ToString::to_string).collect::<Vec<_>>(),
        },
        "started_at": unix(started_at),
        "finished_at": null,
        "completed": false,
    });
    write_json_atomic(&args.out.join("metadata.json"), &metadata)?;
    write_json_atomic(
        &args.out.join("status.json"),
        &json!({"status": "running", "reason": "the replay has not finished"}),
    )?;

    let pre = match prepare(&client, &args, &endpoints, &prompts).await {
        Ok(v) => v,
        Err(e) => {
            write_json_atomic(
                &args.out.join("status.json"),
                &json!({"status": "failed", "reason": format!("{e:#}")}),
            )?;
            return Err(e);
        }
    };
    let engine = engine_label(&args, &pre);
    metadata["engine"] = json!(engine);
    metadata["simulated"] = json!(engine == "sim");
    metadata["model"] = json!(pre.model);
    metadata["models"] = pre.models.clone();
    metadata["chat_template_tokens"] = json!(pre.template_tokens);
    metadata["endpoints"] = json!(args.url);
    metadata["cache_reset"] = json!(args.control.reset_cache);
    write_json_atomic(&args.out.join("metadata.json"), &metadata)?;

    let builder = PromptBuilder {
        seed: args.seed,
        range: prompts.range,
    };
    let encoding = prompts.encoding;
    let users = initial_users(&args);
    let warmed = warm_up(
        &client, &args, &endpoints, &sessions, &builder, &encoding, &pre, users,
    )
    .await;
    metadata["warmup_requests"] = json!(warmed);
    write_json_atomic(&args.out.join("metadata.json"), &metadata)?;

    let mut collector = Collector::create(
        &args.out,
        args.assessment_period.max(0.1),
        &engine,
        &args.url,
        args.control.clone(),
    )?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let start = Instant::now();
    let mut controller = args
        .control
        .max_users
        .map(|max| control::Controller::new(&args.control, users, max));
    let run = Arc::new(Run {
        endpoints,
        admission: control::Admission::new(&args.control, start, args.assessment_period.max(0.1)),
        target_users: tokio::sync::watch::channel(users).0,
        arrivals: AtomicU64::new(0),
        encoding,
        template_tokens: pre.template_tokens,
        model: pre.model,
        builder,
        start,
        deadline: (args.duration > 0.0).then(|| start + Duration::from_secs_f64(args.duration)),
        queue: Mutex::new((0..sessions.len()).map(|i| (i, 0)).collect()),
        sessions,
        next_id: AtomicU64::new(0),
        active_users: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        records: tx,
        client,
        args: args.clone(),
    });

    let mut workers = tokio::spawn(drive(run.clone()));
    let progress = Progress::new();
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    let mut breaker = control::Breaker::new(
        args.control.max_consecutive_errors,
        args.control.circuit_breaker_window,
    );
    let reason = loop {
        tokio::select! {
            Some(r) = rx.recv() => {
                collector.add(&r)?;
                if let Some(why) = breaker.record(r.outcome == Outcome::Ok, r.done_s) {
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
                if run.deadline.is_some_and(|d| Instant::now() >= d + Duration::from_secs_f64(args.drain.max(0.0))) {
                    break None;
                }
            }
            why = &mut stop => break Some(Stop::Signal(why)),
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
    let completed = reason.is_none();
    if let Some(rate) = args.control.request_rate {
        let started = run.arrivals.load(Ordering::Relaxed);
        collector.set_open_loop(json!({
            "requested_sessions_per_s": rate,
            "arrival": format!("{:?}", args.control.arrival).to_lowercase(),
            "sessions_started": started,
            // Arrivals stop at --duration; without one they run the whole replay.
            "achieved_sessions_per_s": started as f64
                / if args.duration > 0.0 { args.duration.min(duration) } else { duration }.max(1e-9),
        }));
    }
    collector.write_summary(duration, completed)?;
    let warning = collector.warm_cache_warning();
    if let Some(w) = &warning {
        eprintln!("replay: warning: {w}");
    }
    metadata["warm_cache_warning"] = json!(warning);
    metadata["finished_at"] = json!(unix(SystemTime::now()));
    metadata["completed"] = json!(completed);
    metadata["abandoned_requests"] = json!(abandoned);
    write_json_atomic(&args.out.join("metadata.json"), &metadata)?;

    let p = collector.progress();
    let error_rate = collector.error_rate();
    let interrupted = matches!(reason, Some(Stop::Signal(_)));
    let (status, why) = match reason {
        Some(Stop::Signal(r) | Stop::Breaker(r)) => ("failed", r),
        None if p.requests == 0 => (
            "failed",
            format!(
                "no request finished within the duration and drain ({abandoned} abandoned in flight)"
            ),
        ),
        None if error_rate > 0.10 => (
            "failed",
            format!(
                "{:.1}% of requests failed (more than 10%)",
                error_rate * 100.0
            ),
        ),
        None => ("ok", "completed".to_owned()),
    };
    write_json_atomic(
        &args.out.join("status.json"),
        &json!({"status": status, "reason": why}),
    )?;
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

/// The endpoint a session sticks to, chosen by its hash scope: subagents and every turn of a
/// session reach the server that holds its prefix.
fn endpoint_index(scope: u64, endpoints: usize) -> usize {
    (mix(scope) % endpoints.max(1) as u64) as usize
}

/// The hash scope of a session's `pass`-th replay: a recycled session is a new user with new
/// content.
fn pass_scope(session_scope: u64, pass: u64) -> u64 {
    mix(session_scope ^ pass.wrapping_mul(0xA5A5_A5A5))
}

/// Why a run stopped before its end.
enum Stop {
    /// A signal or the caller's stop (run-cell's engine watch).
    Signal(String),
    /// The circuit breaker: a wall of errors.
    Breaker(String),
}

/// The user count a closed-loop run starts with.
fn initial_users(args: &ReplayArgs) -> u32 {
    match (args.control.max_users, args.control.start_users) {
        (Some(max), start) => start.unwrap_or(1).clamp(1, max.max(1)),
        (None, _) => args.users,
    }
}

/// Preflights every endpoint (the first names the model), then empties the caches if asked.
async fn prepare(
    client: &reqwest::Client,
    args: &ReplayArgs,
    endpoints: &[Endpoint],
    prompts: &Prompts,
) -> Result<Preflight> {
    let first = preflight(client, args.model.as_deref(), &endpoints[0], prompts).await?;
    for e in &endpoints[1..] {
        preflight(client, Some(&first.model), e, prompts).await?;
    }
    if args.control.reset_cache {
        for e in endpoints {
            reset_cache(client, &e.base, &engine_label(args, &first)).await?;
        }
    }
    Ok(first)
}

/// Empties a server's prefix cache through the engine's endpoint (both known ones when the
/// engine is not named).
async fn reset_cache(client: &reqwest::Client, base: &str, engine: &str) -> Result<()> {
    let paths: &[&str] = match engine {
        "vllm" | "sim" => &["/reset_prefix_cache"],
        "sglang" => &["/flush_cache"],
        _ => &["/reset_prefix_cache", "/flush_cache"],
    };
    for path in paths {
        if let Ok(r) = client.post(format!("{base}{path}")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
    }
    bail!(
        "--reset-cache: {base} accepted none of {} (llama.cpp has no such endpoint)",
        paths.join(", ")
    )
}

/// Sends the first `--warm-prefix-pct` of the first prompt of each session the first `users`
/// users will take, once, before timing: the run then starts with those prefixes cached.
/// Returns how many warm-up requests were sent.
#[allow(clippy::too_many_arguments)]
async fn warm_up(
    client: &reqwest::Client,
    args: &ReplayArgs,
    endpoints: &[Endpoint],
    sessions: &[Session],
    builder: &PromptBuilder,
    encoding: &PromptEncoding,
    pre: &Preflight,
    users: u32,
) -> u64 {
    let pct = args.control.warm_prefix_pct.clamp(0.0, 1.0);
    if pct <= 0.0 {
        return 0;
    }
    let mut sent = 0;
    for session in sessions.iter().take(users as usize) {
        let Some(first) = session.requests.first() else {
            continue;
        };
        let input = ((f64::from(first.input_tokens) * pct) as u32).max(1);
        let blocks = (input / session.block_size.max(1)) as usize;
        let hash_ids = &first.hash_ids[..first.hash_ids.len().min(blocks)];
        let scope = pass_scope(session.scope, 0);
        let mut state = PromptState::default();
        builder.build(
            &mut state,
            scope,
            session.block_size,
            hash_ids,
            input,
            pre.template_tokens,
            mix(scope ^ 0x5741_524D),
        );
        let body = PromptBody::new(
            &pre.model,
            Arc::new(state.tokens().to_vec()),
            encoding.clone(),
            1,
            false,
        );
        let endpoint = &endpoints[endpoint_index(scope, endpoints.len())];
        let m = client::send(
            client,
            &endpoint.url,
            &session.id,
            body,
            Duration::from_secs_f64(args.request_timeout.max(1.0)),
            || {},
        )
        .await;
        if m.outcome() == Outcome::Ok {
            sent += 1;
        }
    }
    sent
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Starts the users (or, with --fixed-schedule, every session at its time; with
/// --request-rate, sessions at that rate) and waits for them.
async fn drive(run: Arc<Run>) {
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
            let gap = match run.args.control.arrival {
                control::Arrival::Constant => 1.0 / rate,
                control::Arrival::Poisson => {
                    // Uniform in (0, 1] from the seeded mixer, then an exponential gap.
                    let u = (mix(run.args.seed ^ u64::from(n) ^ 0x4F50_454E) >> 11) as f64
                        / (1u64 << 53) as f64;
                    -(1.0 - u).max(1e-12).ln() / rate
                }
            };
            at += Duration::from_secs_f64(gap);
        }
    } else {
        let initial = *run.target_users.borrow();
        let max = run.args.control.max_users.unwrap_or(initial).max(initial);
        for user in 0..max {
            let run = run.clone();
            let delay = if user < initial {
                run.args.ramp_up.max(0.0) * f64::from(user) / f64::from(initial)
            } else {
                0.0
            };
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
    let children = session_children(&run, user, index, scope, started);
    let c = &run.args.control;
    let skip = if advance && c.advance_max > 0.0 {
        let u = (mix(scope ^ 0x4144_5641) >> 11) as f64 / (1u64 << 53) as f64;
        let lo = c.advance_min.clamp(0.0, 1.0);
        let hi = c.advance_max.clamp(lo, 1.0);
        ((lo + (hi - lo) * u) * session.requests.len() as f64) as usize
    } else {
        0
    };
    let plan = Play {
        user,
        session_id: &session.id,
        scope,
        block_size: session.block_size,
        skip: skip.min(session.requests.len().saturating_sub(1)),
        fresh: pass == 0 && skip == 0,
        started,
    };
    play(&run, &plan, &session.requests).await;
    run.admission.leave(user);
    for child in children {
        let _ = child.await;
    }
}

/// Starts a session's subagents at their start times, in the parent's hash `scope`.
fn session_children(
    run: &Arc<Run>,
    user: u32,
    index: usize,
    scope: u64,
    started: Instant,
) -> Vec<tokio::task::JoinHandle<()>> {
    run.sessions[index]
        .children
        .iter()
        .enumerate()
        .map(|(ci, child)| {
            let run = run.clone();
            let at = started + Duration::from_secs_f64(child.start_s * run.args.time_scale);
            tokio::spawn(async move {
                if run.deadline.is_some_and(|d| at >= d) {
                    return;
                }
                tokio::time::sleep_until(at.into()).await;
                let child = &run.sessions[index].children[ci];
                let plan = Play {
                    user,
                    session_id: &child.id,
                    scope,
                    block_size: child.block_size,
                    skip: 0,
                    fresh: false,
                    started: at,
                };
                play(&run, &plan, &child.requests).await;
            })
        })
        .collect()
}

/// Which requests of which session `play` sends, as whom.
struct Play<'a> {
    user: u32,
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
async fn play(run: &Arc<Run>, p: &Play<'_>, requests: &[TraceRequest]) {
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
        let wait = |secs: f64| {
            Duration::from_secs_f64((secs.min(args.max_delay) * args.time_scale).max(0.0))
        };
        let scheduled = if args.fixed_schedule {
            started
                + Duration::from_secs_f64(
                    ((req.offset_s - first_offset) * args.time_scale).max(0.0),
                )
        } else {
            match (args.timing, prev_done) {
                (_, None) => Instant::now(),
                (Timing::ThinkOnly, Some(done)) => done + wait(req.think_time_s),
                (Timing::ApiScaled, Some(done)) => {
                    done + wait(req.think_time_s + req.api_time_s * args.api_time_scale)
                }
                (Timing::Original, Some(done)) => done.max(
                    started
                        + Duration::from_secs_f64(
                            ((req.offset_s - first_offset) * args.time_scale).max(0.0),
                        ),
                ),
            }
        };
        if run.deadline.is_some_and(|d| scheduled >= d) {
            break;
        }
        sleep_until_precise(scheduled).await;

        let (mut input, mut hash_ids) = (req.input_tokens, &req.hash_ids[..]);
        if args.max_context > 0 && input > args.max_context {
            match args.on_long {
                OnLong::Skip => continue,
                OnLong::Truncate => {
                    input = args.max_context;
                    hash_ids = &hash_ids[..hash_ids.len().min((input / block_size) as usize)];
                }
            }
        }
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
            input_tokens: input,
            output_tokens: req.output_tokens,
            new_tokens,
        };
        if args.fixed_schedule {
            let run = run.clone();
            pending.spawn(async move { exchange(&run, record, body, admit).await });
        } else {
            exchange(run, record, body, admit).await;
            prev_done = Some(Instant::now());
            state.restore(tokens);
        }
    }
    while pending.join_next().await.is_some() {}
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

/// Waits for admission, sends one request (again after a 429, honouring Retry-After), and
/// hands its record to the collector. The time spent waiting counts in the schedule delay and
/// so in the effective TTFT.
async fn exchange(run: &Run, record: RecordBase, body: PromptBody, admit: control::AdmitRequest) {
    let timeout = Duration::from_secs_f64(run.args.request_timeout.max(1.0));
    let endpoint = &run.endpoints[record.endpoint];
    run.in_flight.fetch_add(1, Ordering::SeqCst);
    let mut attempts = 0u32;
    let (m, sent_s) = loop {
        attempts += 1;
        let mut permit = run.admission.admit(&admit).await;
        let sent_s = run.since_start(Instant::now());
        let m = client::send(
            &run.client,
            &endpoint.url,
            &record.session,
            body.clone(),
            timeout,
            || permit.first_token(),
        )
        .await;
        drop(permit);
        if m.http_status == 429 && attempts <= run.args.control.rate_limit_retries {
            let wait = m.retry_after.unwrap_or_else(|| {
                Duration::from_secs_f64(run.args.control.rate_limit_backoff.max(0.0))
            });
            tokio::time::sleep(wait).await;
            continue;
        }
        break (m, sent_s);
    };
    let _ = run.records.send(record.finish(m, sent_s, attempts));
    run.in_flight.fetch_sub(1, Ordering::SeqCst);
}

/// The part of a record known before the request is sent.
struct RecordBase {
    id: u64,
    user: u32,
    session: String,
    index: u32,
    endpoint: usize,
    scheduled_s: f64,
    trace_input: u32,
    trace_output: u32,
    fresh: bool,
}

impl RecordBase {
    fn finish(self, m: client::Measured, sent_s: f64, attempts: u32) -> RequestRecord {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        RequestRecord {
            id: self.id,
            user: self.user,
            session: self.session,
            index: self.index,
            endpoint: self.endpoint,
            scheduled_s: self.scheduled_s,
            sent_s,
            attempts,
            fresh: self.fresh,
            // From the measured exchange, so it falls before the admission slot is freed.
            done_s: sent_s + m.e2e.as_secs_f64(),
            ttft_ms: m.ttft.map(ms),
            e2e_ms: ms(m.e2e),
            gaps_ms: m.gaps.iter().map(|g| ms(*g)).collect(),
            trace_input_tokens: self.trace_input,
            trace_output_tokens: self.trace_output,
            prompt_tokens: m.usage.map(|u| u.prompt_tokens),
            completion_tokens: m.usage.map(|u| u.completion_tokens),
            cached_tokens: m.usage.map(|u| u.cached_tokens),
            outcome: m.outcome(),
            http_status: m.http_status,
            error: m.error.clone().unwrap_or_default(),
        }
    }
}

/// A live progress line on a terminal; a log line every ten seconds otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_log: std::sync::Mutex<f64>,
}

impl Progress {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                    .expect("valid template"),
            );
            bar
        });
        Self {
            bar,
            last_log: std::sync::Mutex::new(0.0),
        }
    }

    fn show(&self, now_s: f64, users: usize, p: output::Progress) {
        let msg = format!(
            "users {users}  requests {}  {:.1} req/s  TTFT p50 {:.0} ms  hit rate {:.1}%  errors {}",
            p.requests,
            p.requests as f64 / now_s.max(1e-9),
            p.ttft_p50_ms,
            p.hit_rate * 100.0,
            p.errors
        );
        match &self.bar {
            Some(bar) => {
                bar.set_message(msg);
                bar.tick();
            }
            None => {
                let mut last = self.last_log.lock().unwrap_or_else(|e| e.into_inner());
                if now_s - *last >= 10.0 {
                    *last = now_s;
                    eprintln!("replay: {now_s:.0}s {msg}");
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
