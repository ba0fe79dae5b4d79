//! Benchmark: parse a 200 KB Prometheus exposition and map it onto the schema (target < 2 ms),
//! against the `prometheus-parse`-free baseline of simply splitting its lines (the floor any parser
//! pays), in the same run.
//!
//! `cargo bench --bench metrics` measures; under `cargo test` it parses once.

mod timing;

use std::fmt::Write as _;

use kvsweep::run::metrics::parse::parse;
use kvsweep::run::metrics::schema::{Engine, snapshot};

/// A vLLM-like exposition of about 200 KB: the usual metrics for 40 model/engine label sets.
fn exposition() -> String {
    let mut out = String::new();
    let mut set = 0;
    while out.len() < 200_000 {
        let l = format!("engine=\"{set}\",model_name=\"meta-llama/Llama-3.1-70B-Instruct\"");
        for name in [
            "vllm:num_requests_running",
            "vllm:num_requests_waiting",
            "vllm:kv_cache_usage_perc",
            "vllm:prefix_cache_queries_total",
            "vllm:prefix_cache_hits_total",
            "vllm:prompt_tokens_total",
            "vllm:generation_tokens_total",
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} help text\n# TYPE {name} gauge\n{name}{{{l}}} {}",
                set * 17 + 3
            );
        }
        for h in [
            "vllm:time_to_first_token_seconds",
            "vllm:inter_token_latency_seconds",
            "vllm:e2e_request_latency_seconds",
            "vllm:request_queue_time_seconds",
        ] {
            for le in [
                "0.001", "0.005", "0.01", "0.02", "0.04", "0.06", "0.08", "0.1", "0.25", "0.5",
                "0.75", "1.0", "2.5", "5.0", "7.5", "10.0", "20.0", "40.0", "80.0", "+Inf",
            ] {
                let _ = writeln!(out, "{h}_bucket{{{l},le=\"{le}\"}} {}", set * 3 + 1);
            }
            let _ = writeln!(out, "{h}_sum{{{l}}} 12.5\n{h}_count{{{l}}} 40");
        }
        set += 1;
    }
    out
}

fn main() {
    let text = exposition();
    let s = snapshot(Engine::Vllm, &parse(&text));
    assert!(s.prompt_tokens.is_some());
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let ours = timing::best_of(200, || {
        let e = parse(&text);
        std::hint::black_box(snapshot(Engine::Vllm, &e));
    });
    let floor = timing::best_of(200, || {
        std::hint::black_box(text.lines().filter(|l| !l.starts_with('#')).count());
    });
    println!(
        "metrics: {} KB exposition parsed and mapped in {:.3} ms (target < 2 ms); splitting its lines alone takes {:.3} ms ({:.1}x)",
        text.len() / 1024,
        ours.as_secs_f64() * 1e3,
        floor.as_secs_f64() * 1e3,
        ours.as_secs_f64() / floor.as_secs_f64()
    );
}
