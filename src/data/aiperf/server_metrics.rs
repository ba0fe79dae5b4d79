//! A kvsweep cell's `metrics.csv` as AIPerf's `server_metrics_export.json`.
//!
//! AIPerf scrapes the server's `/metrics` through the run and exports, per Prometheus family,
//! each counter's increase over the profiling phase (`stats.total`, from the last scrape before
//! the phase to the last one after it) and each gauge's distribution over the phase's scrapes.
//! kvsweep's scraper kept the same scrapes, mapped onto its schema (`crate::run::metrics::schema`),
//! in `metrics.csv`; this turns them back into the vLLM families InferenceX's vLLM adapter
//! reads (`utils/agentic/aggregation/backends/vllm.py`). Only a vLLM-named server (vLLM and the
//! simulator) gets an export: the other engines' families are not rebuilt.
//!
//! The hits: kvsweep's `prefix_hits` is vLLM's local plus external hits and `prompt_external`
//! the prompt tokens an external KV connector supplied (vLLM's
//! `prompt_tokens_by_source{source="external_kv_transfer"}`), so `vllm:prefix_cache_hits` is
//! their difference and `vllm:external_prefix_cache_hits` the latter.

use indexmap::IndexMap;

use super::schema::CreditPhase;
use super::schema::server_export::{
    CounterMetric, CounterSeries, CounterStats, CounterTimeslice, GaugeMetric, GaugeSeries,
    GaugeStats, GaugeTimeslice, ServerMetric, ServerMetricsExport, ServerMetricsSummary, TimeRange,
};
use crate::data::artifact::schema::MetricsRow;

/// The phase the export covers, unix seconds.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start_s: f64,
    pub end_s: f64,
}

/// The row a counter's increase counts from: the last at or before the window's start (the
/// scrape AIPerf takes as the phase's baseline), else the first.
fn base_index(rows: &[MetricsRow], window: Window) -> usize {
    rows.iter()
        .rposition(|r| r.time <= window.start_s)
        .unwrap_or(0)
}

/// A counter's increase over the window: from the base row to the last row; a drop (a
/// restart) counts as no increase.
fn increase(
    rows: &[MetricsRow],
    window: Window,
    value: &dyn Fn(&MetricsRow) -> Option<f64>,
) -> Option<f64> {
    let base = rows
        .get(base_index(rows, window))
        .and_then(value)
        .unwrap_or(0.0);
    let last = rows.iter().rev().find_map(value)?;
    Some((last - base).max(0.0))
}

fn nanos(unix_s: f64) -> u64 {
    (unix_s * 1e9).round().max(0.0) as u64
}

/// A gauge's statistics over the rows inside the window (numpy's linear percentiles and
/// population standard deviation, as AIPerf computes them).
fn gauge(
    rows: &[MetricsRow],
    window: Window,
    value: impl Fn(&MetricsRow) -> Option<f64>,
) -> Option<GaugeStats> {
    let mut v: Vec<f64> = rows
        .iter()
        .filter(|r| r.time >= window.start_s && r.time <= window.end_s)
        .filter_map(value)
        .collect();
    v.sort_by(f64::total_cmp);
    let (mean, std) = crate::base::stats::mean_pstdev(&v)?;
    let p = |q: f64| Some(crate::base::stats::percentile(&v, q));
    Some(GaugeStats {
        avg: Some(mean),
        min: v.first().copied(),
        max: v.last().copied(),
        std: Some(std),
        p1: p(1.0),
        p5: p(5.0),
        p10: p(10.0),
        p25: p(25.0),
        p50: p(50.0),
        p75: p(75.0),
        p90: p(90.0),
        p95: p(95.0),
        p99: p(99.0),
    })
}

/// The export of `rows` (a vLLM-named server's `metrics.csv`) over `window`; `endpoint` is the
/// scraped `/metrics` URL and `model` the served name, as the series' labels.
pub fn export(
    rows: &[MetricsRow],
    window: Window,
    endpoint: &str,
    model: &str,
) -> ServerMetricsExport {
    let labels = |extra: Option<(&str, &str)>| {
        let mut l = IndexMap::new();
        l.insert("engine".to_owned(), "0".to_owned());
        l.insert("model_name".to_owned(), model.to_owned());
        if let Some((k, v)) = extra {
            l.insert(k.to_owned(), v.to_owned());
        }
        Some(l)
    };
    let span = (window.end_s - window.start_s).max(1e-9);
    let base = base_index(rows, window);
    // One series of a counter whose cumulative value `f` gives: its increase over the window
    // (`minus` taken off, for the local hits) and per scrape interval.
    let counter_series = |f: &dyn Fn(&MetricsRow) -> Option<f64>, extra| -> Option<CounterSeries> {
        let total = increase(rows, window, f)?;
        let timeslices = rows[base..]
            .windows(2)
            .filter_map(|w| {
                let (a, b) = (&w[0], &w[1]);
                let dt = b.time - a.time;
                let d = (f(b)? - f(a)?).max(0.0);
                (dt > 0.0).then(|| CounterTimeslice {
                    start_ns: nanos(a.time),
                    end_ns: nanos(b.time),
                    is_complete: None,
                    total: d,
                    rate: d / dt,
                })
            })
            .collect();
        Some(CounterSeries {
            endpoint_url: Some(endpoint.to_owned()),
            labels: labels(extra),
            stats: Some(CounterStats {
                total: Some(total),
                rate: Some(total / span),
                ..CounterStats::default()
            }),
            timeslices: Some(timeslices),
        })
    };
    let mut metrics: IndexMap<String, ServerMetric> = IndexMap::new();
    let mut counter =
        |name: &str, description: &str, unit: Option<&str>, series: Vec<CounterSeries>| {
            if !series.is_empty() {
                metrics.insert(
                    name.to_owned(),
                    ServerMetric::Counter(CounterMetric {
                        description: description.to_owned(),
                        unit: unit.map(str::to_owned),
                        series,
                    }),
                );
            }
        };
    let external = |r: &MetricsRow| r.prompt_external;
    let local_hits = |r: &MetricsRow| Some(r.prefix_hits? - r.prompt_external.unwrap_or(0.0));
    let one = |f: &dyn Fn(&MetricsRow) -> Option<f64>| {
        counter_series(f, None).into_iter().collect::<Vec<_>>()
    };
    // Names, HELP texts and units as AIPerf exports vLLM's families (a unit only where the
    // name's suffix gives one), in its order; label sets sorted as AIPerf sorts them.
    counter(
        "vllm:external_prefix_cache_hits",
        "External prefix cache hits from the KV connector, in tokens.",
        Some("tokens"),
        one(&external),
    );
    counter(
        "vllm:generation_tokens",
        "Number of generation tokens processed.",
        Some("tokens"),
        one(&|r| r.generation_tokens),
    );
    counter(
        "vllm:num_preemptions",
        "Cumulative number of preemptions from the engine.",
        None,
        one(&|r| r.preemptions),
    );
    counter(
        "vllm:prefix_cache_hits",
        "Prefix cache hits, in terms of number of cached tokens.",
        None,
        one(&local_hits),
    );
    counter(
        "vllm:prefix_cache_queries",
        "Prefix cache queries, in terms of number of queried tokens.",
        None,
        one(&|r| r.prefix_queries),
    );
    counter(
        "vllm:prompt_tokens",
        "Number of prefill tokens processed.",
        Some("tokens"),
        one(&|r| r.prompt_tokens),
    );
    let by_source: Vec<CounterSeries> = [
        (
            "external_kv_transfer",
            &external as &dyn Fn(&MetricsRow) -> Option<f64>,
        ),
        ("local_cache_hit", &|r: &MetricsRow| r.prompt_cache_hit),
        ("local_compute", &|r: &MetricsRow| r.prompt_compute),
    ]
    .into_iter()
    .filter_map(|(source, f)| counter_series(f, Some(("source", source))))
    .collect();
    counter(
        "vllm:prompt_tokens_by_source",
        "Number of prompt tokens by source.",
        None,
        by_source,
    );
    for (name, description, unit, f) in [
        (
            "vllm:kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage.",
            "ratio",
            (|r: &MetricsRow| r.kv_cache_usage) as fn(&MetricsRow) -> Option<f64>,
        ),
        (
            "vllm:num_requests_running",
            "Number of requests in model execution batches.",
            "requests",
            |r: &MetricsRow| r.running,
        ),
        (
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed.",
            "requests",
            |r: &MetricsRow| r.waiting,
        ),
    ] {
        if let Some(stats) = gauge(rows, window, f) {
            let timeslices = rows[base..]
                .windows(2)
                .filter(|w| w[1].time >= window.start_s && w[1].time <= window.end_s)
                .filter_map(|w| {
                    let v = f(&w[1])?;
                    Some(GaugeTimeslice {
                        start_ns: nanos(w[0].time),
                        end_ns: nanos(w[1].time),
                        is_complete: None,
                        avg: v,
                        min: v,
                        max: v,
                    })
                })
                .collect();
            metrics.insert(
                name.to_owned(),
                ServerMetric::Gauge(GaugeMetric {
                    description: description.to_owned(),
                    unit: Some(unit.to_owned()),
                    series: vec![GaugeSeries {
                        endpoint_url: Some(endpoint.to_owned()),
                        labels: labels(None),
                        stats: Some(stats),
                        timeslices: Some(timeslices),
                    }],
                }),
            );
        }
    }
    metrics.sort_keys();
    let mut ranges = IndexMap::new();
    ranges.insert(
        "profiling".to_owned(),
        TimeRange {
            start_ns: Some(nanos(window.start_s)),
            end_ns: Some(nanos(window.end_s)),
        },
    );
    ServerMetricsExport {
        schema_version: "1.1".to_owned(),
        aiperf_version: None,
        benchmark_id: None,
        summary: ServerMetricsSummary {
            endpoints_configured: vec![endpoint.to_owned()],
            endpoints_successful: vec![endpoint.to_owned()],
            start_time: super::iso_time(window.start_s),
            end_time: super::iso_time(window.end_s),
            endpoint_info: None,
            phase_time_ranges: Some(ranges),
        },
        metrics_phase: CreditPhase::Profiling,
        metrics,
        warmup_metrics: None,
        input_config: serde_json::json!({}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(time: f64, prompt: f64, hits: f64, external: f64, kv: f64) -> MetricsRow {
        MetricsRow {
            time,
            prompt_tokens: Some(prompt),
            prefix_queries: Some(prompt),
            prefix_hits: Some(hits),
            prompt_external: Some(external),
            prompt_cache_hit: Some(hits - external),
            prompt_compute: Some(prompt - hits),
            kv_cache_usage: Some(kv),
            format_version: MetricsRow::VERSION,
            ..MetricsRow::default()
        }
    }

    fn total(e: &ServerMetricsExport, name: &str) -> Vec<(Option<String>, f64)> {
        let Some(ServerMetric::Counter(c)) = e.metrics.get(name) else {
            panic!("{name} is a counter")
        };
        c.series
            .iter()
            .map(|s| {
                (
                    s.labels.as_ref().and_then(|l| l.get("source").cloned()),
                    s.stats.as_ref().and_then(|s| s.total).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn counters_increase_over_the_window_and_gauges_spread_inside_it() {
        // Warm-up until 10 s: 1000 prompt tokens, 0 hits. The window [10, 20]: +3000 prompt
        // tokens, +2000 hits of which 500 external.
        let rows = [
            row(5.0, 500.0, 0.0, 0.0, 0.9),
            row(10.0, 1000.0, 0.0, 0.0, 0.1),
            row(15.0, 2500.0, 1200.0, 200.0, 0.3),
            row(20.0, 4000.0, 2000.0, 500.0, 0.2),
        ];
        let e = export(
            &rows,
            Window {
                start_s: 10.0,
                end_s: 20.0,
            },
            "http://h/metrics",
            "m",
        );
        assert_eq!(total(&e, "vllm:prompt_tokens"), [(None, 3000.0)]);
        assert_eq!(total(&e, "vllm:prefix_cache_queries"), [(None, 3000.0)]);
        assert_eq!(total(&e, "vllm:prefix_cache_hits"), [(None, 1500.0)]);
        assert_eq!(
            total(&e, "vllm:external_prefix_cache_hits"),
            [(None, 500.0)]
        );
        assert_eq!(
            total(&e, "vllm:prompt_tokens_by_source"),
            [
                (Some("external_kv_transfer".into()), 500.0),
                (Some("local_cache_hit".into()), 1500.0),
                (Some("local_compute".into()), 1000.0)
            ]
        );
        let Some(ServerMetric::Gauge(kv)) = e.metrics.get("vllm:kv_cache_usage_perc") else {
            panic!("a gauge")
        };
        let s = kv.series[0].stats.as_ref().unwrap();
        // The warm-up's 0.9 is outside the window.
        assert_eq!((s.min, s.max), (Some(0.1), Some(0.3)));
        assert!((s.avg.unwrap() - 0.2).abs() < 1e-12);
        assert!(!e.metrics.contains_key("vllm:generation_tokens"));
        // Per scrape interval from the baseline on: 10 → 15 s and 15 → 20 s.
        let Some(ServerMetric::Counter(p)) = e.metrics.get("vllm:prompt_tokens") else {
            panic!("a counter")
        };
        let slices: Vec<(u64, f64, f64)> = p.series[0]
            .timeslices
            .as_ref()
            .unwrap()
            .iter()
            .map(|t| (t.start_ns, t.total, t.rate))
            .collect();
        assert_eq!(
            slices,
            [
                (10_000_000_000, 1500.0, 300.0),
                (15_000_000_000, 1500.0, 300.0)
            ]
        );
    }
}
