//! Benchmark: `collect` over 1,000 synthetic cell artifacts (target ≤ 2 s), against the floor of
//! only reading and parsing every cell's summary.json, in the same run.
//!
//! `cargo bench --bench collect` measures; under `cargo test` it collects 20 cells once.

mod timing;

#[path = "../tests/it/common/cells.rs"]
mod cells;

use cells::SyntheticCell;

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n = if bench { 1000 } else { 20 };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cells");
    let runners = ["h100", "h200", "b200", "mi355x"];
    for i in 0..n {
        let mut c = SyntheticCell::new(
            runners[i % 4],
            1 << (i / 4 % 4),
            1 + (i / 16) as u32,
            ["on", "off"][i / 8 % 2],
        );
        c.total_tps *= 1.0 + (i % 7) as f64 * 0.1;
        c.write(&dir);
    }
    let out = tmp.path().join("out");
    let runs = if bench { 5 } else { 1 };
    let runners = kvsweep::base::runner::RunnerSet::builtin().expect("runners");
    let collect = timing::best_of(runs, || {
        let (c, _) =
            kvsweep::cli::collect::collect_into(std::slice::from_ref(&dir), &out, &runners)
                .expect("collect");
        assert_eq!(c.cells.len(), n);
    });
    let floor = timing::best_of(runs, || {
        let mut total = 0.0;
        for entry in std::fs::read_dir(&dir).expect("dir") {
            let text = std::fs::read_to_string(entry.expect("entry").path().join("summary.json"))
                .expect("read");
            let v: serde_json::Value = serde_json::from_str(&text).expect("json");
            total += v["duration_s"].as_f64().unwrap_or(0.0);
        }
        assert!(total > 0.0);
    });
    println!(
        "collect of {n} cells (tables, frontiers, 16 panel plots, report): {:.3} s; reading every summary.json only: {:.3} s; ratio {:.1}×",
        collect.as_secs_f64(),
        floor.as_secs_f64(),
        collect.as_secs_f64() / floor.as_secs_f64().max(1e-9)
    );
}
