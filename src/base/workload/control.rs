//! The replay's control flags: admission limits, the adaptive user controller, the SLO, the
//! circuit breaker, cache hygiene and the open loop ([`crate::run::replay::control`] enforces them).

use serde::{Deserialize, Serialize};

/// Replay control flags (`kvsweep replay --help` groups them here).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct ControlArgs {
    /// Adaptive load: start with this many users (with --max-users).
    #[arg(long, help_heading = "Adaptive load")]
    pub(crate) start_users: Option<u32>,
    /// Adaptive load: the most users the controller may run; turns the controller on.
    #[arg(long, help_heading = "Adaptive load")]
    pub max_users: Option<u32>,
    /// Adaptive load: the TTFT target, seconds.
    #[arg(long, default_value_t = 2.0, help_heading = "Adaptive load")]
    pub(crate) max_ttft: f64,
    /// Adaptive load: which TTFT statistic is held under --max-ttft.
    #[arg(
        long,
        value_enum,
        default_value = "p90",
        help_heading = "Adaptive load"
    )]
    pub(crate) ttft_metric: TtftMetric,
    /// Adaptive load: assessment periods judged after each change of the user count.
    #[arg(long, default_value_t = 3, help_heading = "Adaptive load")]
    pub ttft_window: u32,
    /// Adaptive load: add users only while requests decode at least this many tokens/s each.
    #[arg(long, default_value_t = 0.0, help_heading = "Adaptive load")]
    pub(crate) min_output_tokens_per_req: f64,

    /// New (uncached) prompt tokens admitted per assessment period (0: no cap).
    #[arg(long, default_value_t = 0, help_heading = "Load shaping")]
    pub(crate) max_new_tokens_per_period: u64,
    /// Sum of the live users' contexts, tokens (0: no cap).
    #[arg(long, default_value_t = 0, help_heading = "Load shaping")]
    pub(crate) max_working_set_tokens: u64,
    /// A user idle longer than this many seconds counts as cold (its context left the cache).
    #[arg(long, default_value_t = 600.0, help_heading = "Load shaping")]
    pub(crate) cache_max_age: f64,

    /// Before timing, send this share (0 to 1: 0.5 is half) of the first prompt each starting
    /// session sends, after --max-context, once (0: off).
    #[arg(long, default_value_t = 0.0, help_heading = "Warm start")]
    pub warm_prefix_pct: f64,
    /// Start users part-way into their session: at least this share of it skipped.
    #[arg(long, default_value_t = 0.0, help_heading = "Warm start")]
    pub(crate) advance_min: f64,
    /// ... and at most this share.
    #[arg(long, default_value_t = 0.0, help_heading = "Warm start")]
    pub(crate) advance_max: f64,
    /// Advance every session a user takes, not only the first ones.
    #[arg(long, help_heading = "Warm start")]
    pub(crate) advance_all_users: bool,

    /// Requests in flight at once (0: no limit).
    #[arg(long, default_value_t = 0, help_heading = "Admission")]
    pub(crate) max_concurrent_requests: u32,
    /// Requests sent and still waiting for their first token (0: no limit).
    #[arg(long, default_value_t = 0, help_heading = "Admission")]
    pub(crate) max_prefill_concurrent: u32,
    /// Requests past their first token (0: no limit); a new request waits while this many decode.
    #[arg(long, default_value_t = 0, help_heading = "Admission")]
    pub(crate) max_decode_concurrent: u32,
    /// Input tokens per minute, a token bucket like an API rate limit (0: off).
    #[arg(long, default_value_t = 0, help_heading = "Admission")]
    pub(crate) itpm_budget: u64,
    /// Output tokens per minute (each request reserves its max_tokens) (0: off).
    #[arg(long, default_value_t = 0, help_heading = "Admission")]
    pub(crate) otpm_budget: u64,
    /// Seconds to wait after a 429 without Retry-After before sending the request again.
    #[arg(long, default_value_t = 30.0, help_heading = "Admission")]
    pub(crate) rate_limit_backoff: f64,
    /// Times a request answered 429 is sent again before it counts as failed.
    #[arg(long, default_value_t = 5, help_heading = "Admission")]
    pub(crate) rate_limit_retries: u32,

    /// SLO: effective TTFT (including time queued in the client), seconds.
    #[arg(long, default_value_t = 5.0, help_heading = "Quality of service")]
    pub(crate) slo_ttft: f64,
    /// SLO: decode speed per request, tokens/s.
    #[arg(long, default_value_t = 30.0, help_heading = "Quality of service")]
    pub(crate) slo_decode_tps: f64,

    /// Stop the run (failed) after this many errors in a row (0: never).
    #[arg(long, default_value_t = 0, help_heading = "Failure")]
    pub(crate) max_consecutive_errors: u32,
    /// ... all within this many seconds.
    #[arg(long, default_value_t = 30.0, help_heading = "Failure")]
    pub(crate) circuit_breaker_window: f64,

    /// Empty the server's prefix cache before timing starts (vLLM /reset_prefix_cache, SGLang
    /// /flush_cache, the simulator).
    #[arg(long, help_heading = "Cache hygiene")]
    pub reset_cache: bool,

    /// Open loop: start new sessions at this rate per second instead of a fixed user count.
    #[arg(long, help_heading = "Open loop")]
    pub(crate) request_rate: Option<f64>,
    #[arg(
        long,
        value_enum,
        default_value = "poisson",
        help_heading = "Open loop"
    )]
    pub arrival: Arrival,
}

/// `v` when it is a share from 0 to 1, else why not: a percentage given by mistake (`50`)
/// would otherwise mean far more than meant ([`super::replay::ReplayArgs::check`]).
pub(crate) fn check_share(v: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{v} is not a share from 0 to 1 (a share, not a percentage: 50 % is 0.5)"
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TtftMetric {
    Avg,
    P50,
    P90,
    P95,
    P99,
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Arrival {
    /// Exponential gaps between session starts.
    Poisson,
    /// Evenly spaced session starts.
    Constant,
}
