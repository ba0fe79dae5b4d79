//! `kvsweep collect`: cells found as folders of folders and as zips, the validation gate,
//! summary/skipped/pareto tables, the panel plots and the report; and `kvsweep sweep --local`
//! end to end with resume.

use crate::common;

use std::io::Write;
use std::path::Path;

use common::cells::SyntheticCell;
use kvsweep::data::artifact::schema::{CellState, JsonArtifact, Status};

/// Zips a cell directory's files at the archive's root, as an uploaded artifact is.
fn zip_dir(dir: &Path, zip_path: &Path) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(zip_path).expect("zip"));
    for entry in std::fs::read_dir(dir).expect("dir") {
        let entry = entry.expect("entry");
        zip.start_file(
            entry.file_name().to_string_lossy(),
            zip::write::SimpleFileOptions::default(),
        )
        .expect("start");
        zip.write_all(&std::fs::read(entry.path()).expect("read"))
            .expect("write");
    }
    zip.finish().expect("finish");
}

#[test]
fn cells_from_folders_and_zips_become_tables_frontiers_plots_and_a_report() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let downloads = tmp.path().join("downloads");
    // Offload on: 2 users beat by nothing; 8 users trades TTFT for throughput; 4 users is
    // dominated by a faster, quicker twin (same x, lower TTFT).
    let mut on = vec![
        SyntheticCell::new("h100", 1, 2, "on"),
        SyntheticCell::new("h100", 1, 8, "on"),
    ];
    let mut slow = SyntheticCell::new("h100", 1, 4, "on");
    slow.total_tps = 8000.0;
    slow.ttft_p50_ms = 900.0;
    on.push(slow);
    for c in &on {
        c.write(&downloads.join("artifacts-a"));
    }
    let off = SyntheticCell::new("h100", 1, 2, "off");
    let off_dir = off.write(&tmp.path().join("staging"));
    zip_dir(&off_dir, &downloads.join("cell-off.zip"));
    let mut failed = SyntheticCell::new("h100", 1, 16, "on");
    failed.status = "failed";
    failed.write(&downloads);
    let mut errors = SyntheticCell::new("h100", 1, 32, "on");
    errors.failed = 20;
    errors.write(&downloads);
    let broken = SyntheticCell::new("h100", 2, 2, "on").write(&downloads);
    std::fs::remove_file(broken.join("summary.json")).expect("rm");

    let out = tmp.path().join("collected");
    let stdout = common::kvsweep_ok(&[
        "collect",
        downloads.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(stdout.trim().ends_with("report.html"), "{stdout}");

    let summary = common::csv_rows(&out.join("summary.csv"));
    let names: Vec<&str> = summary.iter().map(|r| r["cell"].as_str()).collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(
        names.contains(&"s_h100_tp1_users2_offloadoff"),
        "from the zip"
    );
    let eight = summary
        .iter()
        .find(|r| r["users"] == "8")
        .expect("8-user cell");
    let num = |col: &str| eight[col].parse::<f64>().expect(col);
    assert_eq!(num("total_tps_per_gpu"), 8000.0);
    assert!((num("interactivity") - 1000.0 / 18.0).abs() < 1e-9);
    assert_eq!(num("server_hit_rate"), 0.5);
    assert_eq!(num("offload_bytes"), 13.5e6);

    let skipped = common::csv_rows(&out.join("skipped.csv"));
    let reason = |users: &str| {
        skipped
            .iter()
            .find(|r| r["cell"].contains(&format!("users{users}_")) || r["cell"].ends_with(users))
            .map(|r| r["reason"].clone())
            .unwrap_or_default()
    };
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert_eq!(reason("16"), "status failed");
    assert!(reason("32").contains("more than 10%"), "{skipped:?}");
    assert!(
        skipped
            .iter()
            .any(|r| r["reason"] == "missing summary.json"),
        "{skipped:?}"
    );

    let pareto = common::csv_rows(&out.join("pareto.csv"));
    let on_frontier = |panel: &str, group: &str, users: &str| {
        pareto
            .iter()
            .find(|r| {
                r["panel"] == panel
                    && r["group"] == group
                    && r["cell"] == format!("s_h100_tp1_users{users}_offloadon")
            })
            .map(|r| r["on_frontier"] == "true")
            .expect("row")
    };
    assert!(on_frontier("ttft_vs_input_tput", "h100/on", "2"));
    assert!(on_frontier("ttft_vs_input_tput", "h100/on", "8"));
    assert!(!on_frontier("ttft_vs_input_tput", "h100/on", "4"));
    assert!(
        pareto.iter().any(|r| r["group"] == "h100/all"),
        "a pooled frontier"
    );

    for panel in [
        "ttft_vs_input_tput",
        "interactivity_vs_output_tput",
        "interactivity_vs_total_tput",
        "e2e_vs_total_tput",
    ] {
        for ext in ["png", "svg"] {
            let path = out.join(format!("plots/{panel}_h100.{ext}"));
            assert!(path.metadata().expect("plot").len() > 1000, "{path:?}");
        }
    }
    let report = std::fs::read_to_string(out.join("report.html")).expect("report");
    assert!(report.contains("<strong>Simulated.</strong>"));
    assert!(
        report.matches("<svg").count() >= 4 + 4 * 5,
        "panels and per-cell charts"
    );
    assert!(!report.contains("src=\"http"), "no external assets");
    assert!(report.contains("skipped: status failed"));
}

#[test]
fn a_zip_that_escapes_its_folder_is_skipped_not_extracted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let good = SyntheticCell::new("h100", 1, 2, "on").write(tmp.path());
    let zip_path = tmp.path().join("evil.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).expect("zip"));
    zip.start_file("../escaped.txt", zip::write::SimpleFileOptions::default())
        .expect("start");
    zip.write_all(b"x").expect("write");
    zip.finish().expect("finish");
    let out = tmp.path().join("out");
    common::kvsweep_ok(&[
        "collect",
        good.to_str().expect("utf-8"),
        zip_path.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    let skipped = common::csv_rows(&out.join("skipped.csv"));
    assert_eq!(skipped.len(), 1);
    assert!(
        skipped[0]["reason"].contains("outside the extraction folder"),
        "{skipped:?}"
    );
    assert_eq!(common::csv_rows(&out.join("summary.csv")).len(), 1);
}

#[test]
fn collecting_nothing_is_an_error_that_names_the_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = common::kvsweep_err(&[
        "collect",
        tmp.path().to_str().expect("utf-8"),
        "--out",
        tmp.path().join("out").to_str().expect("utf-8"),
    ]);
    assert!(err.contains("no cell artifacts under"), "{err}");
}

#[test]
fn a_summary_missing_a_field_stops_collect_naming_the_file_and_the_field() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Beside a good cell: one bad file stops the collect, it is not skipped.
    SyntheticCell::new("h100", 1, 2, "on").write(tmp.path());
    let bad = SyntheticCell::new("h100", 1, 4, "on").write(tmp.path());
    let path = bad.join("summary.json");
    let mut summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON");
    summary["throughput"]
        .as_object_mut()
        .expect("an object")
        .remove("total_tokens_per_s");
    std::fs::write(&path, summary.to_string()).expect("write");
    let err = common::kvsweep_err(&[
        "collect",
        tmp.path().to_str().expect("utf-8"),
        "--out",
        tmp.path().join("out").to_str().expect("utf-8"),
    ]);
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(
        err.contains("field `throughput`: missing field `total_tokens_per_s`"),
        "{err}"
    );
}

#[test]
fn a_local_sweep_runs_every_cell_collects_them_and_resumes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let traces = common::repo_root().join("traces/samples/kv-cache-tester/trace_0538.json");
    let spec = common::write(
        tmp.path(),
        "spec.yaml",
        &format!(
            "name: tiny\nmodel:\n  name: llama-3.1-8b\n  preset: llama-3.1-8b\nengine: sim\n\
             runners: [cpu]\nduration_s: 3\ntraces:\n  path: {}\nreplay:\n  time_scale: 0\n\
             \x20 drain: 2\n  recycle: true\noffload_gb: 16\ntp: [1]\nusers: [1, 2]\noffload: [\"on\"]\n",
            traces.display()
        ),
    );
    let out = tmp.path().join("sweep");
    let run = || {
        common::run(common::kvsweep().arg("sweep").arg(&spec).args([
            "--local",
            "--out",
            out.to_str().expect("utf-8"),
        ]))
    };
    let first = run();
    assert!(first.status.success(), "{}", common::stderr(&first));
    let log = common::stderr(&first);
    assert!(
        log.contains("[2/2] tiny_cpu_tp1_users2_offloadon: ok"),
        "{log}"
    );
    assert_eq!(common::csv_rows(&out.join("summary.csv")).len(), 2);
    assert!(out.join("report.html").exists());
    assert!(out.join("plots/e2e_vs_total_tput_cpu.png").exists());

    // A cell that did not finish is run again; an ok one is kept.
    let redo = out.join("cells/tiny_cpu_tp1_users2_offloadon/status.json");
    Status::new(CellState::Running, "killed")
        .write(redo.parent().expect("a cell directory"))
        .expect("write");
    let second = run();
    assert!(second.status.success(), "{}", common::stderr(&second));
    let log = common::stderr(&second);
    assert!(
        log.contains("[1/2] tiny_cpu_tp1_users1_offloadon: ok before, skipped"),
        "{log}"
    );
    assert!(
        log.contains("[2/2] tiny_cpu_tp1_users2_offloadon: running"),
        "{log}"
    );
    assert!(
        std::fs::read_to_string(&redo)
            .expect("status")
            .contains("\"ok\"")
    );

    // An ok cell an older kvsweep left (another summary.json format) is run again, not skipped
    // into a collect that would refuse it.
    let old = out.join("cells/tiny_cpu_tp1_users1_offloadon/summary.json");
    let mut summary = common::json(&old);
    summary["format_version"] = serde_json::json!(1);
    std::fs::write(&old, summary.to_string()).expect("write");
    let third = run();
    assert!(third.status.success(), "{}", common::stderr(&third));
    let log = common::stderr(&third);
    assert!(log.contains("summary.json"), "{log}");
    assert!(
        log.contains("[1/2] tiny_cpu_tp1_users1_offloadon: running"),
        "{log}"
    );
    assert!(
        log.contains("[2/2] tiny_cpu_tp1_users2_offloadon: ok before, skipped"),
        "{log}"
    );
}

/// Collects synthetic cells of `users` × on/off, throughput scaled by `scale`, into `dir`.
fn collected(dir: &Path, scale: f64) {
    let cells = dir.join("cells");
    for users in [2, 8] {
        for offload in ["on", "off"] {
            let mut c = SyntheticCell::new("h100", 1, users, offload);
            c.total_tps *= scale;
            c.write(&cells);
        }
    }
    common::kvsweep_ok(&[
        "collect",
        cells.to_str().expect("utf-8"),
        "--out",
        dir.to_str().expect("utf-8"),
    ]);
}

#[test]
fn compare_gives_ratios_at_matched_cells_and_overlays_the_frontiers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    collected(&a, 1.0);
    collected(&b, 1.5);
    let out = tmp.path().join("cmp");
    common::kvsweep_ok(&[
        "compare",
        a.to_str().expect("utf-8"),
        b.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    let rows = common::csv_rows(&out.join("compare.csv"));
    assert_eq!(rows.len(), 4, "every cell matched");
    for r in &rows {
        let ratio: f64 = r["total_tps_per_gpu_ratio"].parse().expect("ratio");
        assert!((ratio - 1.5).abs() < 1e-9, "{r:?}");
        assert_eq!(r["a_cell"], r["b_cell"]);
    }
    assert!(out.join("plots/compare_ttft_vs_input_tput.png").exists());
    assert!(out.join("plots/compare_e2e_vs_total_tput.svg").exists());

    // Offload on against off within one sweep: offload is then not matched on.
    let out = tmp.path().join("onoff");
    common::kvsweep_ok(&[
        "compare",
        a.to_str().expect("utf-8"),
        a.to_str().expect("utf-8"),
        "--a-where",
        "offload=on",
        "--b-where",
        "offload=off",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    let rows = common::csv_rows(&out.join("compare.csv"));
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r["a_cell"].ends_with("offloadon") && r["b_cell"].ends_with("offloadoff"))
    );

    let err = common::kvsweep_err(&[
        "compare",
        a.to_str().expect("utf-8"),
        b.to_str().expect("utf-8"),
        "--a-where",
        "colour=red",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(err.contains("no column `colour`"), "{err}");
}
