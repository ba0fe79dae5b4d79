//! Pareto frontiers: the cells no other cell beats on both throughput and latency.
//!
//! x is better higher, y as [`Better`] says (the panels: `collect::panels`); a point is on the
//! frontier when no point has at least its x and at least as good a y, with one of them
//! strictly better. Identical points do not dominate each other, so duplicates are
//! on (or off) the frontier together.

use serde::Serialize;

/// Which way a panel's y axis improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Lower,
    Higher,
}

/// Whether each point is on the frontier (x higher is better; y as `better` says).
/// O(n log n): sort by x descending and keep the best y seen among strictly larger x.
pub fn frontier(points: &[(f64, f64)], better: Better) -> Vec<bool> {
    let key = |y: f64| match better {
        Better::Higher => y,
        Better::Lower => -y,
    };
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| {
        points[b]
            .0
            .total_cmp(&points[a].0)
            .then(key(points[b].1).total_cmp(&key(points[a].1)))
    });
    let mut on = vec![false; points.len()];
    let mut best_beyond = f64::NEG_INFINITY;
    let mut i = 0;
    while i < order.len() {
        let x = points[order[i]].0;
        let mut j = i;
        while j < order.len() && points[order[j]].0 == x {
            j += 1;
        }
        // Within equal x the best y comes first; only points matching it can be undominated.
        let group_best = key(points[order[i]].1);
        if group_best > best_beyond {
            for &k in &order[i..j] {
                on[k] = key(points[k].1) == group_best;
            }
        }
        best_beyond = best_beyond.max(group_best);
        i = j;
    }
    on
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(points: &[(f64, f64)], better: Better) -> Vec<bool> {
        let ge = |a: f64, b: f64| match better {
            Better::Higher => a >= b,
            Better::Lower => a <= b,
        };
        points
            .iter()
            .map(|p| {
                !points
                    .iter()
                    .any(|q| q.0 >= p.0 && ge(q.1, p.1) && (q.0 > p.0 || q.1 != p.1))
            })
            .collect()
    }

    #[test]
    fn ties_and_duplicates() {
        let pts = [
            (1.0, 5.0),
            (1.0, 5.0),
            (1.0, 4.0),
            (2.0, 3.0),
            (2.0, 3.0),
            (0.5, 9.0),
        ];
        assert_eq!(
            frontier(&pts, Better::Higher),
            [true, true, false, true, true, true]
        );
        // Lower is better: (2, 3) beats every point with x ≤ 2 and y ≥ 3.
        assert_eq!(
            frontier(&pts, Better::Lower),
            [false, false, false, true, true, false]
        );
        assert_eq!(frontier(&[], Better::Lower), Vec::<bool>::new());
    }

    #[test]
    fn matches_a_brute_force_check_on_random_points() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |m: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % m
        };
        for case in 0..2000 {
            let n = next(40) as usize;
            // A small grid makes ties and duplicates common.
            let grid = 2 + next(12);
            let pts: Vec<(f64, f64)> = (0..n)
                .map(|_| (next(grid) as f64, next(grid) as f64))
                .collect();
            for better in [Better::Higher, Better::Lower] {
                assert_eq!(
                    frontier(&pts, better),
                    brute(&pts, better),
                    "case {case}: {pts:?} {better:?}"
                );
            }
        }
    }
}
