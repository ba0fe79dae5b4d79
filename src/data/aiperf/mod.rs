//! AIPerf's export files, so that kvsweep can write what InferenceX ingests from an AIPerf run
//! and read an AIPerf run's artifact directory as a cell.
//!
//! AIPerf 0.13.0 writes, under its `--output-artifact-dir`: `profile_export.jsonl` (one record
//! per request), `profile_export_aiperf.json` (the aggregate) and `server_metrics_export.json`
//! (the server's Prometheus `/metrics` reduced over the run). [`schema`] mirrors its pydantic
//! models field by field; [`cell_export`] writes a kvsweep cell as those files.

pub mod cell_export;
pub mod input_config;
pub mod records;
pub mod schema;
pub mod server_metrics;
pub mod submission;
pub mod theoretical;

pub use schema::aggregate::{AggregateEntry, JsonMetricResult, ProfileExport, RunMetadata};
pub use schema::record::{
    ErrorDetails, ErrorDetailsCount, MetricValue, MetricValueKind, RecordInfo, RecordMetadata,
};
pub use schema::server_export::{
    CounterMetric, CounterSeries, CounterStats, CounterTimeslice, GaugeMetric, GaugeSeries,
    GaugeStats, GaugeTimeslice, HistogramMetric, HistogramSeries, HistogramStats,
    HistogramTimeslice, ServerMetric, ServerMetricsEndpointInfo, ServerMetricsExport,
    ServerMetricsSummary, TimeRange,
};
pub use schema::{CreditPhase, read_profile_export, read_records, read_server_metrics};

/// Unix seconds as an ISO-8601 UTC time with microseconds, the precision of AIPerf's
/// `datetime.isoformat()`.
pub(crate) fn iso_time(unix_s: f64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(unix_s.max(0.0));
    humantime::format_rfc3339_micros(t).to_string()
}
