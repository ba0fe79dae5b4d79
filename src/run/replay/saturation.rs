//! The over-saturation stop (`--stop-when-saturated S`): a run whose queue grows without bound
//! can only give an invalid point, so once S seconds have been watched, the replay stops when
//! the requests in flight and the TTFT median both grew from the middle third of the run so far
//! to its last third by more than collect's over-saturation thresholds (`crate::base::validity`).

use crate::base::validity::ValidityThresholds;

/// What the watch has seen: the requests in flight once a tick, and each answer's TTFT by when
/// its first token came (by send time, the late requests of a growing queue have not answered
/// yet and the last third would hold only the lucky ones).
pub(crate) struct SaturationWatch {
    after_s: f64,
    in_flight_growth: f64,
    ttft_growth: f64,
    in_flight: Vec<(f64, f64)>,
    ttft: Vec<(f64, f64)>,
}

impl SaturationWatch {
    /// A watch that judges from `after_s` seconds on; `None` for 0 (no stop).
    pub fn new(after_s: f64) -> Option<Self> {
        let t = ValidityThresholds::default();
        (after_s > 0.0).then(|| Self {
            after_s,
            in_flight_growth: t.max_in_flight_growth,
            ttft_growth: t.max_ttft_growth,
            in_flight: Vec::new(),
            ttft: Vec::new(),
        })
    }

    pub(crate) fn record_ttft(&mut self, sent_s: f64, ttft_ms: f64) {
        self.ttft.push((sent_s + ttft_ms / 1000.0, ttft_ms));
    }

    /// Records the requests in flight at `now_s`; returns why the run should stop, if it is
    /// over-saturated.
    pub fn sample(&mut self, now_s: f64, in_flight: usize) -> Option<String> {
        self.in_flight.push((now_s, in_flight as f64));
        if now_s < self.after_s {
            return None;
        }
        let (mid, last) = ((now_s / 3.0, 2.0 * now_s / 3.0), (2.0 * now_s / 3.0, now_s));
        let mean_in = |(lo, hi): (f64, f64)| {
            let v: Vec<f64> = self
                .in_flight
                .iter()
                .filter(|(t, _)| *t >= lo && *t <= hi)
                .map(|(_, q)| *q)
                .collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        let median_ttft = |(lo, hi): (f64, f64)| {
            let mut v: Vec<f64> = self
                .ttft
                .iter()
                .filter(|(t, _)| *t >= lo && *t < hi)
                .map(|(_, x)| *x)
                .collect();
            v.sort_by(f64::total_cmp);
            (!v.is_empty()).then(|| crate::base::stats::percentile(&v, 50.0))
        };
        let (q2, q3) = (mean_in(mid)?, mean_in(last)?);
        let (t2, t3) = (median_ttft(mid)?, median_ttft(last)?);
        (q2 > 0.0 && q3 > self.in_flight_growth * q2 && t3 > self.ttft_growth * t2.max(1e-9)).then(
            || {
                format!(
                    "over-saturated, stopped at {now_s:.0} s: requests in flight rose from {q2:.1} to {q3:.1} and the TTFT median from {t2:.0} to {t3:.0} ms"
                )
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_that_keeps_growing_stops_the_run_once_watched_long_enough() {
        let mut w = SaturationWatch::new(10.0).expect("on");
        let mut stopped = None;
        for s in 1..=30 {
            let t = f64::from(s);
            w.record_ttft(t - 0.6, 100.0 * t);
            if let Some(why) = w.sample(t, (5 * s) as usize) {
                stopped = Some((s, why));
                break;
            }
        }
        let (at, why) = stopped.expect("stopped");
        assert_eq!(at, 10, "not before the watch's 10 s");
        assert!(why.starts_with("over-saturated"), "{why}");
    }

    #[test]
    fn a_steady_queue_runs_on_and_zero_turns_the_watch_off() {
        let mut w = SaturationWatch::new(5.0).expect("on");
        for s in 1..=60 {
            let t = f64::from(s);
            w.record_ttft(t - 0.5, 100.0 + f64::from(s % 3));
            assert_eq!(w.sample(t, 8 + (s % 2) as usize), None);
        }
        assert!(SaturationWatch::new(0.0).is_none());
    }
}
