//! `profile_export_aiperf.json`: the run's aggregate (`JsonExportData`), its metric results and
//! run metadata; apart from the per-request records and the server export, which are other
//! files with other models.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::record::ErrorDetailsCount;

/// `profile_export_aiperf.json` (`aiperf.common.models.JsonExportData`, schema 1.4): the run's
/// aggregate. Every metric is a top-level key holding a [`JsonMetricResult`]
/// (`request_count`, `error_request_count`, `completed_request_count`, `request_latency`,
/// `theoretical_prefix_cache_hit`, ...); [`ProfileExport::metric`] finds one by tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileExport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) schema_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) aiperf_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) benchmark_id: Option<String>,
    /// The resolved configuration (AIPerf's `BenchmarkConfig`), kept as written: InferenceX
    /// does not read it, and its shape changes with every AIPerf release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) input_config: Option<serde_json::Value>,
    /// Seed, trial and command line of the run (`RunInfo`), kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) run_info: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) was_cancelled: Option<bool>,
    /// False when the run degraded before finishing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) is_complete: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) incomplete_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_summary: Option<Vec<ErrorDetailsCount>>,
    /// Local (naive) ISO-8601 time of the profiling phase's start, as Python's
    /// `datetime.isoformat()` writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) end_time: Option<String>,
    /// DAG (subagent) orchestration counters, kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) branch_stats: Option<serde_json::Value>,
    /// Metrics of the warm-up requests alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) warmup_metrics: Option<IndexMap<String, JsonMetricResult>>,
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
    pub(crate) fn scalar(unit: &str, avg: f64) -> Self {
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
