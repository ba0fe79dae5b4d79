//! The shapes of a cell's artifact files, one serde type per file (or per CSV row).
//!
//! Every writer builds these types and every reader parses into them, so a renamed or retyped
//! field is a compile error on one side or a [`FormatError`] naming the file and the field on the
//! other, instead of a reader quietly taking a zero. Each file carries a `format_version`; a
//! reader refuses a version it does not know.

mod agentx;
mod cell;
mod gpu;
mod metadata;
mod prediction;
mod replay;
mod rows;
mod status;
mod summary;
mod versions;

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::write_json_atomic;

pub use agentx::{AgentxRecord, LaneStart, SubagentStart};
pub use cell::CellPlan;
pub use gpu::GpuRow;
pub use metadata::{Metadata, Simulator, TraceSetInfo};
pub use prediction::Prediction;
pub use replay::{Adaptive, AdaptiveStep, OpenLoop, PeriodRow};
pub use rows::{MetricsRawRow, MetricsRow, Outcome, RequestRow};
pub use status::{CellState, Status};
pub use summary::{
    CacheUse, ClientCpu, EndpointSummary, Goodput, Quantiles, RequestCounts, Summary, Throughput,
    summary_definitions,
};
pub use versions::Versions;

/// A file a reader could not take: which file, and which field was missing, misnamed or
/// mistyped. `collect` stops on this one (a cell that merely failed is skipped instead).
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", file.display())]
pub struct FormatError {
    pub file: PathBuf,
    pub message: String,
}

/// One JSON file of a cell directory.
pub trait JsonArtifact: Serialize + DeserializeOwned {
    /// Its name in the cell directory.
    const FILE: &'static str;
    /// The format version this build writes and reads.
    const VERSION: u32;

    /// The version the value records.
    fn format_version(&self) -> u32;

    /// Reads `dir/FILE`, failing with a [`FormatError`] on a field that does not fit.
    fn read(dir: &Path) -> Result<Self> {
        read_json(&dir.join(Self::FILE))
    }

    /// Writes `dir/FILE` atomically.
    fn write(&self, dir: &Path) -> Result<()> {
        write_json_atomic(&dir.join(Self::FILE), self)
    }
}

/// Parses a JSON artifact at `path`; the error names the file and the path of the field.
fn read_json<T: JsonArtifact>(path: &Path) -> Result<T> {
    let fail = |message: String| FormatError {
        file: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let value: T = parse_json(&text).map_err(fail)?;
    if value.format_version() != T::VERSION {
        return Err(fail(format!(
            "format_version {} (this kvsweep reads {})",
            value.format_version(),
            T::VERSION
        ))
        .into());
    }
    Ok(value)
}

/// Parses JSON text into `T`, saying at which field it fails.
pub(crate) fn parse_json<T: DeserializeOwned>(text: &str) -> std::result::Result<T, String> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let at = e.path().to_string();
        if at == "." {
            e.into_inner().to_string()
        } else {
            format!("field `{at}`: {}", e.into_inner())
        }
    })
}

/// Deserializes an `Option` field that must be present (it may be `null`): serde would take a
/// missing one for `None`, the silent default this module is here to prevent.
fn required<'de, D, T>(d: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::deserialize(d)
}

/// Reads every row of a CSV artifact; a row that does not fit (a missing column, a value of the
/// wrong type, another format version) fails naming the file, the line and the column.
pub fn read_csv_rows<T: DeserializeOwned>(
    path: &Path,
    version: impl Fn(&T) -> u32,
    expected: u32,
) -> Result<Vec<T>> {
    let fail = |message: String| FormatError {
        file: path.to_path_buf(),
        message,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let headers = reader
        .headers()
        .map_err(|e| fail(format!("no header row: {e}")))?
        .clone();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| fail(e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let row: T = record
            .deserialize(Some(&headers))
            .map_err(|e| match e.kind() {
                csv::ErrorKind::Deserialize { err, .. } => {
                    let column = err
                        .field()
                        .and_then(|i| headers.get(i as usize))
                        .map(|c| format!(", column `{c}`"))
                        .unwrap_or_default();
                    fail(format!("line {line}{column}: {}", err.kind()))
                }
                _ => fail(format!("line {line}: {e}")),
            })?;
        if version(&row) != expected {
            return Err(fail(format!(
                "line {line}: format_version {} (this kvsweep reads {expected})",
                version(&row)
            ))
            .into());
        }
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_field_is_named_with_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut v = serde_json::to_value(Summary {
            format_version: Summary::VERSION,
            ..Summary::default()
        })
        .expect("to_value");
        v["requests"].as_object_mut().expect("object").remove("ok");
        std::fs::write(dir.path().join("summary.json"), v.to_string()).expect("write");
        let e = Summary::read(dir.path()).expect_err("a missing field");
        let text = format!("{e:#}");
        assert!(text.contains("summary.json"), "{text}");
        assert!(
            text.contains("field `requests`") && text.contains("missing field `ok`"),
            "{text}"
        );
        assert!(e.downcast_ref::<FormatError>().is_some());
    }

    #[test]
    fn a_nullable_field_must_still_be_there() {
        let mut v = serde_json::to_value(Summary::default()).expect("to_value");
        v["cache"]
            .as_object_mut()
            .expect("object")
            .remove("hit_rate");
        let e = parse_json::<Summary>(&v.to_string()).expect_err("missing");
        assert!(e.contains("missing field `hit_rate`"), "{e}");
    }

    #[test]
    fn an_unknown_format_version_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Status::new(CellState::Ok, "completed");
        s.format_version = 99;
        s.write(dir.path()).expect("write");
        let e = Status::read(dir.path()).expect_err("version 99");
        assert!(format!("{e}").contains("format_version 99"), "{e}");
    }

    fn row() -> RequestRow {
        RequestRow {
            request_id: 7,
            user: 1,
            session: "s".into(),
            request_index: 2,
            scheduled_s: 1.5,
            sent_s: 1.5,
            done_s: 2.25,
            schedule_delay_ms: 0.0,
            ttft_ms: Some(12.3456),
            e2e_ms: 750.0,
            tpot_ms: None,
            itl_mean_ms: None,
            itl_max_ms: None,
            trace_input_tokens: 640,
            trace_output_tokens: 10,
            prompt_tokens: Some(640),
            completion_tokens: None,
            cached_tokens: Some(0),
            status: Outcome::Ok,
            http_status: 200,
            error: String::new(),
            endpoint: 0,
            attempts: 1,
            effective_ttft_ms: Some(12.3456),
            meets_slo: true,
            format_version: RequestRow::VERSION,
        }
    }

    #[test]
    fn a_request_row_has_its_columns_in_order_and_reads_back() {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.serialize(row()).expect("serialize");
        let text = String::from_utf8(w.into_inner().expect("bytes")).expect("utf-8");
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(RequestRow::COLUMNS.join(",").as_str()));
        assert_eq!(
            lines.next(),
            Some(
                "7,1,s,2,1.500000,1.500000,2.250000,0.000,12.346,750.000,,,,640,10,640,,0,ok,200,,0,1,12.346,true,1"
            )
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(RequestRow::FILE);
        std::fs::write(&path, &text).expect("write");
        let rows = read_csv_rows(
            &path,
            |r: &RequestRow| r.format_version,
            RequestRow::VERSION,
        )
        .expect("read");
        assert_eq!(rows[0].ttft_ms, Some(12.346));
        std::fs::write(&path, text.replace(",640,10,", ",640,ten,")).expect("write");
        let e = read_csv_rows(
            &path,
            |r: &RequestRow| r.format_version,
            RequestRow::VERSION,
        )
        .expect_err("a bad value");
        let e = format!("{e}");
        assert!(
            e.contains("requests.csv: line 2, column `trace_output_tokens`"),
            "{e}"
        );
    }

    #[test]
    fn a_metrics_row_has_its_columns_in_order() {
        let mut w = csv::Writer::from_writer(Vec::new());
        let row = MetricsRow {
            time: 1000.0,
            running: Some(2.0),
            kv_cache_usage: Some(0.25),
            format_version: MetricsRow::VERSION,
            ..MetricsRow::default()
        };
        w.serialize(&row).expect("serialize");
        let text = String::from_utf8(w.into_inner().expect("bytes")).expect("utf-8");
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(MetricsRow::COLUMNS.join(",").as_str()));
        assert_eq!(
            lines.next(),
            Some("1000.000,0.000,2,,0.25,,,,,,,,,,,,,,,,,,,,,,,,1")
        );
    }

    #[test]
    fn metadata_written_before_the_server_answered_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let early = Metadata {
            format_version: Metadata::VERSION,
            url: vec!["http://localhost:8000".into()],
            ..Metadata::default()
        };
        early.write(dir.path()).expect("write");
        let text = std::fs::read_to_string(dir.path().join(Metadata::FILE)).expect("read");
        assert!(!text.contains("\"models\"") && text.contains("\"finished_at\": null"));
        assert_eq!(Metadata::read(dir.path()).expect("read"), early);
        // Written before `simulator` was recorded: read off the /v1/models answer it kept.
        let older = Metadata {
            models: Some(serde_json::json!({"data": [{"id": "m", "sim_speed": 4.0}]})),
            ..early.clone()
        };
        let at_4 = Simulator {
            speed: Some(4.0),
            runner: None,
        };
        assert_eq!(older.simulator(), Some(at_4.clone()));
        // The typed field wins, and reads back as written.
        let late = Metadata {
            simulator: Some(Simulator {
                speed: Some(20.0),
                runner: Some("h100".into()),
            }),
            ..older
        };
        late.write(dir.path()).expect("write");
        let back = Metadata::read(dir.path()).expect("read");
        assert_eq!(back.simulator().and_then(|s| s.speed), Some(20.0));
        assert_eq!(back, late);
        // A real engine's answer names no simulator.
        let vllm = serde_json::json!({"data": [{"id": "m", "owned_by": "vllm"}]});
        assert_eq!(Simulator::from_models(&vllm), None);
        let instant = serde_json::json!({"data": [{"id": "m", "owned_by": "kvsweep-sim", "sim_speed": null}]});
        assert_eq!(
            Simulator::from_models(&instant),
            Some(Simulator {
                speed: None,
                runner: None
            })
        );
        assert_ne!(Simulator::from_models(&instant), Some(at_4));
    }

    #[test]
    fn a_gpu_row_has_the_columns_the_sampler_writes() {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.serialize(GpuRow {
            time: 1.5,
            gpu: "0".into(),
            util_pct: None,
            mem_used_mib: Some(10.0),
            mem_total_mib: Some(80.0),
            power_w: Some(350.5),
        })
        .expect("serialize");
        let text = String::from_utf8(w.into_inner().expect("bytes")).expect("utf-8");
        assert_eq!(
            text.lines().next(),
            Some(crate::run::metrics::gpu::COLUMNS.join(",").as_str())
        );
    }

    #[test]
    fn a_status_reads_back_as_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Status::new(CellState::Partial, "interrupted");
        s.requests = Some(3);
        s.write(dir.path()).expect("write");
        assert_eq!(Status::read(dir.path()).expect("read"), s);
        let text = std::fs::read_to_string(dir.path().join("status.json")).expect("read");
        // The sbatch template greps for this.
        assert!(text.contains("\"status\": \"partial\""), "{text}");
    }
}
