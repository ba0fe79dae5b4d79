//! Repeated-run statistics: mean, standard deviation, Student-t confidence intervals and
//! Welch's t-test, so that a point's interval and the difference between two sweeps can be told
//! apart from noise.
//!
//! The t distribution's CDF is the regularized incomplete beta function, evaluated by its
//! continued fraction (Numerical Recipes §6.4, modified Lentz); quantiles are found by bisection
//! on it. That is exact to ~1e-10 for any degrees of freedom, with no table to run off the end
//! of, and spares a statistics crate for four functions.

/// Mean, sample standard deviation and count of a set of repeated measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (n - 1 in the denominator); 0 for one value.
    pub sd: f64,
}

impl Sample {
    /// `None` for no values.
    pub fn of(values: &[f64]) -> Option<Self> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Some(Self {
            n,
            mean,
            sd: var.sqrt(),
        })
    }

    /// Half-width of the two-sided `level` (e.g. 0.95) t-interval of the mean; `None` for fewer
    /// than two values.
    pub(crate) fn half_width(&self, level: f64) -> Option<f64> {
        (self.n > 1).then(|| {
            let df = (self.n - 1) as f64;
            t_quantile(0.5 + level / 2.0, df) * self.sd / (self.n as f64).sqrt()
        })
    }
}

/// Welch's unequal-variance t-test of two means: the two-sided p-value, `None` when either side
/// has fewer than two values or both have no spread.
pub(crate) fn welch_p_value(a: &Sample, b: &Sample) -> Option<f64> {
    if a.n < 2 || b.n < 2 {
        return None;
    }
    let (va, vb) = (a.sd.powi(2) / a.n as f64, b.sd.powi(2) / b.n as f64);
    let se2 = va + vb;
    if se2 <= 0.0 {
        return None;
    }
    let t = (a.mean - b.mean) / se2.sqrt();
    let df = se2.powi(2) / (va.powi(2) / (a.n - 1) as f64 + vb.powi(2) / (b.n - 1) as f64);
    Some(2.0 * (1.0 - t_cdf(t.abs(), df)))
}

/// The Student t CDF with `df` degrees of freedom.
pub(crate) fn t_cdf(t: f64, df: f64) -> f64 {
    let x = df / (df + t * t);
    let tail = 0.5 * incomplete_beta(df / 2.0, 0.5, x);
    if t >= 0.0 { 1.0 - tail } else { tail }
}

/// The `p` quantile (0 < p < 1) of the Student t distribution with `df` degrees of freedom.
fn t_quantile(p: f64, df: f64) -> f64 {
    if p == 0.5 {
        return 0.0;
    }
    if p < 0.5 {
        return -t_quantile(1.0 - p, df);
    }
    let (mut lo, mut hi) = (0.0, 1.0);
    while t_cdf(hi, df) < p && hi < 1e12 {
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// The regularized incomplete beta function I_x(a, b).
fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    // The continued fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry
    // I_x(a, b) = 1 - I_{1-x}(b, a) otherwise.
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_fraction(b, a, 1.0 - x) / b
    }
}

/// The continued fraction of the incomplete beta function (modified Lentz).
fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=300 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        let even = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
        for coef in [
            even,
            -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0)),
        ] {
            d = 1.0 + coef * d;
            if d.abs() < TINY {
                d = TINY;
            }
            c = 1.0 + coef / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9: ~1e-15 relative).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 - x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let sum: f64 = G[0] + (1..9).map(|i| G[i] / (x + i as f64)).sum::<f64>();
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_the_published_table() {
        // Two-sided 95 % critical values (the t table in any statistics text).
        for (df, t) in [
            (1.0, 12.706_205),
            (2.0, 4.302_653),
            (4.0, 2.776_445),
            (10.0, 2.228_139),
            (30.0, 2.042_272),
            (1000.0, 1.962_339),
        ] {
            let q = t_quantile(0.975, df);
            assert!((q - t).abs() < 1e-5, "df {df}: {q} against {t}");
        }
        assert!((t_quantile(0.025, 4.0) + 2.776_445).abs() < 1e-5);
    }

    #[test]
    fn the_cdf_is_a_half_at_zero_and_matches_a_known_tail() {
        assert!((t_cdf(0.0, 5.0) - 0.5).abs() < 1e-12);
        // df 1 is the Cauchy distribution: F(1) = 3/4.
        assert!((t_cdf(1.0, 1.0) - 0.75).abs() < 1e-10);
    }

    #[test]
    fn mean_sd_and_interval_of_a_small_sample() {
        let s = Sample::of(&[10.0, 12.0, 14.0]).expect("a sample");
        assert_eq!(s.n, 3);
        assert!((s.mean - 12.0).abs() < 1e-12);
        assert!((s.sd - 2.0).abs() < 1e-12);
        // 4.302653 * 2 / sqrt(3)
        let hw = s.half_width(0.95).expect("n > 1");
        assert!((hw - 4.968_275).abs() < 1e-5, "{hw}");
        assert_eq!(Sample::of(&[5.0]).expect("one").half_width(0.95), None);
        assert_eq!(Sample::of(&[]), None);
    }

    #[test]
    fn welch_tells_a_real_difference_from_noise() {
        // scipy.stats.ttest_ind([1,2,3,4,5], [2,3,4,5,9], equal_var=False): p = 0.293725 (df 6.45)
        let a = Sample::of(&[1.0, 2.0, 3.0, 4.0, 5.0]).expect("a");
        let b = Sample::of(&[2.0, 3.0, 4.0, 5.0, 9.0]).expect("b");
        let p = welch_p_value(&a, &b).expect("p");
        assert!((p - 0.293_725).abs() < 1e-5, "{p}");
        let c = Sample::of(&[20.0, 21.0, 22.0]).expect("c");
        assert!(welch_p_value(&a, &c).expect("p") < 0.05);
        assert_eq!(welch_p_value(&a, &Sample::of(&[1.0]).expect("one")), None);
    }
}
