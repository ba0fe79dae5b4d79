//! Non-negative linear least squares for a handful of unknowns.
//!
//! Hand-written rather than a linear-algebra crate: the step model has five unknowns, so the
//! normal equations are a 5 × 5 system that Gaussian elimination solves in a few lines, where
//! nalgebra or ndarray would add large dependency trees for one solve. Columns are scaled to
//! unit RMS first (attention pairs are ~10⁸ where step counts are ~1), and the non-negativity
//! of step-time coefficients is kept by the classic active-set rule: a coefficient that comes
//! out negative is held at zero and the rest are solved again.

/// The solution: coefficients, their standard errors (`None` for one held at zero) and the
/// RMS residual of the (weighted) rows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Solution {
    pub(crate) coefficients: Vec<f64>,
    pub(crate) std_errors: Vec<Option<f64>>,
    pub(crate) rms_residual: f64,
}

/// Solves min ‖X b − y‖ with b ≥ 0, for `rows` of (x, y). `None` when no column is usable.
pub(crate) fn solve_nonnegative(rows: &[(Vec<f64>, f64)], unknowns: usize) -> Option<Solution> {
    let mut active: Vec<bool> = (0..unknowns)
        .map(|j| rows.iter().any(|(x, _)| x[j] != 0.0))
        .collect();
    loop {
        let cols: Vec<usize> = (0..unknowns).filter(|&j| active[j]).collect();
        if cols.is_empty() {
            return None;
        }
        let (b, cov_diag, rms) = solve_columns(rows, &cols)?;
        if let Some(worst) = cols
            .iter()
            .zip(&b)
            .filter(|(_, v)| **v < 0.0)
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(j, _)| *j)
        {
            active[worst] = false;
            continue;
        }
        let mut coefficients = vec![0.0; unknowns];
        let mut std_errors = vec![None; unknowns];
        for (k, &j) in cols.iter().enumerate() {
            coefficients[j] = b[k];
            std_errors[j] = Some(cov_diag[k].max(0.0).sqrt());
        }
        return Some(Solution {
            coefficients,
            std_errors,
            rms_residual: rms,
        });
    }
}

/// Ordinary least squares on the columns `cols`: coefficients, the diagonal of their
/// covariance, and the RMS residual.
fn solve_columns(rows: &[(Vec<f64>, f64)], cols: &[usize]) -> Option<(Vec<f64>, Vec<f64>, f64)> {
    let n = cols.len();
    let scale: Vec<f64> = cols
        .iter()
        .map(|&j| {
            let ms = rows.iter().map(|(x, _)| x[j] * x[j]).sum::<f64>() / rows.len() as f64;
            if ms > 0.0 { ms.sqrt() } else { 1.0 }
        })
        .collect();
    // Normal equations A b = c with A = XᵀX, c = Xᵀy on the scaled columns.
    let mut a = vec![vec![0.0; n]; n];
    let mut c = vec![0.0; n];
    for (x, y) in rows {
        let xs: Vec<f64> = cols.iter().zip(&scale).map(|(&j, s)| x[j] / s).collect();
        for i in 0..n {
            c[i] += xs[i] * y;
            for k in 0..n {
                a[i][k] += xs[i] * xs[k];
            }
        }
    }
    let inverse = invert(&a)?;
    let b: Vec<f64> = (0..n)
        .map(|i| (0..n).map(|k| inverse[i][k] * c[k]).sum())
        .collect();
    let sse: f64 = rows
        .iter()
        .map(|(x, y)| {
            let fit: f64 = cols
                .iter()
                .zip(&scale)
                .zip(&b)
                .map(|((&j, s), bj)| x[j] / s * bj)
                .sum();
            (y - fit).powi(2)
        })
        .sum();
    let dof = rows.len().saturating_sub(n).max(1) as f64;
    let sigma2 = sse / dof;
    let coefficients = b.iter().zip(&scale).map(|(bj, s)| bj / s).collect();
    let cov = (0..n)
        .map(|i| inverse[i][i] * sigma2 / (scale[i] * scale[i]))
        .collect();
    Some((coefficients, cov, (sse / rows.len().max(1) as f64).sqrt()))
}

/// Gauss-Jordan inversion with partial pivoting; `None` for a singular matrix.
fn invert(a: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let n = a.len();
    let mut m: Vec<Vec<f64>> = a
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let mut r = row.clone();
            r.extend((0..n).map(|k| if k == i { 1.0 } else { 0.0 }));
            r
        })
        .collect();
    for col in 0..n {
        let pivot = (col..n).max_by(|&x, &y| m[x][col].abs().total_cmp(&m[y][col].abs()))?;
        if m[pivot][col].abs() < 1e-12 {
            return None;
        }
        m.swap(col, pivot);
        let p = m[col][col];
        for v in &mut m[col] {
            *v /= p;
        }
        for r in 0..n {
            if r != col {
                let f = m[r][col];
                if f != 0.0 {
                    let pivot_row = m[col].clone();
                    for (v, pv) in m[r].iter_mut().zip(&pivot_row) {
                        *v -= f * pv;
                    }
                }
            }
        }
    }
    Some(m.into_iter().map(|r| r[n..].to_vec()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_exact_coefficients() {
        // y = 2 + 3 x1 + 0.001 x2, with x2 a thousand times larger.
        let rows: Vec<(Vec<f64>, f64)> = (0..20)
            .map(|i| {
                let x1 = f64::from(i);
                let x2 = f64::from((i * 7) % 11) * 1000.0;
                (vec![1.0, x1, x2], 2.0 + 3.0 * x1 + 0.001 * x2)
            })
            .collect();
        let s = solve_nonnegative(&rows, 3).expect("solvable");
        for (got, want) in s.coefficients.iter().zip([2.0, 3.0, 0.001]) {
            assert!((got - want).abs() < 1e-9 * want.max(1.0), "{got} vs {want}");
        }
        assert!(s.rms_residual < 1e-9);
    }

    #[test]
    fn a_coefficient_that_would_be_negative_is_held_at_zero() {
        // y = 5 − 0.5 x: the best non-negative fit drops x and fits the mean.
        let rows: Vec<(Vec<f64>, f64)> = (0..10)
            .map(|i| (vec![1.0, f64::from(i)], 5.0 - 0.5 * f64::from(i)))
            .collect();
        let s = solve_nonnegative(&rows, 2).expect("solvable");
        assert_eq!(s.coefficients[1], 0.0);
        assert_eq!(s.std_errors[1], None);
        assert!((s.coefficients[0] - 2.75).abs() < 1e-9, "{:?}", s);
    }

    #[test]
    fn an_all_zero_column_is_left_out_and_collinear_ones_refused() {
        let rows: Vec<(Vec<f64>, f64)> = (0..5)
            .map(|i| (vec![1.0, 0.0], 1.0 + f64::from(i) * 0.0))
            .collect();
        let s = solve_nonnegative(&rows, 2).expect("solvable");
        assert_eq!(s.coefficients, vec![1.0, 0.0]);
        let same: Vec<(Vec<f64>, f64)> = (0..5).map(|_| (vec![1.0, 2.0], 3.0)).collect();
        assert_eq!(solve_nonnegative(&same, 2), None);
    }
}
