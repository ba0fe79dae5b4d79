//! The replay's typed parts of `summary.json` (`adaptive`, `open_loop`) and the rows of
//! `periods.csv`.

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::rows::{fixed, fixed_opt};
use super::{read_csv_rows, required};
use crate::base::workload::control::{Arrival, TtftMetric};

/// One decision of the adaptive controller (`summary.json` → `adaptive.steps`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveStep {
    pub period: u32,
    pub users: u32,
    #[serde(deserialize_with = "required")]
    pub ttft_ms: Option<f64>,
    #[serde(deserialize_with = "required")]
    pub(crate) decode_tps: Option<f64>,
    pub within_target: bool,
    pub next_users: u32,
}

/// The adaptive controller's state (`summary.json` → `adaptive`), when it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adaptive {
    pub(crate) target_ttft_ms: f64,
    pub(crate) ttft_metric: TtftMetric,
    pub(crate) ttft_window_periods: u32,
    pub max_users: u32,
    /// The largest user count seen to hold the target.
    #[serde(deserialize_with = "required")]
    pub capacity_users: Option<u32>,
    #[serde(deserialize_with = "required")]
    pub(crate) smallest_users_over_target: Option<u32>,
    /// The search has closed: the capacity is one below the smallest count over the target
    /// (or the maximum held).
    pub settled: bool,
    pub steps: Vec<AdaptiveStep>,
}

/// The open-loop arrival figures (`summary.json` → `open_loop`), when sessions arrived at a
/// rate (`--request-rate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenLoop {
    pub(crate) requested_sessions_per_s: f64,
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
    #[serde(serialize_with = "fixed_opt::<3, _>", deserialize_with = "required")]
    pub ttft_p50_ms: Option<f64>,
    #[serde(serialize_with = "fixed_opt::<3, _>", deserialize_with = "required")]
    pub ttft_p90_ms: Option<f64>,
    #[serde(serialize_with = "fixed_opt::<3, _>", deserialize_with = "required")]
    pub ttft_p99_ms: Option<f64>,
    #[serde(serialize_with = "fixed_opt::<3, _>", deserialize_with = "required")]
    pub itl_p50_ms: Option<f64>,
    #[serde(serialize_with = "fixed_opt::<3, _>", deserialize_with = "required")]
    pub itl_p99_ms: Option<f64>,
    #[serde(serialize_with = "fixed_opt::<3, _>", deserialize_with = "required")]
    pub(crate) tpot_mean_ms: Option<f64>,
    #[serde(serialize_with = "fixed_opt::<4, _>", deserialize_with = "required")]
    pub cache_hit_rate: Option<f64>,
    #[serde(serialize_with = "fixed_opt::<3, _>", deserialize_with = "required")]
    pub(crate) schedule_delay_p99_ms: Option<f64>,
    #[serde(serialize_with = "fixed_opt::<3, _>", deserialize_with = "required")]
    pub(crate) effective_ttft_p50_ms: Option<f64>,
    #[serde(serialize_with = "fixed_opt::<3, _>", deserialize_with = "required")]
    pub(crate) effective_ttft_p99_ms: Option<f64>,
    #[serde(serialize_with = "fixed::<3, _>")]
    pub(crate) goodput_requests_per_s: f64,
    #[serde(serialize_with = "fixed_opt::<4, _>", deserialize_with = "required")]
    pub(crate) goodput_fraction: Option<f64>,
    /// Token-bucket fill levels (share of capacity), when `--itpm`/`--otpm` are set.
    #[serde(serialize_with = "fixed_opt::<4, _>", deserialize_with = "required")]
    pub itpm_fill: Option<f64>,
    #[serde(serialize_with = "fixed_opt::<4, _>", deserialize_with = "required")]
    pub(crate) otpm_fill: Option<f64>,
    /// `all`, or the endpoint's URL.
    pub endpoint: String,
    pub format_version: u32,
}

impl PeriodRow {
    /// Every row of `dir/periods.csv`; a missing or misnamed column fails naming the file.
    pub fn read(dir: &Path) -> Result<Vec<Self>> {
        read_csv_rows(
            &dir.join(Self::FILE),
            |r: &Self| r.format_version,
            Self::VERSION,
        )
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::kinds::Api;
    use crate::base::workload::replay::Timing;
    use crate::data::artifact::schema::{JsonArtifact, Metadata, MetricsRawRow};

    fn row() -> PeriodRow {
        PeriodRow {
            period: 3,
            start_s: 10.0,
            end_s: 20.0,
            users: 4,
            requests: 8,
            errors: 1,
            requests_per_s: 0.8,
            input_tokens_per_s: 1234.56,
            output_tokens_per_s: 50.0,
            ttft_p50_ms: Some(12.3456),
            ttft_p90_ms: None,
            ttft_p99_ms: None,
            itl_p50_ms: None,
            itl_p99_ms: None,
            tpot_mean_ms: None,
            cache_hit_rate: Some(0.5),
            schedule_delay_p99_ms: Some(0.0),
            effective_ttft_p50_ms: None,
            effective_ttft_p99_ms: None,
            goodput_requests_per_s: 0.7,
            goodput_fraction: Some(1.0),
            itpm_fill: None,
            otpm_fill: None,
            endpoint: "all".into(),
            format_version: PeriodRow::VERSION,
        }
    }

    #[test]
    fn a_period_row_has_its_columns_in_order_and_reads_back() {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.serialize(row()).expect("serialize");
        let text = String::from_utf8(w.into_inner().expect("bytes")).expect("utf-8");
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(PeriodRow::COLUMNS.join(",").as_str()));
        assert_eq!(
            lines.next(),
            Some(
                "3,10.000,20.000,4,8,1,0.800,1234.6,50.0,12.346,,,,,,0.5000,0.000,,,0.700,1.0000,,,all,1"
            )
        );
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(PeriodRow::FILE), &text).expect("write");
        let back = PeriodRow::read(dir.path()).expect("read");
        assert_eq!(back[0].ttft_p50_ms, Some(12.346));
        assert_eq!(
            (back[0].itpm_fill, back[0].endpoint.as_str()),
            (None, "all")
        );
        // A misnamed column is an error naming the file and the column.
        let renamed = text.replacen("goodput_fraction", "goodput_share", 1);
        std::fs::write(dir.path().join(PeriodRow::FILE), renamed).expect("write");
        let e = format!("{:#}", PeriodRow::read(dir.path()).expect_err("misnamed"));
        assert!(
            e.contains("periods.csv") && e.contains("goodput_fraction"),
            "{e}"
        );
    }

    #[test]
    fn a_summary_s_adaptive_and_open_loop_read_back_typed() {
        let adaptive = Adaptive {
            target_ttft_ms: 2000.0,
            ttft_metric: TtftMetric::P90,
            ttft_window_periods: 3,
            max_users: 16,
            capacity_users: Some(4),
            smallest_users_over_target: None,
            settled: false,
            steps: vec![AdaptiveStep {
                period: 2,
                users: 4,
                ttft_ms: None,
                decode_tps: Some(40.0),
                within_target: true,
                next_users: 8,
            }],
        };
        let open_loop = OpenLoop {
            requested_sessions_per_s: 2.0,
            arrival: Arrival::Constant,
            sessions_started: 9,
            achieved_sessions_per_s: 1.8,
        };
        let v = serde_json::to_value((&adaptive, &open_loop)).expect("to_value");
        assert_eq!(v[0]["ttft_metric"], "p90");
        assert_eq!(v[1]["arrival"], "constant");
        let back: (Adaptive, OpenLoop) = serde_json::from_value(v.clone()).expect("reads");
        assert_eq!(back, (adaptive, open_loop));
        // A nullable field must still be there.
        let mut missing = v[0].clone();
        missing["steps"][0]
            .as_object_mut()
            .expect("object")
            .remove("ttft_ms");
        let e = crate::data::artifact::schema::parse_json::<Adaptive>(&missing.to_string())
            .expect_err("missing");
        assert!(e.contains("missing field `ttft_ms`"), "{e}");
    }

    #[test]
    fn metadata_spells_api_and_timing_as_the_command_line_and_reads_the_old_spelling() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = Metadata {
            format_version: Metadata::VERSION,
            api: Api::Chat,
            timing: Timing::ApiScaled,
            ..Metadata::default()
        };
        m.write(dir.path()).expect("write");
        let text = std::fs::read_to_string(dir.path().join(Metadata::FILE)).expect("read");
        assert!(
            text.contains("\"api\": \"chat\"") && text.contains("\"timing\": \"api-scaled\""),
            "{text}"
        );
        // Written by an older replay, with the Rust name.
        std::fs::write(
            dir.path().join(Metadata::FILE),
            text.replace("\"api-scaled\"", "\"ApiScaled\""),
        )
        .expect("write");
        assert_eq!(
            Metadata::read(dir.path()).expect("read").timing,
            Timing::ApiScaled
        );
        std::fs::write(
            dir.path().join(Metadata::FILE),
            text.replace("\"api-scaled\"", "\"sometimes\""),
        )
        .expect("write");
        let e = format!("{:#}", Metadata::read(dir.path()).expect_err("unknown"));
        assert!(
            e.contains("metadata.json") && e.contains("field `timing`"),
            "{e}"
        );
    }

    /// The agentx fixture cells were written by an older replay (`timing: "ThinkOnly"`): their
    /// metadata still reads, and their rows read as this build's types.
    #[test]
    fn the_fixture_cells_read_through_the_typed_rows() {
        let cells =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agentx/cells");
        let mut seen = 0;
        for entry in std::fs::read_dir(&cells).expect("fixture cells") {
            let dir = entry.expect("entry").path();
            assert!(!PeriodRow::read(&dir).expect("periods.csv").is_empty());
            assert!(
                !MetricsRawRow::read(&dir)
                    .expect("metrics_raw.csv")
                    .is_empty()
            );
            assert_eq!(
                Metadata::read(&dir).expect("metadata.json").timing,
                Timing::ThinkOnly
            );
            seen += 1;
        }
        assert_eq!(seen, 3);
    }
}
