//! Whether a difference `kvsweep compare` finds is larger than the noise: Welch's t-test at 5 %
//! on the two cells' repeats (`repeats.csv` beside each `summary.csv`). Without repeats on both
//! sides there is nothing to test, and the comparison says so by leaving the columns empty.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::base::student_t::{Sample, welch_p_value};

/// The significance level of the test.
pub const ALPHA: f64 = 0.05;

/// A collected sweep's repeats: per cell and metric, the sample; per cell, the repeats' seeds.
#[derive(Debug, Default)]
pub struct Spread {
    samples: HashMap<(String, String), Sample>,
    seeds: HashMap<String, String>,
}

#[derive(Deserialize)]
struct Row {
    cell: String,
    metric: String,
    n: usize,
    mean: f64,
    sd: f64,
    seeds: String,
}

impl Spread {
    /// Reads `repeats.csv` beside `summary` (a collected sweep's directory or its summary.csv);
    /// empty when there is none (a sweep collected before repeats, or without them).
    pub fn beside(summary: &Path) -> Result<Self> {
        let dir = if summary.is_dir() {
            summary
        } else {
            summary.parent().unwrap_or(Path::new("."))
        };
        let path = dir.join("repeats.csv");
        if !path.exists() {
            return Ok(Self::default());
        }
        let mut r = csv::Reader::from_path(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut spread = Self::default();
        for (i, row) in r.deserialize::<Row>().enumerate() {
            let row = row.with_context(|| format!("{}: row {}", path.display(), i + 2))?;
            spread.seeds.insert(row.cell.clone(), row.seeds);
            spread.samples.insert(
                (row.cell, row.metric),
                Sample {
                    n: row.n,
                    mean: row.mean,
                    sd: row.sd,
                },
            );
        }
        Ok(spread)
    }

    fn get(&self, cell: &str, metric: &str) -> Option<&Sample> {
        self.samples.get(&(cell.to_owned(), metric.to_owned()))
    }

    /// The set of seeds `cell`'s repeats ran with, sorted; `None` without repeats.
    fn seed_set(&self, cell: &str) -> Option<Vec<&str>> {
        let mut seeds: Vec<&str> = self.seeds.get(cell)?.split(';').collect();
        seeds.sort_unstable();
        Some(seeds)
    }
}

/// Whether the repeats of `a_cell` in `a` and `b_cell` in `b` ran the same set of seeds (so
/// both sides sampled the same workloads, and their difference is the systems'); `None`
/// without repeats on both sides.
pub fn same_seeds(a: &Spread, a_cell: &str, b: &Spread, b_cell: &str) -> Option<bool> {
    Some(a.seed_set(a_cell)? == b.seed_set(b_cell)?)
}

/// Welch's p-value for `metric` between cell `a_cell` of `a` and `b_cell` of `b`, and whether
/// it is below [`ALPHA`]; `None` without repeats on both sides.
pub fn test(
    a: &Spread,
    a_cell: &str,
    b: &Spread,
    b_cell: &str,
    metric: &str,
) -> Option<(f64, bool)> {
    let p = welch_p_value(a.get(a_cell, metric)?, b.get(b_cell, metric)?)?;
    Some((p, p < ALPHA))
}
