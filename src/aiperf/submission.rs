//! `submission_valid` for a kvsweep AgentX cell, judged as AIPerf 0.13.0 judges an
//! `inferencex-agentx-mvp` run.
//!
//! AIPerf checks the run against the scenario's locks (`common/scenario/inferencex_agentx_mvp.py`,
//! enforced by `common/scenario/validator.py`): a violation stops the run, or under
//! `--unsafe-override` marks it `submission_valid: false`. After the run,
//! `exporters/aggregate/aggregate_base_exporter.py` (`compute_submission_outcome`) also fails a
//! run whose context-overflow responses exceed 1 % of its responses, or that was cancelled.
//! kvsweep has no override: each lock its cell's replay breaks is named as a reason.
//!
//! The locks that apply to a kvsweep replay, and the reason each breaks with:
//!
//! | AIPerf lock | kvsweep cell | reason |
//! | --- | --- | --- |
//! | `min_benchmark_duration_seconds=900` | `--duration` < 900 | `benchmark_duration_below_minimum` |
//! | a pinned corpus (`require_loader`: a local `weka_trace` directory is "unpinned") | always: kvsweep reads local trace files | `unpinned_dataset` |
//! | `forbid_ignore_trace_delays` | `--time-scale` ≠ 1 | `trace_delays_scaled` |
//! | `forbid_inter_turn_delay_cap` | `--max-delay` below the 300 s trace idle cap | `inter_turn_delay_capped` |
//! | `forbid_input_truncation` | `--max-context` set | `input_truncated` |
//! | `require_ignore_eos` | `--ignore-eos` off | `ignore_eos_off` |
//! | `system_idle_gap_cap_seconds=10.0` | another `--system-idle-gap-cap` | `system_idle_gap_cap_changed` |
//! | `require_cache_bust=FIRST_TURN_PREFIX` | another `--cache-bust` | `cache_bust_changed` |
//! | context overflows ≤ 1 % of responses | 400s saying the context is too long | `context_overflow_rate_exceeded` |
//! | not cancelled | the replay did not complete | `run_cancelled` |
//!
//! Streaming is always on in kvsweep. AIPerf 0.13.0 also forbids a trace idle cap, which
//! InferenceX sets (`--trace-idle-gap-cap-seconds 300`, run with AIPerf main): kvsweep follows
//! InferenceX and does not count it.

use crate::artifact::schema::{Outcome, RequestRow};
use crate::workload::agentx::CacheBust;
use crate::workload::replay::ReplayArgs;

/// AIPerf's `Environment.AGENTX.CONTEXT_OVERFLOW_RATE_LIMIT` default.
const CONTEXT_OVERFLOW_RATE_LIMIT: f64 = 0.01;
/// `min_benchmark_duration_seconds`.
const MIN_DURATION_S: f64 = 900.0;
/// InferenceX's per-trajectory idle cap (`AIPERF_TRACE_IDLE_GAP_CAP_SECONDS`).
const TRACE_IDLE_GAP_CAP_S: f64 = 300.0;

/// Whether a response is a context overflow: the server refused the prompt as longer than the
/// model's context (vLLM: "This model's maximum context length is N tokens").
fn context_overflow(r: &RequestRow) -> bool {
    let e = r.error.to_ascii_lowercase();
    r.status == Outcome::Error
        && r.http_status == 400
        && (e.contains("maximum context length") || e.contains("context length"))
}

/// The reasons a cell's AgentX replay is not a valid submission (none: it is one); `rows` are
/// its profiled requests and `completed` whether the replay ran to its end.
pub fn invalid_reasons(args: &ReplayArgs, rows: &[&RequestRow], completed: bool) -> Vec<String> {
    let rules = args.agentx.rules();
    let mut reasons = Vec::new();
    let mut flag = |broken: bool, reason: &str| {
        if broken {
            reasons.push(reason.to_owned());
        }
    };
    flag(
        args.duration < MIN_DURATION_S,
        "benchmark_duration_below_minimum",
    );
    flag(true, "unpinned_dataset");
    flag(args.time_scale != 1.0, "trace_delays_scaled");
    flag(
        args.max_delay > 0.0 && args.max_delay < TRACE_IDLE_GAP_CAP_S,
        "inter_turn_delay_capped",
    );
    flag(args.max_context > 0, "input_truncated");
    flag(!args.ignore_eos && !rules.ignore_eos, "ignore_eos_off");
    flag(
        rules.system_idle_gap_cap_s != Some(10.0),
        "system_idle_gap_cap_changed",
    );
    flag(
        rules.cache_bust != CacheBust::FirstTurnPrefix,
        "cache_bust_changed",
    );
    let overflows = rows.iter().filter(|r| context_overflow(r)).count();
    flag(
        !rows.is_empty() && overflows as f64 / rows.len() as f64 > CONTEXT_OVERFLOW_RATE_LIMIT,
        "context_overflow_rate_exceeded",
    );
    flag(!completed, "run_cancelled");
    reasons
}
