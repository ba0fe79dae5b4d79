//! The run's feedback loops: the circuit breaker that stops a run after a wall of errors, and
//! the adaptive controller that moves the user count to the largest that holds the TTFT target.

use std::collections::VecDeque;

use hdrhistogram::Histogram;

use crate::base::workload::control::{ControlArgs, TtftMetric};
use crate::data::artifact::schema::{Adaptive, AdaptiveStep};

/// Stops a run after a wall of errors: `max` in a row, all within `window`.
pub(crate) struct Breaker {
    max: u32,
    window: f64,
    streak: u32,
    streak_start_s: f64,
}

impl Breaker {
    pub fn new(max: u32, window: f64) -> Self {
        Self {
            max,
            window,
            streak: 0,
            streak_start_s: 0.0,
        }
    }

    /// Records a finished request at `t_s`; returns why the run must stop, if it must.
    pub fn record(&mut self, ok: bool, t_s: f64) -> Option<String> {
        if self.max == 0 {
            return None;
        }
        if ok {
            self.streak = 0;
            return None;
        }
        if self.streak == 0 || t_s - self.streak_start_s > self.window {
            self.streak = 0;
            self.streak_start_s = t_s;
        }
        self.streak += 1;
        (self.streak >= self.max).then(|| {
            format!(
                "circuit breaker: {} errors in a row within {:.0}s",
                self.streak, self.window
            )
        })
    }
}

/// The adaptive user controller.
///
/// After each change of the user count it waits `ttft_window` periods, then judges the TTFT
/// statistic over just those periods against the target (and the decode speed against its
/// floor). Until the target is first missed it doubles the users; from then on it bisects
/// between the largest count that held the target and the smallest that did not, and holds at
/// the former once they are one apart: that count is the capacity. A held count that later
/// misses the target (the cache filled, say) reopens the search below it. It therefore settles
/// within `ttft_window × (2·log2(max_users) + 2)` periods.
pub(crate) struct Controller {
    max_users: u32,
    target_ms: f64,
    metric: TtftMetric,
    window: u32,
    min_decode_tps: f64,
    current: u32,
    good: Option<u32>,
    bad: Option<u32>,
    recent: VecDeque<(Histogram<u64>, f64, u64)>,
    pub history: Vec<AdaptiveStep>,
}

impl Controller {
    pub fn new(args: &ControlArgs, start_users: u32, max_users: u32) -> Self {
        Self {
            max_users: max_users.max(1),
            target_ms: args.max_ttft * 1000.0,
            metric: args.ttft_metric,
            window: args.ttft_window.max(1),
            min_decode_tps: args.min_output_tokens_per_req,
            current: start_users.clamp(1, max_users.max(1)),
            good: None,
            bad: None,
            recent: VecDeque::new(),
            history: Vec::new(),
        }
    }

    #[cfg(test)]
    fn users(&self) -> u32 {
        self.current
    }

    /// The largest user count seen to hold the target.
    #[cfg(test)]
    fn capacity(&self) -> Option<u32> {
        self.good
    }

    /// Feeds a closed period: its TTFT histogram (µs), summed decode speeds and their count.
    /// Returns the new user count when it changes.
    pub(crate) fn on_period(
        &mut self,
        period: u32,
        ttft: &Histogram<u64>,
        decode_tps_sum: f64,
        decode_n: u64,
    ) -> Option<u32> {
        self.recent
            .push_back((ttft.clone(), decode_tps_sum, decode_n));
        if self.recent.len() < self.window as usize {
            return None;
        }
        // A window in which nothing finished says nothing yet: wait up to three windows for
        // an answer; none by then means first tokens take longer than that, over any target.
        let answered = self.recent.iter().any(|(h, _, _)| !h.is_empty());
        if !answered && self.recent.len() < 3 * self.window as usize {
            return None;
        }
        let mut all = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("bounds");
        let (mut tps_sum, mut tps_n) = (0.0, 0u64);
        for (h, s, n) in &self.recent {
            let _ = all.add(h);
            tps_sum += s;
            tps_n += n;
        }
        self.recent.clear();
        let ms = |us: u64| us as f64 / 1000.0;
        let ttft_ms = (!all.is_empty()).then(|| match self.metric {
            TtftMetric::Avg => all.mean() / 1000.0,
            TtftMetric::P50 => ms(all.value_at_quantile(0.5)),
            TtftMetric::P90 => ms(all.value_at_quantile(0.9)),
            TtftMetric::P95 => ms(all.value_at_quantile(0.95)),
            TtftMetric::P99 => ms(all.value_at_quantile(0.99)),
            TtftMetric::Max => ms(all.max()),
        });
        let decode_tps = (tps_n > 0).then(|| tps_sum / tps_n as f64);
        let within = ttft_ms.is_some_and(|t| t <= self.target_ms)
            && decode_tps.is_none_or(|d| d >= self.min_decode_tps);
        let c = self.current;
        if within {
            self.good = Some(self.good.map_or(c, |g| g.max(c)));
            if self.bad.is_some_and(|b| b <= c) {
                self.bad = None;
            }
        } else {
            self.bad = Some(self.bad.map_or(c, |b| b.min(c)));
            if self.good.is_some_and(|g| g >= c) {
                // The held count stopped holding: search below it again.
                self.good = None;
            }
        }
        let next = match (self.good, self.bad) {
            (_, None) => c.saturating_mul(2).min(self.max_users).max(c),
            (None, Some(b)) => (b / 2).max(1),
            (Some(g), Some(b)) if b <= g + 1 => g,
            (Some(g), Some(b)) => g + (b - g) / 2,
        }
        .min(self.max_users);
        self.history.push(AdaptiveStep {
            period,
            users: c,
            ttft_ms,
            decode_tps,
            within_target: within,
            next_users: next,
        });
        (next != c).then(|| {
            self.current = next;
            next
        })
    }

    /// The controller's part of summary.json.
    pub fn summary(&self) -> Adaptive {
        Adaptive {
            target_ttft_ms: self.target_ms,
            ttft_metric: self.metric,
            ttft_window_periods: self.window,
            max_users: self.max_users,
            capacity_users: self.good,
            smallest_users_over_target: self.bad,
            settled: matches!((self.good, self.bad), (Some(g), Some(b)) if b <= g + 1)
                || self.good == Some(self.max_users),
            steps: self.history.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(ms: &[f64]) -> Histogram<u64> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("bounds");
        for m in ms {
            h.record((m * 1000.0) as u64).expect("record");
        }
        h
    }

    fn defaults() -> ControlArgs {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            control: ControlArgs,
        }
        <Flags as clap::Parser>::parse_from(["test"]).control
    }

    /// A server whose TTFT grows by `ms_per_user` with each user.
    fn settle(ms_per_user: f64, target_s: f64, max: u32) -> (Controller, u32) {
        let mut args = defaults();
        args.max_ttft = target_s;
        args.ttft_window = 1;
        let mut c = Controller::new(&args, 1, max);
        let mut periods = 0;
        for p in 0..200 {
            let ttft = f64::from(c.users()) * ms_per_user;
            c.on_period(p, &hist(&[ttft, ttft]), 0.0, 0);
            periods = p;
            if c.history.len() >= 3
                && c.history[c.history.len() - 3..]
                    .iter()
                    .all(|s| s.users == s.next_users)
            {
                break;
            }
        }
        (c, periods)
    }

    #[test]
    fn the_controller_converges_on_the_largest_count_that_holds_the_target() {
        // 2 s target at 90 ms per user: 22 users hold it (1.98 s), 23 do not.
        let (c, periods) = settle(90.0, 2.0, 64);
        assert_eq!(c.capacity(), Some(22));
        assert_eq!(c.users(), 22);
        assert!(periods <= 2 * 6 + 2 + 3, "settled in {periods} periods");
        // Capped by --max-users when the target is never missed.
        let (c, _) = settle(1.0, 2.0, 16);
        assert_eq!((c.capacity(), c.users()), (Some(16), 16));
    }

    #[test]
    fn the_breaker_needs_a_streak_within_its_window() {
        let mut b = Breaker::new(3, 10.0);
        assert!(b.record(false, 0.0).is_none());
        assert!(b.record(false, 1.0).is_none());
        assert!(b.record(true, 2.0).is_none(), "a success ends the streak");
        assert!(b.record(false, 3.0).is_none());
        assert!(b.record(false, 4.0).is_none());
        assert!(
            b.record(false, 20.0).is_none(),
            "outside the window: a new streak"
        );
        assert!(b.record(false, 21.0).is_none());
        assert!(b.record(false, 22.0).is_some());
    }
}
