//! InferenceX's `request_metrics` block of the AgentX aggregate, from the client's side: the
//! records' accounting, latency, throughput, QPS and token statistics, as
//! `utils/agentic/aggregation/request_metrics.py` computes them (with `stats_for` from
//! `aggregation_common.py`).

use serde_json::{Map, Value, json};

use crate::base::stats::mean_pstdev;
use crate::data::aiperf::{CreditPhase, ProfileExport, RecordInfo};
use crate::results::collect::inferencex::percentile;

/// `load_records_with_accounting`: the successful profiling records, and the count of every
/// record by what happened to it.
pub(super) fn accounting(records: &[RecordInfo]) -> (Vec<&RecordInfo>, Value) {
    let mut kept = Vec::new();
    let (mut warmup, mut errors) = (0u64, 0u64);
    let mut categories: Map<String, Value> = Map::new();
    for r in records {
        let is_warmup = r.metadata.benchmark_phase != CreditPhase::Profiling;
        if is_warmup {
            warmup += 1;
        }
        if let Some(e) = &r.error {
            errors += 1;
            let category = error_category(e);
            let n = categories
                .get(&category)
                .and_then(Value::as_u64)
                .unwrap_or(0);
            categories.insert(category, json!(n + 1));
        }
        if r.error.is_none() && !is_warmup {
            kept.push(r);
        }
    }
    let total = records.len() as u64;
    let acc = json!({
        "records_total": total,
        "records_profiled": kept.len(),
        "records_dropped_total": total - kept.len() as u64,
        "records_warmup_dropped": warmup,
        "records_error_dropped": errors,
        "error_categories": categories,
    });
    (kept, acc)
}

/// `_error_category`: the error's type, else its code, else the text before the first `:` of
/// its message's first line (120 characters at most).
fn error_category(e: &crate::data::aiperf::ErrorDetails) -> String {
    if let Some(t) = e.error_type.as_deref().filter(|t| !t.is_empty()) {
        return t.to_owned();
    }
    if let Some(c) = e.code {
        return c.to_string();
    }
    let first = e.message.trim().lines().next().unwrap_or("");
    let head = first.split(':').next().unwrap_or("");
    if head.is_empty() {
        "unknown".to_owned()
    } else {
        head.chars().take(120).collect()
    }
}

fn pct(v: &[f64], p: f64) -> f64 {
    percentile(v, p).unwrap_or(0.0)
}

/// `stats_for` / `_distribution`, nested (`mean`, `p50`, `p75`, `p90`, `p95`, `std`); empty for
/// no values.
fn stats(v: &[f64]) -> Map<String, Value> {
    let mut m = Map::new();
    let Some((mean, std)) = mean_pstdev(v) else {
        return m;
    };
    m.insert("mean".into(), json!(mean));
    for (k, p) in [("p50", 50.0), ("p75", 75.0), ("p90", 90.0), ("p95", 95.0)] {
        m.insert(k.into(), json!(pct(v, p)));
    }
    m.insert("std".into(), json!(std));
    m
}

/// `_interactivity_stats`: the reciprocal of each positive latency statistic, and the standard
/// deviation of the per-request reciprocals.
fn interactivity(latency: &Map<String, Value>, per_request: &[f64]) -> Map<String, Value> {
    let mut m = Map::new();
    for k in ["mean", "p50", "p75", "p90", "p95"] {
        if let Some(v) = latency.get(k).and_then(Value::as_f64).filter(|v| *v > 0.0) {
            m.insert(k.into(), json!(1.0 / v));
        }
    }
    let inverse: Vec<f64> = per_request
        .iter()
        .filter(|v| **v > 0.0)
        .map(|v| 1.0 / v)
        .collect();
    if let Some((_, std)) = mean_pstdev(&inverse) {
        m.insert("std".into(), json!(std));
    }
    m
}

/// A metric's values over the records, as numbers.
fn values(records: &[&RecordInfo], tag: &str) -> Vec<f64> {
    records.iter().filter_map(|r| r.metric(tag)).collect()
}

/// Integer-valued metrics (`extract_per_record_ints`: `int(value)` truncates).
pub(super) fn ints(records: &[&RecordInfo], tag: &str) -> Vec<f64> {
    values(records, tag).into_iter().map(f64::trunc).collect()
}

/// `_ms_to_s`: positive finite milliseconds as seconds.
fn seconds(ms: Vec<f64>) -> Vec<f64> {
    ms.into_iter()
        .filter(|v| v.is_finite() && *v > 0.0)
        .map(|v| v / 1000.0)
        .collect()
}

/// `compute_qps_stats`: completions per 1 s window from the first completion to the last.
fn qps(records: &[&RecordInfo]) -> Value {
    let mut ends: Vec<f64> = records
        .iter()
        .map(|r| r.metadata.request_end_ns)
        .filter(|n| *n > 0)
        .map(|n| n as f64 / 1e9)
        .collect();
    if ends.len() < 2 {
        return json!({});
    }
    ends.sort_by(f64::total_cmp);
    let (first, last) = (ends[0], ends[ends.len() - 1]);
    if last - first <= 0.0 {
        return json!({});
    }
    let window = 1.0;
    let mut per_window = Vec::new();
    let mut current = first;
    while current + window <= last {
        let n = ends
            .iter()
            .filter(|t| current <= **t && **t < current + window)
            .count();
        per_window.push(n as f64 / window);
        current += window;
    }
    let mut m = Map::new();
    m.insert("window_seconds".into(), json!(window));
    m.insert("samples".into(), json!(per_window.len()));
    if per_window.is_empty() {
        m.insert("mean".into(), json!(ends.len() as f64 / (last - first)));
    } else {
        m.extend(stats(&per_window));
    }
    Value::Object(m)
}

/// `compute_latency_stats`.
fn latency(records: &[&RecordInfo]) -> Value {
    let ttft = seconds(values(records, "time_to_first_token"));
    let e2el = seconds(values(records, "request_latency"));
    let itl = seconds(values(records, "inter_token_latency"));
    let full = seconds(values(records, "full_response_inter_token_latency"));
    let per_token: Vec<f64> = records
        .iter()
        .filter_map(|r| {
            Some((
                r.metric("request_latency")?,
                r.metric("output_sequence_length")?,
            ))
        })
        .filter(|(e, o)| e.is_finite() && o.is_finite() && *e > 0.0 && *o > 0.0)
        .map(|(e, o)| e / 1000.0 / o)
        .collect();
    let itl_stats = stats(&itl);
    let per_token_stats = stats(&per_token);
    let full_stats = stats(&full);
    json!({
        "ttft": stats(&ttft),
        "e2el": stats(&e2el),
        "itl": itl_stats,
        "tpot": stats(&itl),
        "intvty": interactivity(&itl_stats, &itl),
        "e2e_norm_intvty": interactivity(&per_token_stats, &per_token),
        "full_response_itl": full_stats,
        "full_response_intvty": interactivity(&full_stats, &full),
    })
}

/// `compute_throughput_stats`, with `per_gpu` filled as `build_agg` fills it.
fn throughput(records: &[&RecordInfo], gpus: u32) -> Value {
    let input: f64 = ints(records, "input_sequence_length").iter().sum();
    let output: f64 = ints(records, "output_sequence_length").iter().sum();
    let start = records
        .iter()
        .map(|r| r.metadata.request_start_ns)
        .filter(|n| *n > 0)
        .min();
    let end = records
        .iter()
        .map(|r| r.metadata.request_end_ns)
        .filter(|n| *n > 0)
        .max();
    let (Some(start), Some(end)) = (start, end) else {
        return json!({});
    };
    let duration = (end as f64 - start as f64) / 1e9;
    if duration <= 0.0 {
        return json!({});
    }
    let (i, o, t) = (
        input / duration,
        output / duration,
        (input + output) / duration,
    );
    let g = f64::from(gpus);
    json!({
        "input": {"tokens_per_second": i},
        "output": {"tokens_per_second": o},
        "total": {"tokens_per_second": t},
        "duration_seconds": duration,
        "per_gpu": if gpus > 0 {
            json!({"total_tput_tps": t / g, "output_tput_tps": o / g, "input_tput_tps": i / g})
        } else {
            json!({})
        },
    })
}

/// `_aiperf_percent_metric_as_rate` of `theoretical_prefix_cache_hit`.
fn theoretical_hit_rate(profile: Option<&ProfileExport>) -> Value {
    let Some(m) = profile.and_then(|p| p.metric("theoretical_prefix_cache_hit")) else {
        return Value::Null;
    };
    let hits = m.sum.as_ref().and_then(serde_json::Number::as_f64);
    if let (Some(h), Some(c)) = (hits, m.count.filter(|c| *c > 0)) {
        return json!(h / c as f64);
    }
    match m.avg {
        Some(a) if m.unit.trim() == "%" => json!(a / 100.0),
        Some(a) => json!(a),
        None => Value::Null,
    }
}

/// `compute_request_metrics`.
pub(super) fn request_metrics(
    records: &[&RecordInfo],
    profile: Option<&ProfileExport>,
    gpus: u32,
) -> Value {
    let input = ints(records, "input_sequence_length");
    let output = ints(records, "output_sequence_length");
    json!({
        "qps": qps(records),
        "latency": latency(records),
        "tokens": {
            "input": stats(&input),
            "output_actual": stats(&output),
            // From the traces in the local Hugging Face cache (`trace_metadata.py`), which a
            // kvsweep collect does not read.
            "output_expected": {},
        },
        "throughput": throughput(records, gpus),
        "cache": {"theoretical_cache_hit_rate": theoretical_hit_rate(profile)},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_categorised_by_type_then_code_then_message() {
        let e =
            |t: Option<&str>, code: Option<i64>, message: &str| crate::data::aiperf::ErrorDetails {
                code,
                error_type: t.map(str::to_owned),
                message: message.to_owned(),
                cause: None,
                cause_chain: None,
                details: None,
            };
        assert_eq!(
            error_category(&e(Some("TimeoutError"), Some(500), "x")),
            "TimeoutError"
        );
        assert_eq!(error_category(&e(None, Some(500), "x")), "500");
        assert_eq!(
            error_category(&e(None, None, "  ConnectionReset: peer\nmore")),
            "ConnectionReset"
        );
        assert_eq!(error_category(&e(None, None, "")), "unknown");
    }
}
