//! Validity verdicts end to end: four replays against the simulator (too thin, client-bound,
//! over-saturated, healthy) collected together; each gets its verdict and only valid cells are
//! on a frontier.
//!
//! Each verdict holds by construction, not by the machine's speed: the thin cell's trace has 3
//! requests; the client-bound cell's client and server share one core, so the client (thousands
//! of users with no think time against an instant server) is never short of work and wants all
//! of its core (CPU time plus time waiting for it, which a loaded machine only raises); the
//! over-saturated cell is open loop at several times what a 4-sequence simulated server serves
//! in modelled time, so its queue and TTFT grow through the window (and the over-saturation
//! stop ends it early); the healthy cell has think time and a server with nothing to do.

use std::path::{Path, PathBuf};

use crate::common::{self, cells::plan, sim::SimServer};
use kvsweep::data::artifact::schema::JsonArtifact;
use kvsweep::plan::spec::Cell;

/// A Mooncake trace of `sessions` sessions of `turns` small turns, `delay_ms` apart, each
/// asking for `output` tokens.
fn trace(dir: &Path, name: &str, sessions: u32, turns: u32, delay_ms: u32, output: u32) -> PathBuf {
    let mut text = String::new();
    for s in 0..sessions {
        for k in 0..turns {
            let hash_ids: Vec<String> = (0..=k).map(|j| (s * 10 + j).to_string()).collect();
            text.push_str(&format!(
                "{{\"timestamp\":0,\"input_length\":{},\"output_length\":{output},\"hash_ids\":[{}],\"session_id\":\"s{s}\",\"delay\":{delay_ms}}}\n",
                64 * (k + 1),
                hash_ids.join(",")
            ));
        }
    }
    common::write(dir, name, &text)
}

/// Replays `traces` against `sim` into `cells/NAME` and writes the cell's plan beside it.
fn replay_cell(
    cells: &Path,
    name: &str,
    users: u32,
    duration_s: u64,
    sim: &SimServer,
    traces: &Path,
    args: &[&str],
) {
    let out = cells.join(name);
    let done = common::run(
        common::kvsweep()
            .args(["replay", "--url", &sim.base, "--format", "mooncake"])
            .arg("--traces")
            .arg(traces)
            .arg("--out")
            .arg(&out)
            .args(args),
    );
    // A run the over-saturation stop ended exits non-zero, with everything recorded.
    assert!(
        done.status.success() || out.join("summary.json").exists(),
        "{name}: {}",
        common::stderr(&done)
    );
    let cell = Cell {
        name: name.into(),
        runner: Some("cpu".into()),
        tp: 1,
        ep: 0,
        users,
        offload: serde_json::from_value("off".into()).expect("an offload mode"),
    };
    plan(cell, duration_s).write(&out).expect("cell.json");
}

/// Runs `f` on a thread pinned to one CPU (the first this process may use): the processes it
/// starts inherit that single core.
fn on_one_core<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: the sets are plain bitmaps the calls fill or read; 0 is this thread.
            unsafe {
                let mut allowed: libc::cpu_set_t = std::mem::zeroed();
                let size = std::mem::size_of::<libc::cpu_set_t>();
                assert_eq!(libc::sched_getaffinity(0, size, &mut allowed), 0);
                let first = (0..libc::CPU_SETSIZE as usize)
                    .find(|&c| libc::CPU_ISSET(c, &allowed))
                    .expect("a CPU this process may use");
                let mut one: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(first, &mut one);
                assert_eq!(libc::sched_setaffinity(0, size, &one), 0);
            }
            f()
        })
        .join()
        .expect("the pinned thread")
    })
}

#[test]
fn thin_client_bound_overloaded_and_healthy_cells_get_their_verdicts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cells = dir.path().join("cells");

    let three = trace(dir.path(), "three.jsonl", 1, 3, 0, 4);
    let instant = SimServer::start(&["--instant"]);
    replay_cell(
        &cells,
        "thin",
        1,
        0,
        &instant,
        &three,
        &["--time-scale", "0"],
    );

    let think = trace(dir.path(), "think.jsonl", 50, 5, 200, 4);
    replay_cell(
        &cells,
        "healthy",
        8,
        6,
        &instant,
        &think,
        &[
            "--users",
            "8",
            "--recycle",
            "--duration",
            "6",
            "--drain",
            "5",
        ],
    );
    drop(instant);

    let small = trace(dir.path(), "small.jsonl", 50, 5, 0, 4);
    on_one_core(|| {
        let sim = SimServer::start(&["--instant"]);
        replay_cell(
            &cells,
            "client_bound",
            3000,
            4,
            &sim,
            &small,
            &[
                "--users",
                "3000",
                "--time-scale",
                "0",
                "--recycle",
                "--duration",
                "4",
                "--drain",
                "5",
            ],
        );
    });

    // About 11 requests a second of 50 output tokens fit 4 sequences of a modelled H100; 10
    // sessions a second of 5 turns ask for several times that. The over-saturation stop ends
    // the run long before its 60 s.
    let over = trace(dir.path(), "over.jsonl", 100, 5, 200, 50);
    let slow = SimServer::start(&["--max-num-seqs", "4"]);
    replay_cell(
        &cells,
        "overloaded",
        10,
        60,
        &slow,
        &over,
        &[
            "--request-rate",
            "10",
            "--arrival",
            "constant",
            "--recycle",
            "--duration",
            "60",
            "--drain",
            "30",
            "--stop-when-saturated",
            "5",
        ],
    );
    drop(slow);
    let status = common::json(&cells.join("overloaded/status.json"));
    assert_eq!(status["status"], "partial", "{status}");
    let stopped = status["reason"].as_str().expect("a reason");
    assert!(
        stopped.starts_with("over-saturated, stopped at"),
        "{stopped}"
    );
    let ran = common::json(&cells.join("overloaded/summary.json"))["duration_s"]
        .as_f64()
        .expect("duration_s");
    assert!(ran < 30.0, "stopped early, not after its 60 s: {ran}");

    let out = dir.path().join("collected");
    common::kvsweep_ok(&[
        "collect",
        cells.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    let summary = common::csv_rows(&out.join("summary.csv"));
    let verdict = |name: &str| {
        let row = summary
            .iter()
            .find(|r| r["cell"] == name)
            .unwrap_or_else(|| panic!("{name} in summary.csv: {summary:?}"));
        (row["valid"] == "true", row["invalid_reasons"].clone())
    };

    let (valid, why) = verdict("thin");
    assert!(!valid);
    assert!(why.starts_with("3 completed requests"), "{why}");
    assert!(!why.contains("client-bound"), "{why}");

    let (valid, why) = verdict("client_bound");
    assert!(!valid);
    assert!(why.contains("client-bound: the replay wanted"), "{why}");

    let (valid, why) = verdict("overloaded");
    assert!(!valid);
    assert!(
        why.contains("run stopped early (status partial: over-saturated"),
        "{why}"
    );
    assert!(!why.contains("client-bound"), "{why}");

    assert_eq!(verdict("healthy"), (true, String::new()));

    let pareto = common::csv_rows(&out.join("pareto.csv"));
    for name in ["thin", "client_bound", "overloaded"] {
        assert!(
            pareto
                .iter()
                .filter(|r| r["cell"] == name)
                .all(|r| r["on_frontier"] == "false"),
            "{name} is never on a frontier"
        );
    }
    assert!(
        pareto
            .iter()
            .any(|r| r["cell"] == "healthy" && r["on_frontier"] == "true"),
        "the healthy cell, alone among the valid ones, is on its frontiers"
    );
    let report = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert!(
        report.contains("invalid: 3 completed requests"),
        "the reasons are in the report"
    );
}
