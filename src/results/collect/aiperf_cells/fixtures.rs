//! Test fixtures: a small AIPerf run (records of a warm-up and a profiling phase, the aggregate
//! with its input config) written as AIPerf writes it, and a placement for it.

use std::path::Path;

use serde_json::{Value, json};

use super::Placement;
use crate::data::aiperf::schema::{PROFILE_EXPORT_FILE as AGGREGATE_FILE, RECORDS_FILE};

const S: i64 = 1_000_000_000;

pub(super) fn placement(dir: &Path) -> Placement {
    format!("{}:runner=h200,tp=2,offload=on,engine=vllm", dir.display())
        .parse()
        .expect("a placement")
}

/// A record of `phase` in lane `root`, sent at `start_s` and answered at `end_s`.
pub(super) fn record(phase: &str, root: &str, turn: u32, start_s: f64, end_s: f64) -> Value {
    let ns = |s: f64| (s * 1e9) as i64 + 100 * S;
    json!({
        "metadata": {
            "session_num": 0, "x_correlation_id": format!("{root}-{turn}"),
            "root_correlation_id": root, "conversation_id": format!("trace_{root}"),
            "turn_index": turn, "credit_issued_ns": ns(start_s) - 2_000_000,
            "request_start_ns": ns(start_s), "request_end_ns": ns(end_s),
            "worker_id": "w", "record_processor_id": "r", "benchmark_phase": phase,
        },
        "metrics": {
            "request_latency": {"value": (end_s - start_s) * 1000.0, "unit": "ms"},
            "time_to_first_token": {"value": 100.0, "unit": "ms"},
            "inter_chunk_latency": {"value": [10.0, 20.0, 30.0], "unit": "ms"},
            "output_sequence_length": {"value": 4, "unit": "tokens"},
            "input_sequence_length": {"value": 1000, "unit": "tokens"},
            "usage_prompt_tokens": {"value": 1010, "unit": "tokens"},
            "usage_completion_tokens": {"value": 4, "unit": "tokens"},
            "usage_prompt_cache_read_tokens": {"value": 505, "unit": "tokens"},
        },
    })
}

pub(super) fn aggregate() -> Value {
    json!({
        "input_config": {
            "models": {"items": [{"name": "llama-3.1-8b"}]},
            "phases": [{"name": "profiling", "kind": "profiling", "concurrency": 2, "duration": 10.0}],
        },
        "was_cancelled": false,
        "is_complete": true,
        "metadata": {"submission_valid": false, "submission_invalid_reasons": ["unsafe_override"]},
    })
}

pub(super) fn write_run(dir: &Path, records: &[Value], aggregate: &Value) {
    let lines: Vec<String> = records.iter().map(Value::to_string).collect();
    std::fs::write(dir.join(RECORDS_FILE), lines.join("\n") + "\n").expect("records");
    std::fs::write(dir.join(AGGREGATE_FILE), aggregate.to_string()).expect("aggregate");
}

/// Two lanes warmed up, then profiled; one profiled request failed.
pub(super) fn run() -> Vec<Value> {
    let mut failed = record("profiling", "b", 2, 3.0, 3.5);
    failed["metrics"] = json!({});
    failed["error"] = json!({"code": 500, "type": "HTTPError", "message": "boom"});
    vec![
        record("warmup", "a", 0, 0.0, 1.0),
        record("warmup", "b", 0, 0.1, 1.5),
        record("profiling", "a", 1, 2.0, 3.0),
        record("profiling", "b", 1, 2.5, 4.0),
        failed,
        record("profiling", "a", 2, 5.0, 6.0),
    ]
}
