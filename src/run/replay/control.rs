//! Replay controls: admission (concurrency limits, token-per-minute buckets, the per-period cap
//! on new prompt tokens, the working-set cap), the adaptive user controller, the circuit breaker
//! and the SLO that defines goodput. Flag names follow kv-cache-tester where they fit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::base::workload::control::ControlArgs;

/// A token bucket: `rate` tokens a second, holding at most `capacity`. A request larger than
/// the capacity waits for a full bucket and then leaves it in debt, so budgets hold on average
/// whatever the request sizes.
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    capacity: f64,
    level: f64,
    last: Instant,
}

impl TokenBucket {
    /// A bucket for `budget` tokens a minute. The burst is 0.6 s of budget, so over any minute
    /// at most 1% more than the budget (plus one request) is admitted.
    fn per_minute(budget: u64, now: Instant) -> Self {
        let rate = budget as f64 / 60.0;
        Self {
            rate,
            capacity: rate * 0.6,
            level: rate * 0.6,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.level = (self.level + dt * self.rate).min(self.capacity);
        self.last = now;
    }

    /// How long until `cost` may be taken; `None` when it may be now.
    fn wait_for(&mut self, cost: f64, now: Instant) -> Option<Duration> {
        self.refill(now);
        let need = cost.min(self.capacity);
        (self.level < need)
            .then(|| Duration::from_secs_f64((need - self.level) / self.rate.max(1e-9)))
    }

    fn take(&mut self, cost: f64) {
        self.level -= cost;
    }

    /// The fill level as a share of the capacity, for periods.csv.
    fn fill(&self) -> f64 {
        (self.level / self.capacity.max(1e-9)).clamp(-1.0, 1.0)
    }
}

/// What admission needs to know about a request.
pub(crate) struct AdmitRequest {
    pub user: u32,
    /// Which of the user's contexts it extends: 0 for its session, `k + 1` for the session's
    /// `k`-th subagent, which runs beside it with a context of its own.
    pub context: u32,
    pub input_tokens: u32,
    pub output_tokens: u32,
    /// Prompt tokens the server is not expected to have cached.
    pub(crate) new_tokens: u32,
}

#[derive(Debug, Default)]
struct Gate {
    in_flight: u32,
    prefill: u32,
    decode: u32,
    itpm: Option<TokenBucket>,
    otpm: Option<TokenBucket>,
    period: u64,
    period_new_tokens: u64,
    /// Live contexts by (user, context): tokens and last activity. A user with subagents
    /// running holds its session's context and each subagent's.
    working_set: HashMap<(u32, u32), (u64, Instant)>,
}

/// Admission control shared by every user of a run.
pub(crate) struct Admission {
    args: ControlArgs,
    start: Instant,
    period_s: f64,
    gate: Mutex<Gate>,
    changed: Notify,
}

/// A request admitted and in flight; dropping it releases its slots.
pub(crate) struct Permit<'a> {
    admission: &'a Admission,
    decoding: bool,
}

impl Permit<'_> {
    /// The request's first token arrived: it moves from prefill to decode.
    pub(crate) fn first_token(&mut self) {
        if self.decoding {
            return;
        }
        self.decoding = true;
        let mut g = self.admission.lock();
        g.prefill -= 1;
        g.decode += 1;
        drop(g);
        self.admission.changed.notify_waiters();
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut g = self.admission.lock();
        g.in_flight -= 1;
        if self.decoding {
            g.decode -= 1;
        } else {
            g.prefill -= 1;
        }
        drop(g);
        self.admission.changed.notify_waiters();
    }
}

impl Admission {
    pub fn new(args: &ControlArgs, start: Instant, period_s: f64) -> Self {
        let bucket = |budget: u64| (budget > 0).then(|| TokenBucket::per_minute(budget, start));
        Self {
            gate: Mutex::new(Gate {
                itpm: bucket(args.itpm_budget),
                otpm: bucket(args.otpm_budget),
                ..Gate::default()
            }),
            args: args.clone(),
            start,
            period_s,
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until every limit lets `req` through, then takes its share of each.
    pub(crate) async fn admit(&self, req: &AdmitRequest) -> Permit<'_> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait = {
                let mut g = self.lock();
                match self.check(&mut g, req) {
                    None => {
                        self.take(&mut g, req);
                        return Permit {
                            admission: self,
                            decoding: false,
                        };
                    }
                    Some(w) => w,
                }
            };
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// `None` when `req` may go now; else how long to wait at most before looking again.
    fn check(&self, g: &mut Gate, req: &AdmitRequest) -> Option<Duration> {
        let a = &self.args;
        let now = Instant::now();
        let full = |limit: u32, count: u32| limit > 0 && count >= limit;
        // Slot limits are released by other requests, which notify.
        let poll = Duration::from_millis(250);
        if full(a.max_concurrent_requests, g.in_flight)
            || full(a.max_prefill_concurrent, g.prefill)
            || full(a.max_decode_concurrent, g.decode)
        {
            return Some(poll);
        }
        if a.max_new_tokens_per_period > 0 {
            let elapsed = now.saturating_duration_since(self.start).as_secs_f64();
            let period = (elapsed / self.period_s) as u64;
            if period != g.period {
                g.period = period;
                g.period_new_tokens = 0;
            }
            if g.period_new_tokens > 0
                && g.period_new_tokens + u64::from(req.new_tokens) > a.max_new_tokens_per_period
            {
                let next = (period + 1) as f64 * self.period_s - elapsed;
                return Some(Duration::from_secs_f64(next.max(0.001)));
            }
        }
        // A user not yet live waits until its first prompt fits beside every live context; a
        // live user's requests (its subagents' included) go, and their contexts count.
        if a.max_working_set_tokens > 0 {
            let max_age = Duration::from_secs_f64(a.cache_max_age.max(0.0));
            g.working_set
                .retain(|_, (_, last)| now.saturating_duration_since(*last) <= max_age);
        }
        if a.max_working_set_tokens > 0 && !g.working_set.keys().any(|(u, _)| *u == req.user) {
            let live: u64 = g.working_set.values().map(|(t, _)| t).sum();
            if !g.working_set.is_empty()
                && live + u64::from(req.input_tokens) > a.max_working_set_tokens
            {
                return Some(poll);
            }
        }
        let mut wait = None;
        if let Some(b) = g.itpm.as_mut() {
            wait = b.wait_for(f64::from(req.input_tokens), now);
        }
        if let Some(b) = g.otpm.as_mut() {
            wait = wait.max(b.wait_for(f64::from(req.output_tokens), now));
        }
        wait
    }

    fn take(&self, g: &mut Gate, req: &AdmitRequest) {
        g.in_flight += 1;
        g.prefill += 1;
        g.period_new_tokens += u64::from(req.new_tokens);
        if let Some(b) = g.itpm.as_mut() {
            b.take(f64::from(req.input_tokens));
        }
        if let Some(b) = g.otpm.as_mut() {
            b.take(f64::from(req.output_tokens));
        }
        if self.args.max_working_set_tokens > 0 {
            g.working_set.insert(
                (req.user, req.context),
                (
                    u64::from(req.input_tokens) + u64::from(req.output_tokens),
                    Instant::now(),
                ),
            );
        }
    }

    /// A user's session ended: its contexts (its subagents' too) leave the working set.
    pub fn leave(&self, user: u32) {
        let mut g = self.lock();
        let before = g.working_set.len();
        g.working_set.retain(|(u, _), _| *u != user);
        let left = g.working_set.len() < before;
        drop(g);
        if left {
            self.changed.notify_waiters();
        }
    }

    /// A subagent finished: its context leaves the working set; its parent's stays.
    pub(crate) fn leave_context(&self, user: u32, context: u32) {
        if self.lock().working_set.remove(&(user, context)).is_some() {
            self.changed.notify_waiters();
        }
    }

    /// Token-bucket fill levels (share of capacity) for periods.csv.
    pub(crate) fn bucket_fill(&self) -> (Option<f64>, Option<f64>) {
        let mut g = self.lock();
        let now = Instant::now();
        let fill = |b: &mut Option<TokenBucket>| {
            b.as_mut().map(|b| {
                b.refill(now);
                b.fill()
            })
        };
        let i = fill(&mut g.itpm);
        let o = fill(&mut g.otpm);
        (i, o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capped(tokens: u64) -> Admission {
        let mut args = crate::base::workload::replay::parse(&[])
            .expect("defaults parse")
            .control;
        args.max_working_set_tokens = tokens;
        Admission::new(&args, Instant::now(), 30.0)
    }

    fn request(user: u32, context: u32, input_tokens: u32) -> AdmitRequest {
        AdmitRequest {
            user,
            context,
            input_tokens,
            output_tokens: 0,
            new_tokens: input_tokens,
        }
    }

    #[test]
    fn the_working_set_counts_a_parent_and_its_running_subagents() {
        let a = capped(1000);
        let mut g = a.lock();
        // User 0: its session (600 tokens) and a subagent (300) beside it.
        for r in [request(0, 0, 600), request(0, 1, 300)] {
            assert!(a.check(&mut g, &r).is_none(), "a live user's requests go");
            a.take(&mut g, &r);
        }
        assert!(
            a.check(&mut g, &request(1, 0, 200)).is_some(),
            "600 + 300 + 200 is over 1000: the new user waits"
        );
        drop(g);
        a.leave_context(0, 1);
        let mut g = a.lock();
        assert!(
            a.check(&mut g, &request(1, 0, 200)).is_none(),
            "the subagent finished: 600 + 200 fits"
        );
        drop(g);
        a.leave(0);
        assert!(
            a.lock().working_set.is_empty(),
            "the session took its contexts"
        );
    }

    #[test]
    fn a_bucket_admits_its_budget_and_no_more() {
        let t0 = Instant::now();
        let mut b = TokenBucket::per_minute(6000, t0);
        let mut admitted = 0.0;
        let mut t = t0;
        // Demand far above the budget, in 50-token requests, for a simulated minute.
        while t < t0 + Duration::from_secs(60) {
            match b.wait_for(50.0, t) {
                None => {
                    b.take(50.0);
                    admitted += 50.0;
                }
                Some(w) => t += w.max(Duration::from_millis(1)),
            }
        }
        assert!((6000.0..=6000.0 * 1.02).contains(&admitted), "{admitted}");
    }
}
