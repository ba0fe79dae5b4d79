//! A cell run several times (`repeats:`) becomes one row of `summary.csv` holding each metric's
//! mean, and rows of `repeats.csv` with its count, mean, standard deviation and 95 % Student-t
//! interval, and the seeds of the repeats, so that plots can draw the interval and `compare` can
//! test a difference. Each repeat replays its own seed ([`crate::repeats::seed`]), so the
//! interval covers the workload's sampling as well as the run-to-run noise.

use std::path::PathBuf;

use indexmap::IndexMap;
use serde::Serialize;

use super::cells::CellResult;
use crate::student_t::Sample;

/// The confidence level of the intervals.
pub const LEVEL: f64 = 0.95;

type Get = fn(&CellResult) -> Option<f64>;
type Set = fn(&mut CellResult, f64);

macro_rules! plain {
    ($f:ident) => {
        (
            stringify!($f),
            (|c: &CellResult| Some(c.$f)) as Get,
            (|c: &mut CellResult, v: f64| c.$f = v) as Set,
        )
    };
}
macro_rules! optional {
    ($f:ident) => {
        (
            stringify!($f),
            (|c: &CellResult| c.$f) as Get,
            (|c: &mut CellResult, v: f64| c.$f = Some(v)) as Set,
        )
    };
}

/// The `summary.csv` columns averaged over repeats (and given intervals); the others are the
/// first repeat's (the cell's settings) or, for request counts, summed.
const METRICS: [(&str, Get, Set); 37] = [
    plain!(error_rate),
    plain!(duration_s),
    plain!(input_tps),
    plain!(output_tps),
    plain!(total_tps),
    plain!(input_tps_per_gpu),
    plain!(output_tps_per_gpu),
    plain!(total_tps_per_gpu),
    optional!(ttft_p50_ms),
    optional!(ttft_p90_ms),
    optional!(ttft_p99_ms),
    optional!(tpot_p50_ms),
    optional!(tpot_p90_ms),
    optional!(tpot_p99_ms),
    optional!(itl_p50_ms),
    optional!(itl_p90_ms),
    optional!(itl_p99_ms),
    optional!(e2e_p50_ms),
    optional!(e2e_p90_ms),
    optional!(e2e_p99_ms),
    optional!(interactivity),
    optional!(e2e_norm_intvty_p50),
    optional!(e2e_norm_intvty_p90),
    optional!(e2e_norm_intvty_p99),
    optional!(agentx_input_tps_per_gpu),
    optional!(agentx_output_tps_per_gpu),
    optional!(agentx_total_tps_per_gpu),
    optional!(client_hit_rate),
    optional!(server_hit_rate),
    optional!(offload_bytes),
    optional!(oracle_hit_rate),
    optional!(usd_per_mtok_total_hyperscaler),
    optional!(usd_per_mtok_total_neocloud),
    optional!(usd_per_mtok_total_rental_3y),
    optional!(tps_per_mw),
    optional!(joules_per_output_token),
    optional!(joules_per_total_token),
];

/// One row of `repeats.csv`: a metric of a repeated cell.
#[derive(Debug, Clone, Serialize)]
pub struct RepeatRow {
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
pub const REPEAT_COLUMNS: &[&str] = &[
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
pub const COVERS: &str = "each repeat is a fresh engine replaying its own seed (session order and prompt content), so the 95 % interval covers the workload's sampling and run-to-run noise, not timing jitter alone";

/// Merges the repeats of each cell (the `repeat-K/` runs of one cell folder) into one result;
/// returns the merged results, in first-seen order, and the `repeats.csv` rows.
pub fn merge(results: Vec<CellResult>) -> (Vec<CellResult>, Vec<RepeatRow>) {
    let mut groups: IndexMap<PathBuf, Vec<CellResult>> = IndexMap::new();
    for r in results {
        let key = crate::repeats::cell_of(&r.dir).to_path_buf();
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
        cell.requests_ok = group.iter().map(|c| c.requests_ok).sum();
        cell.requests_failed = group.iter().map(|c| c.requests_failed).sum();
        cell.valid = group.iter().all(|c| c.valid);
        cell.invalid_reasons = group
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.valid)
            .map(|(k, c)| format!("repeat {}: {}", k + 1, c.invalid_reasons))
            .collect::<Vec<_>>()
            .join("; ");
        for (metric, get, set) in METRICS {
            let values: Vec<f64> = group.iter().filter_map(get).collect();
            let Some(s) = Sample::of(&values) else {
                continue;
            };
            set(&mut cell, s.mean);
            let hw = s.half_width(LEVEL);
            rows.push(RepeatRow {
                cell: name.clone(),
                metric,
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
