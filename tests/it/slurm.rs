//! `kvsweep slurm` against a real single-node Slurm with four fake GPUs typed h100
//! (scripts/start-slurm.sh starts it; scripts/test.sh runs that first): a 4-cell array that
//! finishes ok, a wrong GRES type refused before anything is submitted, status, cancel,
//! resubmit --failed, and Ctrl-C during --wait cancelling only this sweep's jobs.
//!
//! One test runs the scenarios in order: the node is exclusive per task, so they share it.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{repo_root, write};

fn require_slurm() {
    common::require_tool("sbatch");
    let up = Command::new("sinfo")
        .args(["--noheader", "--format=%T"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("idle"));
    assert!(
        up,
        "no idle Slurm node: run scripts/start-slurm.sh as root (scripts/test.sh does)"
    );
}

struct Sweep {
    dir: tempfile::TempDir,
}

impl Sweep {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let runners = dir.path().join("runners");
        std::fs::create_dir(&runners).expect("mkdir");
        for name in ["slurm-sim.yaml", "slurm-b200.yaml"] {
            std::fs::copy(
                repo_root().join("tests/fixtures/slurm").join(name),
                runners.join(name),
            )
            .expect("copy runner");
        }
        std::fs::copy(
            repo_root().join("runners/h100.yaml"),
            runners.join("h100.yaml"),
        )
        .expect("copy h100");
        Self { dir }
    }

    fn spec(&self, runner: &str, duration_s: u32) -> PathBuf {
        let traces = repo_root().join("traces/samples/kv-cache-tester/trace_0538.json");
        write(
            self.dir.path(),
            &format!("{runner}-{duration_s}.yaml"),
            &format!(
                "name: sl\nmodel:\n  name: llama-3.1-8b\n  preset: llama-3.1-8b\nengine: sim\n\
                 runners: [{runner}]\nduration_s: {duration_s}\ntraces:\n  path: {}\n\
                 replay:\n  time_scale: 0\n  drain: 2\n  recycle: true\noffload_gb: 16\n\
                 tp: [1]\nusers: [1, 2]\noffload: [\"on\", \"off\"]\n",
                traces.display()
            ),
        )
    }

    fn kvsweep(&self, args: &[&str]) -> Command {
        let mut cmd = common::kvsweep();
        cmd.env("KVSWEEP_RUNNERS_DIR", self.dir.path().join("runners"))
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.kvsweep(args).output().expect("kvsweep runs")
    }

    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

fn status_json(sweep: &Sweep, out: &Path) -> Vec<serde_json::Value> {
    let o = sweep.run(&["slurm", "status", s(out), "--json"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    serde_json::from_slice::<Vec<serde_json::Value>>(&o.stdout).expect("status JSON")
}

fn queued_jobs() -> String {
    let o = Command::new("squeue")
        .args(["--noheader", "--format=%A"])
        .output()
        .expect("squeue");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs a running Slurm")]
fn a_sweep_runs_as_a_slurm_array_and_is_managed_from_its_manifest() {
    require_slurm();
    let sweep = Sweep::new();

    // A runner whose GPU type the cluster lacks is refused before anything is submitted.
    let refused_out = sweep.out("refused");
    let spec = sweep.spec("slurm-b200", 3);
    let before = queued_jobs();
    let o = sweep.run(&["slurm", "submit", s(&spec), "--out", s(&refused_out)]);
    assert!(!o.status.success());
    let err = common::stderr(&o);
    assert!(err.contains("asks for --gres=gpu:b200:1"), "{err}");
    assert!(err.contains("offers gpu:h100:4"), "{err}");
    assert!(!refused_out.exists(), "nothing written");
    assert_eq!(queued_jobs(), before, "nothing submitted");

    // Four cells as one array, waited for in the foreground.
    let out = sweep.out("ok");
    let spec = sweep.spec("slurm-sim", 3);
    let o = sweep.run(&["slurm", "submit", s(&spec), "--out", s(&out), "--wait"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let script = sbatch_script(&out);
    let text = std::fs::read_to_string(&script).expect("script");
    for line in [
        "#SBATCH --gres=gpu:h100:1",
        "#SBATCH --exclusive",
        "#SBATCH --mem=0",
        "#SBATCH --array=0-3%4",
        "#SBATCH --partition=gpu",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    let states = status_json(&sweep, &out);
    assert_eq!(states.len(), 4);
    for st in &states {
        assert_eq!(st["state"], "ok", "{st}");
        let dir = out.join("cells").join(st["cell"].as_str().expect("cell"));
        let status: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("status.json")).expect("status"),
        )
        .expect("json");
        assert_eq!(status["status"], "ok");
        assert!(dir.join("requests.csv").exists() && dir.join("metrics.csv").exists());
    }

    // A lost cell is found and resubmitted alone.
    let lost = states[2]["cell"].as_str().expect("cell").to_owned();
    std::fs::remove_dir_all(out.join("cells").join(&lost)).expect("rm");
    let o = sweep.run(&["slurm", "resubmit", "--failed", s(&out), "--wait"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert!(common::stderr(&o).contains(&format!("resubmitting 1 cells: {lost}")));
    let states = status_json(&sweep, &out);
    assert!(states.iter().all(|st| st["state"] == "ok"), "{states:?}");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("slurm-manifest.json")).expect("manifest"),
    )
    .expect("json");
    assert_eq!(manifest["jobs"].as_array().expect("jobs").len(), 2);

    // Ctrl-C during --wait cancels this sweep's jobs and leaves others alone.
    let other = Command::new("sbatch")
        .args(["--parsable", "--wrap", "sleep 120", "--output=/dev/null"])
        .output()
        .expect("sbatch");
    let other_id = String::from_utf8_lossy(&other.stdout).trim().to_owned();
    assert!(!other_id.is_empty(), "{}", common::stderr(&other));
    let long_out = sweep.out("long");
    let spec = sweep.spec("slurm-sim", 600);
    let child = sweep
        .kvsweep(&["slurm", "submit", s(&spec), "--out", s(&long_out), "--wait"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("submit");
    let manifest = long_out.join("slurm-manifest.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !manifest.exists() {
        assert!(Instant::now() < deadline, "no manifest written");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    // SAFETY: signals a child this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let o = child.wait_with_output().expect("wait");
    assert!(!o.status.success());
    assert!(
        common::stderr(&o).contains("cancelled this sweep's jobs"),
        "{}",
        common::stderr(&o)
    );
    let job: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).expect("manifest")).expect("json");
    let sweep_job = job["jobs"][0]["job_id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let q = queued_jobs();
        let mine_gone = !q.lines().any(|l| l.trim() == sweep_job);
        if mine_gone {
            assert!(
                q.lines().any(|l| l.trim() == other_id),
                "the other job stays: {q}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sweep's job is still queued: {q}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let o = sweep.run(&["slurm", "status", s(&long_out)]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let _ = Command::new("scancel").arg(&other_id).status();
    // `cancel` on a finished sweep is harmless.
    let o = sweep.run(&["slurm", "cancel", s(&out)]);
    assert!(o.status.success(), "{}", common::stderr(&o));
}

/// The first array job script `slurm submit` wrote under `out`.
fn sbatch_script(out: &Path) -> PathBuf {
    std::fs::read_dir(out.join("slurm"))
        .expect("scripts")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "sbatch"))
        .expect("an sbatch script")
}

#[test]
fn dry_run_renders_scripts_without_submitting() {
    let sweep = Sweep::new();
    let spec = sweep.spec("slurm-b200", 3);
    let out = sweep.out("dry");
    let o = sweep.run(&["slurm", "submit", s(&spec), "--out", s(&out), "--dry-run"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert!(common::stdout(&o).contains("would run: sbatch --parsable"));
    assert!(!out.join("slurm-manifest.json").exists());
    let script = sbatch_script(&out);
    let text = std::fs::read_to_string(&script).expect("script");
    assert!(text.contains("#SBATCH --gres=gpu:b200:1"), "{text}");
    common::assert_shellcheck_clean([&script]);

    // A task runs the spec's repeats one after another: its time limit covers them all.
    let minutes = |spec: &Path, out: &str| -> u64 {
        let out = sweep.out(out);
        let o = sweep.run(&["slurm", "submit", s(spec), "--out", s(&out), "--dry-run"]);
        assert!(o.status.success(), "{}", common::stderr(&o));
        let script = sbatch_script(&out);
        let text = std::fs::read_to_string(&script).expect("script");
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("#SBATCH --time="))
            .unwrap_or_else(|| panic!("a time limit in {text}"));
        line.trim().parse().expect("minutes")
    };
    let once = sweep.spec("slurm-b200", 600);
    let text = std::fs::read_to_string(&once).expect("spec");
    let repeated = write(
        sweep.dir.path(),
        "repeated.yaml",
        &format!("{text}repeats: 40\n"),
    );
    let (one, forty) = (minutes(&once, "once"), minutes(&repeated, "forty"));
    assert!(one < 30, "{one} minutes for one 10-minute run");
    assert!(forty >= 400, "{forty} minutes for forty 10-minute runs");
}

#[test]
fn an_enroot_runner_imports_its_image_once_per_node_under_flock() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("h200");
    let spec = repo_root().join("sweeps/h200-llama70b.yaml");
    let o = common::run(common::kvsweep().args([
        "slurm",
        "submit",
        s(&spec),
        "--out",
        s(&out),
        "--dry-run",
    ]));
    assert!(o.status.success(), "{}", common::stderr(&o));
    let scripts: Vec<PathBuf> = std::fs::read_dir(out.join("slurm"))
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "sbatch"))
        .collect();
    assert!(!scripts.is_empty());
    for script in &scripts {
        let text = std::fs::read_to_string(script).expect("script");
        assert!(text.contains("#SBATCH --gres=gpu:h200:"), "{text}");
        assert!(text.contains("flock 9"), "{text}");
        assert!(
            text.contains("enroot import -o \"$SQSH\" \"docker://\"vllm/vllm-openai"),
            "{text}"
        );
        assert!(text.contains("export KVSWEEP_ENROOT_SQSH=$SQSH"), "{text}");
        common::assert_shellcheck_clean([script]);
    }
}
