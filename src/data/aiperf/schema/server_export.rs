//! `server_metrics_export.json`: the server's Prometheus families reduced over a phase
//! (`ServerMetricsExportData`), with the gauge, counter and histogram series and stats; apart
//! because its models share nothing with the request records and the aggregate but the phase.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::CreditPhase;

/// `server_metrics_export.json` (`aiperf.common.models.ServerMetricsExportData`, schema 1.1):
/// each Prometheus family scraped from the server, reduced over the profiling phase per series
/// (endpoint + labels).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerMetricsExport {
    pub(crate) schema_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) aiperf_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) benchmark_id: Option<String>,
    pub summary: ServerMetricsSummary,
    /// The phase `metrics` covers (always profiling in 0.13.0).
    pub(crate) metrics_phase: CreditPhase,
    /// Family name (`vllm:prefix_cache_hits`) → its series.
    pub metrics: IndexMap<String, ServerMetric>,
    /// The same over the warm-up phase; absent when none ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) warmup_metrics: Option<IndexMap<String, ServerMetric>>,
    /// The user configuration, kept as written.
    #[serde(default)]
    pub(crate) input_config: serde_json::Value,
}

/// `ServerMetricsSummary`: which endpoints were scraped, when, and how often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerMetricsSummary {
    pub(crate) endpoints_configured: Vec<String>,
    pub(crate) endpoints_successful: Vec<String>,
    /// Local (naive) ISO-8601 times, as Python's `datetime.isoformat()` writes them.
    pub(crate) start_time: String,
    pub(crate) end_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) endpoint_info: Option<IndexMap<String, ServerMetricsEndpointInfo>>,
    /// Phase name → the nanosecond range it aggregated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) phase_time_ranges: Option<IndexMap<String, TimeRange>>,
}

/// `TimeRangeFilter`: a nanosecond range, open where a bound is absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) start_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) end_ns: Option<u64>,
}

/// `ServerMetricsEndpointInfo`: scrape statistics of one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerMetricsEndpointInfo {
    total_fetches: u64,
    first_fetch_ns: u64,
    last_fetch_ns: u64,
    avg_fetch_latency_ms: f64,
    unique_updates: u64,
    first_update_ns: u64,
    last_update_ns: u64,
    pub(crate) duration_seconds: f64,
    avg_update_interval_ms: f64,
    /// `None` with fewer than two intervals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    median_update_interval_ms: Option<f64>,
}

/// One metric family (`GaugeMetricData` | `CounterMetricData` | `HistogramMetricData` |
/// `UnknownMetricData`), told apart by its `type`. AIPerf skips Prometheus summaries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerMetric {
    Gauge(GaugeMetric),
    Counter(CounterMetric),
    Histogram(HistogramMetric),
    /// An untyped family, stored as a gauge.
    Unknown(GaugeMetric),
}

/// A family's HELP text, unit and series (`S`: the series of its kind).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricFamily<S> {
    pub description: String,
    /// Inferred from the name's suffix (`_seconds`, `_perc`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default = "Vec::new")]
    pub series: Vec<S>,
}

/// A gauge family.
pub type GaugeMetric = MetricFamily<GaugeSeries>;
/// A counter family.
pub type CounterMetric = MetricFamily<CounterSeries>;
/// A histogram family.
pub type HistogramMetric = MetricFamily<HistogramSeries>;

/// One endpoint + label set of a gauge or counter (`GaugeSeries`, `CounterSeries`): its stats
/// over the phase and its timeslices, of the family's kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSeries<Stats, Slice> {
    /// The full `/metrics` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) endpoint_url: Option<String>,
    /// Absent when the series has no labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<IndexMap<String, String>>,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub(crate) stats: Option<Stats>,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub(crate) timeslices: Option<Vec<Slice>>,
}

/// A gauge's series.
pub type GaugeSeries = MetricSeries<GaugeStats, GaugeTimeslice>;
/// A counter's series.
pub type CounterSeries = MetricSeries<CounterStats, CounterTimeslice>;

/// serde's default for an absent optional field of a generic type (a plain `default` would ask
/// the type parameter for `Default`).
fn none<T>() -> Option<T> {
    None
}

/// `GaugeStats`: the gauge's distribution over the phase's scrapes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GaugeStats {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avg: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) p1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) p5: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) p10: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p25: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p75: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
}

/// `GaugeTimeslice`: the gauge over one `--slice-duration` window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GaugeTimeslice {
    pub(crate) start_ns: u64,
    pub(crate) end_ns: u64,
    /// `false` for a partial (last) slice; absent means complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) is_complete: Option<bool>,
    pub avg: f64,
    pub min: f64,
    pub max: f64,
}

/// `CounterStats`: the counter's increase over the phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CounterStats {
    /// Increase over the phase (what InferenceX sums: `prefix_cache_hits`, `prompt_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<f64>,
    /// `total` per second of the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rate_avg: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rate_min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rate_max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rate_std: Option<f64>,
}

/// `CounterTimeslice`: the counter's increase over one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CounterTimeslice {
    pub(crate) start_ns: u64,
    pub(crate) end_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) is_complete: Option<bool>,
    pub total: f64,
    pub rate: f64,
}

/// `HistogramSeries`: one endpoint + label set of a histogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramSeries {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) endpoint_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<IndexMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) stats: Option<HistogramStats>,
    /// Upper bound (`"0.3"`, `"+Inf"`) → cumulative count increase over the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<IndexMap<String, u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) timeslices: Option<Vec<HistogramTimeslice>>,
}

/// `HistogramStats`: count and sum increase over the phase, and percentiles estimated from
/// the buckets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistogramStats {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avg: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    count_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sum_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p1_estimate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p5_estimate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p10_estimate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p25_estimate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p50_estimate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p75_estimate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p90_estimate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p95_estimate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p99_estimate: Option<f64>,
}

/// `HistogramTimeslice`: the histogram over one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramTimeslice {
    pub(crate) start_ns: u64,
    pub(crate) end_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) is_complete: Option<bool>,
    pub count: u64,
    pub sum: f64,
    pub avg: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<IndexMap<String, u64>>,
}
