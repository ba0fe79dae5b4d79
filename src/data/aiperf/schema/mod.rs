//! AIPerf 0.13.0's export files as serde types, field names exactly as AIPerf writes them.
//!
//! Each type mirrors one pydantic model of the `aiperf` package (named in its doc comment).
//! AIPerf writes with `exclude_none`, so a field its model types `X | None` is absent rather
//! than `null` when unset: those are `Option`s that may be absent (`#[serde(default)]`) and are
//! left out when `None`. Fields its model requires are required here too. AIPerf's models allow
//! extra keys (`extra="allow"`); these types ignore keys they do not name, so a newer AIPerf
//! that adds fields still reads.

use std::path::Path;

use anyhow::{Context, Result};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::data::artifact::schema::{FormatError, parse_json};

/// The benchmark phase a record or metric belongs to (`aiperf.common.enums.CreditPhase`; also
/// the values of `PhaseKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CreditPhase {
    Warmup,
    Profiling,
}

// ---------------------------------------------------------------------------------------------
// profile_export.jsonl
// ---------------------------------------------------------------------------------------------

/// One line of `profile_export.jsonl` (`aiperf.common.models.MetricRecordInfo`): one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordInfo {
    pub metadata: RecordMetadata,
    /// Metric tag → value in display units (`request_latency` in ms, `input_sequence_length`
    /// in tokens, ...), in the order AIPerf computed them.
    pub metrics: IndexMap<String, MetricValue>,
    /// Set when the request failed; a failed record carries only the metrics it reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetails>,
}

impl RecordInfo {
    /// The value of metric `tag` as a number (`None` when absent or a list).
    pub fn metric(&self, tag: &str) -> Option<f64> {
        self.metrics.get(tag).and_then(|m| m.value.as_f64())
    }
}

/// `aiperf.common.models.MetricRecordMetadata`: who sent the request, when, and in which phase.
/// Times are wall-clock nanoseconds since the Unix epoch (`time.time_ns()`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordMetadata {
    /// The session's index in the benchmark (the request's, for single-turn datasets).
    pub session_num: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_request_id: Option<String>,
    /// Shared by every request of one session (conversation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_correlation_id: Option<String>,
    /// The dataset's conversation id; for weka traces the trace id, with `::sa:<agent>` for a
    /// subagent's conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// The turn's index in its conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_index: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_trace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_outer_idx: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_inner_idx: Option<u64>,
    /// The loader's classification (`weka_main`, `weka_subagent`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit_issued_ns: Option<u64>,
    pub request_start_ns: u64,
    /// First byte of a streamed answer, when the server acknowledged one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_ack_ns: Option<u64>,
    /// The end of the request, or the time of its error.
    pub request_end_ns: u64,
    pub worker_id: String,
    pub record_processor_id: String,
    pub benchmark_phase: CreditPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_index: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiling_index: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_kind: Option<CreditPhase>,
    /// AIPerf defaults it to false and always writes it.
    #[serde(default)]
    pub was_cancelled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellation_time_ns: Option<u64>,
    /// AIPerf defaults it to false and always writes it.
    #[serde(default)]
    pub context_overflow_skip: bool,
    /// 0 for a root session, +1 per subagent level; AIPerf defaults it to 0 and always
    /// writes it.
    #[serde(default)]
    pub agent_depth: u32,
    /// The `x_correlation_id` of the session that spawned this subagent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_correlation_id: Option<String>,
    /// The `x_correlation_id` of the root of this record's session tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_correlation_id: Option<String>,
}

/// `aiperf.common.models.MetricValue`: a metric in display units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricValue {
    pub value: MetricValueKind,
    pub unit: String,
}

impl MetricValue {
    /// A scalar metric.
    pub fn number(value: f64, unit: &str) -> Self {
        MetricValue {
            value: MetricValueKind::Float(value),
            unit: unit.to_owned(),
        }
    }

    /// A count (written as a JSON integer, as AIPerf writes token counts).
    pub fn count(value: u64, unit: &str) -> Self {
        MetricValue {
            value: MetricValueKind::Int(value as i64),
            unit: unit.to_owned(),
        }
    }
}

/// `MetricValueTypeT = int | float | list[float] | list[int]`: integers stay integers in the
/// JSON (`29666`, not `29666.0`), as AIPerf writes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MetricValueKind {
    Int(i64),
    Float(f64),
    /// Per-chunk values (`inter_chunk_latency`).
    List(Vec<f64>),
}

impl MetricValueKind {
    /// The value as a number; `None` for a list.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            MetricValueKind::Int(i) => Some(*i as f64),
            MetricValueKind::Float(f) => Some(*f),
            MetricValueKind::List(_) => None,
        }
    }
}

/// `aiperf.common.models.ErrorDetails`: why a request failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetails {
    /// The HTTP status, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause_chain: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// `aiperf.common.models.ErrorDetailsCount`: one kind of error and how often it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetailsCount {
    pub error_details: ErrorDetails,
    pub count: u64,
}

// ---------------------------------------------------------------------------------------------
// profile_export_aiperf.json
// ---------------------------------------------------------------------------------------------

/// `profile_export_aiperf.json` (`aiperf.common.models.JsonExportData`, schema 1.4): the run's
/// aggregate. Every metric is a top-level key holding a [`JsonMetricResult`]
/// (`request_count`, `error_request_count`, `completed_request_count`, `request_latency`,
/// `theoretical_prefix_cache_hit`, ...); [`ProfileExport::metric`] finds one by tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileExport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aiperf_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub benchmark_id: Option<String>,
    /// The resolved configuration (AIPerf's `BenchmarkConfig`), kept as written: InferenceX
    /// does not read it, and its shape changes with every AIPerf release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_config: Option<serde_json::Value>,
    /// Seed, trial and command line of the run (`RunInfo`), kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_info: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub was_cancelled: Option<bool>,
    /// False when the run degraded before finishing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_complete: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_summary: Option<Vec<ErrorDetailsCount>>,
    /// Local (naive) ISO-8601 time of the profiling phase's start, as Python's
    /// `datetime.isoformat()` writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    /// DAG (subagent) orchestration counters, kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_stats: Option<serde_json::Value>,
    /// Metrics of the warm-up requests alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_metrics: Option<IndexMap<String, JsonMetricResult>>,
    /// Dataset provenance and the scenario's verdict; absent when neither applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RunMetadata>,
    /// Every other top-level key: the profiling metrics by tag, and whatever else a newer
    /// AIPerf adds.
    #[serde(flatten)]
    pub entries: IndexMap<String, AggregateEntry>,
}

impl ProfileExport {
    /// The profiling metric `tag`, if the export has it.
    pub fn metric(&self, tag: &str) -> Option<&JsonMetricResult> {
        match self.entries.get(tag)? {
            AggregateEntry::Metric(m) => Some(m),
            AggregateEntry::Other(_) => None,
        }
    }

    /// The profiling metrics by tag.
    pub fn metrics(&self) -> impl Iterator<Item = (&str, &JsonMetricResult)> {
        self.entries.iter().filter_map(|(k, v)| match v {
            AggregateEntry::Metric(m) => Some((k.as_str(), m)),
            AggregateEntry::Other(_) => None,
        })
    }
}

/// A top-level key of `profile_export_aiperf.json` the struct does not name: a metric (an
/// object with a `unit`, as AIPerf's own `JsonMetricResult.project_summary_dict` tells them
/// apart) or anything else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AggregateEntry {
    Metric(JsonMetricResult),
    Other(serde_json::Value),
}

/// `aiperf.common.models.JsonMetricResult`: one metric over the run. Record metrics carry the
/// distribution, `count` and `sum`; derived scalars (`request_count`, `benchmark_duration`,
/// `request_throughput`) carry `avg` alone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JsonMetricResult {
    pub unit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avg: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p5: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p10: Option<f64>,
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
    /// `int | float` in AIPerf: kept as written (an integer stays an integer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<serde_json::Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<serde_json::Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<f64>,
    /// Records (or, for `theoretical_prefix_cache_hit`, KV blocks) behind the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Sum of the values (for `theoretical_prefix_cache_hit`: the blocks that hit); `int |
    /// float` in AIPerf, kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sum: Option<serde_json::Number>,
}

impl JsonMetricResult {
    /// A derived scalar: `unit` and `avg` only.
    pub fn scalar(unit: &str, avg: f64) -> Self {
        JsonMetricResult {
            unit: unit.to_owned(),
            avg: Some(avg),
            ..JsonMetricResult::default()
        }
    }
}

/// The `metadata` object of `profile_export_aiperf.json` (built by AIPerf's
/// `_build_run_metadata_dict`; InferenceX copies `dataset` into its aggregate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMetadata {
    /// Public-dataset provenance, for `--public-dataset` / `--hf-weka-dataset` runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<serde_json::Value>,
    /// The `--scenario` the run applied (`inferencex-agentx-mvp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    /// Present whenever `scenario` is: whether the run satisfied the scenario's locks and
    /// runtime limits (`compute_submission_outcome`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission_valid: Option<bool>,
    /// Why not (`unsafe_override`, `context_overflow_rate_exceeded`, `run_cancelled`);
    /// absent when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission_invalid_reasons: Option<Vec<String>>,
}

// ---------------------------------------------------------------------------------------------
// server_metrics_export.json
// ---------------------------------------------------------------------------------------------

/// `server_metrics_export.json` (`aiperf.common.models.ServerMetricsExportData`, schema 1.1):
/// each Prometheus family scraped from the server, reduced over the profiling phase per series
/// (endpoint + labels).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerMetricsExport {
    pub schema_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aiperf_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub benchmark_id: Option<String>,
    pub summary: ServerMetricsSummary,
    /// The phase `metrics` covers (always profiling in 0.13.0).
    pub metrics_phase: CreditPhase,
    /// Family name (`vllm:prefix_cache_hits`) → its series.
    pub metrics: IndexMap<String, ServerMetric>,
    /// The same over the warm-up phase; absent when none ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_metrics: Option<IndexMap<String, ServerMetric>>,
    /// The user configuration, kept as written.
    #[serde(default)]
    pub input_config: serde_json::Value,
}

/// `ServerMetricsSummary`: which endpoints were scraped, when, and how often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerMetricsSummary {
    pub endpoints_configured: Vec<String>,
    pub endpoints_successful: Vec<String>,
    /// Local (naive) ISO-8601 times, as Python's `datetime.isoformat()` writes them.
    pub start_time: String,
    pub end_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_info: Option<IndexMap<String, ServerMetricsEndpointInfo>>,
    /// Phase name → the nanosecond range it aggregated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_time_ranges: Option<IndexMap<String, TimeRange>>,
}

/// `TimeRangeFilter`: a nanosecond range, open where a bound is absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ns: Option<u64>,
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
    pub duration_seconds: f64,
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
    pub endpoint_url: Option<String>,
    /// Absent when the series has no labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<IndexMap<String, String>>,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub timeslices: Option<Vec<Slice>>,
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
    pub p1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p5: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p10: Option<f64>,
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
    pub start_ns: u64,
    pub end_ns: u64,
    /// `false` for a partial (last) slice; absent means complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_complete: Option<bool>,
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
    pub rate_avg: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_std: Option<f64>,
}

/// `CounterTimeslice`: the counter's increase over one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CounterTimeslice {
    pub start_ns: u64,
    pub end_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_complete: Option<bool>,
    pub total: f64,
    pub rate: f64,
}

/// `HistogramSeries`: one endpoint + label set of a histogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramSeries {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<IndexMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<HistogramStats>,
    /// Upper bound (`"0.3"`, `"+Inf"`) → cumulative count increase over the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<IndexMap<String, u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeslices: Option<Vec<HistogramTimeslice>>,
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
    pub start_ns: u64,
    pub end_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_complete: Option<bool>,
    pub count: u64,
    pub sum: f64,
    pub avg: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<IndexMap<String, u64>>,
}

// ---------------------------------------------------------------------------------------------
// Readers
// ---------------------------------------------------------------------------------------------

/// The file names AIPerf 0.13.0 writes under `--output-artifact-dir`.
pub const RECORDS_FILE: &str = "profile_export.jsonl";
pub const PROFILE_EXPORT_FILE: &str = "profile_export_aiperf.json";
pub const SERVER_METRICS_FILE: &str = "server_metrics_export.json";

/// Reads `profile_export.jsonl`; a line that does not fit fails naming the file, the line and
/// the field.
pub fn read_records(path: &Path) -> Result<Vec<RecordInfo>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record = parse_json(line).map_err(|message| FormatError {
            file: path.to_path_buf(),
            message: format!("line {}: {message}", i + 1),
        })?;
        records.push(record);
    }
    Ok(records)
}

/// Reads `profile_export_aiperf.json`.
pub fn read_profile_export(path: &Path) -> Result<ProfileExport> {
    read_aiperf_json(path)
}

/// Reads `server_metrics_export.json`.
pub fn read_server_metrics(path: &Path) -> Result<ServerMetricsExport> {
    read_aiperf_json(path)
}

fn read_aiperf_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let fail = |message: String| FormatError {
        file: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    Ok(parse_json(&text).map_err(fail)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files of a real AIPerf 0.13.0 `inferencex-agentx-mvp` run against `kvsweep sim-server`
    /// (see the fixture's README for how they were made and trimmed).
    fn real(file: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/aiperf/agentx-0.13.0")
            .join(file)
    }

    #[test]
    fn a_real_profile_export_jsonl_reads_and_writes_back_the_same() {
        let path = real(RECORDS_FILE);
        let records = read_records(&path).expect("real records");
        assert_eq!(records.len(), 16);
        let warm = &records[0];
        assert_eq!(warm.metadata.benchmark_phase, CreditPhase::Warmup);
        assert_eq!(warm.metadata.conversation_id.as_deref(), Some("trace_0019"));
        assert_eq!(warm.metric("input_sequence_length"), Some(29666.0));
        assert!(
            records
                .iter()
                .any(|r| r.metadata.agent_depth == 1 && r.metadata.parent_correlation_id.is_some())
        );
        assert!(records.iter().any(|r| matches!(
            r.metrics.get("inter_chunk_latency").map(|m| &m.value),
            Some(MetricValueKind::List(_))
        )));
        // Written back, each line is the same JSON value AIPerf wrote (ints stay ints, absent
        // options stay absent).
        let text = std::fs::read_to_string(&path).expect("read");
        for (line, record) in text.lines().zip(&records) {
            let theirs: serde_json::Value = serde_json::from_str(line).expect("json");
            let ours = serde_json::to_value(record).expect("to_value");
            assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn a_real_profile_export_aiperf_json_has_the_metrics_inferencex_reads() {
        let export = read_profile_export(&real(PROFILE_EXPORT_FILE)).expect("real aggregate");
        assert_eq!(export.aiperf_version.as_deref(), Some("0.13.0"));
        assert_eq!(
            export.metric("request_count").and_then(|m| m.avg),
            Some(20.0)
        );
        assert_eq!(
            export.metric("completed_request_count").and_then(|m| m.avg),
            Some(20.0)
        );
        let hit = export
            .metric("theoretical_prefix_cache_hit")
            .expect("theoretical_prefix_cache_hit");
        assert_eq!(
            (
                hit.unit.as_str(),
                hit.count,
                hit.sum.as_ref().and_then(|s| s.as_u64())
            ),
            ("%", Some(14206), Some(13274))
        );
        let md = export.metadata.as_ref().expect("metadata");
        assert_eq!(md.scenario.as_deref(), Some("inferencex-agentx-mvp"));
        assert_eq!(md.submission_valid, Some(false));
        assert_eq!(
            md.submission_invalid_reasons.as_deref(),
            Some(&["unsafe_override".to_owned()][..])
        );
        assert!(
            export
                .warmup_metrics
                .as_ref()
                .is_some_and(|w| w.contains_key("request_latency"))
        );
        let text = std::fs::read_to_string(real(PROFILE_EXPORT_FILE)).expect("read");
        let theirs: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(serde_json::to_value(&export).expect("to_value"), theirs);
    }

    #[test]
    fn a_real_server_metrics_export_reads_and_writes_back_the_same() {
        let path = real(SERVER_METRICS_FILE);
        let export = read_server_metrics(&path).expect("real server metrics");
        assert_eq!(export.metrics_phase, CreditPhase::Profiling);
        let Some(ServerMetric::Counter(hits)) = export.metrics.get("vllm:prefix_cache_hits") else {
            panic!("vllm:prefix_cache_hits is a counter")
        };
        assert!(
            hits.series[0]
                .stats
                .as_ref()
                .and_then(|s| s.total)
                .is_some()
        );
        assert!(matches!(
            export.metrics.get("vllm:kv_cache_usage_perc"),
            Some(ServerMetric::Gauge(_))
        ));
        assert!(matches!(
            export.metrics.get("vllm:time_to_first_token_seconds"),
            Some(ServerMetric::Histogram(_))
        ));
        let text = std::fs::read_to_string(&path).expect("read");
        let theirs: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(serde_json::to_value(&export).expect("to_value"), theirs);
    }

    #[test]
    fn a_record_missing_a_required_field_is_named_with_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = std::fs::read_to_string(real(RECORDS_FILE)).expect("read");
        let mut lines: Vec<String> = text.lines().take(2).map(str::to_owned).collect();
        lines[1] = lines[1].replace("\"request_end_ns\"", "\"request_stop_ns\"");
        let path = dir.path().join(RECORDS_FILE);
        std::fs::write(&path, lines.join("\n")).expect("write");
        let e = format!("{:#}", read_records(&path).expect_err("a misnamed field"));
        assert!(e.contains("profile_export.jsonl: line 2"), "{e}");
        assert!(e.contains("missing field `request_end_ns`"), "{e}");
    }
}
