//! The simulated engine loop: continuous batching over the prefix cache, timed by the cost model.
//!
//! Like vLLM v1's scheduler, each step first gives every running request that is decoding one
//! token (preempting the newest request when no block is left for it), then continues chunked
//! prefills, then admits waiting requests first come, first served, while the step's token budget,
//! the running-request limit and free blocks allow. A preempted request goes back to the front of
//! the queue and recomputes its prompt and what it had generated. The loop owns all state; the
//! HTTP side talks to it through [`Command`]s and hears back through [`Event`]s.
//!
//! The engine is generic over its clock ([`Clock`]): served over HTTP it runs on wall time
//! ([`Instant`], sleeping each step's modelled time), and `kvsweep predict` runs the very same
//! [`Engine::step`] on a virtual clock ([`VirtualTime`]) that jumps from step to step.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::cache::{BlockId, PrefixCache};
use super::cost::{CostModel, StepWork};
use super::metrics::{self, Counters, Flavor, Gauges};

/// A point in time the engine can measure durations between.
pub(crate) trait Clock: Copy {
    /// Seconds from `earlier` to `self` (never negative).
    fn seconds_since(self, earlier: Self) -> f64;
}

impl Clock for Instant {
    fn seconds_since(self, earlier: Self) -> f64 {
        self.duration_since(earlier).as_secs_f64()
    }
}

/// Seconds on a simulated clock: modelled time, which passes only as steps are run.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct VirtualTime(pub f64);

impl Clock for VirtualTime {
    fn seconds_since(self, earlier: Self) -> f64 {
        (self.0 - earlier.0).max(0.0)
    }
}

/// What the HTTP side sends the loop.
pub enum Command {
    Submit(Request<Instant>),
    /// Render `/metrics`.
    Metrics(oneshot::Sender<String>),
    /// Forget every unreferenced cached block.
    Reset(oneshot::Sender<()>),
}

/// A request the loop should serve.
pub struct Request<T> {
    pub(crate) prompt_len: usize,
    /// Chained hashes of the prompt's full blocks.
    pub hashes: Vec<u64>,
    /// Output tokens to generate.
    pub(crate) output_len: u32,
    /// Whether reaching `output_len` is a natural stop (`stop`) or the length limit (`length`).
    pub(crate) natural_stop: bool,
    pub(crate) arrived: T,
    pub events: mpsc::UnboundedSender<Event>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// What the loop tells one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The next output token (0-based position).
    Token(u32),
    Done {
        reason: FinishReason,
        prompt_tokens: usize,
        completion_tokens: u32,
        cached_tokens: usize,
    },
    /// The request cannot be served (it can never fit in the KV cache).
    Rejected(String),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct EngineConfig {
    pub max_num_seqs: usize,
    pub(crate) max_batched_tokens: usize,
    /// Modelled time runs this many times faster than wall time (`--speed` over the testing
    /// aid `--slowdown`).
    pub speed: f64,
    /// Every step takes no time at all.
    pub instant: bool,
    pub flavor: Flavor,
}

struct Seq<T> {
    prompt_len: usize,
    hashes: Vec<u64>,
    output_len: u32,
    natural_stop: bool,
    events: mpsc::UnboundedSender<Event>,
    arrived: T,
    scheduled: Option<T>,
    last_token: Option<T>,
    blocks: Vec<BlockId>,
    /// Tokens whose KV exists (hits count as computed).
    computed: usize,
    generated: u32,
    /// Prompt tokens found in the cache at the first admission (what `usage` reports).
    cached_tokens: Option<usize>,
    /// Offloaded tokens to load before this request's next prefill chunk.
    pending_load: usize,
}

impl<T> Seq<T> {
    /// Tokens that must be in the KV cache before the next token is produced.
    fn context_target(&self) -> usize {
        self.prompt_len + self.generated as usize
    }

    fn prefilling(&self) -> bool {
        self.computed < self.context_target()
    }
}

/// With `--instant`, how many steps run between yields to the HTTP side.
const INSTANT_STEPS_PER_YIELD: u64 = 16;

pub struct Engine<T> {
    config: EngineConfig,
    model_name: String,
    cache: PrefixCache,
    cost: CostModel,
    waiting: VecDeque<Seq<T>>,
    running: Vec<Seq<T>>,
    counters: Counters,
}

/// What one step does to one running request.
#[derive(Clone, Copy)]
enum Work {
    Decode,
    Prefill(usize),
}

impl<T: Clock> Engine<T> {
    pub fn new(
        config: EngineConfig,
        model_name: String,
        cache: PrefixCache,
        cost: CostModel,
    ) -> Self {
        Self {
            config,
            model_name,
            cache,
            cost,
            waiting: VecDeque::new(),
            running: Vec::new(),
            counters: Counters::default(),
        }
    }

    /// Runs one step starting at `now`: plans it, and applies its results at `now` plus its
    /// modelled time, which is returned. `None` when nothing can run until a request arrives.
    pub fn step(&mut self, now: T, end: impl FnOnce(f64) -> T) -> Option<f64> {
        let (work, plan) = self.schedule(now)?;
        let modelled = self.cost.step_seconds(&work);
        self.apply(&plan, end(modelled));
        Some(modelled)
    }

    pub fn block_size(&self) -> usize {
        self.cache.config().block_size
    }

    /// Whether any request is queued or running.
    pub fn busy(&self) -> bool {
        !self.running.is_empty() || !self.waiting.is_empty()
    }

    /// The engine's `/metrics` text now.
    pub(crate) fn metrics_text(&self) -> String {
        let gauges = Gauges {
            running: self.running.len(),
            waiting: self.waiting.len(),
            kv_usage: self.cache.usage(),
        };
        metrics::render(self.config.flavor, &self.model_name, &self.counters, gauges)
    }
}

impl Engine<Instant> {
    pub async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut deadline = Instant::now();
        let mut instant_steps: u64 = 0;
        loop {
            if self.running.is_empty() && self.waiting.is_empty() {
                match commands.recv().await {
                    Some(cmd) => self.handle(cmd),
                    None => return,
                }
                deadline = Instant::now();
            }
            while let Ok(cmd) = commands.try_recv() {
                self.handle(cmd);
            }
            let Some((work, plan)) = self.schedule(Instant::now()) else {
                // Nothing can run until something arrives.
                match commands.recv().await {
                    Some(cmd) => self.handle(cmd),
                    None => return,
                }
                continue;
            };
            let modelled = self.cost.step_seconds(&work);
            if self.config.instant {
                // Steps are free, so run several before letting the HTTP side write: each stream
                // then sends its tokens in one write instead of one write per token.
                instant_steps += 1;
                if instant_steps.is_multiple_of(INSTANT_STEPS_PER_YIELD) {
                    tokio::task::yield_now().await;
                }
            } else {
                // A virtual clock keeps the average step rate exact even when single steps are
                // shorter than the timer's resolution; a debt of more than 100 ms is forgiven.
                deadline += Duration::from_secs_f64(modelled / self.config.speed);
                let now = Instant::now();
                if deadline > now + Duration::from_millis(1) {
                    tokio::time::sleep_until(deadline.into()).await;
                } else if deadline + Duration::from_millis(100) < now {
                    deadline = now;
                }
            }
            self.apply(&plan, Instant::now());
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Submit(req) => self.submit(req),
            Command::Metrics(reply) => {
                let _ = reply.send(self.metrics_text());
            }
            Command::Reset(reply) => {
                self.cache.reset();
                let _ = reply.send(());
            }
        }
    }
}

impl<T: Clock> Engine<T> {
    /// Queues a request, or rejects it at once when it can never fit the KV cache.
    pub fn submit(&mut self, req: Request<T>) {
        let max_tokens = req.prompt_len + req.output_len as usize;
        if self.cache.blocks_for(max_tokens) > self.cache.config().hbm_blocks {
            let _ = req.events.send(Event::Rejected(format!(
                "this request needs {max_tokens} tokens of KV cache, more than the {} the simulated GPUs hold",
                self.cache.config().hbm_blocks * self.cache.config().block_size
            )));
            return;
        }
        self.waiting.push_back(Seq {
            prompt_len: req.prompt_len,
            hashes: req.hashes,
            output_len: req.output_len,
            natural_stop: req.natural_stop,
            events: req.events,
            arrived: req.arrived,
            scheduled: None,
            last_token: None,
            blocks: Vec::new(),
            computed: 0,
            generated: 0,
            cached_tokens: None,
            pending_load: 0,
        });
    }

    /// Plans one step. `None` when nothing can run (only possible with no running requests).
    fn schedule(&mut self, now: T) -> Option<(StepWork, Vec<Work>)> {
        let bs = self.cache.config().block_size;
        // With free steps, chunking prefills would only cost loop iterations.
        let mut budget = if self.config.instant {
            usize::MAX
        } else {
            self.config.max_batched_tokens
        };
        let mut plan: Vec<Work> = Vec::with_capacity(self.running.len() + 8);
        let mut work = StepWork::default();

        // Decodes first; a request that needs a block and finds none preempts the newest one.
        let mut i = 0;
        while i < self.running.len() {
            let seq = &self.running[i];
            if seq.prefilling() {
                plan.push(Work::Prefill(0));
                i += 1;
                continue;
            }
            let needed = (seq.context_target() + 1).div_ceil(bs);
            if needed > seq.blocks.len() {
                match self.cache.allocate_one() {
                    Some(b) => self.running[i].blocks.push(b),
                    None => {
                        self.preempt_newest();
                        plan.truncate(self.running.len().min(plan.len()));
                        continue;
                    }
                }
            }
            plan.push(Work::Decode);
            budget = budget.saturating_sub(1);
            i += 1;
        }
        plan.truncate(self.running.len());

        // Continue chunked prefills.
        for (seq, w) in self.running.iter_mut().zip(plan.iter_mut()) {
            if let Work::Prefill(_) = w {
                let chunk = (seq.context_target() - seq.computed).min(budget);
                budget -= chunk;
                *w = Work::Prefill(chunk);
            }
        }

        // Admit waiting requests.
        while budget > 0 && self.running.len() < self.config.max_num_seqs {
            let Some(seq) = self.waiting.front() else {
                break;
            };
            let target = seq.context_target();
            let Some(alloc) = self.cache.allocate_prompt(&seq.hashes, target) else {
                break;
            };
            let mut seq = self.waiting.pop_front().expect("front exists");
            let hits = alloc.hbm_hit_tokens + alloc.offload_hit_tokens;
            seq.blocks = alloc.blocks;
            seq.computed = hits;
            seq.pending_load = alloc.offload_hit_tokens;
            if seq.cached_tokens.is_none() {
                seq.cached_tokens = Some(hits);
                self.counters.cache_queries += seq.prompt_len as u64;
                self.counters.cache_hits += alloc.hbm_hit_tokens as u64;
                self.counters.offload_hits += alloc.offload_hit_tokens as u64;
                self.counters.prompt_tokens += seq.prompt_len as u64;
            }
            if seq.scheduled.is_none() {
                seq.scheduled = Some(now);
                self.counters.queue.observe(now.seconds_since(seq.arrived));
            }
            let chunk = (target - seq.computed).min(budget);
            budget -= chunk;
            self.running.push(seq);
            plan.push(Work::Prefill(chunk));
        }

        for (seq, w) in self.running.iter_mut().zip(&plan) {
            match *w {
                Work::Decode => {
                    work.decode_seqs += 1;
                    work.decode_context += seq.context_target() as u64;
                }
                Work::Prefill(chunk) => {
                    let chunk = chunk as u64;
                    let before = seq.computed as u64;
                    work.prefill_tokens += chunk;
                    work.prefill_pairs += chunk * (before + chunk / 2);
                    work.prefill_context += before;
                    if chunk > 0 && seq.pending_load > 0 {
                        work.loaded_tokens += seq.pending_load as u64;
                    }
                }
            }
        }
        if plan.is_empty() {
            return None;
        }
        Some((work, plan))
    }

    /// Moves the newest running request back to the front of the queue, freeing its blocks.
    fn preempt_newest(&mut self) {
        if let Some(mut seq) = self.running.pop() {
            self.cache.release(&seq.blocks);
            seq.blocks.clear();
            seq.computed = 0;
            seq.pending_load = 0;
            self.counters.preemptions += 1;
            self.waiting.push_front(seq);
        }
    }

    /// Applies a step's results at time `now`: progress, tokens, finished requests.
    fn apply(&mut self, plan: &[Work], now: T) {
        let transfers = self.cache.take_transfers();
        let block_bytes = self.cost.kv_bytes_per_token() * self.cache.config().block_size as f64;
        let stored = transfers.stored_blocks as f64 * block_bytes;
        let loaded = transfers.loaded_blocks as f64 * block_bytes;
        self.counters.offload_bytes_to_cpu += stored as u64;
        self.counters.offload_bytes_to_gpu += loaded as u64;
        let per_token = self.cost.kv_bytes_per_token().max(1.0);
        self.counters.offload_seconds_to_cpu +=
            self.cost.transfer_seconds((stored / per_token) as u64);
        self.counters.offload_seconds_to_gpu +=
            self.cost.transfer_seconds((loaded / per_token) as u64);

        let mut finished: Vec<usize> = Vec::new();
        for (i, w) in plan.iter().enumerate() {
            let seq = &mut self.running[i];
            let produce = match *w {
                Work::Decode => true,
                Work::Prefill(chunk) => {
                    if chunk > 0 {
                        seq.pending_load = 0;
                    }
                    seq.computed += chunk;
                    !seq.prefilling()
                }
            };
            if !produce {
                continue;
            }
            // The token's KV is written in the next step; count the context as computed now.
            seq.computed = seq.context_target() + 1;
            let position = seq.generated;
            seq.generated += 1;
            self.counters.generation_tokens += 1;
            match seq.last_token {
                None => self.counters.ttft.observe(now.seconds_since(seq.arrived)),
                Some(last) => self.counters.itl.observe(now.seconds_since(last)),
            }
            seq.last_token = Some(now);
            let alive = seq.events.send(Event::Token(position)).is_ok();
            if !alive || seq.generated >= seq.output_len {
                finished.push(i);
            }
        }
        for &i in finished.iter().rev() {
            let seq = self.running.remove(i);
            self.cache.release(&seq.blocks);
            let reason = if seq.natural_stop {
                FinishReason::Stop
            } else {
                FinishReason::Length
            };
            let done = Event::Done {
                reason,
                prompt_tokens: seq.prompt_len,
                completion_tokens: seq.generated,
                cached_tokens: seq.cached_tokens.unwrap_or(0),
            };
            if seq.generated < seq.output_len || seq.events.send(done).is_err() {
                self.counters.finished_abort += 1;
                continue;
            }
            match reason {
                FinishReason::Stop => self.counters.finished_stop += 1,
                FinishReason::Length => self.counters.finished_length += 1,
            }
            self.counters.e2e.observe(now.seconds_since(seq.arrived));
        }
    }
}
