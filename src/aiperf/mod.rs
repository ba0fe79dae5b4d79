//! AIPerf's export files, so that kvsweep can write what InferenceX ingests from an AIPerf run
//! and read an AIPerf run's artifact directory as a cell.
//!
//! AIPerf 0.13.0 writes, under its `--output-artifact-dir`: `profile_export.jsonl` (one record
//! per request), `profile_export_aiperf.json` (the aggregate) and `server_metrics_export.json`
//! (the server's Prometheus `/metrics` reduced over the run). [`schema`] mirrors its pydantic
//! models field by field.

pub mod input_config;
pub mod schema;

pub use schema::{
    AggregateEntry, CounterMetric, CounterSeries, CounterStats, CounterTimeslice, CreditPhase,
    ErrorDetails, ErrorDetailsCount, GaugeMetric, GaugeSeries, GaugeStats, GaugeTimeslice,
    HistogramMetric, HistogramSeries, HistogramStats, HistogramTimeslice, JsonMetricResult,
    MetricValue, MetricValueKind, ProfileExport, RecordInfo, RecordMetadata, RunMetadata,
    ServerMetric, ServerMetricsEndpointInfo, ServerMetricsExport, ServerMetricsSummary, TimeRange,
    read_profile_export, read_records, read_server_metrics,
};
