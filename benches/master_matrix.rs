//! Benchmark: both InferenceX master configs (tests/fixtures/inferencex/configs, commit
//! 843c6254f) to the full job list (1,820 jobs, `--no-evals`), kvsweep against InferenceX's own
//! generator in the same run (target: kvsweep ≤ 100 ms and ≥ 10× faster).
//!
//! Both sides are timed as whole processes writing the list to a pipe, as a workflow step runs
//! them: `kvsweep matrix ...` (this build's binary) and `python3 generate_sweep_configs.py
//! full-sweep ... --no-evals`. The generator comes from an InferenceX checkout named by
//! `$INFERENCEX_DIR` (needs `pydantic` and `pyyaml`); without it only kvsweep is measured.
//! kvsweep's in-process time (read + check + expand + JSON) is printed too.
//!
//! `cargo bench --bench master_matrix` measures; under `cargo test` it runs once as a check.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kvsweep::plan::spec::master::{self, Filters};

const JOBS: usize = 1820;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inferencex/configs")
}

fn configs() -> [PathBuf; 2] {
    [
        fixtures().join("nvidia-master.yaml"),
        fixtures().join("amd-master.yaml"),
    ]
}

/// Runs a command to completion, returning its stdout and wall time.
fn timed(cmd: &mut Command) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let out = cmd.output().expect("command runs");
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.stdout, elapsed)
}

fn kvsweep_cmd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kvsweep"));
    cmd.arg("matrix")
        .args(configs())
        .arg("--runner-config")
        .arg(fixtures().join("runners.yaml"));
    cmd
}

fn python_cmd(inferencex: &Path) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(inferencex.join("utils/matrix_logic/generate_sweep_configs.py"))
        .args(["full-sweep", "--config-files"])
        .args(configs())
        .arg("--runner-config")
        .arg(fixtures().join("runners.yaml"))
        .arg("--no-evals");
    cmd
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let filters = Filters {
        runner_config: fixtures().join("runners.yaml"),
        step_size: 2,
        ..Filters::default()
    };
    let in_process = || {
        let jobs = master::generate(&configs(), &filters).expect("valid master configs");
        master::pyjson::dumps_list(&jobs).len()
    };
    assert!(in_process() > 1_000_000);
    let (ours, _) = timed(&mut kvsweep_cmd());
    let list: Vec<serde_json::Value> = serde_json::from_slice(&ours).expect("json");
    assert_eq!(list.len(), JOBS);
    if !measuring {
        return;
    }
    let runs = 20;
    let lib = median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                in_process();
                start.elapsed()
            })
            .collect(),
    );
    let process = median((0..runs).map(|_| timed(&mut kvsweep_cmd()).1).collect());
    println!(
        "master matrix: nvidia-master.yaml + amd-master.yaml -> {JOBS} jobs, median of {runs}"
    );
    println!(
        "  kvsweep in process (read + check + expand + JSON): {:7.1} ms",
        ms(lib)
    );
    println!(
        "  kvsweep matrix (whole process):                    {:7.1} ms",
        ms(process)
    );
    let Some(inferencex) = std::env::var_os("INFERENCEX_DIR").map(PathBuf::from) else {
        println!("  Python generator: not run (set INFERENCEX_DIR to an InferenceX checkout)");
        return;
    };
    let (theirs, _) = timed(&mut python_cmd(&inferencex));
    assert_eq!(
        ours, theirs,
        "kvsweep and the generator print the same bytes"
    );
    let python = median(
        (0..5)
            .map(|_| timed(&mut python_cmd(&inferencex)).1)
            .collect(),
    );
    println!(
        "  generate_sweep_configs.py (whole process, median of 5): {:7.1} ms; kvsweep is {:.1}x faster",
        ms(python),
        python.as_secs_f64() / process.as_secs_f64()
    );
}
