//! InferenceX's AgentX aggregate (`<RESULT_FILENAME>.json`), computed in Rust the way
//! InferenceX's `utils/agentic/aggregation/process_agentic_result.py` computes it from an AIPerf
//! artifact directory, so that `collect` hands InferenceX a result it ingests unchanged without
//! running Python.
//!
//! The inputs are AIPerf's three export files ([`crate::aiperf`]) and, for the KV-cache pool
//! size, the engine log; the run's identity, which the processor takes from environment
//! variables (`RUNNER_TYPE`, `TP`, `MODEL`, `KV_OFFLOADING`, ...), comes from the cell's
//! `cell.json` ([`Identity`]). Each part names the Python function it follows. Floats are rounded
//! to 5 decimals and integral ones written as integers, as `round_floats` does.
//!
//! `collect` writes, per AgentX cell, under `OUT/agentx/`: `<RESULT_FILENAME>/aiperf_artifacts/`
//! (the exports; `<RESULT_FILENAME>/` is `RESULT_DIR` for InferenceX's processor, with the
//! engine's `server.log` and the processor's environment in `inferencex.env`) and
//! `<RESULT_FILENAME>.json` (the aggregate), `RESULT_FILENAME` named as InferenceX's `benchmark-tmpl.yml` names it. It writes
//! them in collect rather than in the cell: they derive from the cell's final artifacts alone
//! (the metrics scraper outlives the replay), a downloaded or zipped cell gets them too, and a
//! cell's upload stays the files it has always been.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};

use super::inferencex::percentile;
use crate::aiperf::{CreditPhase, ProfileExport, RecordInfo, ServerMetric, ServerMetricsExport};
use crate::artifact::schema::CellPlan;
use crate::kinds::Offload;

/// What InferenceX's processor reads from its environment, taken from a cell's plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// `RUNNER_TYPE` → `hw`.
    pub runner: String,
    /// `CONC`.
    pub conc: u32,
    pub image: String,
    pub model: String,
    /// `FRAMEWORK`: the engine (`sim` for the simulator, whose metrics are vLLM's).
    pub framework: String,
    pub precision: String,
    pub tp: u32,
    /// `EP_SIZE` (1 without expert parallelism, InferenceX's default).
    pub ep: u32,
    /// `KV_OFFLOADING`: `none` or `dram`.
    pub kv_offloading: String,
    /// `KV_OFFLOAD_BACKEND` when offloading.
    pub kv_offload_backend: Option<String>,
    /// `TOTAL_CPU_DRAM_GB`.
    pub cpu_dram_gb: u64,
    /// The cell, as `EXP_NAME`.
    pub exp_name: String,
}

impl Identity {
    pub fn of(plan: &CellPlan) -> Self {
        let offload = plan.cell.offload == Offload::On;
        Identity {
            runner: plan.runner.clone(),
            conc: plan.cell.users,
            image: plan.image.clone().unwrap_or_default(),
            model: plan.model.clone(),
            framework: plan.engine.as_str().to_owned(),
            precision: plan.precision.clone().unwrap_or_default(),
            tp: plan.cell.tp.max(1),
            ep: plan.cell.ep.max(1),
            kv_offloading: if offload { "dram" } else { "none" }.to_owned(),
            kv_offload_backend: offload.then(|| plan.offload_backend.to_string()),
            cpu_dram_gb: if offload {
                plan.offload_gib.unwrap_or(0.0).round().max(0.0) as u64
            } else {
                0
            },
            exp_name: plan.cell.name.clone(),
        }
    }

    /// `RESULT_FILENAME` as InferenceX's `benchmark-tmpl.yml` builds it:
    /// `EXP_NAME_PRECISION_FRAMEWORK_tpT-pp1-dcp1-pcp1-epE-dpafalse_disagg-false_spec-none_concC_RUNNER`.
    pub fn result_filename(&self) -> String {
        format!(
            "{}_{}_{}_tp{}-pp1-dcp1-pcp1-ep{}-dpafalse_disagg-false_spec-none_conc{}_{}",
            self.exp_name,
            if self.precision.is_empty() {
                "none"
            } else {
                &self.precision
            },
            self.framework,
            self.tp,
            self.ep,
            self.conc,
            self.runner
        )
    }

    /// The environment InferenceX's processor reads, as `NAME=value` lines a shell sources
    /// (`set -a; . inferencex.env`): with it, `process_agentic_result.py` run on the exports
    /// makes the aggregate kvsweep wrote.
    pub fn env_file(&self) -> String {
        let backend_metadata = self
            .kv_offload_backend
            .as_ref()
            .map(|name| json!({"name": name}).to_string())
            .unwrap_or_default();
        let vars = [
            ("RESULT_FILENAME", self.result_filename()),
            ("RUNNER_TYPE", self.runner.clone()),
            ("CONC", self.conc.to_string()),
            ("IMAGE", self.image.clone()),
            ("MODEL", self.model.clone()),
            ("FRAMEWORK", self.framework.clone()),
            ("PRECISION", self.precision.clone()),
            ("SPEC_DECODING", "none".to_owned()),
            ("DISAGG", "false".to_owned()),
            ("IS_MULTINODE", "false".to_owned()),
            ("TP", self.tp.to_string()),
            ("EP_SIZE", self.ep.to_string()),
            ("DP_ATTENTION", "false".to_owned()),
            ("KV_OFFLOADING", self.kv_offloading.clone()),
            (
                "KV_OFFLOAD_BACKEND",
                self.kv_offload_backend.clone().unwrap_or_default(),
            ),
            ("KV_OFFLOAD_BACKEND_METADATA", backend_metadata),
            ("TOTAL_CPU_DRAM_GB", self.cpu_dram_gb.to_string()),
        ];
        vars.iter()
            .map(|(k, v)| {
                let quoted =
                    shlex::try_quote(v).map_or_else(|_| "''".to_owned(), |q| q.into_owned());
                format!("{k}={quoted}\n")
            })
            .collect()
    }

    /// The GPUs of a single-node run: `TP × PP × PCP` (`_gpu_shape`), PP = PCP = 1.
    fn gpus(&self) -> u32 {
        super::inferencex::gpu_count(self.tp)
    }
}

/// `load_records_with_accounting`: the successful profiling records, and the count of every
/// record by what happened to it.
fn accounting(records: &[RecordInfo]) -> (Vec<&RecordInfo>, Value) {
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
fn error_category(e: &crate::aiperf::ErrorDetails) -> String {
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

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// `statistics.pstdev`, 0 for one value.
fn pstdev(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
}

fn pct(v: &[f64], p: f64) -> f64 {
    percentile(v, p).unwrap_or(0.0)
}

/// `stats_for` / `_distribution`, nested (`mean`, `p50`, `p75`, `p90`, `p95`, `std`); empty for
/// no values.
fn stats(v: &[f64]) -> Map<String, Value> {
    let mut m = Map::new();
    if v.is_empty() {
        return m;
    }
    m.insert("mean".into(), json!(mean(v)));
    for (k, p) in [("p50", 50.0), ("p75", 75.0), ("p90", 90.0), ("p95", 95.0)] {
        m.insert(k.into(), json!(pct(v, p)));
    }
    m.insert("std".into(), json!(pstdev(v)));
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
    if !inverse.is_empty() {
        m.insert("std".into(), json!(pstdev(&inverse)));
    }
    m
}

/// A metric's values over the records, as numbers.
fn values(records: &[&RecordInfo], tag: &str) -> Vec<f64> {
    records.iter().filter_map(|r| r.metric(tag)).collect()
}

/// Integer-valued metrics (`extract_per_record_ints`: `int(value)` truncates).
fn ints(records: &[&RecordInfo], tag: &str) -> Vec<f64> {
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
fn request_metrics(records: &[&RecordInfo], profile: Option<&ProfileExport>, gpus: u32) -> Value {
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

/// One series of a server metric: its id fields, labels and the statistic InferenceX prefers.
struct Series<'a> {
    endpoint: Option<&'a str>,
    labels: Option<&'a indexmap::IndexMap<String, String>>,
    /// (total, sum, max, avg) as the series has them.
    total: Option<f64>,
    sum: Option<f64>,
    max: Option<f64>,
    avg: Option<f64>,
}

fn series<'a>(
    metrics: &'a indexmap::IndexMap<String, ServerMetric>,
    names: &[&str],
) -> Vec<Series<'a>> {
    let mut out = Vec::new();
    for name in names {
        match metrics.get(*name) {
            Some(ServerMetric::Counter(c)) => out.extend(c.series.iter().map(|s| Series {
                endpoint: s.endpoint_url.as_deref(),
                labels: s.labels.as_ref(),
                total: s.stats.as_ref().and_then(|s| s.total),
                sum: None,
                max: None,
                avg: None,
            })),
            Some(ServerMetric::Gauge(g) | ServerMetric::Unknown(g)) => {
                out.extend(g.series.iter().map(|s| Series {
                    endpoint: s.endpoint_url.as_deref(),
                    labels: s.labels.as_ref(),
                    total: None,
                    sum: None,
                    max: s.stats.as_ref().and_then(|s| s.max),
                    avg: s.stats.as_ref().and_then(|s| s.avg),
                }))
            }
            Some(ServerMetric::Histogram(h)) => out.extend(h.series.iter().map(|s| Series {
                endpoint: s.endpoint_url.as_deref(),
                labels: s.labels.as_ref(),
                total: None,
                sum: s.stats.as_ref().and_then(|s| s.sum),
                max: None,
                avg: s.stats.as_ref().and_then(|s| s.avg),
            })),
            None => {}
        }
    }
    out
}

impl Series<'_> {
    /// `series_stat` with preferred keys total, sum, max, avg (counters) or max, avg, total
    /// (gauges).
    fn stat(&self, gauge: bool) -> Option<f64> {
        if gauge {
            self.max.or(self.avg).or(self.total)
        } else {
            self.total.or(self.sum).or(self.max).or(self.avg)
        }
    }

    fn label(&self, key: &str) -> Option<&str> {
        self.labels?.get(key).map(String::as_str)
    }

    /// `_source_id`: role, endpoint, then worker, DP rank and engine labels.
    fn source_id(&self) -> String {
        let component = self
            .label("dynamo_component")
            .filter(|c| !c.is_empty())
            .or_else(|| self.label("component"))
            .unwrap_or("");
        let role = match component {
            "prefill" => "prefill",
            "backend" | "decode" => "decode",
            "frontend" | "router" => "router",
            _ => "combined",
        };
        let mut parts = vec![role.to_owned()];
        if let Some(e) = self.endpoint.filter(|e| !e.is_empty()) {
            parts.push(e.to_owned());
        }
        for key in ["worker_id", "dp_rank", "engine"] {
            if let Some(v) = self.label(key) {
                parts.push(format!("{key}={v}"));
            }
        }
        parts.join("|")
    }
}

/// `sum_stat`: the sum of the series' statistic; `None` when no series has one.
fn sum_stat(all: &[Series<'_>], filter: impl Fn(&Series<'_>) -> bool) -> Option<f64> {
    all.iter()
        .filter(|s| filter(s))
        .filter_map(|s| s.stat(false))
        .fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
}

/// `gauge_stat` combining by max.
fn gauge_max(all: &[Series<'_>], filter: impl Fn(&Series<'_>) -> bool) -> Option<f64> {
    all.iter()
        .filter(|s| filter(s))
        .filter_map(|s| s.stat(true))
        .reduce(f64::max)
}

fn rate(n: Option<f64>, d: Option<f64>) -> Option<f64> {
    match (n, d) {
        (Some(n), Some(d)) if d > 0.0 => Some(n / d),
        _ => None,
    }
}

/// `normalize_fraction`: a gauge exported as 0..100 becomes 0..1.
fn fraction(v: Option<f64>) -> Option<f64> {
    v.map(|v| if v > 1.5 { v / 100.0 } else { v })
}

fn counter_int(v: Option<f64>) -> Option<i64> {
    v.map(|v| v.round() as i64)
}

/// `empty_server_metrics`.
fn empty_server_metrics(present: bool, count: usize) -> Value {
    json!({
        "present": present,
        "adapter": "none",
        "metric_count": count,
        "cache": {
            "gpu_cache_hit_rate": null, "cpu_cache_hit_rate": null,
            "external_cache_hit_rate": null, "overall_cache_hit_rate": null,
            "prefix_cache_hits": null, "prefix_cache_queries": null,
            "external_prefix_cache_hits": null, "external_prefix_cache_queries": null,
            "cached_tokens_by_source": {},
            "frontend_cache_hit_rate": null, "router_kv_hit_rate": null,
            "router_shared_cache_hit_rate": null, "frontend_cached_tokens": null,
            "frontend_input_tokens": null,
        },
        "kv_cache": {
            "gpu_usage_pct": null, "gpu_total_tokens": null, "cpu_usage_pct": null,
            "cpu_used_tokens": null, "cpu_total_tokens": null,
        },
        "kv_offload": {
            "bytes_gpu_to_cpu": null, "bytes_cpu_to_gpu": null, "time_gpu_to_cpu": null,
            "time_cpu_to_gpu": null, "bandwidth_gpu_to_cpu_bytes_per_second": null,
            "bandwidth_cpu_to_gpu_bytes_per_second": null,
        },
        "tokens": {
            "prompt_total": null, "generation_total": null, "requests_completed": null,
            "prompt_by_source": {
                "gpu_cache_hit": null, "cpu_or_external_cache_hit": null, "computed": null,
                "raw": {},
            },
        },
        "sources": [],
    })
}

/// `VllmBackend.kv_cache_pool_tokens_from_server_log`: the engines' "GPU KV cache size: N
/// tokens" lines, one per `EngineCore` tag (the last of each), else every untagged one summed.
pub fn kv_pool_tokens_from_log(log: &str) -> Option<u64> {
    let mut tagged: HashMap<String, u64> = HashMap::new();
    let (mut bare, mut found) = (0u64, false);
    for line in log.lines().filter(|l| l.contains("GPU KV cache size")) {
        let Some(rest) = line.split("GPU KV cache size:").nth(1) else {
            continue;
        };
        let digits: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == ',')
            .collect();
        let after = rest.trim_start()[digits.len()..].trim_start();
        let Ok(tokens) = digits.replace(',', "").parse::<u64>() else {
            continue;
        };
        if tokens == 0 || !after.starts_with("tokens") {
            continue;
        }
        match engine_tag(line) {
            Some(tag) => {
                tagged.insert(tag, tokens);
            }
            None => {
                bare += tokens;
                found = true;
            }
        }
    }
    if !tagged.is_empty() {
        return Some(tagged.values().sum());
    }
    found.then_some(bare)
}

/// The `(EngineCore[_DPn] pid=N)` tag of a vLLM log line.
fn engine_tag(line: &str) -> Option<String> {
    let start = line.find("(EngineCore")?;
    let inner = &line[start + 1..];
    let close = inner.find(')')?;
    let (tag, pid) = inner[..close].split_once(char::is_whitespace)?;
    let dp_ok = tag == "EngineCore"
        || tag
            .strip_prefix("EngineCore_DP")
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    let pid_ok = pid
        .trim_start()
        .strip_prefix("pid=")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    (dp_ok && pid_ok).then(|| tag.to_owned())
}

/// `compute_server_metrics` with the vLLM adapter (`backends/vllm.py`): the one kvsweep's
/// exports carry (the simulator's metrics are vLLM's). Returns the nested block and warnings.
fn server_metrics(
    export: Option<&ServerMetricsExport>,
    framework: &str,
    records: &[&RecordInfo],
    server_log: Option<&str>,
) -> Result<(Value, Vec<String>)> {
    let empty = indexmap::IndexMap::new();
    let metrics = export.map_or(&empty, |e| &e.metrics);
    let mut nested = empty_server_metrics(!metrics.is_empty(), metrics.len());
    let mut warnings = Vec::new();
    let is_vllm = metrics.keys().any(|k| k.starts_with("vllm:"))
        || (metrics.is_empty() && framework.eq_ignore_ascii_case("vllm"));
    let capacity = server_log.and_then(kv_pool_tokens_from_log);
    let input_total: Option<f64> = {
        let v = ints(records, "input_sequence_length");
        (!v.is_empty()).then(|| v.iter().sum())
    };
    let output_total: Option<f64> = {
        let v = ints(records, "output_sequence_length");
        (!v.is_empty()).then(|| v.iter().sum())
    };
    let n = records.len();
    if metrics.is_empty() {
        warnings.push("server_metrics_export.json missing or empty".to_owned());
        if is_vllm && let Some(c) = capacity {
            nested["kv_cache"]["gpu_total_tokens"] = json!(c);
        }
        nested["tokens"]["prompt_total"] = json!(input_total.map(|v| v as i64));
        nested["tokens"]["generation_total"] = json!(output_total.map(|v| v as i64));
        nested["tokens"]["requests_completed"] = json!(n);
        return Ok((nested, warnings));
    }
    if !is_vllm || metrics.keys().any(|k| k.starts_with("dynamo_")) {
        let names: BTreeSet<&str> = metrics.keys().map(String::as_str).collect();
        anyhow::bail!(
            "server metrics of framework `{framework}` ({}): kvsweep aggregates only vLLM-named metrics",
            names.into_iter().take(10).collect::<Vec<_>>().join(", ")
        );
    }
    nested["adapter"] = json!("vllm");
    let all = |names: &[&str]| series(metrics, names);
    let any = |_: &Series<'_>| true;
    let prompt_total = counter_int(sum_stat(&all(&["vllm:prompt_tokens"]), any));
    let generation_total = counter_int(sum_stat(&all(&["vllm:generation_tokens"]), any));
    let hits = sum_stat(&all(&["vllm:prefix_cache_hits"]), any);
    let queries = sum_stat(&all(&["vllm:prefix_cache_queries"]), any);
    let mut gpu_rate = rate(hits, queries);
    let ext_hits = sum_stat(&all(&["vllm:external_prefix_cache_hits"]), any);
    let ext_queries = sum_stat(&all(&["vllm:external_prefix_cache_queries"]), any);
    let mut external_rate = rate(ext_hits, ext_queries);
    let mut cpu_rate = external_rate;
    let mut overall = None;
    // sum_by_label(..., "source"), in first-seen order.
    let mut by_source: indexmap::IndexMap<String, f64> = indexmap::IndexMap::new();
    for s in all(&["vllm:prompt_tokens_by_source"]) {
        if let (Some(label), Some(v)) = (s.label("source"), s.stat(false)) {
            *by_source.entry(label.to_owned()).or_insert(0.0) += v;
        }
    }
    if !by_source.is_empty() {
        let local = by_source.get("local_cache_hit").copied();
        let ext = by_source.get("external_kv_transfer").copied();
        let compute = by_source.get("local_compute").copied();
        let total: f64 = by_source.values().sum();
        if total > 0.0 {
            if let Some(l) = local {
                gpu_rate = Some(l / total);
            }
            if let Some(x) = ext {
                cpu_rate = Some(x / total);
                external_rate = Some(x / total);
            }
            overall = Some((local.unwrap_or(0.0) + ext.unwrap_or(0.0)) / total);
        }
        nested["tokens"]["prompt_by_source"] = json!({
            "gpu_cache_hit": local,
            "cpu_or_external_cache_hit": ext,
            "computed": compute,
            "raw": by_source,
        });
    } else if gpu_rate.is_some() {
        overall = gpu_rate;
    }
    let gpu_usage = fraction(gauge_max(
        &all(&["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"]),
        any,
    ));
    let cpu_usage = fraction(gauge_max(&all(&["vllm:cpu_kv_cache_usage_perc"]), any));
    let offload = |name: &str| sum_stat(&all(&[name]), any);
    let (b_g2c, b_c2g) = (
        offload("vllm:kv_offload_bytes_gpu_to_cpu"),
        offload("vllm:kv_offload_bytes_cpu_to_gpu"),
    );
    let (t_g2c, t_c2g) = (
        offload("vllm:kv_offload_time_gpu_to_cpu"),
        offload("vllm:kv_offload_time_cpu_to_gpu"),
    );
    let cache = &mut nested["cache"];
    cache["gpu_cache_hit_rate"] = json!(gpu_rate);
    cache["cpu_cache_hit_rate"] = json!(cpu_rate);
    cache["external_cache_hit_rate"] = json!(external_rate);
    cache["overall_cache_hit_rate"] = json!(overall);
    cache["prefix_cache_hits"] = json!(hits);
    cache["prefix_cache_queries"] = json!(queries);
    cache["external_prefix_cache_hits"] = json!(ext_hits);
    cache["external_prefix_cache_queries"] = json!(ext_queries);
    nested["kv_cache"]["gpu_usage_pct"] = json!(gpu_usage);
    nested["kv_cache"]["cpu_usage_pct"] = json!(cpu_usage);
    nested["kv_offload"] = json!({
        "bytes_gpu_to_cpu": b_g2c,
        "bytes_cpu_to_gpu": b_c2g,
        "time_gpu_to_cpu": t_g2c,
        "time_cpu_to_gpu": t_c2g,
        "bandwidth_gpu_to_cpu_bytes_per_second": rate(b_g2c, t_g2c),
        "bandwidth_cpu_to_gpu_bytes_per_second": rate(b_c2g, t_c2g),
    });
    nested["sources"] = sources(metrics);
    if let Some(c) = capacity {
        nested["kv_cache"]["gpu_total_tokens"] = json!(c);
    }
    // apply_profile_totals: the records' sums where the server gave none.
    let tokens = &mut nested["tokens"];
    tokens["prompt_total"] = json!(prompt_total.or(input_total.map(|v| v as i64)));
    tokens["generation_total"] = json!(generation_total.or(output_total.map(|v| v as i64)));
    tokens["requests_completed"] = json!(n);
    Ok((nested, warnings))
}

/// `_vllm_sources`: per source id (sorted), its token totals, hit rate and KV usage.
fn sources(metrics: &indexmap::IndexMap<String, ServerMetric>) -> Value {
    let names = [
        "vllm:prompt_tokens",
        "vllm:generation_tokens",
        "vllm:prefix_cache_hits",
        "vllm:prefix_cache_queries",
        "vllm:kv_cache_usage_perc",
        "vllm:prompt_tokens_by_source",
    ];
    let ids: BTreeSet<String> = series(metrics, &names)
        .iter()
        .map(Series::source_id)
        .filter(|id| !id.is_empty())
        .collect();
    let list: Vec<Value> = ids
        .into_iter()
        .map(|id| {
            let of = |s: &Series<'_>| s.source_id() == id;
            let sum = |name: &str| sum_stat(&series(metrics, &[name]), of);
            let kv = fraction(gauge_max(
                &series(
                    metrics,
                    &["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"],
                ),
                of,
            ));
            let role = id.split('|').next().unwrap_or("").to_owned();
            json!({
                "id": id,
                "role": role,
                "prompt_tokens": sum("vllm:prompt_tokens"),
                "generation_tokens": sum("vllm:generation_tokens"),
                "prefix_cache_hit_rate": rate(sum("vllm:prefix_cache_hits"), sum("vllm:prefix_cache_queries")),
                "gpu_kv_cache_usage_pct": kv,
            })
        })
        .collect();
    Value::Array(list)
}

/// `round_floats(obj, 5)`: every finite float rounded to 5 decimals, an integral one of
/// magnitude ≥ 1 written as an integer.
pub fn round_floats(v: Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if !x.is_finite() {
                return Value::Number(n);
            }
            let r = (x * 1e5).round() / 1e5;
            if r.abs() >= 1.0 && r.fract() == 0.0 && r.abs() < 9.0e15 {
                json!(r as i64)
            } else {
                json!(r)
            }
        }
        Value::Array(a) => Value::Array(a.into_iter().map(round_floats).collect()),
        Value::Object(o) => {
            Value::Object(o.into_iter().map(|(k, v)| (k, round_floats(v))).collect())
        }
        other => other,
    }
}

/// `build_agg` (and `main`'s rounding): the AgentX aggregate of an AIPerf artifact directory's
/// contents.
pub fn aggregate(
    id: &Identity,
    records: &[RecordInfo],
    profile: Option<&ProfileExport>,
    server: Option<&ServerMetricsExport>,
    server_log: Option<&str>,
) -> Result<Value> {
    let (kept, acc) = accounting(records);
    let mut agg = Map::new();
    let mut put = |k: &str, v: Value| {
        agg.insert(k.to_owned(), v);
    };
    put("hw", json!(id.runner));
    put("conc", json!(id.conc));
    put("image", json!(id.image));
    put("recipe_fingerprint", json!(""));
    put("model", json!(id.model));
    put("infmax_model_prefix", json!(""));
    put("framework", json!(id.framework));
    put("precision", json!(id.precision));
    put("spec_decoding", json!("none"));
    put("disagg", json!(false));
    put("scenario_type", json!("agentic-coding"));
    put("is_multinode", json!(false));
    put("tp", json!(id.tp));
    put("ep", json!(id.ep));
    put("dp_attention", json!("false"));
    put("kv_offloading", json!(id.kv_offloading));
    put(
        "kv_offload_backend",
        id.kv_offload_backend
            .as_ref()
            .map_or(Value::Null, |name| json!({"name": name})),
    );
    put("allocated_cpu_dram_gb", json!(id.cpu_dram_gb));
    put("num_requests_total", acc["records_total"].clone());
    put("num_requests_successful", json!(kept.len()));
    put("request_accounting", acc);
    put("pp", json!(1));
    put("dcp_size", json!(1));
    put("pcp_size", json!(1));
    if let Some(dataset) = profile
        .and_then(|p| p.metadata.as_ref())
        .and_then(|m| m.dataset.as_ref())
        .filter(|d| d.is_object())
    {
        put("dataset", dataset.clone());
    }
    let request = request_metrics(&kept, profile, id.gpus());
    let (server, warnings) = server_metrics(server, &id.framework, &kept, server_log)?;
    let pool = server["kv_cache"]["gpu_total_tokens"].clone();
    put("request_metrics", request);
    put("server_metrics", server);
    put("kv_cache_pool_tokens", pool);
    if !warnings.is_empty() {
        put("warnings", json!(warnings));
    }
    Ok(round_floats(Value::Object(agg)))
}

/// Writes the cell's exports and aggregate under `out/agentx/` (see the module doc) and
/// returns the aggregate's path; `None` for a cell that did not run the AgentX scenario.
pub fn write(dir: &Path, out: &Path) -> Result<Option<std::path::PathBuf>> {
    use crate::artifact::schema::JsonArtifact;
    let plan = CellPlan::read(dir)?;
    let crate::workload::Workload::Replay(args) = &plan.workload else {
        return Ok(None);
    };
    if args.agentx.scenario.is_none() {
        return Ok(None);
    }
    let exports = crate::aiperf::cell_export::from_cell(dir)?;
    let id = Identity::of(&plan);
    let name = id.result_filename();
    let root = out.join("agentx");
    let result_dir = root.join(&name);
    exports.write(&result_dir.join("aiperf_artifacts"))?;
    // The processor reads RESULT_DIR/server.log for the KV pool size: keep the same there.
    let log = std::fs::read(dir.join("server.log")).ok();
    if let Some(bytes) = &log {
        let to = result_dir.join("server.log");
        std::fs::write(&to, bytes).with_context(|| format!("cannot write {}", to.display()))?;
    }
    let log = log.map(|b| String::from_utf8_lossy(&b).replace('\0', ""));
    let env = result_dir.join("inferencex.env");
    std::fs::write(&env, id.env_file())
        .with_context(|| format!("cannot write {}", env.display()))?;
    let agg = aggregate(
        &id,
        &exports.records,
        Some(&exports.profile),
        exports.server_metrics.as_ref(),
        log.as_deref(),
    )?;
    let path = root.join(format!("{name}.json"));
    crate::artifact::write_json_atomic(&path, &agg)?;
    Ok(Some(path))
}

/// [`write`] for `collect`: a cell whose files do not fit their format stops the collect (as
/// everywhere in collect); any other failure is a warning, the cell's other results stand.
pub fn write_or_warn(dir: &Path, out: &Path, cell: &str) -> Result<()> {
    match write(dir, out) {
        Ok(_) => Ok(()),
        Err(e)
            if e.downcast_ref::<crate::artifact::schema::FormatError>()
                .is_some() =>
        {
            Err(e)
        }
        Err(e) => {
            eprintln!("warning: no AgentX result for {cell}: {e:#}");
            Ok(())
        }
    }
}
