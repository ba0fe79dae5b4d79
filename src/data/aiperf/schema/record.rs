//! `profile_export.jsonl`: one record per request (`MetricRecordInfo`), its metric values and
//! its error; apart from the aggregate and server exports, which are other files with other
//! models (the aggregate reuses [`ErrorDetailsCount`] from here).

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::CreditPhase;

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
    pub(crate) session_num: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) x_request_id: Option<String>,
    /// Shared by every request of one session (conversation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) x_correlation_id: Option<String>,
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
    pub(crate) source_outer_idx: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) source_inner_idx: Option<u64>,
    /// The loader's classification (`weka_main`, `weka_subagent`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) source_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) credit_issued_ns: Option<u64>,
    pub request_start_ns: u64,
    /// First byte of a streamed answer, when the server acknowledged one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) request_ack_ns: Option<u64>,
    /// The end of the request, or the time of its error.
    pub request_end_ns: u64,
    pub(crate) worker_id: String,
    pub(crate) record_processor_id: String,
    pub benchmark_phase: CreditPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) phase_index: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) profiling_index: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) phase_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) phase_kind: Option<CreditPhase>,
    /// AIPerf defaults it to false and always writes it.
    #[serde(default)]
    pub(crate) was_cancelled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cancellation_time_ns: Option<u64>,
    /// AIPerf defaults it to false and always writes it.
    #[serde(default)]
    pub(crate) context_overflow_skip: bool,
    /// 0 for a root session, +1 per subagent level; AIPerf defaults it to 0 and always
    /// writes it.
    #[serde(default)]
    pub(crate) agent_depth: u32,
    /// The `x_correlation_id` of the session that spawned this subagent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) parent_correlation_id: Option<String>,
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
    pub(crate) error_type: Option<String>,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cause: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cause_chain: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// `aiperf.common.models.ErrorDetailsCount`: one kind of error and how often it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetailsCount {
    pub(crate) error_details: ErrorDetails,
    pub count: u64,
}
