//! The replay's typed parts of `summary.json` (`adaptive`, `open_loop`) and the rows of
//! `periods.csv`.

use serde::{Deserialize, Serialize};

use super::required;
use super::rows::{fixed, fixed_opt};
use crate::workload::control::{Arrival, TtftMetric};

/// One decision of the adaptive controller (`summary.json` → `adaptive.steps`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveStep {
    pub period: u32,
    pub users: u32,
    #[serde(deserialize_with = "required")]
    pub ttft_ms: Option<f64>,
    #[serde(deserialize_with = "required")]
    pub decode_tps: Option<f64>,
    pub within_target: bool,
    pub next_users: u32,
}

/// The adaptive controller's state (`summary.json` → `adaptive`), when it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adaptive {
    pub target_ttft_ms: f64,
    pub ttft_metric: TtftMetric,
    pub ttft_window_periods: u32,
    pub max_users: u32,
    /// The largest user count seen to hold the target.
    #[serde(deserialize_with = "required")]
    pub capacity_users: Option<u32>,
    #[serde(deserialize_with = "required")]
    pub smallest_users_over_target: Option<u32>,
    /// The search has closed: the capacity is one below the smallest count over the target
    /// (or the maximum held).
    pub settled: bool,
    pub steps: Vec<AdaptiveStep>,
}

/// The open-loop arrival figures (`summary.json` → `open_loop`), when sessions arrived at a
/// rate (`--request-rate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenLoop {
    pub requested_sessions_per_s: f64,
    pub arrival: Arrival,
    pub sessions_started: u64,
    pub achieved_sessions_per_s: f64,
}

/// One row of `periods.csv`: one assessment period of a replay, for all its endpoints
/// (`endpoint` = `all`) or for one of several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeriodRow {
    pub period: u32,
    /// Seconds from the run's start.
    #[serde(serialize_with = "fixed::<3, _>")]
    pub start_s: f64,
    #[serde(serialize_with = "fixed::<3, _>")]
    pub end_s: f64,
    pub users: usize,
    pub requests: u64,
    pub errors: u64,
    #[serde(serialize_with = "fixed::<3, _>")]
    pub requests_per_s: f64,
    #[serde(serialize_with = "fixed::<1, _>")]
    pub input_tokens_per_s: f64,
    #[serde(serialize_with = "fixed::<1, _>")]
    pub output_tokens_per_s: f64,
    #[serde(serialize_with = "fixed_opt::<3, _>")]
    pub ttft_p50_ms: Option<f64>,
    #[serde(serialize_with = "fixed_opt::<3, _>")]
    pub ttft_p90_ms: Option<f64>,
    #[serde(serialize_with = "fixed_opt::<3, _>")]
    pub ttft_p99_ms: Option<f64>,
    #[serde(serialize_with = "fixed_opt::<3, _>")]
    pub itl_p50_ms: Option<f64>,
    #[serde(serialize_with = "fixed_opt::<3, _>")]
    pub itl_p99_ms: Option<f64>,
    #[serde(serialize_with = "fixed_opt::<3, _>")]
    pub tpot_mean_ms: Option<f64>,
    #[serde(serialize_with = "fixed_opt::<4, _>")]
    pub cache_hit_rate: Option<f64>,
    #[serde(serialize_with = "fixed_opt::<3, _>")]
    pub schedule_delay_p99_ms: Option<f64>,
    #[serde(serialize_with = "fixed_opt::<3, _>")]
    pub effective_ttft_p50_ms: Option<f64>,
    #[serde(serialize_with = "fixed_opt::<3, _>")]
    pub effective_ttft_p99_ms: Option<f64>,
    #[serde(serialize_with = "fixed::<3, _>")]
    pub goodput_requests_per_s: f64,
    #[serde(serialize_with = "fixed_opt::<4, _>")]
    pub goodput_fraction: Option<f64>,
    /// Token-bucket fill levels (share of capacity), when `--itpm`/`--otpm` are set.
    #[serde(serialize_with = "fixed_opt::<4, _>")]
    pub itpm_fill: Option<f64>,
    #[serde(serialize_with = "fixed_opt::<4, _>")]
    pub otpm_fill: Option<f64>,
    /// `all`, or the endpoint's URL.
    pub endpoint: String,
    pub format_version: u32,
}

impl PeriodRow {
    pub const FILE: &'static str = "periods.csv";
    pub const VERSION: u32 = 1;
    /// The header row, in field order.
    pub const COLUMNS: &'static [&'static str] = &[
        "period",
        "start_s",
        "end_s",
        "users",
        "requests",
        "errors",
        "requests_per_s",
        "input_tokens_per_s",
        "output_tokens_per_s",
        "ttft_p50_ms",
        "ttft_p90_ms",
        "ttft_p99_ms",
        "itl_p50_ms",
        "itl_p99_ms",
        "tpot_mean_ms",
        "cache_hit_rate",
        "schedule_delay_p99_ms",
        "effective_ttft_p50_ms",
        "effective_ttft_p99_ms",
        "goodput_requests_per_s",
        "goodput_fraction",
        "itpm_fill",
        "otpm_fill",
        "endpoint",
        "format_version",
    ];
}
