//! Whether a metric of one configuration regressed between a baseline and a candidate.
//!
//! A regression needs both: the change is worse than the margin, AND it is significantly so
//! given the noise: Welch's one-sided test that the difference of the means goes beyond the
//! margin, not merely beyond zero. (Tested against zero, a true 3 % change measured at 6 % by
//! chance would fail a 5 % margin; tested against the margin it fails only when the noise
//! cannot account for the part beyond it.) The noise is each side's repeats; a side measured
//! once takes the configuration's run-to-run spread from the history instead (a prediction
//! test: the single value against the spread of single values). Either way the spread is never
//! taken below a noise floor (a share of the mean): repeats that replay identical requests can
//! agree to the last digit, and a zero spread would make any change, however tiny, "certain".

use crate::base::student_t::{Sample, t_cdf};

/// Which way is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// Latencies, costs, energy per token and error rates are better lower; rates, throughput,
/// interactivity and hit rates higher.
pub fn better(metric: &str) -> Better {
    if metric.ends_with("_ms")
        || metric.starts_with("usd_per")
        || metric.starts_with("joules_per")
        || metric == "error_rate"
        || metric == "duration_s"
    {
        Better::Lower
    } else {
        Better::Higher
    }
}

/// One side's measurement and its noise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Side {
    pub mean: f64,
    /// Variance of the mean.
    pub var: f64,
    /// Degrees of freedom of the variance estimate.
    pub(crate) df: f64,
    /// How many runs the mean is of.
    pub n: usize,
}

/// The rules of the gate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// A change this much worse (a share: 0.05) or less is not a regression.
    pub margin: f64,
    /// Significance level.
    pub alpha: f64,
    /// The spread is never taken below this share of the mean.
    pub noise_floor: f64,
}

impl Side {
    /// A side from its repeats; `None` for a single run (no spread of its own).
    pub(crate) fn of_repeats(s: &Sample, floor: f64) -> Option<Self> {
        (s.n > 1).then(|| {
            let sd = s.sd.max(floor * s.mean.abs());
            Side {
                mean: s.mean,
                var: sd * sd / s.n as f64,
                df: (s.n - 1) as f64,
                n: s.n,
            }
        })
    }

    /// A single run, its noise the spread of the configuration's stored single values
    /// (`history`: the stored runs' means); `None` with fewer than two of them.
    pub(crate) fn of_history(value: &Sample, history: &[f64], floor: f64) -> Option<Self> {
        let h = Sample::of(history).filter(|h| h.n > 1)?;
        // The stored values are means of each run's repeats; their spread is an upper bound
        // on the spread of one run's mean, which is what this side is.
        let sd = h.sd.max(floor * value.mean.abs());
        Some(Side {
            mean: value.mean,
            var: sd * sd / value.n as f64,
            df: (h.n - 1) as f64,
            n: value.n,
        })
    }
}

/// What the gate concluded for one metric of one configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Worse than the margin and significant: fails the gate.
    Regression,
    /// Better than the margin and significant.
    Improvement,
    /// Within the margin.
    WithinMargin,
    /// Beyond the margin but not distinguishable from the noise.
    NotSignificant,
    /// No noise estimate on either side (single runs and no history): reported, not failed.
    Untested,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Regression => "regression",
            Outcome::Improvement => "improvement",
            Outcome::WithinMargin => "within margin",
            Outcome::NotSignificant => "not significant",
            Outcome::Untested => "untested (no noise estimate)",
        }
    }
}

/// The verdict on one metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// (candidate − baseline) / baseline.
    pub change: f64,
    /// Two-sided p-value of the difference; `None` when untested.
    pub p_value: Option<f64>,
    pub outcome: Outcome,
}

/// Welch's test of two sides, `a` the baseline: the one-sided p-value of "the means differ by
/// no more than `margin` of the baseline's, in the direction they moved".
fn welch_beyond(a: &Side, b: &Side, margin: f64) -> Option<f64> {
    let se2 = a.var + b.var;
    if se2 <= 0.0 || !se2.is_finite() {
        return None;
    }
    let beyond = (b.mean - a.mean).abs() - margin * a.mean.abs();
    let t = beyond / se2.sqrt();
    let df = se2 * se2 / (a.var * a.var / a.df + b.var * b.var / b.df);
    Some(1.0 - t_cdf(t, df))
}

/// Judges a metric: `baseline` and `candidate` are each side's mean and noise (either may be
/// `None` when that side has none; one side's noise then stands for both, as the same
/// configuration measured the same way).
pub fn judge(
    metric: &str,
    baseline_mean: f64,
    candidate_mean: f64,
    baseline: Option<Side>,
    candidate: Option<Side>,
    rules: &Rules,
) -> Verdict {
    let change = if baseline_mean != 0.0 {
        (candidate_mean - baseline_mean) / baseline_mean.abs()
    } else if candidate_mean == 0.0 {
        0.0
    } else {
        f64::INFINITY * (candidate_mean - baseline_mean).signum()
    };
    let worse = match better(metric) {
        Better::Higher => -change,
        Better::Lower => change,
    };
    let (a, b) = match (baseline, candidate) {
        (Some(a), Some(b)) => (a, b),
        // One side measured once with no history: it is taken to be as noisy as the other.
        (Some(a), None) => (
            a,
            Side {
                mean: candidate_mean,
                n: 1,
                var: a.var * a.n as f64,
                df: a.df,
            },
        ),
        (None, Some(b)) => (
            Side {
                mean: baseline_mean,
                n: 1,
                var: b.var * b.n as f64,
                df: b.df,
            },
            b,
        ),
        (None, None) => {
            return Verdict {
                change,
                p_value: None,
                outcome: if worse.abs() <= rules.margin {
                    Outcome::WithinMargin
                } else {
                    Outcome::Untested
                },
            };
        }
    };
    let p_value = welch_beyond(&a, &b, rules.margin);
    let significant = p_value.is_some_and(|p| p < rules.alpha);
    let outcome = if worse.abs() <= rules.margin {
        Outcome::WithinMargin
    } else if !significant {
        Outcome::NotSignificant
    } else if worse > 0.0 {
        Outcome::Regression
    } else {
        Outcome::Improvement
    };
    Verdict {
        change,
        p_value,
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules = Rules {
        margin: 0.05,
        alpha: 0.05,
        noise_floor: 0.01,
    };

    fn side(values: &[f64]) -> Option<Side> {
        Side::of_repeats(&Sample::of(values).unwrap(), RULES.noise_floor)
    }

    fn verdict(metric: &str, a: &[f64], b: &[f64]) -> Verdict {
        let (sa, sb) = (Sample::of(a).unwrap(), Sample::of(b).unwrap());
        judge(metric, sa.mean, sb.mean, side(a), side(b), &RULES)
    }

    #[test]
    fn a_clear_slowdown_of_a_latency_is_a_regression() {
        let v = verdict("tpot_p50_ms", &[10.0, 10.1, 9.9], &[11.0, 11.1, 10.9]);
        assert_eq!(v.outcome, Outcome::Regression);
        assert!((v.change - 0.1).abs() < 1e-9);
        assert!(v.p_value.unwrap() < 0.01);
    }

    #[test]
    fn the_same_change_of_a_throughput_is_an_improvement() {
        let v = verdict("total_tps_per_gpu", &[10.0, 10.1, 9.9], &[11.0, 11.1, 10.9]);
        assert_eq!(v.outcome, Outcome::Improvement);
    }

    #[test]
    fn a_change_within_the_margin_never_fails_however_certain() {
        let v = verdict("tpot_p50_ms", &[10.0, 10.0, 10.0], &[10.3, 10.3, 10.3]);
        assert_eq!(v.outcome, Outcome::WithinMargin);
    }

    #[test]
    fn identical_repeats_do_not_make_a_tiny_change_significant() {
        // Zero spread on both sides: without the floor the p-value would be 0 (or undefined).
        let v = verdict("tpot_p50_ms", &[10.0, 10.0, 10.0], &[10.05, 10.05, 10.05]);
        assert!(v.p_value.unwrap() > 0.05, "{v:?}");
        let loose = Rules {
            margin: 0.0,
            ..RULES
        };
        let (a, b) = (side(&[10.0; 3]), side(&[10.05; 3]));
        let v = judge("tpot_p50_ms", 10.0, 10.05, a, b, &loose);
        assert_eq!(v.outcome, Outcome::NotSignificant);
    }

    #[test]
    fn a_change_just_beyond_the_margin_is_failed_only_when_the_noise_cannot_explain_it() {
        // 6 % slower on average, 1.5 % repeat spread: the 1 % beyond the margin is noise.
        let v = verdict("tpot_p50_ms", &[10.0, 10.15, 9.85], &[10.6, 10.75, 10.45]);
        assert_eq!(v.outcome, Outcome::NotSignificant, "{v:?}");
        // 6 % slower with a 0.1 % spread (raised to the 1 % floor): still inside the noise.
        let v = verdict("tpot_p50_ms", &[10.0, 10.01, 9.99], &[10.6, 10.61, 10.59]);
        assert_eq!(v.outcome, Outcome::NotSignificant, "{v:?}");
        // 10 % slower with the same spread: beyond the margin by more than the noise.
        let v = verdict("tpot_p50_ms", &[10.0, 10.01, 9.99], &[11.0, 11.01, 10.99]);
        assert_eq!(v.outcome, Outcome::Regression, "{v:?}");
    }

    #[test]
    fn a_change_beyond_the_margin_inside_the_noise_is_not_failed() {
        let v = verdict("tpot_p50_ms", &[8.0, 10.0, 12.0], &[9.0, 11.0, 13.0]);
        assert_eq!(v.outcome, Outcome::NotSignificant);
    }

    #[test]
    fn a_single_run_is_judged_against_the_history_spread() {
        let history = [100.0, 101.0, 99.0, 100.5, 99.5];
        let base = Sample::of(&[100.0]).unwrap();
        let quiet = Side::of_history(&base, &history, RULES.noise_floor);
        let slow = Sample::of(&[80.0]).unwrap();
        let cand = Side::of_history(&slow, &history, RULES.noise_floor);
        let v = judge("total_tps_per_gpu", 100.0, 80.0, quiet, cand, &RULES);
        assert_eq!(v.outcome, Outcome::Regression);
        let noisy = [100.0, 130.0, 70.0, 120.0, 80.0];
        let v = judge(
            "total_tps_per_gpu",
            100.0,
            80.0,
            Side::of_history(&base, &noisy, RULES.noise_floor),
            Side::of_history(&slow, &noisy, RULES.noise_floor),
            &RULES,
        );
        assert_eq!(v.outcome, Outcome::NotSignificant);
    }

    #[test]
    fn single_runs_without_history_are_untested_not_failed() {
        let v = judge("tpot_p50_ms", 10.0, 20.0, None, None, &RULES);
        assert_eq!(v.outcome, Outcome::Untested);
        assert_eq!(v.p_value, None);
    }

    #[test]
    fn directions() {
        assert_eq!(better("ttft_p99_ms"), Better::Lower);
        assert_eq!(better("usd_per_mtok_total_neocloud"), Better::Lower);
        assert_eq!(better("total_tps_per_gpu"), Better::Higher);
        assert_eq!(better("client_hit_rate"), Better::Higher);
    }
}
