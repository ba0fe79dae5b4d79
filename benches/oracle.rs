//! Benchmark: `kvsweep oracle` (load, the four bounds at three tiers, the capacity curve and
//! planning) on the 60 sample traces (target < 1 s) and on a ~450 MB corpus (the samples copied
//! until the set passes 450 MB; target ≤ 10 s on 2 cores), against two peers in the same run:
//! reading every file's bytes, and `kvsweep trace analyze` (one parallel parse and a reuse pass).
//!
//! `cargo bench --bench oracle` measures; under `cargo test` it runs the samples once.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use kvsweep::data::trace::{self, LoadOptions};
use kvsweep::plan::spec::TraceFormat;
use kvsweep::results::oracle::buckets;
use kvsweep::results::oracle::config::{
    Anchors, BucketDeployment, Config, Deployment, ModelProfile, Tier,
};
use kvsweep::results::oracle::stream::Scope;

fn config() -> Config {
    let mut profile = ModelProfile::from_preset("llama-3.1-70b").expect("preset");
    profile.tp_size = 8;
    Config {
        model_profile: profile,
        bucket_deployments: vec![BucketDeployment {
            lower_tokens: 0,
            upper_tokens: None,
            deployment: Deployment {
                name: Some("all".into()),
                accelerator_count: 8,
                cards_per_machine: 8,
                machine_spec: Some("h200".into()),
                hbm_kv_gb_per_card: Some(100.0),
                anchors: Anchors {
                    baseline_per_card_tps: Some(1000.0),
                    planning_target_total_tps: Some(64_000.0),
                    extra_capacity_tiers: Some(vec![
                        Tier {
                            label: "HBM+1T".into(),
                            kv_gb_per_machine: 1024.0,
                        },
                        Tier {
                            label: "HBM+10T".into(),
                            kv_gb_per_machine: 10240.0,
                        },
                    ]),
                    ..Anchors::default()
                },
                ..Deployment::default()
            },
        }],
        deployments: vec![],
        prefill_savings_alpha: 0.8,
        include_output_kvcache: true,
        scope: Scope::Global,
        anchors: Anchors::default(),
        heuristic_multi_agent: None,
    }
}

/// (oracle seconds, reading-only seconds, requests).
fn time(files: &[PathBuf]) -> (f64, f64, usize) {
    let start = Instant::now();
    let set = trace::load(
        files,
        LoadOptions {
            format: TraceFormat::Auto,
            jsonl_block_size: None,
            strict: false,
        },
    )
    .expect("load");
    let analysis = buckets::analyze(&set, &config()).expect("analyze");
    let oracle_s = start.elapsed().as_secs_f64();
    let requests = analysis.buckets[0].requests;
    assert!(analysis.buckets[0].hbm().content > 0.5);
    let start = Instant::now();
    let bytes: usize = files
        .iter()
        .map(|f| std::fs::read(f).expect("read").len())
        .sum();
    assert!(bytes > 0);
    (oracle_s, start.elapsed().as_secs_f64(), requests)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let files = common::sample_traces();
    let (a, floor, n) = time(&files);
    println!(
        "oracle on 60 sample traces ({n} requests): {a:.3} s (reading them only: {floor:.3} s)"
    );
    if !bench {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (big, total) = common::corpus(&files, tmp.path(), 450 << 20);
    let runs: Vec<(f64, f64, usize)> = (0..3).map(|_| time(&big)).collect();
    let mut analyze: Vec<f64> = (0..3)
        .map(|_| {
            let start = Instant::now();
            kvsweep::data::trace::analyze::analyze(
                &big,
                LoadOptions {
                    format: TraceFormat::Auto,
                    jsonl_block_size: None,
                    strict: false,
                },
                None,
            )
            .expect("analyze");
            start.elapsed().as_secs_f64()
        })
        .collect();
    analyze.sort_by(f64::total_cmp);
    let mut oracle: Vec<f64> = runs.iter().map(|r| r.0).collect();
    oracle.sort_by(f64::total_cmp);
    let mut floor: Vec<f64> = runs.iter().map(|r| r.1).collect();
    floor.sort_by(f64::total_cmp);
    println!(
        "oracle on {} files, {:.0} MB, {} requests: median {:.2} s of 3 (reading only: {:.2} s; trace analyze: {:.2} s, oracle / analyze {:.2}×)",
        big.len(),
        total as f64 / 1e6,
        runs[0].2,
        oracle[1],
        floor[1],
        analyze[1],
        oracle[1] / analyze[1]
    );
}
