//! The calibrated simulator against the real engine here (issue #31, item 5): vLLM's CPU backend
//! serving sweeps/local-vllm.yaml's tiny model is measured at two load levels, `kvsweep
//! calibrate` fits the step model to those two cells, and `kvsweep predict` predicts cells the
//! fit never saw: a user count between the two, one above them, the prefix cache off, and
//! another trace set. `kvsweep collect` sets each prediction against its measurement
//! (`prediction_error.csv`); the test prints the whole table and holds the medians to bands.
//!
//! vLLM's start (about 100 s on 2 cores) dominates the time, so one engine serves every cell
//! with the prefix cache on, in turn, through `run-cell --server` (each replay empties the prefix
//! cache first, and each cell's metrics count from its own first scrape), and a second start
//! serves the `noprefix` cell: two starts and six replays of 40 s, about 8 minutes.
//!
//! `KVSWEEP_VALIDATION_DIR=DIR` (new or empty) keeps the measured cells, the calibration, the
//! predictions and the collected tables there instead of in a temporary directory, to read or
//! to calibrate again without vLLM.

use crate::common;
use crate::vllm::{tiny_model, vllm};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kvsweep::base::runner::RunnerSet;
use kvsweep::plan::render::{CellOverrides, CellSelector};

/// Seconds each replay sends for (the drain of sweeps/local-vllm.yaml comes after).
const DURATION: &str = "40";
/// The calibration's two load levels.
const FIT_USERS: [u32; 2] = [1, 4];

/// Per metric: the goal of issue #31 for the median |error| over the held-out cells (percent;
/// points for the hit rate), and the band the test holds it to. Five runs on a 2-core machine
/// shared with other builds gave medians of 10–27 % for TTFT p50, 1–15 % for TPOT p50, 3–11 %
/// for E2E p50, 7–11 % for total tok/s and 0.6–3.0 points for the hit rate (README, "Calibrate
/// and predict"): the same cell measured twice differs by up to 25 % in TPOT and 50 % in E2E
/// there, each held-out cell has only 11 to 33 requests, and one request more or less moves a
/// cell's hit rate by 3 points. The bands are twice the goals, three times for TTFT p50, whose
/// median sits above its goal in most runs (the step model overcharges the cold 12,000-token
/// prefills of the `noprefix` cell and undercharges the short cached ones), and 2.5 times for
/// the hit rate. A model that has lost a term misses by far more: without its prefill cost a
/// cached TTFT is one 3 ms step against 50–120 ms measured, without the per-sequence decode cost
/// the TPOT at 6 users is at most a third of the measured, without prefix caching the hit rate
/// is 0 against 0.63–0.86.
const GOALS: [(&str, f64, f64); 5] = [
    ("ttft_p50_ms", 15.0, 45.0),
    ("tpot_p50_ms", 10.0, 20.0),
    ("e2e_p50_ms", 10.0, 20.0),
    ("total_tps_per_gpu", 10.0, 20.0),
    ("server_hit_rate", 2.0, 5.0),
];

/// One sweep spec of the test: sweeps/local-vllm.yaml with its name, traces, users and offload
/// modes replaced.
fn spec(dir: &Path, name: &str, traces: &Path, users: &str, offload: &str) -> PathBuf {
    let mut replaced = std::fs::read_to_string(common::repo_root().join("sweeps/local-vllm.yaml"))
        .expect("sweeps/local-vllm.yaml");
    for (from, to) in [
        ("name: local-vllm", format!("name: {name}")),
        (
            "path: ../traces/samples/kv-cache-tester",
            format!("path: {}", traces.display()),
        ),
        ("users: [2]", format!("users: {users}")),
        (
            "offload: [\"off\", \"noprefix\"]",
            format!("offload: {offload}"),
        ),
    ] {
        assert!(
            replaced.contains(from),
            "sweeps/local-vllm.yaml no longer has `{from}`"
        );
        replaced = replaced.replace(from, &to);
    }
    common::write(dir, &format!("{name}.yaml"), &replaced)
}

fn cell(spec: &str, users: u32, offload: &str) -> String {
    format!("{spec}_cpu_tp1_users{users}_offload{offload}")
}

/// The engine command line and the served model name of a cell, as run-cell would start them.
fn engine_command(spec: &Path, cell: &str, port: u16) -> (Vec<String>, String) {
    let runners = RunnerSet::builtin().expect("built-in runners");
    let selector = CellSelector {
        spec: spec.to_path_buf(),
        cell: cell.to_owned(),
        key: None,
        runner: None,
    };
    let (sweep, cell, runner) =
        kvsweep::plan::render::select(&selector, &runners).expect("the cell");
    let overrides = CellOverrides {
        port,
        ..Default::default()
    };
    let plan = kvsweep::plan::render::plan(&sweep, &cell, runner, &overrides).expect("plan");
    let launch = plan.launch(runner).expect("launch");
    let host = kvsweep::plan::engine::host_command(&launch, runner, plan.image.as_deref())
        .expect("host command");
    let values =
        kvsweep::plan::engine::HostValues::here("unused", Path::new(env!("CARGO_BIN_EXE_kvsweep")));
    (host.argv(&values).expect("argv"), plan.model.clone())
}

/// A vLLM this test started, in its own process group; stopped (TERM, then KILL) when dropped.
struct Engine {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Engine {
    /// Starts `argv` listening on `port` and waits for /health.
    fn start(argv: &[String], port: u16, log: PathBuf) -> Engine {
        use std::os::unix::process::CommandExt as _;
        let file = std::fs::File::create(&log).expect("engine log");
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("vLLM starts");
        let mut engine = Engine {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let started = Instant::now();
        while !curl(&["-o", "/dev/null", &format!("{}/health", engine.base)]) {
            if let Some(status) = engine.child.try_wait().expect("wait") {
                panic!("vLLM exited ({status}):\n{}", engine.log_tail());
            }
            assert!(
                started.elapsed() < Duration::from_secs(900),
                "vLLM not healthy in 900 s:\n{}",
                engine.log_tail()
            );
            std::thread::sleep(Duration::from_secs(2));
        }
        eprintln!("vLLM healthy in {:.0} s", started.elapsed().as_secs_f64());
        engine
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// `curl -fsS --max-time 30 ARGS`: whether it succeeded.
fn curl(args: &[&str]) -> bool {
    Command::new("curl")
        .args(["-fsS", "--max-time", "30"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `cell` of `spec` against the engine into `out`, which must come out a whole, ok cell.
fn measure(spec: &Path, cell: &str, engine: &Engine, out: &Path) {
    let started = Instant::now();
    let result = common::run(common::kvsweep().arg("run-cell").arg(spec).args([
        "--cell",
        cell,
        "--server",
        &engine.base,
        "--duration",
        DURATION,
        "--out",
        out.to_str().expect("utf-8"),
    ]));
    assert!(
        result.status.success(),
        "run-cell {cell}: {}\nvLLM log:\n{}",
        common::stderr(&result),
        engine.log_tail()
    );
    let status = common::json(&out.join("status.json"));
    assert_eq!(status["status"], "ok", "{status}");
    let metadata = common::json(&out.join("metadata.json"));
    assert_eq!(metadata["cache_reset"], true, "{cell}: a fresh cache");
    eprintln!(
        "measured {cell}: {} requests in {:.0} s",
        status["requests"],
        started.elapsed().as_secs_f64()
    );
}

fn num(row: &HashMap<String, String>, column: &str) -> f64 {
    row[column]
        .parse()
        .unwrap_or_else(|e| panic!("{column} = {:?}: {e}", row[column]))
}

/// `prediction_error.csv` of `dirs` collected into `out`, printed under `title`.
fn errors(title: &str, dirs: &[PathBuf], out: &Path) -> Vec<HashMap<String, String>> {
    let mut args = vec!["collect".to_owned()];
    args.extend(dirs.iter().map(|d| d.display().to_string()));
    args.extend(["--out".to_owned(), out.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    common::kvsweep_ok(&args);
    let rows = common::csv_rows(&out.join("prediction_error.csv"));
    eprintln!(
        "\n{title}\n{:<44} {:<19} {:>11} {:>11} {:>9}",
        "cell", "metric", "predicted", "measured", "error"
    );
    for r in &rows {
        eprintln!(
            "{:<44} {:<19} {:>11.3} {:>11.3} {:>8.1}{}",
            r["cell"],
            r["metric"],
            num(r, "predicted"),
            num(r, "measured"),
            num(r, "error"),
            if r["unit"] == "points" { " pt" } else { " %" }
        );
    }
    rows
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    assert!(n > 0, "no values");
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs vLLM for CPUs")]
fn predictions_of_held_out_vllm_cells_meet_the_error_bands() {
    let _ = (vllm(), tiny_model());
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let kept = std::env::var_os("KVSWEEP_VALIDATION_DIR").map(PathBuf::from);
    if let Some(kept) = &kept {
        std::fs::create_dir_all(kept).expect("KVSWEEP_VALIDATION_DIR");
    }
    let dir = kept.as_deref().unwrap_or(tmp.path());
    let samples = common::repo_root().join("traces/samples/kv-cache-tester");
    let generated = common::repo_root().join("traces/generated");
    // Trace set A (the sample traces) at the fit's load levels and the held-out user counts, with
    // the prefix cache on and off; trace set B (generated sessions) held out whole.
    let a = spec(
        dir,
        "va",
        &samples,
        "[1, 2, 4, 6]",
        "[\"off\", \"noprefix\"]",
    );
    let b = spec(dir, "vb", &generated, "[4]", "[\"off\"]");
    let fit: Vec<(PathBuf, String)> = FIT_USERS
        .iter()
        .map(|u| (a.clone(), cell("va", *u, "off")))
        .collect();
    let held_out = [
        (a.clone(), cell("va", 2, "off")),
        (a.clone(), cell("va", 6, "off")),
        (b.clone(), cell("vb", 4, "off")),
        (a.clone(), cell("va", 4, "noprefix")),
    ];

    // 1. The measurements: every prefix-on cell on one engine, in turn; then the noprefix cell.
    let measured = dir.join("measured");
    let port = kvsweep::run::run_cell::free_port().expect("a free port");
    let (argv, model) = engine_command(&a, &fit[0].1, port);
    for (spec, cell) in fit.iter().chain(&held_out[..3]) {
        assert_eq!(
            engine_command(spec, cell, port).0,
            argv,
            "{cell} shares the engine: its command must be the same"
        );
    }
    {
        let engine = Engine::start(&argv, port, dir.join("vllm-prefix.log"));
        // One request first: the engine's first steps allocate and pick kernels.
        let body = serde_json::json!({
            "model": model,
            "prompt": "warm up ".repeat(400),
            "max_tokens": 16,
        })
        .to_string();
        assert!(
            curl(&[
                "-H",
                "Content-Type: application/json",
                "-d",
                &body,
                &format!("{}/v1/completions", engine.base),
            ]),
            "warm-up request"
        );
        for (spec, cell) in fit.iter().chain(&held_out[..3]) {
            measure(spec, cell, &engine, &measured.join(cell));
        }
    }
    {
        let (spec, cell) = &held_out[3];
        let (argv, _) = engine_command(spec, cell, port);
        let engine = Engine::start(&argv, port, dir.join("vllm-noprefix.log"));
        measure(spec, cell, &engine, &measured.join(cell));
    }
    eprintln!(
        "measured {} cells in {:.0} s",
        fit.len() + held_out.len(),
        started.elapsed().as_secs_f64()
    );

    // 2. The fit, on the two load levels only.
    let calibration = dir.join("calibration.yaml");
    let mut args = vec!["calibrate".to_owned()];
    args.extend(
        fit.iter()
            .map(|(_, c)| measured.join(c).display().to_string()),
    );
    args.extend(["--out".to_owned(), calibration.display().to_string()]);
    let out = common::run(common::kvsweep().args(&args));
    assert!(out.status.success(), "calibrate: {}", common::stderr(&out));
    eprintln!("{}", common::stderr(&out).trim());
    let text = std::fs::read_to_string(&calibration).expect("calibration");
    eprintln!("{text}");
    let yaml: serde_json::Value = serde_norway::from_str(&text).expect("calibration yaml");
    assert_eq!(yaml["identity"]["engine"], "vllm", "{text}");
    for residual in ["ttft_residual", "decode_residual"] {
        let r = yaml["fit"][residual].as_f64().expect("residual");
        assert!(r.is_finite(), "{residual} {r}");
    }

    // 3. The predictions, on the virtual clock, of both specs' cells.
    let predicted = dir.join("predicted");
    for spec in [&a, &b] {
        let name = spec.file_stem().expect("name").to_str().expect("utf-8");
        common::kvsweep_ok(&[
            "predict",
            spec.to_str().expect("utf-8"),
            "--calibration",
            calibration.to_str().expect("utf-8"),
            "--duration",
            DURATION,
            "--out",
            predicted.join(name).to_str().expect("utf-8"),
        ]);
    }
    let twin = |spec: &Path, cell: &str| -> PathBuf {
        let name = spec.file_stem().expect("name").to_str().expect("utf-8");
        predicted.join(name).join("cells").join(cell)
    };

    // 4. Each measured cell beside its prediction: the fitted cells (in-sample, for the log) and
    //    the held-out ones (what the bands judge).
    let both = |cells: &[(PathBuf, String)]| -> Vec<PathBuf> {
        cells
            .iter()
            .flat_map(|(s, c)| [measured.join(c), twin(s, c)])
            .collect()
    };
    errors(
        "in-sample (the cells the calibration was fitted on):",
        &both(&fit),
        &dir.join("fitted"),
    );
    let rows = errors(
        "held out (never seen by the fit):",
        &both(&held_out),
        &dir.join("held-out"),
    );

    // A shared engine still gives each cell its own server hit rate: it agrees with the client's.
    let summary = common::csv_rows(&dir.join("held-out/summary.csv"));
    for row in summary.iter().filter(|r| r["measured_by"] != "predicted") {
        if row["offload"] == "off" {
            let (client, server) = (num(row, "client_hit_rate"), num(row, "server_hit_rate"));
            assert!(
                (client - server).abs() <= 0.02,
                "{}: client {client}, server {server}",
                row["cell"]
            );
        }
    }

    // Every held-out cell has a prediction of every goal metric with a finite error (the hit
    // rate where the engine counted prefix-cache queries: not with the cache off).
    let mut misses = Vec::new();
    eprintln!("\nmedian |error| over the held-out cells (goal, band):");
    for (metric, goal, band) in GOALS {
        let errs: Vec<f64> = rows
            .iter()
            .filter(|r| r["metric"] == metric)
            .map(|r| num(r, "error"))
            .collect();
        let expected = if metric == "server_hit_rate" { 3 } else { 4 };
        assert!(
            errs.len() >= expected && errs.iter().all(|e| e.is_finite()),
            "{metric}: {errs:?}"
        );
        let m = median(errs.iter().map(|e| e.abs()).collect());
        eprintln!("  {metric:<19} {m:>6.1} (goal {goal}, band {band})");
        if m > band {
            misses.push(format!("{metric}: median |error| {m:.1} > {band}"));
        }
    }
    eprintln!("whole test: {:.0} s", started.elapsed().as_secs_f64());
    assert!(misses.is_empty(), "{misses:?}");
}
