//! `kvsweep calibrate` and `kvsweep predict`: the calibrated simulator on a virtual clock gives
//! the figures the same simulator gives served over HTTP in real time; a calibration fitted to
//! cells gives their step model back; collect sets predictions against measurements.

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A calibration for the simulator's cells of `tp` (engine sim, llama-3.1-8b, runner cpu),
/// with steps long enough (5 ms + 1 ms per sequence) that a real-time server's HTTP and timer
/// overheads are small beside them.
fn calibration(dir: &Path, tp: u32) -> PathBuf {
    let term = |v: f64, units: &str| {
        format!(
            "    value: {v}\n    units: {units}\n    std_error: null\n    residual: null\n    fitted: false\n"
        )
    };
    common::write(
        dir,
        &format!("calibration-tp{tp}.yaml"),
        &format!(
            "format_version: 1\nidentity:\n  engine: sim\n  model: llama-3.1-8b\n  runner: cpu\n  tp: {tp}\n\
             limits:\n  max_num_seqs: 256\n  max_num_batched_tokens: 8192\n  kv_capacity_tokens: 400000\n\
             \x20 block_size: 16\n  kv_bytes_per_token: 131072\n\
             terms:\n  step_overhead:\n{}  prefill_per_token:\n{}  prefill_per_pair:\n{}\
             \x20 decode_per_seq:\n{}  decode_per_context:\n{}  load_per_token:\n{}\
             fit:\n  cells: []\n  users: []\n  requests: 0\n  ttft_residual: 0\n  decode_residual: 0\n",
            term(0.005, "s/step"),
            term(2e-6, "s/token"),
            term(1e-11, "s/pair"),
            term(0.001, "s/sequence/step"),
            term(1e-9, "s/token/step"),
            term(0.0, "s/token"),
        ),
    )
}

/// A one-runner simulator spec over the sample traces, its sim-server using `calibration`.
fn spec(dir: &Path, calibration: &Path, users: &str, duration_s: u32) -> PathBuf {
    let traces = common::repo_root().join("traces/samples/kv-cache-tester");
    common::write(
        dir,
        "spec.yaml",
        &format!(
            "name: p\nmodel:\n  name: llama-3.1-8b\n  preset: llama-3.1-8b\nengine: sim\n\
             runners: [cpu]\nduration_s: {duration_s}\n\
             engine_args: [--calibration, {}, --speed, \"1\"]\n\
             traces:\n  path: {}\nreplay:\n  time_scale: 0\n  max_context: 8000\n  on_long: truncate\n\
             \x20 drain: 20\n  recycle: true\ntp: [1]\nusers: {users}\noffload: [\"off\"]\n",
            calibration.display(),
            traces.display()
        ),
    )
}

fn summary(dir: &Path) -> Vec<HashMap<String, String>> {
    common::csv_rows(&dir.join("summary.csv"))
}

fn num(row: &HashMap<String, String>, column: &str) -> f64 {
    row[column]
        .parse()
        .unwrap_or_else(|e| panic!("{column} = {:?}: {e}", row[column]))
}

#[test]
fn the_virtual_clock_gives_the_figures_of_the_real_time_server() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cal = calibration(tmp.path(), 1);
    let spec = spec(tmp.path(), &cal, "[4]", 12);
    let measured = tmp.path().join("measured");
    let out = common::run(common::kvsweep().arg("sweep").arg(&spec).args([
        "--local",
        "--out",
        measured.to_str().expect("utf-8"),
    ]));
    assert!(out.status.success(), "{}", common::stderr(&out));
    let predicted = tmp.path().join("predicted");
    let started = std::time::Instant::now();
    let out = common::run(common::kvsweep().arg("predict").arg(&spec).args([
        "--calibration",
        cal.to_str().expect("utf-8"),
        "--out",
        predicted.to_str().expect("utf-8"),
    ]));
    assert!(out.status.success(), "{}", common::stderr(&out));
    // Twelve modelled seconds (and the drain) take a fraction of them: nothing sleeps.
    assert!(
        started.elapsed().as_secs_f64() < 12.0,
        "{:?}",
        started.elapsed()
    );
    let (m, p) = (&summary(&measured)[0], &summary(&predicted)[0]);
    assert_eq!(p["measured_by"], "predicted");
    assert_eq!(m["measured_by"], "kvsweep");
    assert!(num(m, "requests_ok") >= 15.0, "{m:?}");
    // The real-time server adds HTTP and wake-up delays (milliseconds on a loaded machine) to
    // each first token, which the virtual clock does not model: TTFT gets the widest band.
    let mut misses = Vec::new();
    for (column, tolerance) in [
        ("ttft_p50_ms", 0.40),
        ("tpot_p50_ms", 0.15),
        ("e2e_p50_ms", 0.15),
        ("total_tps_per_gpu", 0.15),
        ("server_hit_rate", 0.05),
    ] {
        let (mv, pv) = (num(m, column), num(p, column));
        if (pv - mv).abs() > tolerance * mv.abs().max(1e-9) {
            misses.push(format!("{column}: predicted {pv}, measured {mv}"));
        }
    }
    assert!(misses.is_empty(), "{misses:?}\n{m:?}\n{p:?}");
    let report = std::fs::read_to_string(predicted.join("report.html")).expect("report");
    assert!(report.contains("Predicted."), "the report says so");

    // Collected together, each measured cell meets its prediction.
    let both = tmp.path().join("both");
    common::kvsweep_ok(&[
        "collect",
        measured.join("cells").to_str().expect("utf-8"),
        predicted.join("cells").to_str().expect("utf-8"),
        "--out",
        both.to_str().expect("utf-8"),
    ]);
    let errors = common::csv_rows(&both.join("prediction_error.csv"));
    let metrics: Vec<&str> = errors.iter().map(|r| r["metric"].as_str()).collect();
    for metric in [
        "ttft_p50_ms",
        "ttft_p90_ms",
        "ttft_p99_ms",
        "tpot_p50_ms",
        "itl_p50_ms",
        "e2e_p50_ms",
        "e2e_p90_ms",
        "total_tps_per_gpu",
        "output_tps_per_gpu",
        "server_hit_rate",
    ] {
        assert!(metrics.contains(&metric), "{metric} in {metrics:?}");
    }
    let hit = errors
        .iter()
        .find(|r| r["metric"] == "server_hit_rate")
        .expect("hit rate row");
    assert_eq!(hit["unit"], "points");
    let report = std::fs::read_to_string(both.join("report.html")).expect("report");
    assert!(report.contains("Prediction error"), "the error table");
    assert!(report.contains("offload off predicted"), "both frontiers");
}

#[test]
fn calibrating_on_predicted_cells_gives_their_step_model_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cal = calibration(tmp.path(), 1);
    let spec = spec(tmp.path(), &cal, "[1, 8]", 120);
    let predicted = tmp.path().join("predicted");
    common::kvsweep_ok(&[
        "predict",
        spec.to_str().expect("utf-8"),
        "--calibration",
        cal.to_str().expect("utf-8"),
        "--out",
        predicted.to_str().expect("utf-8"),
    ]);
    let cells = predicted.join("cells");
    let fitted = tmp.path().join("fitted.yaml");
    let out = common::run(
        common::kvsweep().arg("calibrate").args([
            cells
                .join("p_cpu_tp1_users1_offloadoff")
                .to_str()
                .expect("utf-8"),
            cells
                .join("p_cpu_tp1_users8_offloadoff")
                .to_str()
                .expect("utf-8"),
            "--kv-capacity-tokens",
            "400000",
            "--max-num-batched-tokens",
            "8192",
            "--out",
            fitted.to_str().expect("utf-8"),
        ]),
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let text = std::fs::read_to_string(&fitted).expect("calibration");
    let yaml: serde_json::Value = serde_norway::from_str(&text).expect("yaml");
    // The fitted model predicts the cells it was fitted on: the same figures again.
    let again = tmp.path().join("again");
    common::kvsweep_ok(&[
        "predict",
        spec.to_str().expect("utf-8"),
        "--calibration",
        fitted.to_str().expect("utf-8"),
        "--out",
        again.to_str().expect("utf-8"),
    ]);
    let mut misses = Vec::new();
    for (truth, refit) in summary(&predicted).iter().zip(summary(&again)) {
        assert_eq!(truth["cell"], refit["cell"]);
        for column in ["tpot_p50_ms", "e2e_p50_ms", "total_tps_per_gpu"] {
            let (t, r) = (num(truth, column), num(&refit, column));
            if (r - t).abs() > 0.2 * t {
                misses.push(format!("{} {column}: refit {r}, truth {t}", truth["cell"]));
            }
        }
    }
    assert!(misses.is_empty(), "{misses:?}\n{text}");
    assert_eq!(yaml["identity"]["engine"], "sim");
    assert_eq!(yaml["terms"]["step_overhead"]["units"], "s/step");
    assert!(
        yaml["terms"]["step_overhead"]["residual"].is_number(),
        "{text}"
    );

    // A cell count it cannot fit from is refused, saying how many it needs.
    let err = common::kvsweep_err(&[
        "calibrate",
        cells
            .join("p_cpu_tp1_users1_offloadoff")
            .to_str()
            .expect("utf-8"),
        "--out",
        fitted.to_str().expect("utf-8"),
    ]);
    assert!(err.contains("at least 2 cells"), "{err}");
}

#[test]
fn a_calibration_of_another_setup_or_a_malformed_one_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tp2 = calibration(tmp.path(), 2);
    let spec = spec(tmp.path(), &tp2, "[1]", 5);
    let out = tmp.path().join("out");
    let err = common::kvsweep_err(&[
        "predict",
        spec.to_str().expect("utf-8"),
        "--calibration",
        tp2.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(err.contains("tp 2") && err.contains("tp 1"), "{err}");
    let text = std::fs::read_to_string(&tp2)
        .expect("read")
        .replace("max_num_seqs: 256", "max_num_seqs: many");
    let bad = common::write(tmp.path(), "bad.yaml", &text);
    let err = common::kvsweep_err(&[
        "predict",
        spec.to_str().expect("utf-8"),
        "--calibration",
        bad.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(err.contains("limits.max_num_seqs"), "{err}");
    assert!(err.contains("bad.yaml"), "{err}");
}
