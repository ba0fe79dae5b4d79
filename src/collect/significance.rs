//! Whether a difference `kvsweep compare` finds is larger than the noise: Welch's t-test at 5 %
//! on the two cells' repeats (`repeats.csv` beside each `summary.csv`). Without repeats on both
//! sides there is nothing to test, and the comparison says so by leaving the columns empty.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::student_t::{Sample, welch_p_value};

/// The significance level of the test.
pub const ALPHA: f64 = 0.05;

/// A collected sweep's repeats: per cell and metric, the sample.
#[derive(Debug, Default)]
pub struct Spread(HashMap<(String, String), Sample>);

#[derive(Deserialize)]
struct Row {
    cell: String,
    metric: String,
    n: usize,
    mean: f64,
    sd: f64,
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
        let mut map = HashMap::new();
        for (i, row) in r.deserialize::<Row>().enumerate() {
            let row = row.with_context(|| format!("{}: row {}", path.display(), i + 2))?;
            map.insert(
                (row.cell, row.metric),
                Sample {
                    n: row.n,
                    mean: row.mean,
                    sd: row.sd,
                },
            );
        }
        Ok(Self(map))
    }

    fn get(&self, cell: &str, metric: &str) -> Option<&Sample> {
        self.0.get(&(cell.to_owned(), metric.to_owned()))
    }
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
