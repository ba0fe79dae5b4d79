//! Repeats: a cell run several times is collected into its mean with a 95 % interval that
//! contains what a long run of the same cell measures, and `compare` tells a real difference
//! between two repeated sweeps from noise. The runs leave their first three seconds out as warm-up.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use crate::common::{self, cells::plan, sim::SimServer};
use kvsweep::data::artifact::schema::JsonArtifact;
use kvsweep::plan::spec::Cell;

/// A Mooncake trace of 50 sessions of 1 to 7 small turns, 100 to 300 ms of think time apart:
/// sessions unlike each other, so that runs with different seeds (which shuffle the sessions)
/// are different samples of the workload, as repeats on real hardware are.
fn trace(dir: &Path) -> PathBuf {
    common::SessionTrace {
        sessions: 50,
        turns_mod: 7,
        prompt_block: 64,
        output: (4, 4, 3),
        delay: Some((100, 50)),
    }
    .write(dir, "think.jsonl")
}

/// One run of the 8-user cell `healthy` into `out`, with `users` replay users for `duration` s,
/// the sessions shuffled by `seed`.
struct Run<'a> {
    out: PathBuf,
    users: u32,
    duration: u32,
    seed: u32,
    traces: &'a Path,
}

impl Run<'_> {
    /// Starts the replay: the runs of the test go at once (the simulator answers instantly and
    /// the think times pace the users, so they do not slow each other down).
    fn start(&self, sim: &SimServer) -> Child {
        let (users, duration, seed) = (
            self.users.to_string(),
            self.duration.to_string(),
            self.seed.to_string(),
        );
        common::kvsweep()
            .args([
                "replay",
                "--url",
                &sim.base,
                "--format",
                "mooncake",
                "--recycle",
            ])
            .args(["--users", &users, "--duration", &duration, "--drain", "5"])
            // Users start on their sessions' first, shortest turns; the steady mix (more users on
            // later, longer turns) takes a few sessions' length to settle: not measured.
            .args(["--warmup-window", "3", "--seed", &seed])
            .arg("--traces")
            .arg(self.traces)
            .arg("--out")
            .arg(&self.out)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kvsweep replay starts")
    }

    /// Waits for the replay and writes the cell's plan beside its results.
    fn finish(&self, child: Child) {
        let done = child.wait_with_output().expect("kvsweep replay runs");
        assert!(done.status.success(), "{}", common::stderr(&done));
        let cell = Cell {
            name: "healthy".into(),
            runner: Some("cpu".into()),
            tp: 1,
            ep: 0,
            users: 8,
            offload: serde_json::from_value("off".into()).expect("an offload mode"),
        };
        let mut plan = plan(cell, u64::from(self.duration));
        *plan.workload.seed_mut().expect("a replay's seed") = u64::from(self.seed);
        plan.write(&self.out).expect("cell.json");
    }
}

fn collect(cells: &Path, out: &Path) {
    common::kvsweep_ok(&[
        "collect",
        cells.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
}

#[test]
fn repeated_cells_give_intervals_that_hold_a_long_run_and_compare_tests_the_difference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let traces = trace(dir.path());
    let sim = SimServer::start(&["--instant"]);

    let eight = dir.path().join("eight");
    let long = dir.path().join("long");
    let four = dir.path().join("four");
    let run = |out: PathBuf, users: u32, duration: u32, seed: u32| Run {
        out,
        users,
        duration,
        seed,
        traces: &traces,
    };
    let mut runs = vec![run(long.join("cells/healthy"), 8, 16, 100)];
    for k in 1..=3 {
        let repeat = format!("cells/healthy/repeat-{k}");
        runs.push(run(eight.join(&repeat), 8, 8, k));
        // The same seeds on both sides: repeat k of each replays the same sample.
        runs.push(run(four.join(&repeat), 4, 8, k));
    }
    let started: Vec<Child> = runs.iter().map(|r| r.start(&sim)).collect();
    for (r, child) in runs.iter().zip(started) {
        r.finish(child);
    }
    drop(sim);
    for d in [&eight, &long, &four] {
        collect(&d.join("cells"), &d.join("out"));
    }

    // The warm-up's requests are recorded but in no figure, and the window is stated.
    let long_cell = long.join("cells/healthy");
    let run_summary = common::json(&long_cell.join("summary.json"));
    let warm = run_summary["warmup_requests"]
        .as_u64()
        .expect("warmup_requests");
    assert_eq!(run_summary["warmup_window_s"], 3.0);
    assert!(
        warm >= 8,
        "every user's first turn is in the first three seconds: {warm}"
    );
    let recorded = common::csv_rows(&long_cell.join("requests.csv")).len() as u64;
    assert_eq!(
        run_summary["requests"]["total"].as_u64().expect("total") + warm,
        recorded
    );

    let summary = common::csv_rows(&eight.join("out/summary.csv"));
    assert_eq!(summary.len(), 1, "three repeats are one row: {summary:?}");
    assert_eq!(summary[0]["repeats"], "3");
    let long_row = &common::csv_rows(&long.join("out/summary.csv"))[0];
    let repeats = common::csv_rows(&eight.join("out/repeats.csv"));
    let interval = |metric: &str| {
        let r = repeats
            .iter()
            .find(|r| r["metric"] == metric)
            .unwrap_or_else(|| panic!("{metric} in repeats.csv: {repeats:?}"));
        let f = |c: &str| r[c].parse::<f64>().expect(c);
        assert_eq!(r["n"], "3");
        assert!(f("ci95_low") <= f("mean") && f("mean") <= f("ci95_high"));
        assert_eq!(summary[0][metric].parse::<f64>().expect("mean"), f("mean"));
        (f("ci95_low"), f("ci95_high"))
    };
    for metric in ["total_tps_per_gpu", "output_tps_per_gpu"] {
        let (lo, hi) = interval(metric);
        let long_mean = long_row[metric].parse::<f64>().expect(metric);
        assert!(
            lo <= long_mean && long_mean <= hi,
            "{metric}: the long run's {long_mean} is outside the repeats' interval [{lo}, {hi}]"
        );
    }

    // Against itself nothing differs; against half the users throughput does.
    let compare = |b: &Path, out: &str| {
        let out = dir.path().join(out);
        common::kvsweep_ok(&[
            "compare",
            eight.join("out").to_str().expect("utf-8"),
            b.join("out").to_str().expect("utf-8"),
            "--out",
            out.to_str().expect("utf-8"),
        ]);
        common::csv_rows(&out.join("compare.csv")).remove(0)
    };
    let same = compare(&eight, "same");
    assert_eq!(same["total_tps_per_gpu_significant"], "false");
    let halved = compare(&four, "halved");
    assert_eq!(
        halved["total_tps_per_gpu_significant"], "true",
        "{halved:?}"
    );
    assert!(
        halved["total_tps_per_gpu_p_value"]
            .parse::<f64>()
            .expect("p")
            < 0.05
    );
    // A sweep without repeats has nothing to test against.
    let single = compare(&long, "single");
    assert_eq!(single["total_tps_per_gpu_significant"], "");
}

/// A Mooncake trace of 40 sessions of 1 to 5 turns with 16 to 48 output tokens: decode-bound at
/// a few users, and sessions unlike each other, so that two seeds sample different workloads.
fn decode_trace(dir: &Path) -> PathBuf {
    common::SessionTrace {
        sessions: 40,
        turns_mod: 5,
        prompt_block: 512,
        output: (16, 8, 5),
        delay: None,
    }
    .write(dir, "decode.jsonl")
}

/// `kvsweep sweep --local` of a one-cell spec, 3 repeats of 4 users for 5 s, against the
/// simulator at speed 1 with every step `slowdown` times longer (a planted regression: a
/// slower `--speed` would not do, collect reads simulated figures in the modelled hardware's
/// time), with replay seed 7; returns the running sweep.
fn start_sweep(dir: &Path, side: &str, slowdown: &str, traces: &Path) -> (PathBuf, Child) {
    let spec = common::write(
        dir,
        &format!("{side}.yaml"),
        &format!(
            "name: rep\nmodel:\n  name: llama-3.1-8b\n  preset: llama-3.1-8b\nengine: sim\n\
             runners: [cpu]\nduration_s: 5\nrepeats: 3\nengine_args: [--speed, \"1\", --slowdown, \"{slowdown}\"]\n\
             traces:\n  path: {}\n  format: mooncake\n\
             replay:\n  time_scale: 0\n  drain: 2\n  recycle: true\n  seed: 7\n\
             tp: [1]\nusers: [4]\noffload: [\"off\"]\n",
            traces.display()
        ),
    );
    let out = dir.join(side);
    let child = common::kvsweep()
        .arg("sweep")
        .arg(&spec)
        .arg("--local")
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kvsweep sweep starts");
    (out, child)
}

#[test]
fn repeats_sample_their_own_seeds_and_compare_tells_a_slower_server_from_a_rerun() {
    let dir = tempfile::tempdir().expect("tempdir");
    let traces = decode_trace(dir.path());
    // Two sweeps of the same build and settings (A/A), and one whose simulator is 10 % slower.
    let runs: Vec<(PathBuf, Child)> = [("a", "1"), ("a_again", "1"), ("slower", "1.1")]
        .iter()
        .map(|(side, slowdown)| start_sweep(dir.path(), side, slowdown, &traces))
        .collect();
    let mut outs = Vec::new();
    for (out, child) in runs {
        let done = child.wait_with_output().expect("kvsweep sweep runs");
        assert!(done.status.success(), "{}", common::stderr(&done));
        outs.push(out);
    }
    let (a, a_again, slower) = (&outs[0], &outs[1], &outs[2]);

    // Each repeat ran its own seed, derived from the spec's and the repeat's number, and says so
    // in its plan and its metadata; the first keeps the spec's.
    let seeds: Vec<u64> = (1..=3)
        .map(|k| kvsweep::base::repeats::seed(7, k))
        .collect();
    assert_eq!(seeds[0], 7);
    let cell = a.join("cells/rep_cpu_tp1_users4_offloadoff");
    for (k, seed) in (1..=3).zip(&seeds) {
        let run = cell.join(format!("repeat-{k}"));
        assert_eq!(common::json(&run.join("metadata.json"))["seed"], *seed);
        assert_eq!(
            common::json(&run.join("cell.json"))["workload"]["replay"]["seed"],
            *seed
        );
    }
    // Different seeds sent different workloads: the sessions in the order they were first sent.
    let order = |k: u32| {
        let mut reqs = common::csv_rows(&cell.join(format!("repeat-{k}/requests.csv")));
        reqs.sort_by(|x, y| {
            let t = |r: &std::collections::HashMap<String, String>| {
                r["sent_s"].parse::<f64>().expect("sent_s")
            };
            t(x).total_cmp(&t(y))
        });
        let mut sessions: Vec<String> = Vec::new();
        for r in reqs {
            if !sessions.contains(&r["session"]) {
                sessions.push(r["session"].clone());
            }
        }
        sessions.truncate(8);
        sessions
    };
    assert_ne!(order(1), order(2));
    assert_ne!(order(2), order(3));
    // repeats.csv records the seeds, the same on every side of the comparison.
    let joined = seeds
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(";");
    for out in &outs {
        let rows = common::csv_rows(&out.join("repeats.csv"));
        assert!(!rows.is_empty());
        assert!(rows.iter().all(|r| r["seeds"] == joined), "{rows:?}");
    }

    let compare = |b: &Path, name: &str| {
        let out = dir.path().join(name);
        let done = common::run(common::kvsweep().args([
            "compare",
            a.to_str().expect("utf-8"),
            b.to_str().expect("utf-8"),
            "--out",
            out.to_str().expect("utf-8"),
        ]));
        assert!(done.status.success(), "{}", common::stderr(&done));
        let log = common::stderr(&done);
        assert!(
            log.contains("covers the workload's sampling"),
            "compare says what the interval covers: {log}"
        );
        common::csv_rows(&out.join("compare.csv")).remove(0)
    };
    // A rerun of the same build differs by no more than the workload's sampling does.
    let aa = compare(a_again, "aa");
    assert_eq!(aa["same_seeds"], "true");
    assert_eq!(aa["tpot_p50_ms_significant"], "false", "{aa:?}");
    assert_eq!(aa["total_tps_per_gpu_significant"], "false", "{aa:?}");
    // A 10 % slower server does.
    let ab = compare(slower, "slower");
    assert_eq!(ab["same_seeds"], "true");
    let ratio: f64 = ab["tpot_p50_ms_ratio"].parse().expect("a ratio");
    assert!((1.05..1.2).contains(&ratio), "{ab:?}");
    assert_eq!(ab["tpot_p50_ms_significant"], "true", "{ab:?}");
}
