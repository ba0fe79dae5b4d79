//! A simulated cell's figures are the modelled hardware's, whatever the simulator's speed
//! (`collect::modelled_time`): the same cell measured at 20× real time and at real time gives
//! the same `summary.csv`, `repeats.csv` and `pareto.csv`, cost and energy included, and each
//! keeps its speed.

use crate::common;

use std::collections::HashMap;
use std::path::Path;

use common::cells::SyntheticCell;
use kvsweep::data::artifact::schema::{
    CellPlan, JsonArtifact, Metadata, MetricsRow, Quantiles, RequestRow, Simulator, Summary,
    read_csv_rows,
};

/// What a simulator at `speed` would have left for a cell whose modelled run is `dir`'s: every
/// time `speed` times shorter, every rate `speed` times higher, counts as they are, and the
/// speed in `metadata.json` as a replay records it.
fn accelerate(dir: &Path, speed: f64) {
    let mut plan = CellPlan::read(dir).expect("cell.json");
    plan.duration_s = (plan.duration_s as f64 / speed) as u64;
    plan.write(dir).expect("cell.json");

    let mut s = Summary::read(dir).expect("summary.json");
    s.duration_s /= speed;
    s.warmup_window_s /= speed;
    let t = &mut s.throughput;
    for rate in [
        &mut t.requests_per_s,
        &mut t.input_tokens_per_s,
        &mut t.output_tokens_per_s,
        &mut t.total_tokens_per_s,
    ] {
        *rate *= speed;
    }
    let shorter = |q: &mut Quantiles| {
        for v in [
            &mut q.mean,
            &mut q.p50,
            &mut q.p90,
            &mut q.p95,
            &mut q.p99,
            &mut q.max,
        ]
        .into_iter()
        .flatten()
        {
            *v /= speed;
        }
    };
    for q in [&mut s.ttft_ms, &mut s.tpot_ms, &mut s.itl_ms, &mut s.e2e_ms] {
        shorter(q);
    }
    s.write(dir).expect("summary.json");

    let path = dir.join(RequestRow::FILE);
    let mut rows = read_csv_rows(
        &path,
        |r: &RequestRow| r.format_version,
        RequestRow::VERSION,
    )
    .expect("requests.csv");
    for r in &mut rows {
        for v in [
            &mut r.scheduled_s,
            &mut r.sent_s,
            &mut r.done_s,
            &mut r.e2e_ms,
        ] {
            *v /= speed;
        }
        for v in [&mut r.ttft_ms, &mut r.tpot_ms, &mut r.effective_ttft_ms]
            .into_iter()
            .flatten()
        {
            *v /= speed;
        }
    }
    write_rows(&path, &rows);

    let path = dir.join(MetricsRow::FILE);
    let mut rows = read_csv_rows(
        &path,
        |r: &MetricsRow| r.format_version,
        MetricsRow::VERSION,
    )
    .expect("metrics.csv");
    let t0 = rows[0].time;
    for r in &mut rows {
        r.time = t0 + (r.time - t0) / speed;
        r.rel_s /= speed;
        for v in [
            &mut r.prompt_tokens_per_s,
            &mut r.generation_tokens_per_s,
            &mut r.offload_to_cpu_gb_s,
            &mut r.offload_to_gpu_gb_s,
        ]
        .into_iter()
        .flatten()
        {
            *v *= speed;
        }
    }
    write_rows(&path, &rows);

    Metadata {
        format_version: Metadata::VERSION,
        engine: Some("sim".into()),
        simulated: Some(true),
        time_scale: 1.0 / speed,
        simulator: Some(Simulator {
            speed: Some(speed),
            runner: Some("h100".into()),
        }),
        ..Metadata::default()
    }
    .write(dir)
    .expect("metadata.json");
}

fn write_rows<T: serde::Serialize>(path: &Path, rows: &[T]) {
    let mut w = csv::Writer::from_path(path).expect("csv");
    for r in rows {
        w.serialize(r).expect("row");
    }
    w.flush().expect("flush");
}

/// Two cells of two repeats each, as a simulator at `speed` leaves them, collected into
/// `root/out`; returns that folder.
fn collect_at(root: &Path, speed: f64) -> std::path::PathBuf {
    let cells = root.join("cells");
    for (offload, tps) in [("on", [8000.0, 8400.0]), ("off", [6000.0, 6100.0])] {
        for (k, total_tps) in (1..).zip(tps) {
            let mut c = SyntheticCell::new("h100", 2, 8, offload);
            c.total_tps = total_tps;
            c.tpot_p50_ms = 18.0 + f64::from(k);
            accelerate(&common::write_repeat(&c, &cells, k), speed);
        }
    }
    let out = root.join("out");
    common::kvsweep_ok(&[
        "collect",
        cells.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    out
}

type Rows = Vec<HashMap<String, String>>;

/// Asserts two tables hold the same rows, numbers equal to 9 significant digits, but for the
/// columns in `differ`.
fn assert_same(a: &Rows, b: &Rows, differ: &[&str], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: rows");
    assert!(!a.is_empty(), "{what}: no rows");
    for (ra, rb) in a.iter().zip(b) {
        for (column, va) in ra {
            if differ.contains(&column.as_str()) {
                continue;
            }
            let vb = &rb[column];
            match (va.parse::<f64>(), vb.parse::<f64>()) {
                (Ok(x), Ok(y)) => assert!(
                    (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
                    "{what} {}: {column} {x} at 20× against {y} at 1×",
                    ra.get("cell").unwrap_or(&String::new())
                ),
                _ => assert_eq!(va, vb, "{what}: {column}"),
            }
        }
    }
}

#[test]
fn a_cell_at_20x_real_time_gives_the_same_figures_as_at_real_time() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fast = collect_at(&tmp.path().join("fast"), 20.0);
    let real = collect_at(&tmp.path().join("real"), 1.0);
    let table = |out: &Path, file: &str| common::csv_rows(&out.join(file));

    let (f, r) = (table(&fast, "summary.csv"), table(&real, "summary.csv"));
    assert_same(&f, &r, &["sim_speed"], "summary.csv");
    assert_same(
        &table(&fast, "repeats.csv"),
        &table(&real, "repeats.csv"),
        &[],
        "repeats.csv",
    );
    assert_same(
        &table(&fast, "pareto.csv"),
        &table(&real, "pareto.csv"),
        &[],
        "pareto.csv",
    );

    // And those figures are the modelled ones: offload on's two runs served 8,000 and 8,400
    // tok/s on its 2 GPUs with a TTFT p50 of 800 ms over 60 s, priced as an H100 at $1.30 an hour.
    let on = f
        .iter()
        .find(|row| row["offload"] == "on")
        .expect("offload on");
    let num = |c: &str| on[c].parse::<f64>().unwrap_or_else(|e| panic!("{c}: {e}"));
    assert_eq!(on["sim_speed"], "20.0");
    assert_eq!(on["simulated"], "true");
    assert!((num("total_tps_per_gpu") - 4100.0).abs() < 1e-9);
    assert!((num("ttft_p50_ms") - 800.0).abs() < 1e-9);
    assert!((num("duration_s") - 60.0).abs() < 1e-9);
    let cost = (1.3 / (4000.0 * 0.0036) + 1.3 / (4200.0 * 0.0036)) / 2.0;
    assert!((num("usd_per_mtok_total_hyperscaler") - cost).abs() < 1e-9 * cost);
    assert_eq!(
        r.iter().find(|row| row["offload"] == "on").expect("on")["sim_speed"],
        "1.0"
    );

    // The report says the run was accelerated, and in which clock its figures are.
    let html = std::fs::read_to_string(fast.join("report.html")).expect("report");
    assert!(
        html.contains("The simulator ran 20× faster than real time"),
        "{html}"
    );
    assert!(html.contains("Every figure here is the modelled hardware"));
}
