//! InferenceX's `server_metrics` block of the AgentX aggregate, from the server's side: vLLM's
//! Prometheus series (cache hit rates, KV usage and offload traffic, token totals, per-source
//! figures) and the KV-cache pool size from the engine log, as
//! `utils/agentic/aggregation/server_metrics.py` computes them with its vLLM adapter
//! (`backends/vllm.py`) and the series helpers of `aggregation_common.py`.

use std::collections::{BTreeSet, HashMap};

use anyhow::Result;
use serde_json::{Value, json};

use super::requests::ints;
use crate::data::aiperf::{RecordInfo, ServerMetric, ServerMetricsExport};

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
fn kv_pool_tokens_from_log(log: &str) -> Option<u64> {
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
pub(super) fn server_metrics(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kv_pool_is_the_engines_last_size_each_or_the_untagged_sizes_summed() {
        // InferenceX's own test cases (test_process_agentic_result.py).
        let dp = [
            "INFO (EngineCore_DP0 pid=100) GPU KV cache size: 5,000,000 tokens",
            "INFO (EngineCore_DP0 pid=100) GPU KV cache size: 5,000,000 tokens",
            "INFO (EngineCore_DP1 pid=101) GPU KV cache size: 6,500,000 tokens",
        ]
        .join("\n");
        assert_eq!(kv_pool_tokens_from_log(&dp), Some(11_500_000));
        let bare = "GPU KV cache size: 1,000 tokens\nnoise\nGPU KV cache size: 2,000 tokens";
        assert_eq!(kv_pool_tokens_from_log(bare), Some(3_000));
        assert_eq!(
            kv_pool_tokens_from_log(
                "INFO (EngineCore pid=123) GPU KV cache size: 11,294,463 tokens"
            ),
            Some(11_294_463)
        );
        assert_eq!(kv_pool_tokens_from_log("GPU KV cache size: , tokens"), None);
        assert_eq!(kv_pool_tokens_from_log("KV cache 427232 tokens"), None);
    }
}
