//! Benchmark: `trace analyze` on the 60 sample traces (target < 1 s) and on about 1 GB of traces
//! (the samples copied until the set passes 1 GB; target < 10 s), against the floor of reading
//! every file's bytes, in the same run.
//!
//! `cargo bench --bench trace_analyze` measures; under `cargo test` it analyzes the samples once.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use kvsweep::data::trace::{LoadOptions, analyze};
use kvsweep::plan::spec::TraceFormat;

fn opts() -> LoadOptions {
    LoadOptions {
        format: TraceFormat::Auto,
        jsonl_block_size: None,
        strict: false,
    }
}

fn time(files: &[PathBuf]) -> (f64, f64) {
    let start = Instant::now();
    let v = analyze::analyze(files, opts(), None).expect("analyze");
    let analyze_s = start.elapsed().as_secs_f64();
    assert_eq!(v["set"]["files"], files.len());
    let start = Instant::now();
    let bytes: usize = files
        .iter()
        .map(|f| std::fs::read(f).expect("read").len())
        .sum();
    assert!(bytes > 0);
    (analyze_s, start.elapsed().as_secs_f64())
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let files = common::sample_traces();
    let (a, floor) = time(&files);
    println!("analyze 60 sample traces: {a:.3} s (reading them only: {floor:.3} s)");
    if !bench {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (big, total) = common::corpus(&files, tmp.path(), 1 << 30);
    let (a, floor) = time(&big);
    println!(
        "analyze {} traces, {:.2} GB: {a:.2} s (reading them only: {floor:.2} s; {:.0} MB/s)",
        big.len(),
        total as f64 / 1e9,
        total as f64 / 1e6 / a
    );
}
