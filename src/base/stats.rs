//! Summary statistics shared by the trace analysis, the synthetic testers and the oracle, so
//! that a percentile means the same in every report (and none of them imports another for it).

/// Percentile of an ascending-sorted list with numpy's default (linear) interpolation, `p` in
/// 0..=100; 0 for an empty list.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

/// The mean and the population standard deviation (numpy's `std`, Python's
/// `statistics.pstdev`) of `v`; `None` for no values.
pub(crate) fn mean_pstdev(v: &[f64]) -> Option<(f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    Some((mean, std))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_linearly_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 100.0), 4.0);
        assert_eq!(percentile(&v, 50.0), 2.5);
        // numpy.percentile([1, 2, 3, 4], 90) == 3.7
        assert!((percentile(&v, 90.0) - 3.7).abs() < 1e-12);
    }

    #[test]
    fn one_value_is_every_percentile_and_none_is_zero() {
        assert_eq!(percentile(&[7.0], 10.0), 7.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn the_standard_deviation_is_the_populations() {
        // numpy.std([2, 4, 4, 4, 5, 5, 7, 9]) == 2.0
        assert_eq!(
            mean_pstdev(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]),
            Some((5.0, 2.0))
        );
        assert_eq!(mean_pstdev(&[3.0]), Some((3.0, 0.0)));
        assert_eq!(mean_pstdev(&[]), None);
    }
}
