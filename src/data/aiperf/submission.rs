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

use crate::base::workload::agentx::CacheBust;
use crate::base::workload::replay::ReplayArgs;
use crate::data::artifact::schema::{Outcome, RequestRow};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::workload::{Workload, parse};

    fn args(extra: &[&str]) -> ReplayArgs {
        let mut argv = vec![
            "replay",
            "--traces",
            "t",
            "--out",
            ".",
            "--scenario",
            "agentx",
        ];
        argv.extend_from_slice(extra);
        match parse(&argv.iter().map(|s| s.to_string()).collect::<Vec<_>>()) {
            Ok(Workload::Replay(a)) => a,
            other => panic!("a replay: {other:?}"),
        }
    }

    fn row(status: Outcome, http_status: u16, error: &str) -> RequestRow {
        RequestRow {
            request_id: 0,
            user: 0,
            session: "s".into(),
            request_index: 0,
            scheduled_s: 0.0,
            sent_s: 0.0,
            done_s: 1.0,
            schedule_delay_ms: 0.0,
            ttft_ms: None,
            e2e_ms: 1000.0,
            tpot_ms: None,
            itl_mean_ms: None,
            itl_max_ms: None,
            trace_input_tokens: 10,
            trace_output_tokens: 10,
            prompt_tokens: None,
            completion_tokens: None,
            cached_tokens: None,
            status,
            http_status,
            error: error.into(),
            endpoint: 0,
            attempts: 1,
            effective_ttft_ms: None,
            meets_slo: false,
            format_version: RequestRow::VERSION,
        }
    }

    #[test]
    fn a_full_length_agentx_replay_breaks_only_the_corpus_lock() {
        let ok = row(Outcome::Ok, 200, "");
        let rows = vec![&ok; 200];
        assert_eq!(
            invalid_reasons(&args(&["--duration", "1800"]), &rows, true),
            ["unpinned_dataset"]
        );
    }

    #[test]
    fn each_broken_lock_is_named() {
        let ok = row(Outcome::Ok, 200, "");
        let overflow = row(
            Outcome::Error,
            400,
            "This model's maximum context length is 131072 tokens",
        );
        // 2 overflows in 100 responses: 2 % > 1 %.
        let mut rows = vec![&ok; 98];
        rows.extend([&overflow, &overflow]);
        let a = args(&[
            "--duration",
            "60",
            "--time-scale",
            "0.05",
            "--max-delay",
            "20",
            "--max-context",
            "65536",
            "--system-idle-gap-cap",
            "30",
            "--cache-bust",
            "none",
        ]);
        assert_eq!(
            invalid_reasons(&a, &rows, false),
            [
                "benchmark_duration_below_minimum",
                "unpinned_dataset",
                "trace_delays_scaled",
                "inter_turn_delay_capped",
                "input_truncated",
                "system_idle_gap_cap_changed",
                "cache_bust_changed",
                "context_overflow_rate_exceeded",
                "run_cancelled",
            ]
        );
        // One overflow in 100 is the limit, not past it.
        let mut rows = vec![&ok; 99];
        rows.push(&overflow);
        assert!(
            !invalid_reasons(&args(&["--duration", "900"]), &rows, true)
                .contains(&"context_overflow_rate_exceeded".to_owned())
        );
    }
}
