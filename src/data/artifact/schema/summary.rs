//! `summary.json`: a replay's figures over the whole run.

use super::{Adaptive, JsonArtifact, OpenLoop, required};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

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
    /// Requests due before `--duration` ended but still held by admission control then: not
    /// sent (so in no other figure and not in requests.csv).
    pub unsent_at_deadline: u64,
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
    pub(crate) slo_ttft_s: f64,
    pub(crate) slo_decode_tps: f64,
    pub(crate) good_requests: u64,
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

/// The replay process's CPU use over its run (user + system), against the cores it may use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientCpu {
    pub(crate) cpu_s: f64,
    /// Time its threads were ready to run but waited for a core (Linux schedstat; 0 elsewhere).
    pub(crate) runqueue_wait_s: f64,
    pub(crate) wall_s: f64,
    pub cores: u32,
    /// `cpu_s / (wall_s * cores)`: 1 is every core busy for the whole run.
    pub(crate) utilization: f64,
    /// `(cpu_s + runqueue_wait_s) / (wall_s * cores)`: how much of its cores the client wanted;
    /// near or past 1, the client was saturated.
    pub(crate) demand: f64,
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
    /// The adaptive controller's state, when it ran.
    #[serde(deserialize_with = "required")]
    pub adaptive: Option<Adaptive>,
    /// The open-loop arrival figures, when sessions arrived at a rate.
    #[serde(deserialize_with = "required")]
    pub open_loop: Option<OpenLoop>,
    /// Per endpoint, when the run had more than one.
    pub endpoints: Vec<EndpointSummary>,
    /// Requests sent in the first this many seconds are in requests.csv but not in these
    /// figures (the warm-up window; 0: none); throughput is over the rest of the run.
    pub warmup_window_s: f64,
    /// Requests the warm-up window left out of the figures.
    pub warmup_requests: u64,
    /// The replay's own CPU use: a saturated client makes the run invalid.
    pub client_cpu: ClientCpu,
    /// What each figure means, by name.
    pub definitions: IndexMap<String, String>,
}

impl JsonArtifact for Summary {
    const FILE: &'static str = "summary.json";
    const VERSION: u32 = 3;
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
            "warmup_window",
            "requests sent in the first warmup_window_s seconds are in requests.csv but in no figure here; rates divide by the run's duration less the window",
        ),
        (
            "client_cpu",
            "the replay process's user + system CPU seconds over its wall-clock run, as a share of the cores it may use (utilization), and with the time it waited for a core added (demand)",
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
