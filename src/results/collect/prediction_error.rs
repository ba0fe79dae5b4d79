//! `prediction_error.csv`: how far `kvsweep predict`'s figures are from measured cells of the
//! same configuration (runner, engine, model, TP, users, offload mode), metric by metric.
//!
//! The error of a latency or throughput is relative, (predicted − measured) / measured in
//! percent; the error of a hit rate is the difference in percentage points (a rate near zero
//! makes a relative error meaningless).

use serde::Serialize;

use super::cells::{CellResult, MeasuredBy};
use super::result::Metric;
use crate::base::kinds::{EngineKind, Offload};

/// Columns of `prediction_error.csv`.
pub const COLUMNS: &[&str] = &["cell", "metric", "predicted", "measured", "error", "unit"];

/// One metric of one measured cell against its prediction.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorRow {
    pub cell: String,
    pub metric: &'static str,
    pub predicted: f64,
    pub measured: f64,
    /// Percent for latencies and throughputs, percentage points for the hit rate.
    pub error: f64,
    pub unit: &'static str,
}

/// The metrics compared, and whether each is a rate compared in points.
const METRICS: &[(Metric, bool)] = &[
    (Metric::TtftP50Ms, false),
    (Metric::TtftP90Ms, false),
    (Metric::TtftP99Ms, false),
    (Metric::TpotP50Ms, false),
    (Metric::ItlP50Ms, false),
    (Metric::E2eP50Ms, false),
    (Metric::E2eP90Ms, false),
    (Metric::TotalTpsPerGpu, false),
    (Metric::OutputTpsPerGpu, false),
    (Metric::ServerHitRate, true),
];

/// What makes two cells the same configuration.
fn config(c: &CellResult) -> (&str, EngineKind, &str, u32, u32, Offload) {
    let k = &c.config;
    (&k.runner, k.engine, &k.model, k.tp, k.users, k.offload)
}

/// Every metric of every measured cell that has a predicted twin; empty when there is none.
pub fn rows(cells: &[CellResult]) -> Vec<ErrorRow> {
    let mut out = Vec::new();
    for measured in cells
        .iter()
        .filter(|c| c.measured_by != MeasuredBy::Predicted)
    {
        let Some(predicted) = cells
            .iter()
            .find(|p| p.measured_by == MeasuredBy::Predicted && config(p) == config(measured))
        else {
            continue;
        };
        for &(metric, points) in METRICS {
            let (Some(p), Some(m)) = (metric.of(predicted), metric.of(measured)) else {
                continue;
            };
            let (error, unit) = if points {
                ((p - m) * 100.0, "points")
            } else if m != 0.0 {
                ((p - m) / m * 100.0, "%")
            } else {
                continue;
            };
            out.push(ErrorRow {
                cell: measured.name.clone(),
                metric: metric.column(),
                predicted: p,
                measured: m,
                error,
                unit,
            });
        }
    }
    out
}

/// One metric's median |error| over the cells compared.
#[derive(Debug, Clone, Serialize)]
pub struct MedianError {
    pub metric: &'static str,
    median_abs_error: f64,
    pub unit: &'static str,
    pub cells: usize,
}

pub fn medians(rows: &[ErrorRow]) -> Vec<MedianError> {
    METRICS
        .iter()
        .filter_map(|(metric, _)| {
            let metric = metric.column();
            let mut v: Vec<f64> = rows
                .iter()
                .filter(|r| r.metric == metric)
                .map(|r| r.error.abs())
                .collect();
            let unit = rows.iter().find(|r| r.metric == metric)?.unit;
            v.sort_by(f64::total_cmp);
            let n = v.len();
            let median = if n % 2 == 1 {
                v[n / 2]
            } else {
                (v[n / 2 - 1] + v[n / 2]) / 2.0
            };
            Some(MedianError {
                metric,
                median_abs_error: median,
                unit,
                cells: n,
            })
        })
        .collect()
}
