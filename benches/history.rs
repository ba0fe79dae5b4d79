//! Benchmark: `history add` of a 1,000-cell collected sweep (3 repeats each, so repeats.csv has
//! 37 metrics per cell) into a fresh SQLite file, and `gate` of a single-run 100-configuration
//! candidate against a 100-run history (each configuration's noise read from its 30 newest
//! runs); target ≤ 2 s each. The same-run peer is reading the collected sweep alone.
//!
//! `cargo bench --bench history` measures; under `cargo test` it runs a small size once.

mod timing;

use std::fmt::Write as _;
use std::path::Path;

use kvsweep::results::collect::summary;
use kvsweep::results::history::store::{History, RunMeta};
use kvsweep::results::history::sweep;

/// A collected sweep of `cells` configurations: every summary.csv column filled, and with
/// `repeats` > 1 a repeats.csv row per numeric column.
fn collected(dir: &Path, cells: usize, repeats: u32, jitter: f64) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let columns: Vec<&str> = summary::columns().collect();
    let mut summary = columns.join(",") + "\n";
    let mut spread = String::from("cell,metric,n,mean,sd,ci95_low,ci95_high\n");
    for i in 0..cells {
        let name = format!("cell{i}");
        let row: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(k, c)| match *c {
                "cell" => name.clone(),
                "runner" => "h100".into(),
                "model" => "llama-3.1-8b".into(),
                "engine" => "vllm".into(),
                "precision" | "invalid_reasons" | "energy_basis" | "priced_as" => String::new(),
                "tp" => (1 << (i % 4)).to_string(),
                "ep" => "1".into(),
                "users" => (1 + i / 8).to_string(),
                "offload" => ["on", "off"][i / 4 % 2].into(),
                "simulated" | "valid" => "true".into(),
                "measured_by" => "kvsweep".into(),
                "status" => "ok".into(),
                "repeats" => repeats.to_string(),
                _ => format!("{}", (k + 1) as f64 * 10.0 * (1.0 + jitter)),
            })
            .collect();
        summary.push_str(&row.join(","));
        summary.push('\n');
        if repeats > 1 {
            for (k, c) in columns.iter().enumerate().skip(14).take(37) {
                let mean = (k + 1) as f64 * 10.0 * (1.0 + jitter);
                let _ = writeln!(spread, "{name},{c},{repeats},{mean},{},,", mean * 0.01);
            }
        }
    }
    std::fs::write(dir.join("summary.csv"), summary).expect("summary.csv");
    if repeats > 1 {
        std::fs::write(dir.join("repeats.csv"), spread).expect("repeats.csv");
    }
}

fn meta(k: usize) -> RunMeta {
    RunMeta {
        label: Some("main".into()),
        date: format!("2026-{:02}-{:02}T00:00:00Z", 1 + k / 28 % 12, 1 + k % 28),
        kvsweep_version: kvsweep::VERSION.into(),
        source: format!("run{k}"),
        ..RunMeta::default()
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (cells, runs, gate_cells, times) = if bench {
        (1000, 100, 100, 5)
    } else {
        (20, 5, 10, 1)
    };
    let tmp = tempfile::tempdir().expect("tempdir");

    // history add
    let big = tmp.path().join("big");
    collected(&big, cells, 3, 0.0);
    let mut k = 0;
    let add = timing::best_of(times, || {
        k += 1;
        let db = tmp.path().join(format!("add{k}.db"));
        let sweep = sweep::read(&big).expect("read");
        let mut history = History::open(db.to_str().expect("utf-8"), true).expect("open");
        history.add(&sweep, &meta(0)).expect("add");
    });
    let read = timing::best_of(times, || {
        assert_eq!(sweep::read(&big).expect("read").cells.len(), cells);
    });
    println!(
        "history add of {cells} cells (3 repeats, new SQLite file): {:.3} s; reading the sweep only: {:.3} s; ratio {:.1}×",
        add.as_secs_f64(),
        read.as_secs_f64(),
        add.as_secs_f64() / read.as_secs_f64().max(1e-9)
    );

    // gate against a 100-run history
    let db = tmp.path().join("history.db");
    let url = db.to_str().expect("utf-8").to_owned();
    let mut history = History::open(&url, true).expect("open");
    for k in 0..runs {
        let dir = tmp.path().join(format!("run{k}"));
        // Spread of up to 1.8 % across runs; the last term keeps each run's content (and so
        // its digest) distinct, as real runs are: the history refuses a sweep stored twice.
        collected(
            &dir,
            gate_cells,
            1,
            (k % 7) as f64 * 0.003 + k as f64 * 1e-7,
        );
        history
            .add(&sweep::read(&dir).expect("read"), &meta(k))
            .expect("add");
        std::fs::remove_dir_all(&dir).expect("rm");
    }
    drop(history);
    let candidate = tmp.path().join("candidate");
    collected(&candidate, gate_cells, 1, 0.001);
    let args = kvsweep::results::gate::GateArgs {
        candidate: candidate.clone(),
        baseline: "db:main".into(),
        margin: 0.05,
        alpha: 0.05,
        noise_floor: 0.01,
        metrics: kvsweep::results::gate::DEFAULT_METRICS
            .iter()
            .map(|m| m.to_string())
            .collect(),
        out: tmp.path().join("gate"),
        db: kvsweep::results::history::DbArg { db: url },
    };
    let gate = timing::best_of(times, || {
        kvsweep::results::gate::run(&args).expect("the gate passes")
    });
    let read = timing::best_of(times, || {
        assert_eq!(
            sweep::read(&candidate).expect("read").cells.len(),
            gate_cells
        );
    });
    println!(
        "gate of {gate_cells} single-run configurations against a {runs}-run history (noise from history): {:.3} s; reading the candidate only: {:.3} s; ratio {:.1}×",
        gate.as_secs_f64(),
        read.as_secs_f64(),
        gate.as_secs_f64() / read.as_secs_f64().max(1e-9)
    );
}
