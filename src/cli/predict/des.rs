//! A replay and the simulated engine on one virtual clock: discrete events, no sleeping.
//!
//! The clients follow the replay's closed-loop schedule (`replay::schedule`): users take the
//! sessions in the seed's order (recycled as new users with `--recycle`), send each request
//! when the previous answer is in plus the `--timing` strategy's wait, run subagents beside
//! their parent from their start time, build the very prompts the replay sends
//! ([`PromptBuilder`]), stop sending at `--duration` and abandon answers after `--drain`. The
//! engine is the simulator's own step function ([`VirtualEngine::step`]): a request submitted
//! while a step runs joins the next step, as over HTTP. Finished requests go to the replay's
//! own [`Collector`] and the engine's `/metrics` text to the metrics recorder every second, so
//! the cell's files are those of a measured cell.
//!
//! What the replay does that this does not model (refused by [`check_supported`]): open-loop
//! arrivals, `--fixed-schedule`, the adaptive controller, admission limits, the AgentX scenario,
//! the warm-up prefix and injected faults; and the HTTP and client time a real replay adds to each
//! request (below a millisecond on one host).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use anyhow::{Result, bail};
use tokio::sync::mpsc;

use crate::base::rng::mix;
use crate::base::workload::replay::OnLong;
use crate::data::tally::RequestRecord;
use crate::data::trace::prompt::{PromptBuilder, PromptState, TokenRange};
use crate::data::trace::{Session, TraceRequest};
use crate::run::metrics::Recorder;
use crate::run::openai::client::Outcome;
use crate::run::replay::output::Collector;
use crate::run::replay::{ReplayArgs, Timing, pass_scope};
use crate::run::sim::{
    Event, Request, VirtualEngine, VirtualTime, block_hashes, natural_output_len,
};

/// The options the virtual clock cannot honour, said by name.
pub fn check_supported(a: &ReplayArgs) -> Result<()> {
    let c = &a.control;
    let mut unsupported = Vec::new();
    if a.fixed_schedule {
        unsupported.push("--fixed-schedule");
    }
    if c.request_rate.is_some() {
        unsupported.push("--request-rate");
    }
    if c.max_users.is_some() {
        unsupported.push("--max-users (the adaptive controller)");
    }
    if c.warm_prefix_pct > 0.0 {
        unsupported.push("--warm-prefix-pct");
    }
    if c.advance_max > 0.0 {
        unsupported.push("--advance-max");
    }
    if *a.agentx != crate::base::workload::agentx::AgentxArgs::default() {
        unsupported.push("--scenario agentx");
    }
    if !unsupported.is_empty() {
        bail!(
            "kvsweep predict runs closed-loop replays only; this cell's replay uses {}",
            unsupported.join(", ")
        );
    }
    Ok(())
}

/// One sequence of requests sent in order: a session or one of its subagents.
struct Player {
    user: u32,
    /// The top-level session this belongs to (index into the sessions) and its pass.
    session: usize,
    /// The child's index path below the session (empty: the session itself).
    child: Option<usize>,
    scope: u64,
    fresh: bool,
    next: usize,
    /// When it sent its first request.
    started: f64,
    state: PromptState,
}

/// What happens at a point of virtual time.
#[derive(Debug, Clone, Copy)]
enum Wake {
    /// A user takes its next session.
    User(u32),
    /// A player sends its next request.
    Send(usize),
}

struct Timed {
    at: f64,
    order: u64,
    wake: Wake,
}

impl PartialEq for Timed {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Timed {}
impl PartialOrd for Timed {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Timed {
    /// Earliest first (a max-heap of the reverse), ties in the order they were scheduled.
    fn cmp(&self, o: &Self) -> Ordering {
        o.at.total_cmp(&self.at).then(o.order.cmp(&self.order))
    }
}

/// A request the engine is serving.
struct InFlight {
    player: usize,
    events: mpsc::UnboundedReceiver<Event>,
    record: RequestRecord,
    last_token: Option<f64>,
}

/// A user's current session: how many of its players are still sending.
struct UserState {
    live_players: usize,
}

/// The figures of a finished virtual run.
pub struct VirtualRun {
    /// Virtual seconds from the start to the last answer (or the drain's end).
    pub duration_s: f64,
    pub requests: u64,
    pub abandoned: usize,
}

/// Scrapes of the engine's `/metrics`, in virtual seconds.
const SCRAPE_EVERY_S: f64 = 1.0;

/// What the HTTP side of the simulated server would decide for a request.
#[derive(Debug, Clone, Copy)]
pub struct ServerRules {
    pub max_model_len: usize,
    /// The simulated model's `--seed`, where it stops on its own (`sim::natural_output_len`);
    /// `None` for a real engine's cell (its requests run to the trace's output length).
    pub(crate) natural_stop_seed: Option<u64>,
}

/// Runs the replay `args` over `sessions` against `engine`; records go to `collector`, the
/// engine's metrics to `recorder` (at `epoch` + virtual seconds).
pub fn run(
    args: &ReplayArgs,
    sessions: &[Session],
    engine: &mut VirtualEngine,
    server: ServerRules,
    collector: &mut Collector,
    recorder: &mut Recorder,
    epoch: f64,
) -> Result<VirtualRun> {
    let mut sim = Sim {
        args,
        sessions,
        builder: PromptBuilder {
            seed: args.seed,
            range: TokenRange::default(),
        },
        max_model_len: server.max_model_len,
        natural_stop_seed: server.natural_stop_seed,
        heap: BinaryHeap::new(),
        order: 0,
        players: Vec::new(),
        users: HashMap::new(),
        queue: (0..sessions.len()).map(|i| (i, 0u64)).collect(),
        in_flight: HashMap::new(),
        next_id: 0,
        deadline: (args.duration > 0.0).then_some(args.duration),
        requests: 0,
    };
    for user in 0..args.users {
        // As `replay::timing::ramp_delay`: the users spread evenly over --ramp-up.
        let delay = args.ramp_up.max(0.0) * f64::from(user) / f64::from(args.users.max(1));
        sim.push(delay, Wake::User(user));
    }
    let end_of_drain = sim.deadline.map(|d| d + args.drain.max(0.0));
    let mut engine_free_at: Option<f64> = None;
    let mut next_scrape = 0.0;
    let mut now = 0.0;
    loop {
        let client_at = sim.heap.peek().map(|t| t.at);
        let step_at = if engine.busy() { engine_free_at } else { None };
        now = match (client_at, step_at) {
            (None, None) => break,
            (Some(c), Some(s)) => c.min(s),
            (Some(c), None) => c,
            (None, Some(s)) => s,
        };
        if end_of_drain.is_some_and(|e| now > e) {
            now = end_of_drain.unwrap_or(now);
            break;
        }
        // Once a second, as the replay's and the metrics recorder's timers do.
        while next_scrape <= now {
            recorder.scrape(epoch + next_scrape, &engine.metrics_text())?;
            collector.close_period(next_scrape, sim.users.len(), (None, None), false)?;
            next_scrape += SCRAPE_EVERY_S;
        }
        match (client_at, step_at) {
            (Some(c), s) if s.is_none_or(|s| c < s) => {
                let t = sim.heap.pop().expect("peeked");
                sim.wake(t.at, t.wake, engine);
                // An idle engine starts a step as soon as a request arrives.
                if engine_free_at.is_none_or(|f| f < t.at) {
                    engine_free_at = Some(t.at);
                }
            }
            _ => {
                let start = engine_free_at.unwrap_or(now);
                match engine.step(start) {
                    Some(end) => {
                        engine_free_at = Some(end);
                        sim.deliver(end, collector)?;
                    }
                    // Nothing can run until a request arrives.
                    None => engine_free_at = None,
                }
            }
        }
    }
    recorder.scrape(epoch + now, &engine.metrics_text())?;
    Ok(VirtualRun {
        duration_s: now,
        requests: sim.requests,
        abandoned: sim.in_flight.len(),
    })
}

struct Sim<'a> {
    args: &'a ReplayArgs,
    sessions: &'a [Session],
    builder: PromptBuilder,
    max_model_len: usize,
    natural_stop_seed: Option<u64>,
    heap: BinaryHeap<Timed>,
    order: u64,
    players: Vec<Player>,
    users: HashMap<u32, UserState>,
    queue: std::collections::VecDeque<(usize, u64)>,
    in_flight: HashMap<u64, InFlight>,
    next_id: u64,
    deadline: Option<f64>,
    requests: u64,
}

impl Sim<'_> {
    fn push(&mut self, at: f64, wake: Wake) {
        self.order += 1;
        self.heap.push(Timed {
            at,
            order: self.order,
            wake,
        });
    }

    fn expired(&self, t: f64) -> bool {
        self.deadline.is_some_and(|d| t >= d)
    }

    fn requests_of(&self, p: &Player) -> &[TraceRequest] {
        let s = &self.sessions[p.session];
        match p.child {
            None => &s.requests,
            Some(c) => &s.children[c].requests,
        }
    }

    fn wake(&mut self, t: f64, wake: Wake, engine: &mut VirtualEngine) {
        match wake {
            Wake::User(user) => self.take_session(t, user),
            Wake::Send(p) => self.send(t, p, engine),
        }
    }

    /// A user takes the next session (the run's deadline or the sessions' end retire it).
    fn take_session(&mut self, t: f64, user: u32) {
        if self.expired(t) {
            return;
        }
        let Some((index, pass)) = self.queue.pop_front() else {
            return;
        };
        if self.args.recycle {
            self.queue.push_back((index, pass + 1));
        }
        let session = &self.sessions[index];
        let scope = pass_scope(session.scope, pass);
        let add = |child: Option<usize>, at: f64, this: &mut Self| {
            let id = this.players.len();
            this.players.push(Player {
                user,
                session: index,
                child,
                scope,
                fresh: pass == 0 && child.is_none(),
                next: 0,
                started: at,
                state: PromptState::default(),
            });
            this.push(at, Wake::Send(id));
        };
        let children: Vec<f64> = session.children.iter().map(|c| c.start_s).collect();
        add(None, t, self);
        for (ci, start_s) in children.iter().enumerate() {
            let at = t + start_s.max(0.0) * self.args.time_scale;
            add(Some(ci), at, self);
        }
        self.users.insert(
            user,
            UserState {
                live_players: 1 + children.len(),
            },
        );
    }

    /// A player is done: when it was its session's last, the user takes the next one.
    fn player_done(&mut self, t: f64, p: usize) {
        let user = self.players[p].user;
        let Some(u) = self.users.get_mut(&user) else {
            return;
        };
        u.live_players = u.live_players.saturating_sub(1);
        if u.live_players == 0 {
            self.push(t, Wake::User(user));
        }
    }

    fn send(&mut self, t: f64, p: usize, engine: &mut VirtualEngine) {
        let args = self.args;
        let requests = self.requests_of(&self.players[p]);
        let player = &self.players[p];
        // A subagent (or session) still to start when the run ends never starts.
        if self.expired(t) || player.next >= requests.len() {
            self.player_done(t, p);
            return;
        }
        let i = player.next;
        let req = requests[i].clone();
        let block_size = {
            let s = &self.sessions[player.session];
            match player.child {
                None => s.block_size,
                Some(c) => s.children[c].block_size,
            }
        };
        let session_id = {
            let s = &self.sessions[player.session];
            match player.child {
                None => s.id.clone(),
                Some(c) => s.children[c].id.clone(),
            }
        };
        let (mut input, mut hash_ids) = (req.input_tokens, &req.hash_ids[..]);
        if args.max_context > 0 && input > args.max_context {
            match args.on_long {
                OnLong::Skip => {
                    self.players[p].next += 1;
                    self.push(t, Wake::Send(p));
                    return;
                }
                OnLong::Truncate => {
                    input = args.max_context;
                    hash_ids = &hash_ids[..hash_ids.len().min((input / block_size) as usize)];
                }
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let (scope, user, fresh) = {
            let pl = &self.players[p];
            (pl.scope, pl.user, pl.fresh && i == 0)
        };
        let state = &mut self.players[p].state;
        self.builder.build(
            state,
            scope,
            block_size,
            hash_ids,
            input,
            0,
            mix(scope ^ id),
        );
        let tokens = state.tokens();
        let prompt_len = tokens.len();
        let cap = req
            .output_tokens
            .min(self.max_model_len.saturating_sub(prompt_len) as u32)
            .max(1);
        // The simulated model's own stop where the HTTP server would apply it; a real
        // engine's is unknown, so its requests run to the trace's length.
        let (output_len, natural_stop) = match self.natural_stop_seed {
            Some(seed) if !args.ignore_eos => {
                let natural = natural_output_len(seed, tokens);
                (natural.min(cap), natural <= cap)
            }
            _ => (cap, false),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        engine.submit(Request {
            prompt_len,
            hashes: block_hashes(tokens, engine.block_size()),
            output_len,
            natural_stop,
            arrived: VirtualTime(t),
            events: tx,
        });
        self.players[p].next += 1;
        let record = RequestRecord {
            id,
            user,
            session: session_id,
            index: i as u32,
            endpoint: 0,
            scheduled_s: t,
            sent_s: t,
            attempts: 1,
            fresh,
            done_s: t,
            ttft_ms: None,
            e2e_ms: 0.0,
            gaps_ms: Vec::new(),
            trace_input_tokens: input,
            trace_output_tokens: req.output_tokens,
            prompt_tokens: Some(prompt_len as u32),
            completion_tokens: None,
            cached_tokens: None,
            outcome: Outcome::Ok,
            http_status: 200,
            error: String::new(),
        };
        self.in_flight.insert(
            id,
            InFlight {
                player: p,
                events: rx,
                record,
                last_token: None,
            },
        );
    }

    /// Hands each in-flight request what the step that ended at `t` produced.
    fn deliver(&mut self, t: f64, collector: &mut Collector) -> Result<()> {
        let mut finished = Vec::new();
        for (&id, f) in &mut self.in_flight {
            while let Ok(ev) = f.events.try_recv() {
                match ev {
                    Event::Token(_) => {
                        let r = &mut f.record;
                        match f.last_token {
                            None => r.ttft_ms = Some((t - r.sent_s) * 1000.0),
                            Some(last) => r.gaps_ms.push((t - last) * 1000.0),
                        }
                        f.last_token = Some(t);
                    }
                    Event::Done {
                        completion_tokens,
                        cached_tokens,
                        ..
                    } => {
                        let r = &mut f.record;
                        r.completion_tokens = Some(completion_tokens);
                        r.cached_tokens = Some(cached_tokens as u32);
                        finished.push(id);
                    }
                    Event::Rejected(why) => {
                        let r = &mut f.record;
                        r.outcome = Outcome::Error;
                        r.http_status = 400;
                        r.error = why;
                        finished.push(id);
                    }
                }
            }
        }
        finished.sort_unstable();
        for id in finished {
            let Some(mut f) = self.in_flight.remove(&id) else {
                continue;
            };
            f.record.done_s = t;
            f.record.e2e_ms = (t - f.record.sent_s) * 1000.0;
            collector.add(&f.record)?;
            self.requests += 1;
            let p = f.player;
            let at = self.next_send(p, t);
            self.push(at, Wake::Send(p));
        }
        Ok(())
    }

    /// When player `p` sends its next request after an answer at `done`: the `--timing`
    /// strategy's wait, as `replay::timing::due` computes it.
    fn next_send(&self, p: usize, done: f64) -> f64 {
        let a = self.args;
        let pl = &self.players[p];
        let requests = self.requests_of(pl);
        let Some(req) = requests.get(pl.next) else {
            return done;
        };
        let scaled = |secs: f64| (secs.min(a.max_delay) * a.time_scale).max(0.0);
        match a.timing {
            Timing::ThinkOnly => done + scaled(req.think_time_s),
            Timing::ApiScaled => {
                done + scaled(req.think_time_s + req.api_time_s * a.api_time_scale)
            }
            Timing::Original => {
                let first = requests.first().map_or(0.0, |r| r.offset_s);
                done.max(pl.started + ((req.offset_s - first) * a.time_scale).max(0.0))
            }
        }
    }
}
