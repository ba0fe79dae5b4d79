//! A cell run several times (`repeats:`) becomes one row of `summary.csv` holding each metric's
//! mean, and rows of `repeats.csv` with its count, mean, standard deviation and 95 % Student-t
//! interval, and the seeds of the repeats, so that plots can draw the interval and `compare` can
//! test a difference. Each repeat replays its own seed ([`crate::base::repeats::seed`]), so the
//! interval covers the workload's sampling as well as the run-to-run noise.

use std::path::PathBuf;

use indexmap::IndexMap;
use serde::Serialize;

use super::cells::CellResult;
use super::result::Metric;
use crate::base::student_t::Sample;

/// The confidence level of the intervals.
pub(crate) const LEVEL: f64 = 0.95;

/// One row of `repeats.csv`: a metric of a repeated cell.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RepeatRow {
    pub cell: String,
    pub metric: &'static str,
    pub n: usize,
    pub mean: f64,
    pub sd: f64,
    pub ci95_low: Option<f64>,
    pub ci95_high: Option<f64>,
    /// The repeats' seeds, `;`-separated, in repeat order (empty where a run's plan has none).
    pub seeds: String,
}

/// Columns of `repeats.csv`, in order.
pub(crate) const REPEAT_COLUMNS: &[&str] = &[
    "cell",
    "metric",
    "n",
    "mean",
    "sd",
    "ci95_low",
    "ci95_high",
    "seeds",
];

/// What the intervals of `repeats.csv` cover, for the report and `compare`.
pub(crate) const COVERS: &str = "each repeat is a fresh engine replaying its own seed (session order and prompt content), so the 95 % interval covers the workload's sampling and run-to-run noise, not timing jitter alone";

/// Merges the repeats of each cell (the `repeat-K/` runs of one cell folder) into one result;
/// returns the merged results, in first-seen order, and the `repeats.csv` rows.
pub(crate) fn merge(results: Vec<CellResult>) -> (Vec<CellResult>, Vec<RepeatRow>) {
    let mut groups: IndexMap<PathBuf, Vec<CellResult>> = IndexMap::new();
    for r in results {
        let key = crate::base::repeats::cell_of(&r.dir).to_path_buf();
        groups.entry(key).or_default().push(r);
    }
    let mut merged = Vec::new();
    let mut rows = Vec::new();
    for mut group in groups.into_values() {
        group.sort_by_key(|c| repeat_index(&c.dir));
        let name = group[0].name.clone();
        let seeds = group
            .iter()
            .map(|c| c.seed.map(|s| s.to_string()).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(";");
        if group.len() == 1 {
            merged.extend(group);
            continue;
        }
        let mut cell = group[0].clone();
        cell.repeats = group.len() as u32;
        cell.figures.requests_ok = group.iter().map(|c| c.figures.requests_ok).sum();
        cell.figures.requests_failed = group.iter().map(|c| c.figures.requests_failed).sum();
        cell.valid = group.iter().all(|c| c.valid);
        cell.invalid_reasons = group
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.valid)
            .map(|(k, c)| format!("repeat {}: {}", k + 1, c.invalid_reasons))
            .collect::<Vec<_>>()
            .join("; ");
        for &metric in Metric::ALL {
            let values: Vec<f64> = group.iter().filter_map(|c| metric.of(c)).collect();
            let Some(s) = Sample::of(&values) else {
                continue;
            };
            metric.set(&mut cell, s.mean);
            let hw = s.half_width(LEVEL);
            rows.push(RepeatRow {
                cell: name.clone(),
                metric: metric.column(),
                n: s.n,
                mean: s.mean,
                sd: s.sd,
                ci95_low: hw.map(|h| s.mean - h),
                ci95_high: hw.map(|h| s.mean + h),
                seeds: seeds.clone(),
            });
            cell.spread.insert(metric, s);
        }
        merged.push(cell);
    }
    (merged, rows)
}

/// K of a `repeat-K/` folder, for ordering a cell's repeats (0 for anything else).
fn repeat_index(dir: &std::path::Path) -> u32 {
    dir.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("repeat-"))
        .and_then(|k| k.parse().ok())
        .unwrap_or(0)
}
