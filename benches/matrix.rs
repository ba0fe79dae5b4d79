//! Benchmark: load, check and expand a 10,000-cell sweep spec (target: under 100 ms), in both
//! shapes, against the InferenceX workflow's Python generator (tests/inferencex_matrix.py) on the
//! same InferenceX-shape file in the same run.
//!
//! `cargo bench --bench matrix` measures; under `cargo test` it runs each case once as a check.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kvsweep::base::runner::RunnerSet;
use kvsweep::plan::spec::{self, LoadOptions, matrix};

const USERS: u32 = 1250;

fn users_list() -> String {
    (1..=USERS)
        .map(|u| u.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// 4 tp × 1250 users × 2 offload modes = 10,000 cells.
fn native_spec() -> String {
    format!(
        "name: bench\nmodel: {{name: m, preset: llama-3.1-70b}}\nengine: vllm\nrunners: [h200]\n\
         traces: {{path: traces}}\noffload_gb: 1000\ntp: [1, 2, 4, 8]\nusers: [{}]\noffload: [\"on\", \"off\"]\n",
        users_list()
    )
}

fn inferencex_spec() -> String {
    let users = users_list();
    ["tp1", "tp2", "tp4", "tp8"]
        .iter()
        .map(|tp| format!("{tp}:\n  users: [{users}]\n  offload: [\"on\", \"off\"]\n"))
        .collect()
}

/// Load + check + expand + serialize the matrix JSON, as `kvsweep matrix` does.
fn expand(path: &Path, runners: &RunnerSet) -> usize {
    let sweep = spec::load(
        path,
        LoadOptions {
            key: None,
            runner: None,
            runners,
        },
    )
    .expect("valid spec");
    let json = matrix::to_json(&sweep.cells).to_string();
    assert!(json.len() > 100_000);
    sweep.cells.len()
}

fn time<F: FnMut()>(iterations: usize, mut f: F) -> (Duration, Duration) {
    let mut samples: Vec<Duration> = (0..iterations)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    samples.sort();
    (samples[0], samples[samples.len() / 2])
}

/// The Python generator's own in-process time (read + yaml.safe_load + expand), in ms.
fn python_reference_ms(path: &Path) -> Option<f64> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/inferencex_matrix.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(path)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("elapsed_ms=")?.parse().ok())
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let iterations = if measuring { 30 } else { 1 };
    let runners = RunnerSet::builtin().expect("runners");
    let dir = tempfile::tempdir().expect("tempdir");
    let native = dir.path().join("native.yaml");
    let inferencex = dir.path().join("inferencex.yaml");
    std::fs::write(&native, native_spec()).expect("write");
    std::fs::write(&inferencex, inferencex_spec()).expect("write");

    assert_eq!(expand(&native, &runners), 10_000);
    assert_eq!(expand(&inferencex, &runners), 10_000);
    if !measuring {
        return;
    }
    let (n_min, n_med) = time(iterations, || {
        expand(&native, &runners);
    });
    let (i_min, i_med) = time(iterations, || {
        expand(&inferencex, &runners);
    });
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("matrix: 10,000-cell spec, load + check + expand + JSON, {iterations} runs");
    println!(
        "  native shape:      min {:7.2} ms  median {:7.2} ms",
        ms(n_min),
        ms(n_med)
    );
    println!(
        "  InferenceX shape:  min {:7.2} ms  median {:7.2} ms",
        ms(i_min),
        ms(i_med)
    );
    let mut python: Vec<f64> = (0..5)
        .filter_map(|_| python_reference_ms(&inferencex))
        .collect();
    python.sort_by(f64::total_cmp);
    match python.get(python.len() / 2) {
        Some(py) => println!(
            "  Python generator (PyYAML, read + parse + expand, median of 5): {py:.2} ms; kvsweep is {:.1}x faster",
            py / ms(i_med)
        ),
        None => println!("  Python generator: not run (python3 with PyYAML not found)"),
    }
}
