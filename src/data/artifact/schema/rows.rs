//! The rows of `requests.csv`, `metrics.csv` and `metrics_raw.csv`.

use serde::{Deserialize, Serialize};

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
pub(super) fn fixed<const D: usize, S: serde::Serializer>(
    v: &f64,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{v:.D$}"))
}

pub(super) fn fixed_opt<const D: usize, S: serde::Serializer>(
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

/// One row of `metrics.csv`: the server's counters at one scrape (their increases since the
/// recorder's first scrape) and what they did over the interval since the one before (README.md,
/// "Server metrics"). Empty where the engine does not export a figure.
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

/// Writes a flag as `1` or `0`, as `metrics_raw.csv` always had it.
fn one_or_zero<S: serde::Serializer>(v: &bool, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(if *v { "1" } else { "0" })
}

fn from_one_or_zero<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    match String::deserialize(d)?.as_str() {
        "1" => Ok(true),
        "0" => Ok(false),
        other => Err(serde::de::Error::custom(format!("`{other}` is not 1 or 0"))),
    }
}

/// One row of `metrics_raw.csv`: one scrape of the server's `/metrics`, its values as the
/// server gave them (cumulative counters, not differences), or a failed scrape (`ok` 0, the
/// `error`, no values).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsRawRow {
    /// Unix seconds of the scrape.
    #[serde(serialize_with = "fixed::<3, _>")]
    pub time: f64,
    #[serde(serialize_with = "one_or_zero", deserialize_with = "from_one_or_zero")]
    pub ok: bool,
    pub error: String,
    #[serde(serialize_with = "shortest_opt", deserialize_with = "super::required")]
    pub running: Option<f64>,
    #[serde(serialize_with = "shortest_opt", deserialize_with = "super::required")]
    pub waiting: Option<f64>,
    #[serde(serialize_with = "shortest_opt", deserialize_with = "super::required")]
    pub kv_cache_usage: Option<f64>,
    #[serde(serialize_with = "shortest_opt", deserialize_with = "super::required")]
    pub preemptions: Option<f64>,
    #[serde(serialize_with = "shortest_opt", deserialize_with = "super::required")]
    pub prefix_queries: Option<f64>,
    #[serde(serialize_with = "shortest_opt", deserialize_with = "super::required")]
    pub prefix_hits: Option<f64>,
    #[serde(serialize_with = "shortest_opt", deserialize_with = "super::required")]
    pub prefix_hits_device: Option<f64>,
    #[serde(serialize_with = "shortest_opt", deserialize_with = "super::required")]
    pub prefix_hits_host: Option<f64>,
    #[serde(serialize_with = "shortest_opt", deserialize_with = "super::required")]
    pub prefix_hits_other: Option<f64>,
    #[serde(serialize_with = "shortest_opt", deserialize_with = "super::required")]
    pub prompt_tokens: Option<f64>,
    #[serde(serialize_with = "shortest_opt", deserialize_with = "super::required")]
    pub generation_tokens: Option<f64>,
    #[serde(serialize_with = "shortest_opt", deserialize_with = "super::required")]
    pub prompt_compute: Option<f64>,
    #[serde(serialize_with = "shortest_opt", deserialize_with = "super::required")]
    pub prompt_cache_hit: Option<f64>,
    #[serde(serialize_with = "shortest_opt", deserialize_with = "super::required")]
    pub prompt_external: Option<f64>,
    #[serde(serialize_with = "shortest_opt", deserialize_with = "super::required")]
    pub offload_bytes_to_cpu: Option<f64>,
    #[serde(serialize_with = "shortest_opt", deserialize_with = "super::required")]
    pub offload_bytes_to_gpu: Option<f64>,
    #[serde(serialize_with = "shortest_opt", deserialize_with = "super::required")]
    pub offload_seconds_to_cpu: Option<f64>,
    #[serde(serialize_with = "shortest_opt", deserialize_with = "super::required")]
    pub offload_seconds_to_gpu: Option<f64>,
    #[serde(serialize_with = "shortest_opt", deserialize_with = "super::required")]
    pub ttft_sum: Option<f64>,
    #[serde(serialize_with = "shortest_opt", deserialize_with = "super::required")]
    pub ttft_count: Option<f64>,
    #[serde(serialize_with = "shortest_opt", deserialize_with = "super::required")]
    pub itl_sum: Option<f64>,
    #[serde(serialize_with = "shortest_opt", deserialize_with = "super::required")]
    pub itl_count: Option<f64>,
    #[serde(serialize_with = "shortest_opt", deserialize_with = "super::required")]
    pub(crate) queue_sum: Option<f64>,
    #[serde(serialize_with = "shortest_opt", deserialize_with = "super::required")]
    pub queue_count: Option<f64>,
    pub format_version: u32,
}

impl MetricsRawRow {
    /// Every row of `dir/metrics_raw.csv`; a missing or misnamed column fails naming the file.
    pub fn read(dir: &std::path::Path) -> anyhow::Result<Vec<Self>> {
        super::read_csv_rows(
            &dir.join(Self::FILE),
            |r: &Self| r.format_version,
            Self::VERSION,
        )
    }

    pub const FILE: &'static str = "metrics_raw.csv";
    pub const VERSION: u32 = 1;
    /// The header row, in field order.
    pub const COLUMNS: &'static [&'static str] = &[
        "time",
        "ok",
        "error",
        "running",
        "waiting",
        "kv_cache_usage",
        "preemptions",
        "prefix_queries",
        "prefix_hits",
        "prefix_hits_device",
        "prefix_hits_host",
        "prefix_hits_other",
        "prompt_tokens",
        "generation_tokens",
        "prompt_compute",
        "prompt_cache_hit",
        "prompt_external",
        "offload_bytes_to_cpu",
        "offload_bytes_to_gpu",
        "offload_seconds_to_cpu",
        "offload_seconds_to_gpu",
        "ttft_sum",
        "ttft_count",
        "itl_sum",
        "itl_count",
        "queue_sum",
        "queue_count",
        "format_version",
    ];
}
