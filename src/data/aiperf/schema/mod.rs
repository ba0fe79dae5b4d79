//! AIPerf 0.13.0's export files as serde types, field names exactly as AIPerf writes them.
//!
//! Each type mirrors one pydantic model of the `aiperf` package (named in its doc comment).
//! AIPerf writes with `exclude_none`, so a field its model types `X | None` is absent rather
//! than `null` when unset: those are `Option`s that may be absent (`#[serde(default)]`) and are
//! left out when `None`. Fields its model requires are required here too. AIPerf's models allow
//! extra keys (`extra="allow"`); these types ignore keys they do not name, so a newer AIPerf
//! that adds fields still reads.
//!
//! One child per file, each its own set of models: `record` (`profile_export.jsonl`),
//! `aggregate` (`profile_export_aiperf.json`), `server_export` (`server_metrics_export.json`);
//! here are the phase they share, the file names and the readers.

pub(super) mod aggregate;
pub(super) mod record;
pub(super) mod server_export;

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::data::artifact::schema::{FormatError, parse_json};
use aggregate::ProfileExport;
use record::RecordInfo;
use server_export::ServerMetricsExport;

/// The benchmark phase a record or metric belongs to (`aiperf.common.enums.CreditPhase`; also
/// the values of `PhaseKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CreditPhase {
    Warmup,
    Profiling,
}

/// The file names AIPerf 0.13.0 writes under `--output-artifact-dir`.
pub(crate) const RECORDS_FILE: &str = "profile_export.jsonl";
pub(crate) const PROFILE_EXPORT_FILE: &str = "profile_export_aiperf.json";
pub(crate) const SERVER_METRICS_FILE: &str = "server_metrics_export.json";

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
    use record::MetricValueKind;
    use server_export::ServerMetric;

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
