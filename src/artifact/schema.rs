//! The shapes of a cell's artifact files, one serde type per file (or per CSV row).
//!
//! Every writer builds these types and every reader parses into them, so a renamed or retyped
//! field is a compile error on one side or a [`FormatError`] naming the file and the field on the
//! other, instead of a reader quietly taking a zero. Each file carries a `format_version`; a
//! reader refuses a version it does not know.

use std::path::{Path, PathBuf};

use anyhow::Result;
use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::EngineKind;
use crate::spec::{Cell, OffloadBackend, TraceFormat};
use crate::trace_cache::RemoteTraces;

use super::write_json_atomic;

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
pub fn read_json<T: JsonArtifact>(path: &Path) -> Result<T> {
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
pub fn parse_json<T: DeserializeOwned>(text: &str) -> std::result::Result<T, String> {
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

/// How a cell (or a bare replay) stands: the one state `status.json` records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellState {
    /// Started and not finished; a status still saying this after its process is gone was killed.
    Running,
    Ok,
    /// Stopped early (the engine died, a signal): everything recorded so far is kept.
    Partial,
    Failed,
}

impl CellState {
    pub fn as_str(self) -> &'static str {
        match self {
            CellState::Running => "running",
            CellState::Ok => "ok",
            CellState::Partial => "partial",
            CellState::Failed => "failed",
        }
    }
}

/// `status.json`, written by `kvsweep replay`, `kvsweep run-cell` and the runner script (each
/// fills what it knows; a bare replay knows no cell name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub format_version: u32,
    pub status: CellState,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<String>,
    /// RFC 3339, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_requests: Option<u64>,
    /// The runner script's exit status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The last lines of the server log, where the engine is why the cell did not finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_log_tail: Option<String>,
}

impl Status {
    /// A status with only the state and the reason.
    pub fn new(status: CellState, reason: impl Into<String>) -> Self {
        Self {
            format_version: Self::VERSION,
            status,
            reason: reason.into(),
            cell: None,
            started_at: None,
            finished_at: None,
            requests: None,
            failed_requests: None,
            exit_code: None,
            server_log_tail: None,
        }
    }
}

impl JsonArtifact for Status {
    const FILE: &'static str = "status.json";
    const VERSION: u32 = 1;
    fn format_version(&self) -> u32 {
        self.format_version
    }
}

/// `cell.json`: everything about one cell that the script and run-cell were given.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellPlan {
    pub format_version: u32,
    pub cell: Cell,
    pub spec: PathBuf,
    pub runner: String,
    pub engine: EngineKind,
    pub model: String,
    #[serde(deserialize_with = "required")]
    pub image: Option<String>,
    #[serde(deserialize_with = "required")]
    pub precision: Option<String>,
    pub offload_backend: OffloadBackend,
    /// GiB of host memory for the offload tier, when offload is on.
    #[serde(deserialize_with = "required")]
    pub offload_gib: Option<f64>,
    /// The spec's `engine_args`, appended to the engine command.
    pub engine_args: Vec<String>,
    pub duration_s: u64,
    /// Where a replay cell finds its traces on the machine that runs it, as an absolute path.
    /// `None` for a tester cell, and for traces named by URL until `run-cell` has fetched them.
    #[serde(deserialize_with = "required")]
    pub traces: Option<PathBuf>,
    /// The URL a replay cell's traces are fetched from into the trace cache, when the spec names
    /// them by URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_url: Option<RemoteTraces>,
    pub trace_format: TraceFormat,
    /// The cell's workload command line (`kvsweep replay ...`, or `kvsweep test KIND ...` for a
    /// tester cell), without `--traces`, `--url` and where its results go: the runner adds them.
    pub replay_args: Vec<String>,
    /// The synthetic test this cell runs instead of a replay; its results go to `tester/`.
    #[serde(deserialize_with = "required")]
    pub tester: Option<String>,
    pub port: u16,
    pub health_timeout_s: u64,
}

impl JsonArtifact for CellPlan {
    const FILE: &'static str = "cell.json";
    const VERSION: u32 = 1;
    fn format_version(&self) -> u32 {
        self.format_version
    }
}

/// The trace set a replay read (`metadata.json` → `traces`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceSetInfo {
    pub files: usize,
    pub sessions: usize,
    pub digest: String,
    pub skipped_records: usize,
    /// The first 100 records left out, and why.
    pub skipped: Vec<String>,
}

/// `metadata.json`: what a replay ran against and with. Written when the run starts and again
/// as it learns more (the server's answer, the warm-up, the end); the fields it has not learned
/// yet are absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub format_version: u32,
    pub command: Vec<String>,
    pub kvsweep_version: String,
    /// `--engine-label`, then what the server turned out to be (`sim` for the simulator).
    #[serde(deserialize_with = "required")]
    pub engine: Option<String>,
    pub url: Vec<String>,
    pub api: String,
    pub users: u32,
    pub duration_s: f64,
    pub timing: String,
    pub time_scale: f64,
    pub seed: u64,
    /// The lowest and highest token id of completions prompts (none for chat).
    #[serde(deserialize_with = "required")]
    pub prompt_token_ids: Option<[u32; 2]>,
    pub traces: TraceSetInfo,
    /// Unix seconds.
    pub started_at: f64,
    #[serde(deserialize_with = "required")]
    pub finished_at: Option<f64>,
    pub completed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulated: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The server's `/v1/models` answer, as it gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_reset: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_requests: Option<u64>,
    /// Set at the end: `null` when the cache did not look warm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_cache_warning: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abandoned_requests: Option<usize>,
}

impl JsonArtifact for Metadata {
    const FILE: &'static str = "metadata.json";
    const VERSION: u32 = 1;
    fn format_version(&self) -> u32 {
        self.format_version
    }
}

impl Metadata {
    /// The simulator's speed, when the server was the simulator and said it.
    pub fn sim_speed(&self) -> Option<f64> {
        self.models.as_ref()?["data"]
            .as_array()?
            .iter()
            .find_map(|m| m["sim_speed"].as_f64())
    }
}

/// Count, mean and percentiles of one latency (or speed) over a run; only `count` when empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    pub count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// Requests of a run by outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestCounts {
    pub total: u64,
    pub ok: u64,
    pub failed: u64,
    pub error_rate: f64,
    /// Sends past the first of a request (429 and 5xx back-off).
    pub rate_limited_resends: u64,
}

/// Per-second rates over the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub requests_per_s: f64,
    pub input_tokens_per_s: f64,
    pub output_tokens_per_s: f64,
    pub total_tokens_per_s: f64,
}

/// The prompt tokens the server said it found cached.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheUse {
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    /// `None` when no prompt token was counted.
    #[serde(deserialize_with = "required")]
    pub hit_rate: Option<f64>,
}

/// Requests that met the service-level objectives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Goodput {
    pub slo_ttft_s: f64,
    pub slo_decode_tps: f64,
    pub good_requests: u64,
    pub requests_per_s: f64,
    pub output_tokens_per_s: f64,
    /// Good requests over successful ones; `None` when none succeeded.
    #[serde(deserialize_with = "required")]
    pub fraction: Option<f64>,
}

/// One endpoint's share of a run over several.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointSummary {
    pub url: String,
    pub requests: u64,
    pub failed: u64,
    pub ttft_ms: Quantiles,
    #[serde(deserialize_with = "required")]
    pub cache_hit_rate: Option<f64>,
}

/// `summary.json`: a replay's figures over the whole run, rewritten at each period's end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub format_version: u32,
    pub engine: String,
    pub simulated: bool,
    pub completed: bool,
    pub duration_s: f64,
    pub requests: RequestCounts,
    pub throughput: Throughput,
    pub ttft_ms: Quantiles,
    pub effective_ttft_ms: Quantiles,
    pub itl_ms: Quantiles,
    pub tpot_ms: Quantiles,
    pub e2e_ms: Quantiles,
    pub interactivity_tokens_per_s: Quantiles,
    pub schedule_delay_ms: Quantiles,
    pub cache: CacheUse,
    pub goodput: Goodput,
    /// The adaptive controller's state, when it ran (its own shape, for people).
    #[serde(deserialize_with = "required")]
    pub adaptive: Option<Value>,
    /// The open-loop arrival figures, when sessions arrived at a rate.
    #[serde(deserialize_with = "required")]
    pub open_loop: Option<Value>,
    /// Per endpoint, when the run had more than one.
    pub endpoints: Vec<EndpointSummary>,
    /// What each figure means, by name.
    pub definitions: IndexMap<String, String>,
}

impl JsonArtifact for Summary {
    const FILE: &'static str = "summary.json";
    const VERSION: u32 = 1;
    fn format_version(&self) -> u32 {
        self.format_version
    }
}

/// The definitions `summary.json` carries.
pub fn summary_definitions() -> IndexMap<String, String> {
    [
        (
            "ttft",
            "request sent to first content chunk, ms; time the client held the request before sending is not included (see schedule_delay)",
        ),
        (
            "effective_ttft",
            "ttft plus the schedule delay: what a user waits, admission control and 429 back-off included",
        ),
        (
            "itl",
            "gap between consecutive content chunks of a request, ms, every gap of every request",
        ),
        (
            "tpot",
            "(e2e - ttft) / (completion_tokens - 1) per request with at least 2 output tokens, ms",
        ),
        ("e2e", "request sent to the end of its stream, ms"),
        (
            "interactivity",
            "1000 / tpot_ms: output tokens per second one user sees",
        ),
        (
            "schedule_delay",
            "actual send time minus the time the schedule called for, ms",
        ),
        (
            "throughput",
            "server-reported prompt and completion tokens of successful requests per second of the run",
        ),
        (
            "cache_hit_rate",
            "sum of usage.prompt_tokens_details.cached_tokens / sum of usage.prompt_tokens (server-reported)",
        ),
        (
            "goodput",
            "successful requests with effective_ttft <= slo_ttft and decode speed (1000 / tpot) >= slo_decode_tps",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// How a request ended (`requests.csv` → `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    /// An HTTP error, a broken stream or an error event.
    Error,
    Timeout,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
        }
    }
}

/// Writes a float with a fixed number of decimals, as the CSV files always had them.
fn fixed<const D: usize, S: serde::Serializer>(
    v: &f64,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{v:.D$}"))
}

fn fixed_opt<const D: usize, S: serde::Serializer>(
    v: &Option<f64>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match v {
        Some(v) => fixed::<D, S>(v, s),
        None => s.serialize_str(""),
    }
}

/// One row of `requests.csv`: one finished request of a replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRow {
    pub request_id: u64,
    pub user: u32,
    pub session: String,
    pub request_index: u32,
    /// Seconds from the run's start.
    #[serde(serialize_with = "fixed::<6, _>")]
    pub scheduled_s: f64,
    #[serde(serialize_with = "fixed::<6, _>")]
    pub sent_s: f64,
    #[serde(serialize_with = "fixed::<6, _>")]
    pub done_s: f64,
    #[serde(serialize_with = "fixed::<3, _>")]
    pub schedule_delay_ms: f64,
    #[serde(serialize_with = "fixed_opt::<3, _>")]
    pub ttft_ms: Option<f64>,
    #[serde(serialize_with = "fixed::<3, _>")]
    pub e2e_ms: f64,
    #[serde(serialize_with = "fixed_opt::<3, _>")]
    pub tpot_ms: Option<f64>,
    #[serde(serialize_with = "fixed_opt::<3, _>")]
    pub itl_mean_ms: Option<f64>,
    #[serde(serialize_with = "fixed_opt::<3, _>")]
    pub itl_max_ms: Option<f64>,
    pub trace_input_tokens: u32,
    pub trace_output_tokens: u32,
    /// Server-reported.
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub cached_tokens: Option<u32>,
    pub status: Outcome,
    pub http_status: u16,
    pub error: String,
    /// Index into the replay's `--url`s.
    pub endpoint: usize,
    /// Sends it took (more than one after 429s).
    pub attempts: u32,
    #[serde(serialize_with = "fixed_opt::<3, _>")]
    pub effective_ttft_ms: Option<f64>,
    pub meets_slo: bool,
    pub format_version: u32,
}

impl RequestRow {
    pub const FILE: &'static str = "requests.csv";
    pub const VERSION: u32 = 1;
    /// The header row, in field order.
    pub const COLUMNS: &'static [&'static str] = &[
        "request_id",
        "user",
        "session",
        "request_index",
        "scheduled_s",
        "sent_s",
        "done_s",
        "schedule_delay_ms",
        "ttft_ms",
        "e2e_ms",
        "tpot_ms",
        "itl_mean_ms",
        "itl_max_ms",
        "trace_input_tokens",
        "trace_output_tokens",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "status",
        "http_status",
        "error",
        "endpoint",
        "attempts",
        "effective_ttft_ms",
        "meets_slo",
        "format_version",
    ];
}

/// Writes a float as Rust displays it (`1`, not `1.0`), as `metrics.csv` always had them.
fn shortest_opt<S: serde::Serializer>(
    v: &Option<f64>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_str(""),
    }
}

/// One row of `metrics.csv`: the server's counters at one scrape and what they did over the
/// interval since the one before (README.md, "Server metrics"). Empty where the engine does not
/// export a figure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    /// Unix seconds of the scrape.
    #[serde(serialize_with = "fixed::<3, _>")]
    pub time: f64,
    /// Seconds from the first scrape that saw the server busy.
    #[serde(serialize_with = "fixed::<3, _>")]
    pub rel_s: f64,
    #[serde(serialize_with = "shortest_opt")]
    pub running: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub waiting: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub kv_cache_usage: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub preemptions: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub prefix_queries: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub prefix_hits: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub prefix_hits_device: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub prefix_hits_host: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub prefix_hits_other: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub interval_hit_rate: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub prompt_tokens: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub generation_tokens: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub prompt_tokens_per_s: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub generation_tokens_per_s: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub prompt_compute: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub prompt_cache_hit: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub prompt_external: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub offload_bytes_to_cpu: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub offload_bytes_to_gpu: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub offload_to_cpu_gb_s: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub offload_to_gpu_gb_s: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub offload_seconds_to_cpu: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub offload_seconds_to_gpu: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub ttft_mean_ms: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub itl_mean_ms: Option<f64>,
    #[serde(serialize_with = "shortest_opt")]
    pub queue_mean_ms: Option<f64>,
    pub format_version: u32,
}

impl MetricsRow {
    pub const FILE: &'static str = "metrics.csv";
    pub const VERSION: u32 = 1;
    /// The header row, in field order.
    pub const COLUMNS: &'static [&'static str] = &[
        "time",
        "rel_s",
        "running",
        "waiting",
        "kv_cache_usage",
        "preemptions",
        "prefix_queries",
        "prefix_hits",
        "prefix_hits_device",
        "prefix_hits_host",
        "prefix_hits_other",
        "interval_hit_rate",
        "prompt_tokens",
        "generation_tokens",
        "prompt_tokens_per_s",
        "generation_tokens_per_s",
        "prompt_compute",
        "prompt_cache_hit",
        "prompt_external",
        "offload_bytes_to_cpu",
        "offload_bytes_to_gpu",
        "offload_to_cpu_gb_s",
        "offload_to_gpu_gb_s",
        "offload_seconds_to_cpu",
        "offload_seconds_to_gpu",
        "ttft_mean_ms",
        "itl_mean_ms",
        "queue_mean_ms",
        "format_version",
    ];
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
        let late = Metadata {
            models: Some(serde_json::json!({"data": [{"id": "m", "sim_speed": 4.0}]})),
            ..early
        };
        assert_eq!(late.sim_speed(), Some(4.0));
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
