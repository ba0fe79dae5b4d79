//! The shared state of a running replay: its arguments, client and endpoints, how prompts are
//! built, the session queue, and the counters the scheduler, the exchanges and the watcher
//! share. Its own module so that scheduling and sending both read it without importing each
//! other.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, mpsc};

use crate::data::trace::Session;
use crate::data::trace::prompt::PromptBuilder;

use super::control;
use super::idle_gap::SystemIdle;
use super::trajectory::Resume;
use crate::base::workload::replay::ReplayArgs;
use crate::data::tally::RequestRecord;
use crate::run::openai::client::PromptEncoding;
use crate::run::openai::preflight::Endpoint;

/// How the run's prompts are made and named: what the preflight and the flags settled.
pub(super) struct Prompting {
    pub(super) encoding: PromptEncoding,
    /// Prompt tokens the chat template adds around the message (0 for completions).
    pub(super) template_tokens: u32,
    pub(super) model: String,
    pub(super) builder: PromptBuilder,
}

/// Shared state of a run.
pub(super) struct Run {
    pub(super) args: ReplayArgs,
    pub(super) client: reqwest::Client,
    pub(super) endpoints: Vec<Endpoint>,
    pub(super) admission: control::Admission,
    /// How many users may be active (the adaptive controller moves it).
    pub(super) target_users: tokio::sync::watch::Sender<u32>,
    /// Sessions started by the open-loop arrival process.
    pub(super) arrivals: AtomicU64,
    pub(super) encoding: PromptEncoding,
    /// Prompt tokens the chat template adds around the message (0 for completions).
    pub(super) template_tokens: u32,
    pub(super) model: String,
    pub(super) builder: PromptBuilder,
    pub(super) start: Instant,
    pub(super) deadline: Option<Instant>,
    /// Sessions not yet taken, with the pass they belong to.
    queue: Mutex<VecDeque<(usize, u64)>>,
    pub(super) sessions: Vec<Session>,
    pub(super) next_id: AtomicU64,
    pub(super) active_users: AtomicUsize,
    /// Requests sent and not yet recorded.
    pub(super) in_flight: AtomicUsize,
    /// Requests due before the deadline but still waiting for admission at it: not sent.
    pub(super) unsent_at_deadline: AtomicU64,
    pub(super) records: mpsc::UnboundedSender<RequestRecord>,
    /// Where the plays the AgentX warm-up started part-way (by session index and pass) resume.
    pub(super) starts: HashMap<(usize, u64), Resume>,
    /// The whole-system idle cap (`--system-idle-gap-cap`), if on.
    pub(super) system_idle: Option<SystemIdle>,
}

impl Run {
    /// A run that starts now with `users` users wanted, sending its records to `records`.
    pub(super) fn new(
        args: ReplayArgs,
        client: reqwest::Client,
        endpoints: Vec<Endpoint>,
        sessions: Vec<Session>,
        prompting: Prompting,
        users: u32,
        records: mpsc::UnboundedSender<RequestRecord>,
    ) -> Self {
        let start = Instant::now();
        Self {
            admission: control::Admission::new(
                &args.control,
                start,
                args.assessment_period.max(0.1),
            ),
            target_users: tokio::sync::watch::channel(users).0,
            arrivals: AtomicU64::new(0),
            encoding: prompting.encoding,
            template_tokens: prompting.template_tokens,
            model: prompting.model,
            builder: prompting.builder,
            start,
            deadline: (args.duration > 0.0).then(|| start + Duration::from_secs_f64(args.duration)),
            queue: Mutex::new((0..sessions.len()).map(|i| (i, 0)).collect()),
            sessions,
            next_id: AtomicU64::new(0),
            active_users: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            unsent_at_deadline: AtomicU64::new(0),
            records,
            starts: HashMap::new(),
            system_idle: args
                .agentx
                .rules()
                .system_idle_gap_cap_s
                .map(|cap| SystemIdle::new(cap, start)),
            client,
            endpoints,
            args,
        }
    }

    pub(super) fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    pub(super) fn since_start(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.start).as_secs_f64()
    }

    pub(super) async fn next_session(&self) -> Option<(usize, u64)> {
        let mut q = self.queue.lock().await;
        let next = q.pop_front()?;
        if self.args.recycle {
            q.push_back((next.0, next.1 + 1));
        }
        Some(next)
    }
}
