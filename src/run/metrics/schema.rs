//! Each engine's metric names mapped onto one schema.
//!
//! Names drift between releases, so each field lists every name it is known under, current first;
//! what a scrape had is recorded in `metrics_meta.json`.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::parse::Exposition;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Vllm,
    Sglang,
    Llamacpp,
}

impl Engine {
    pub fn prefix(self) -> &'static str {
        match self {
            Engine::Vllm => "vllm:",
            Engine::Sglang => "sglang:",
            Engine::Llamacpp => "llamacpp:",
        }
    }

    /// The metrics a scrape of this engine is expected to have.
    pub fn expected(self) -> &'static [&'static str] {
        match self {
            Engine::Vllm => &[
                "vllm:num_requests_running",
                "vllm:num_requests_waiting",
                "vllm:kv_cache_usage_perc",
                "vllm:prefix_cache_queries_total",
                "vllm:prefix_cache_hits_total",
                "vllm:num_preemptions_total",
                "vllm:prompt_tokens_total",
                "vllm:generation_tokens_total",
                "vllm:time_to_first_token_seconds_sum",
                "vllm:inter_token_latency_seconds_sum",
                "vllm:request_queue_time_seconds_sum",
            ],
            Engine::Sglang => &[
                "sglang:num_running_reqs",
                "sglang:num_queue_reqs",
                "sglang:token_usage",
                "sglang:cache_hit_rate",
                "sglang:prompt_tokens_total",
                "sglang:generation_tokens_total",
                "sglang:time_to_first_token_seconds_sum",
            ],
            Engine::Llamacpp => &[
                "llamacpp:requests_processing",
                "llamacpp:requests_deferred",
                "llamacpp:prompt_tokens_total",
                "llamacpp:prompt_tokens_cached_total",
                "llamacpp:tokens_predicted_total",
            ],
        }
    }
}

/// The engine whose prefix the scrape's metric names carry.
pub fn detect(e: &Exposition<'_>) -> Option<Engine> {
    [Engine::Vllm, Engine::Sglang, Engine::Llamacpp]
        .into_iter()
        .find(|engine| {
            e.samples
                .iter()
                .any(|s| s.name.starts_with(engine.prefix()))
        })
}

/// One scrape in the common schema. Counters are cumulative; `None` where the engine has no
/// such metric.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Snapshot {
    pub running: Option<f64>,
    pub waiting: Option<f64>,
    pub kv_usage: Option<f64>,
    pub preemptions: Option<f64>,
    pub prefix_queries: Option<f64>,
    /// Prompt tokens served from any cache tier (HBM and offload).
    pub prefix_hits: Option<f64>,
    /// Of `prefix_hits`, those the device's own cache (HBM) supplied.
    pub prefix_hits_device: Option<f64>,
    /// Of `prefix_hits`, those the host tier (KV offloaded to CPU memory) supplied.
    pub prefix_hits_host: Option<f64>,
    /// Of `prefix_hits`, those any other tier supplied (disk, another instance, unnamed).
    pub prefix_hits_other: Option<f64>,
    pub prompt_tokens: Option<f64>,
    pub generation_tokens: Option<f64>,
    pub prompt_compute: Option<f64>,
    pub prompt_cache_hit: Option<f64>,
    pub prompt_external: Option<f64>,
    pub offload_bytes_to_cpu: Option<f64>,
    pub offload_bytes_to_gpu: Option<f64>,
    pub offload_seconds_to_cpu: Option<f64>,
    pub offload_seconds_to_gpu: Option<f64>,
    pub ttft_sum: Option<f64>,
    pub ttft_count: Option<f64>,
    pub itl_sum: Option<f64>,
    pub itl_count: Option<f64>,
    pub(crate) queue_sum: Option<f64>,
    pub queue_count: Option<f64>,
}

/// The first of `names` that the scrape has, summed over its label sets.
fn first(e: &Exposition<'_>, names: &[&str]) -> Option<f64> {
    names.iter().find_map(|n| e.sum(n))
}

/// A per-direction counter: the current name with `direction`, or the deprecated one with
/// `transfer_type` (matched without regard to case).
fn direction(e: &Exposition<'_>, current: &str, deprecated: &str, dir: &str) -> Option<f64> {
    e.sum_where(current, "direction", dir).or_else(|| {
        let mut found = false;
        let total = e
            .named(deprecated)
            .filter(|s| {
                s.label("transfer_type")
                    .is_some_and(|t| t.eq_ignore_ascii_case(dir))
            })
            .fold(0.0, |acc, s| {
                found = true;
                acc + s.value
            });
        found.then_some(total)
    })
}

fn add(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
    }
}

/// Cache hits split by the tier that supplied them, from a counter labelled `key` =
/// `device`, `host` or another tier: (device, host, every other tier summed).
fn hits_by_tier(
    e: &Exposition<'_>,
    name: &str,
    key: &str,
) -> (Option<f64>, Option<f64>, Option<f64>) {
    let all = e.sum(name);
    let device = e.sum_where(name, key, "device");
    let host = e.sum_where(name, key, "host");
    let other = all.map(|a| a - device.unwrap_or(0.0) - host.unwrap_or(0.0));
    (device, host, other)
}

pub fn snapshot(engine: Engine, e: &Exposition<'_>) -> Snapshot {
    match engine {
        Engine::Vllm => {
            // vLLM 0.32 on: hits by the tier that supplied them, summing to the local and
            // external hits.
            let (device, host, other) =
                hits_by_tier(e, "vllm:prompt_tokens_cached_by_source_total", "source");
            Snapshot {
                running: e.sum("vllm:num_requests_running"),
                waiting: e.sum("vllm:num_requests_waiting"),
                kv_usage: first(
                    e,
                    &["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"],
                ),
                preemptions: e.sum("vllm:num_preemptions_total"),
                prefix_queries: first(
                    e,
                    &[
                        "vllm:prefix_cache_queries_total",
                        "vllm:gpu_prefix_cache_queries_total",
                    ],
                ),
                prefix_hits: add(
                    first(
                        e,
                        &[
                            "vllm:prefix_cache_hits_total",
                            "vllm:gpu_prefix_cache_hits_total",
                        ],
                    ),
                    e.sum("vllm:external_prefix_cache_hits_total"),
                ),
                prefix_hits_device: device,
                prefix_hits_host: host,
                prefix_hits_other: other,
                prompt_tokens: e.sum("vllm:prompt_tokens_total"),
                generation_tokens: e.sum("vllm:generation_tokens_total"),
                prompt_compute: e.sum_where(
                    "vllm:prompt_tokens_by_source_total",
                    "source",
                    "local_compute",
                ),
                prompt_cache_hit: e.sum_where(
                    "vllm:prompt_tokens_by_source_total",
                    "source",
                    "local_cache_hit",
                ),
                prompt_external: e.sum_where(
                    "vllm:prompt_tokens_by_source_total",
                    "source",
                    "external_kv_transfer",
                ),
                offload_bytes_to_cpu: direction(
                    e,
                    "vllm:kv_offload_bytes_total",
                    "vllm:kv_offload_total_bytes",
                    "gpu_to_cpu",
                ),
                offload_bytes_to_gpu: direction(
                    e,
                    "vllm:kv_offload_bytes_total",
                    "vllm:kv_offload_total_bytes",
                    "cpu_to_gpu",
                ),
                offload_seconds_to_cpu: direction(
                    e,
                    "vllm:kv_offload_time_seconds_total",
                    "vllm:kv_offload_total_time",
                    "gpu_to_cpu",
                ),
                offload_seconds_to_gpu: direction(
                    e,
                    "vllm:kv_offload_time_seconds_total",
                    "vllm:kv_offload_total_time",
                    "cpu_to_gpu",
                ),
                ttft_sum: e.sum("vllm:time_to_first_token_seconds_sum"),
                ttft_count: e.sum("vllm:time_to_first_token_seconds_count"),
                itl_sum: first(
                    e,
                    &[
                        "vllm:inter_token_latency_seconds_sum",
                        "vllm:time_per_output_token_seconds_sum",
                    ],
                ),
                itl_count: first(
                    e,
                    &[
                        "vllm:inter_token_latency_seconds_count",
                        "vllm:time_per_output_token_seconds_count",
                    ],
                ),
                queue_sum: e.sum("vllm:request_queue_time_seconds_sum"),
                queue_count: e.sum("vllm:request_queue_time_seconds_count"),
            }
        }
        Engine::Sglang => {
            let prompt = e.sum("sglang:prompt_tokens_total");
            // SGLang may expose only a hit-rate gauge: hits are then rate × prompt tokens.
            let hits = e
                .sum("sglang:cached_tokens_total")
                .or_else(|| Some(e.sum("sglang:cache_hit_rate")? * prompt?));
            let (device, host, other) =
                hits_by_tier(e, "sglang:cached_tokens_total", "cache_source");
            Snapshot {
                running: e.sum("sglang:num_running_reqs"),
                waiting: e.sum("sglang:num_queue_reqs"),
                kv_usage: e.sum("sglang:token_usage"),
                preemptions: e.sum("sglang:num_retracted_reqs"),
                prefix_queries: prompt,
                prefix_hits: hits,
                prompt_tokens: prompt,
                generation_tokens: e.sum("sglang:generation_tokens_total"),
                prompt_cache_hit: e.sum_where(
                    "sglang:cached_tokens_total",
                    "cache_source",
                    "device",
                ),
                prompt_external: e.sum_where("sglang:cached_tokens_total", "cache_source", "host"),
                prefix_hits_device: device,
                prefix_hits_host: host,
                prefix_hits_other: other,
                offload_bytes_to_cpu: e.sum("sglang:hicache_host_store_bytes_total"),
                offload_bytes_to_gpu: e.sum("sglang:hicache_host_load_bytes_total"),
                ttft_sum: e.sum("sglang:time_to_first_token_seconds_sum"),
                ttft_count: e.sum("sglang:time_to_first_token_seconds_count"),
                itl_sum: e.sum("sglang:inter_token_latency_seconds_sum"),
                itl_count: e.sum("sglang:inter_token_latency_seconds_count"),
                queue_sum: e.sum("sglang:queue_time_seconds_sum"),
                queue_count: e.sum("sglang:queue_time_seconds_count"),
                ..Snapshot::default()
            }
        }
        Engine::Llamacpp => {
            // `prompt_tokens_total` excludes what came from the slot's cache; newer servers
            // count that separately in `prompt_tokens_cached_total`.
            let computed = e.sum("llamacpp:prompt_tokens_total");
            let cached = e.sum("llamacpp:prompt_tokens_cached_total");
            let all = match (computed, cached) {
                (Some(c), Some(h)) => Some(c + h),
                (c, _) => c,
            };
            Snapshot {
                running: e.sum("llamacpp:requests_processing"),
                waiting: e.sum("llamacpp:requests_deferred"),
                kv_usage: e.sum("llamacpp:kv_cache_usage_ratio"),
                prefix_queries: cached.and(all),
                prefix_hits: cached,
                prompt_tokens: all,
                prompt_compute: cached.and(computed),
                prompt_cache_hit: cached,
                generation_tokens: e.sum("llamacpp:tokens_predicted_total"),
                ..Snapshot::default()
            }
        }
    }
}

/// What `metrics_meta.json` records of the engine's cache configuration, from vLLM's info metric
/// `vllm:cache_config_info`: every label as written (`labels`), with the block size and the KV
/// offloading backend and size (GiB) read out. vLLM names its default backend (`native`) even
/// where nothing is offloaded; offloading is on only with a size, so `kv_offloading` is null
/// without one. `None` where the scrape has no such metric.
pub fn cache_config(engine: Engine, e: &Exposition<'_>) -> Option<Value> {
    let name = match engine {
        Engine::Vllm => "vllm:cache_config_info",
        Engine::Sglang | Engine::Llamacpp => return None,
    };
    let sample = e.named(name).next()?;
    // Python writes an unset value as `None`.
    let given = |key: &str| sample.label(key).filter(|v| !v.is_empty() && *v != "None");
    let kv_offloading = given("kv_offloading_size")
        .and_then(|v| v.parse::<f64>().ok())
        .map(|gib| json!({"backend": given("kv_offloading_backend"), "size_gib": gib}));
    let labels: Map<String, Value> = sample
        .label_pairs()
        .map(|(k, v)| (k.to_owned(), Value::from(v)))
        .collect();
    Some(json!({
        "block_size": given("block_size").and_then(|v| v.parse::<u64>().ok()),
        "kv_offloading": kv_offloading,
        "labels": labels,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::metrics::parse::parse;

    #[test]
    fn sglang_hits_are_split_by_cache_source() {
        let e = parse(
            "sglang:prompt_tokens_total 1000\n\
             sglang:cached_tokens_total{cache_source=\"device\"} 300\n\
             sglang:cached_tokens_total{cache_source=\"host\"} 200\n\
             sglang:cached_tokens_total{cache_source=\"storage\"} 50\n",
        );
        let s = snapshot(Engine::Sglang, &e);
        assert_eq!(s.prefix_hits, Some(550.0));
        assert_eq!(
            (
                s.prefix_hits_device,
                s.prefix_hits_host,
                s.prefix_hits_other
            ),
            (Some(300.0), Some(200.0), Some(50.0))
        );
        assert_eq!(cache_config(Engine::Sglang, &e), None);
    }
}
