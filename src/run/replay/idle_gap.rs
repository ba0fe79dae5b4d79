//! The whole-system idle cap (`--system-idle-gap-cap`): the replay never sits longer than the
//! cap with nothing in flight while requests wait for their time.
//!
//! Follows AIPerf 0.13.0 `timing/strategies/agentic_replay.py` (`enforce_system_idle_cap`):
//! once nothing is in flight, if the earliest pending wait ends later than the cap after the
//! system went idle, every pending wait is moved earlier by the same excess. Moving them all by
//! one amount keeps their order and spacing (a per-wait clamp would fire every waiter at once).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Now, on tokio's clock (which tests can pause and advance).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// How far the pending waits must move so that an idle period that began at `idle_since` ends
/// by `idle_since + cap`, given the earliest pending wait (already moved by earlier shifts).
pub(super) fn idle_shift(idle_since: Instant, cap: Duration, earliest: Instant) -> Duration {
    earliest.saturating_duration_since(idle_since + cap)
}

#[derive(Default)]
struct State {
    in_flight: usize,
    /// When the last request in flight finished (None while one is in flight).
    idle_since: Option<Instant>,
    /// How far every wait has been moved earlier so far.
    shift: Duration,
    /// The pending waits, by waiter, as scheduled (before the shift).
    pending: BTreeMap<u64, Instant>,
    next_waiter: u64,
    /// Times the waits were moved, for the run's record.
    jumps: u64,
}

/// The system-idle clock shared by every lane of a run.
pub(super) struct SystemIdle {
    cap: Duration,
    state: Mutex<State>,
    changed: Notify,
}

impl SystemIdle {
    pub(super) fn new(cap_s: f64, start: Instant) -> Self {
        Self {
            cap: Duration::from_secs_f64(cap_s.max(0.0)),
            state: Mutex::new(State {
                idle_since: Some(start),
                ..State::default()
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A request was sent.
    pub(super) fn sent(&self) {
        let mut s = self.lock();
        s.in_flight += 1;
        s.idle_since = None;
    }

    /// A request finished: with none left in flight, an idle period starts now.
    pub(super) fn finished(&self) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.idle_since = Some(now());
        }
        drop(s);
        self.changed.notify_waiters();
    }

    /// Seconds skipped so far and how many times waits were moved.
    pub(super) fn skipped(&self) -> (f64, u64) {
        let s = self.lock();
        (s.shift.as_secs_f64(), s.jumps)
    }

    /// Applies the cap if the system is idle: moves every pending wait earlier by the excess.
    fn enforce(&self, s: &mut State) {
        let (Some(idle_since), Some(&earliest)) = (s.idle_since, s.pending.values().min()) else {
            return;
        };
        let earliest = earliest.checked_sub(s.shift).unwrap_or(earliest);
        let excess = idle_shift(idle_since, self.cap, earliest);
        if excess > Duration::ZERO {
            s.shift += excess;
            s.jumps += 1;
            self.changed.notify_waiters();
        }
    }

    /// Waits until `at`, or earlier by the shifts the cap makes while this waits. Dropped
    /// before then (a deadline won the race), the wait stops counting as pending.
    pub(super) async fn wait_until(&self, at: Instant) {
        let pending = Pending::register(self, at);
        loop {
            let changed = self.changed.notified();
            let due = {
                let mut s = self.lock();
                self.enforce(&mut s);
                let due = at.checked_sub(s.shift).unwrap_or(at);
                if now() >= due {
                    break;
                }
                // Wake when the idle period reaches the cap, to move the waits then.
                match s.idle_since {
                    Some(idle) => due.min(idle + self.cap),
                    None => due,
                }
            };
            tokio::select! {
                () = tokio::time::sleep_until(due.into()) => {}
                () = changed => {}
            }
        }
        drop(pending);
    }
}

/// A wait in [`SystemIdle`]'s pending set for as long as it lives.
struct Pending<'a> {
    idle: &'a SystemIdle,
    id: u64,
}

impl<'a> Pending<'a> {
    fn register(idle: &'a SystemIdle, at: Instant) -> Self {
        let mut s = idle.lock();
        let id = s.next_waiter;
        s.next_waiter += 1;
        s.pending.insert(id, at);
        Self { idle, id }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.idle.lock().pending.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn no_shift_while_the_earliest_wait_ends_within_the_cap() {
        let t = Instant::now();
        assert_eq!(idle_shift(t, 10 * S, t + 4 * S), Duration::ZERO);
        assert_eq!(idle_shift(t, 10 * S, t + 10 * S), Duration::ZERO);
    }

    #[test]
    fn the_excess_over_the_cap_is_the_shift() {
        let t = Instant::now();
        assert_eq!(idle_shift(t, 10 * S, t + 250 * S), 240 * S);
    }

    /// Long enough that no loaded machine takes it to wake a task: a wait that ends well
    /// before this was moved by the cap, not delayed.
    const LONG: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn an_idle_system_moves_every_wait_and_keeps_their_order() {
        let start = now();
        let idle = std::sync::Arc::new(SystemIdle::new(0.05, start));
        let woke = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut tasks = tokio::task::JoinSet::new();
        for (name, at) in [("b", LONG + S), ("a", LONG)] {
            let (idle, woke) = (idle.clone(), woke.clone());
            tasks.spawn(async move {
                idle.wait_until(start + at).await;
                woke.lock().expect("lock").push((name, now() - start));
                // `a` sends a request: `b` cannot move until its answer is in.
                if name == "a" {
                    idle.sent();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    idle.finished();
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let woke = woke.lock().expect("lock").clone();
        assert_eq!(
            woke.iter().map(|w| w.0).collect::<Vec<_>>(),
            ["a", "b"],
            "order kept"
        );
        assert!(
            woke[1].1 < LONG / 2,
            "both moved well before their time: {woke:?}"
        );
        let (skipped, jumps) = idle.skipped();
        assert!(
            jumps >= 1 && skipped > (LONG / 2).as_secs_f64(),
            "{skipped} s in {jumps}"
        );
    }

    #[tokio::test]
    async fn nothing_moves_while_a_request_is_in_flight() {
        let start = now();
        let idle = SystemIdle::new(0.01, start);
        idle.sent();
        let due = Duration::from_millis(300);
        idle.wait_until(start + due).await;
        assert!(now() - start >= due, "never before its time");
        assert_eq!(idle.skipped(), (0.0, 0));
    }

    #[tokio::test]
    async fn an_abandoned_wait_no_longer_holds_the_others_back() {
        let start = now();
        let idle = SystemIdle::new(0.05, start);
        // Were the abandoned wait (due at LONG) still counted as the earliest, the next one
        // (due at LONG + 20 s) would be moved only by LONG and wake about 20 s in.
        let abandoned =
            tokio::time::timeout(Duration::from_millis(10), idle.wait_until(start + LONG));
        assert!(abandoned.await.is_err(), "abandoned before it was due");
        idle.wait_until(start + LONG + 20 * S).await;
        assert!(
            now() - start < 10 * S,
            "moved as if alone: {:?}",
            now() - start
        );
    }
}
