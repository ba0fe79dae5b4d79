//! The simulator's `/metrics`: Prometheus text with vLLM v1's names and types, or SGLang's.
//!
//! Counters are kept by the engine loop, which alone changes them, so no locking is needed; the
//! HTTP handler asks the loop to render them.

use std::fmt::Write as _;

/// vLLM's bucket bounds (seconds).
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
const ITL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
const REQUEST_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];

#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    pub(crate) fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    fn write(&self, out: &mut String, name: &str, labels: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, n) in self.bounds.iter().zip(&self.counts) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// Which engine's metric names `/metrics` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Flavor {
    Vllm,
    Sglang,
}

/// Everything the engine counts.
#[derive(Debug, Clone)]
pub struct Counters {
    pub prompt_tokens: u64,
    pub generation_tokens: u64,
    /// Prompt tokens looked up in the prefix cache.
    pub(crate) cache_queries: u64,
    /// Prompt tokens found in HBM.
    pub(crate) cache_hits: u64,
    /// Prompt tokens loaded from the offload tier.
    pub(crate) offload_hits: u64,
    pub preemptions: u64,
    pub(crate) finished_stop: u64,
    pub(crate) finished_length: u64,
    pub(crate) finished_abort: u64,
    pub offload_bytes_to_cpu: u64,
    pub offload_bytes_to_gpu: u64,
    pub offload_seconds_to_cpu: f64,
    pub offload_seconds_to_gpu: f64,
    pub ttft: Histogram,
    pub(crate) itl: Histogram,
    pub e2e: Histogram,
    pub queue: Histogram,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            prompt_tokens: 0,
            generation_tokens: 0,
            cache_queries: 0,
            cache_hits: 0,
            offload_hits: 0,
            preemptions: 0,
            finished_stop: 0,
            finished_length: 0,
            finished_abort: 0,
            offload_bytes_to_cpu: 0,
            offload_bytes_to_gpu: 0,
            offload_seconds_to_cpu: 0.0,
            offload_seconds_to_gpu: 0.0,
            ttft: Histogram::new(TTFT_BUCKETS),
            itl: Histogram::new(ITL_BUCKETS),
            e2e: Histogram::new(REQUEST_BUCKETS),
            queue: Histogram::new(REQUEST_BUCKETS),
        }
    }
}

/// The engine's state at the moment of a scrape.
#[derive(Debug, Clone, Copy)]
pub struct Gauges {
    pub running: usize,
    pub waiting: usize,
    pub kv_usage: f64,
}

/// Renders the exposition text for a scrape.
pub fn render(flavor: Flavor, model: &str, c: &Counters, g: Gauges) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let model = model.replace('\\', "\\\\").replace('"', "\\\"");
    match flavor {
        Flavor::Vllm => render_vllm(
            &mut out,
            &format!("model_name=\"{model}\",engine=\"0\""),
            c,
            g,
        ),
        Flavor::Sglang => render_sglang(&mut out, &format!("model_name=\"{model}\""), c, g),
    }
    out
}

fn metric(out: &mut String, kind: &str, name: &str, help: &str, samples: &[(&str, String)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// A metric with one sample per value of the label `key`, on top of the common labels `l`.
fn metric_by(
    out: &mut String,
    kind: &str,
    name: &str,
    help: &str,
    l: &str,
    key: &str,
    values: &[(&str, String)],
) {
    let labels: Vec<String> = values
        .iter()
        .map(|(v, _)| format!("{l},{key}=\"{v}\""))
        .collect();
    let samples: Vec<(&str, String)> = labels
        .iter()
        .zip(values)
        .map(|(k, (_, v))| (k.as_str(), v.clone()))
        .collect();
    metric(out, kind, name, help, &samples);
}

fn render_vllm(out: &mut String, l: &str, c: &Counters, g: Gauges) {
    let one = |v: String| vec![(l, v)];
    metric(
        out,
        "gauge",
        "vllm:num_requests_running",
        "Number of requests in model execution batches.",
        &one(g.running.to_string()),
    );
    metric(
        out,
        "gauge",
        "vllm:num_requests_waiting",
        "Number of requests waiting to be processed.",
        &one(g.waiting.to_string()),
    );
    metric(
        out,
        "gauge",
        "vllm:kv_cache_usage_perc",
        "KV-cache usage. 1 means 100 percent usage.",
        &one(g.kv_usage.to_string()),
    );
    metric(
        out,
        "counter",
        "vllm:prefix_cache_queries_total",
        "Prefix cache queries, in terms of number of queried tokens.",
        &one(c.cache_queries.to_string()),
    );
    metric(
        out,
        "counter",
        "vllm:prefix_cache_hits_total",
        "Prefix cache hits, in terms of number of cached tokens.",
        &one(c.cache_hits.to_string()),
    );
    metric(
        out,
        "counter",
        "vllm:external_prefix_cache_queries_total",
        "External prefix cache queries from the KV connector, in tokens.",
        &one(c.cache_queries.to_string()),
    );
    metric(
        out,
        "counter",
        "vllm:external_prefix_cache_hits_total",
        "External prefix cache hits from the KV connector, in tokens.",
        &one(c.offload_hits.to_string()),
    );
    metric(
        out,
        "counter",
        "vllm:num_preemptions_total",
        "Cumulative number of preemptions from the engine.",
        &one(c.preemptions.to_string()),
    );
    metric(
        out,
        "counter",
        "vllm:prompt_tokens_total",
        "Number of prefill tokens processed.",
        &one(c.prompt_tokens.to_string()),
    );
    metric(
        out,
        "counter",
        "vllm:generation_tokens_total",
        "Number of generation tokens processed.",
        &one(c.generation_tokens.to_string()),
    );
    let computed = c.prompt_tokens - c.cache_hits - c.offload_hits;
    metric_by(
        out,
        "counter",
        "vllm:prompt_tokens_by_source_total",
        "Number of prompt tokens by source.",
        l,
        "source",
        &[
            ("local_compute", computed.to_string()),
            ("local_cache_hit", c.cache_hits.to_string()),
            ("external_kv_transfer", c.offload_hits.to_string()),
        ],
    );
    // vLLM 0.32's split of cached prompt tokens by the tier that supplied them.
    metric_by(
        out,
        "counter",
        "vllm:prompt_tokens_cached_by_source_total",
        "Number of cached prompt tokens by the cache tier that supplied them.",
        l,
        "source",
        &[
            ("device", c.cache_hits.to_string()),
            ("host", c.offload_hits.to_string()),
        ],
    );
    metric_by(
        out,
        "counter",
        "vllm:request_success_total",
        "Count of finished requests by reason.",
        l,
        "finished_reason",
        &[
            ("stop", c.finished_stop.to_string()),
            ("length", c.finished_length.to_string()),
            ("abort", c.finished_abort.to_string()),
        ],
    );
    metric_by(
        out,
        "counter",
        "vllm:kv_offload_bytes_total",
        "KV-cache bytes moved by the offload connector, per direction.",
        l,
        "direction",
        &[
            ("gpu_to_cpu", c.offload_bytes_to_cpu.to_string()),
            ("cpu_to_gpu", c.offload_bytes_to_gpu.to_string()),
        ],
    );
    metric_by(
        out,
        "counter",
        "vllm:kv_offload_time_seconds_total",
        "Time spent moving KV-cache blocks, per direction.",
        l,
        "direction",
        &[
            ("gpu_to_cpu", c.offload_seconds_to_cpu.to_string()),
            ("cpu_to_gpu", c.offload_seconds_to_gpu.to_string()),
        ],
    );
    c.ttft.write(
        out,
        "vllm:time_to_first_token_seconds",
        l,
        "Histogram of time to first token in seconds.",
    );
    c.itl.write(
        out,
        "vllm:inter_token_latency_seconds",
        l,
        "Histogram of inter-token latency in seconds.",
    );
    c.e2e.write(
        out,
        "vllm:e2e_request_latency_seconds",
        l,
        "Histogram of e2e request latency in seconds.",
    );
    c.queue.write(
        out,
        "vllm:request_queue_time_seconds",
        l,
        "Histogram of time spent in WAITING phase for request.",
    );
}

fn render_sglang(out: &mut String, l: &str, c: &Counters, g: Gauges) {
    let one = |v: String| vec![(l, v)];
    let hits = c.cache_hits + c.offload_hits;
    let hit_rate = if c.cache_queries > 0 {
        hits as f64 / c.cache_queries as f64
    } else {
        0.0
    };
    metric(
        out,
        "gauge",
        "sglang:num_running_reqs",
        "The number of running requests.",
        &one(g.running.to_string()),
    );
    metric(
        out,
        "gauge",
        "sglang:num_queue_reqs",
        "The number of requests in the waiting queue.",
        &one(g.waiting.to_string()),
    );
    metric(
        out,
        "gauge",
        "sglang:token_usage",
        "The token usage.",
        &one(g.kv_usage.to_string()),
    );
    metric(
        out,
        "gauge",
        "sglang:cache_hit_rate",
        "The prefix cache hit rate.",
        &one(hit_rate.to_string()),
    );
    metric(
        out,
        "gauge",
        "sglang:num_retracted_reqs",
        "The number of retracted requests.",
        &one(c.preemptions.to_string()),
    );
    metric(
        out,
        "counter",
        "sglang:prompt_tokens_total",
        "Number of prefill tokens processed.",
        &one(c.prompt_tokens.to_string()),
    );
    metric(
        out,
        "counter",
        "sglang:generation_tokens_total",
        "Number of generation tokens processed.",
        &one(c.generation_tokens.to_string()),
    );
    metric_by(
        out,
        "counter",
        "sglang:cached_tokens_total",
        "Number of cached prompt tokens.",
        l,
        "cache_source",
        &[
            ("device", c.cache_hits.to_string()),
            ("host", c.offload_hits.to_string()),
        ],
    );
    metric(
        out,
        "counter",
        "sglang:hicache_host_load_bytes_total",
        "Bytes loaded from the host cache.",
        &one(c.offload_bytes_to_gpu.to_string()),
    );
    metric(
        out,
        "counter",
        "sglang:hicache_host_store_bytes_total",
        "Bytes stored into the host cache.",
        &one(c.offload_bytes_to_cpu.to_string()),
    );
    c.ttft.write(
        out,
        "sglang:time_to_first_token_seconds",
        l,
        "Histogram of time to first token in seconds.",
    );
    c.itl.write(
        out,
        "sglang:inter_token_latency_seconds",
        l,
        "Histogram of inter-token latency in seconds.",
    );
    c.e2e.write(
        out,
        "sglang:e2e_request_latency_seconds",
        l,
        "Histogram of end-to-end request latency in seconds.",
    );
    c.queue.write(
        out,
        "sglang:queue_time_seconds",
        l,
        "Histogram of queueing time in seconds.",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.5, 0.7, 5.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.write(&mut out, "x", "a=\"b\"", "help");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.1\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"1\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 4\n"), "{out}");
    }

    #[test]
    fn vllm_flavor_uses_v1_names_and_types() {
        let c = Counters {
            prompt_tokens: 100,
            cache_hits: 60,
            offload_hits: 16,
            cache_queries: 100,
            ..Default::default()
        };
        let g = Gauges {
            running: 2,
            waiting: 1,
            kv_usage: 0.25,
        };
        let text = render(Flavor::Vllm, "m", &c, g);
        for line in [
            "# TYPE vllm:kv_cache_usage_perc gauge",
            "vllm:num_requests_running{model_name=\"m\",engine=\"0\"} 2",
            "# TYPE vllm:prefix_cache_hits_total counter",
            "vllm:prompt_tokens_by_source_total{model_name=\"m\",engine=\"0\",source=\"local_compute\"} 24",
            "vllm:prompt_tokens_cached_by_source_total{model_name=\"m\",engine=\"0\",source=\"device\"} 60",
            "vllm:prompt_tokens_cached_by_source_total{model_name=\"m\",engine=\"0\",source=\"host\"} 16",
            "# TYPE vllm:time_to_first_token_seconds histogram",
        ] {
            assert!(text.contains(line), "missing `{line}`");
        }
        let sg = render(Flavor::Sglang, "m", &c, g);
        assert!(
            sg.contains("sglang:cache_hit_rate{model_name=\"m\"} 0.76"),
            "{sg}"
        );
        assert!(!sg.contains("vllm:"));
    }
}
