//! An AIPerf run's `server_metrics_export.json` as the two `metrics.csv` rows kvsweep's own
//! scraper would have written at the profiling phase's start and end, so that an AIPerf cell's
//! server hit rate, cache tiers and offload traffic come from the same engine mapping
//! (`metrics::schema`) as a kvsweep cell's.
//!
//! AIPerf reduces each counter to its increase over the profiling phase (`stats.total`) and each
//! histogram to its count and sum there; this writes them back as a Prometheus exposition
//! (counters under their `_total` names, which AIPerf's parser strips), reads that with the
//! scraper's parser and engine mapping, and derives the rows: the first with every counter at
//! zero, the last with the phase's increases. Gauges (requests running, KV usage) are averages
//! over the phase in AIPerf's export, not a reading at its end, and are left out.

use std::fmt::Write as _;

use crate::data::aiperf::{ServerMetric, ServerMetricsExport};
use crate::data::artifact::schema::MetricsRow;
use crate::run::metrics::{derive, parse, schema};

/// A Prometheus label set, `{k="v",...}` (empty for none).
fn labels(set: Option<&indexmap::IndexMap<String, String>>) -> String {
    let Some(set) = set.filter(|s| !s.is_empty()) else {
        return String::new();
    };
    let pairs: Vec<String> = set
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", pairs.join(","))
}

/// The phase's counter increases and histogram sums as an exposition; `zero` writes every
/// value as 0 (the phase's start).
fn exposition(export: &ServerMetricsExport, zero: bool) -> String {
    let mut text = String::new();
    let mut line = |name: &str, labels: &str, v: f64| {
        let _ = writeln!(text, "{name}{labels} {}", if zero { 0.0 } else { v });
    };
    for (name, metric) in &export.metrics {
        match metric {
            ServerMetric::Counter(c) => {
                for s in &c.series {
                    if let Some(total) = s.stats.as_ref().and_then(|st| st.total) {
                        line(&format!("{name}_total"), &labels(s.labels.as_ref()), total);
                    }
                }
            }
            ServerMetric::Histogram(h) => {
                for s in &h.series {
                    let Some(stats) = &s.stats else { continue };
                    let l = labels(s.labels.as_ref());
                    if let Some(sum) = stats.sum {
                        line(&format!("{name}_sum"), &l, sum);
                    }
                    if let Some(count) = stats.count {
                        line(&format!("{name}_count"), &l, count as f64);
                    }
                }
            }
            ServerMetric::Gauge(_) | ServerMetric::Unknown(_) => {}
        }
    }
    text
}

/// The rows at the profiling phase's start and end, `start_s` and `end_s` in Unix seconds;
/// `None` when the export holds no engine kvsweep knows.
pub fn rows(export: &ServerMetricsExport, start_s: f64, end_s: f64) -> Option<[MetricsRow; 2]> {
    let (at_end, at_start) = (exposition(export, false), exposition(export, true));
    let (end_e, start_e) = (parse::parse(&at_end), parse::parse(&at_start));
    let engine = schema::detect(&end_e)?;
    let (cur, prev) = (
        schema::snapshot(engine, &end_e),
        schema::snapshot(engine, &start_e),
    );
    let span = end_s - start_s;
    Some([
        derive(start_s, 0.0, &prev, &prev, 1.0),
        derive(end_s, span, &cur, &prev, span),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_real_export_gives_the_phase_increases_under_kvsweeps_names() {
        // i22x's fixture: a real AIPerf 0.13.0 run against the simulator's vLLM-named metrics.
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/aiperf/agentx-0.13.0/server_metrics_export.json");
        let export = crate::data::aiperf::read_server_metrics(&path).expect("the fixture");
        let total = |name: &str| match &export.metrics[name] {
            ServerMetric::Counter(c) => c
                .series
                .iter()
                .filter_map(|s| s.stats.as_ref()?.total)
                .sum::<f64>(),
            _ => panic!("{name} is a counter"),
        };
        let [first, last] = rows(&export, 100.0, 160.0).expect("a vLLM export");
        assert_eq!((first.time, last.time, last.rel_s), (100.0, 160.0, 60.0));
        assert_eq!(first.prefix_queries, Some(0.0));
        let hits = total("vllm:prefix_cache_hits") + total("vllm:external_prefix_cache_hits");
        assert_eq!(last.prefix_hits, Some(hits));
        assert_eq!(
            last.prefix_queries,
            Some(total("vllm:prefix_cache_queries"))
        );
        assert!(hits > 0.0, "the run hit the cache");
        assert_eq!(last.prompt_tokens, Some(total("vllm:prompt_tokens")));
        let per_s = total("vllm:generation_tokens") / 60.0;
        assert_eq!(last.generation_tokens_per_s, Some(per_s));
        assert_eq!(last.running, None, "gauges are averages, not end readings");
    }

    #[test]
    fn labels_are_quoted_and_escaped() {
        let set: indexmap::IndexMap<String, String> = [("source".to_owned(), "a\"b".to_owned())]
            .into_iter()
            .collect();
        assert_eq!(labels(Some(&set)), "{source=\"a\\\"b\"}");
        assert_eq!(labels(None), "");
    }
}
