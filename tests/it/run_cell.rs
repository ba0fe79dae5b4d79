//! `kvsweep run-cell` end to end against the simulated server: a good cell, and each way a cell
//! fails (a bad engine flag, an engine that dies mid-run, too many failed requests, an engine
//! that never gets healthy, a signal, a directory in use).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{json, repo_root, write};
use kvsweep::data::artifact::schema::{JsonArtifact, Versions};

/// A one-cell native spec against the simulator, and a runners dir whose `cpu` runner adds
/// `sim_args` to the simulator's command line.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(sim_args: &[&str], users: u32, duration_s: u32) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let traces = repo_root().join("traces/samples/kv-cache-tester/trace_0538.json");
        write(
            dir.path(),
            "spec.yaml",
            &format!(
                "name: rc\nmodel:\n  name: llama-3.1-8b\n  preset: llama-3.1-8b\nengine: sim\n\
                 runners: [cpu]\nduration_s: {duration_s}\ntraces:\n  path: {}\n\
                 replay:\n  time_scale: 0.05\n  drain: 2\n  recycle: true\n\
                 tp: [1]\nusers: [{users}]\noffload: [\"off\"]\n",
                traces.display()
            ),
        );
        let runners = dir.path().join("runners");
        std::fs::create_dir(&runners).expect("mkdir");
        // The simulator reads its GPU model from the same runners directory.
        std::fs::copy(
            repo_root().join("runners/h100.yaml"),
            runners.join("h100.yaml"),
        )
        .expect("copy h100.yaml");
        let extra: String = sim_args.iter().map(|a| format!(", \"{a}\"")).collect();
        write(
            &runners,
            "cpu.yaml",
            &format!(
                "name: cpu\nvendor: cpu\ngpu: simulated H100\ngpus_per_node: 8\nhbm_gb_per_gpu: 80\n\
                 hbm_bandwidth_tb_s: 3.35\nbf16_tflops: 989\nhost_dram_gb: 2048\nhost_link_gb_s: 50\n\
                 slurm:\n  gres_type: null\n  partition: null\ncontainer: none\n\
                 github:\n  labels: [ubuntu-latest]\nengines:\n  sim:\n    args: [--runner, h100{extra}]\n\
                 \x20   offload:\n      \"off\": {{}}\n"
            ),
        );
        Self { dir }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("cell")
    }

    fn command(&self, cell: &str, extra: &[&str]) -> Command {
        let mut cmd = common::kvsweep();
        cmd.env("KVSWEEP_RUNNERS_DIR", self.dir.path().join("runners"))
            .arg("run-cell")
            .arg(self.dir.path().join("spec.yaml"))
            .args(["--cell", cell, "--port", "0", "--out"])
            .arg(self.out())
            .args(extra);
        cmd
    }

    fn run(&self, cell: &str, extra: &[&str]) -> Output {
        self.command(cell, extra).output().expect("run-cell starts")
    }

    fn status(&self) -> serde_json::Value {
        json(&self.out().join("status.json"))
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn csv_len(path: &Path) -> usize {
    csv::Reader::from_path(path).expect("csv").records().count()
}

#[test]
fn a_good_cell_leaves_its_whole_artifact_and_a_zip_of_it() {
    let f = Fixture::new(&["--instant"], 4, 4);
    let zip_path = f.dir.path().join("cell.zip");
    let out = f.run(
        "rc_cpu_tp1_users4_offloadoff",
        &["--zip", zip_path.to_str().expect("utf-8")],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let status = f.status();
    assert_eq!(status["status"], "ok", "{status}");
    assert!(status["requests"].as_u64().expect("requests") > 0);
    let mut expected = vec![
        "cell.json",
        "commands.txt",
        "metadata.json",
        "metrics.csv",
        "metrics_meta.json",
        "metrics_raw.csv",
        "periods.csv",
        "requests.csv",
        "server.log",
        "status.json",
        "summary.json",
        "versions.json",
    ];
    let found = files(&f.out());
    if found.iter().any(|n| n == "gpu.csv") {
        expected.push("gpu.csv");
        expected.sort();
    }
    assert_eq!(found, expected);
    assert!(csv_len(&f.out().join("requests.csv")) > 0);
    assert!(
        csv_len(&f.out().join("metrics.csv")) > 0,
        "the scraper ran beside the replay"
    );
    let cell = json(&f.out().join("cell.json"));
    assert_eq!(cell["cell"]["users"], 4);
    assert_ne!(cell["port"], 0, "a free port was picked and recorded");
    let commands = std::fs::read_to_string(f.out().join("commands.txt")).expect("commands");
    assert!(commands.contains("sim-server"), "{commands}");
    assert!(commands.contains(" replay "), "{commands}");
    let versions = json(&f.out().join("versions.json"));
    assert_eq!(versions["engine"], "sim");

    let mut archive =
        zip::ZipArchive::new(std::fs::File::open(&zip_path).expect("zip")).expect("zip archive");
    let mut names: Vec<String> = (0..archive.len())
        .map(|i| {
            archive
                .by_index(i)
                .expect("entry")
                .name()
                .expect("name")
                .into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(names, found, "the zip holds exactly the artifact's files");
}

#[test]
fn cells_run_in_turn_against_one_server_given_by_url() {
    let f = Fixture::new(&["--instant"], 2, 3);
    let sim = common::sim::SimServer::start(&["--runner", "h100", "--instant"]);
    let run = |name: &str| -> PathBuf {
        let out = f.dir.path().join(name);
        let result = common::run(
            common::kvsweep()
                .env("KVSWEEP_RUNNERS_DIR", f.dir.path().join("runners"))
                .arg("run-cell")
                .arg(f.dir.path().join("spec.yaml"))
                .args([
                    "--cell",
                    "rc_cpu_tp1_users2_offloadoff",
                    "--server",
                    &sim.base,
                ])
                .arg("--out")
                .arg(&out),
        );
        assert!(result.status.success(), "{}", common::stderr(&result));
        assert_eq!(json(&out.join("status.json"))["status"], "ok");
        out
    };
    let (first, second) = (run("first"), run("second"));
    // Nothing was started, so there is no server log, and the server outlives both cells.
    assert!(!second.join("server.log").exists());
    let commands = std::fs::read_to_string(second.join("commands.txt")).expect("commands");
    assert!(commands.starts_with("# not started: "), "{commands}");
    assert!(commands.contains(&sim.base), "{commands}");
    let health = common::run(Command::new("curl").args(["-fsS", &sim.url("/health")]));
    assert!(health.status.success(), "the server still serves");
    // Each cell's metrics count its own traffic only, not the server's since its start.
    let tokens = |dir: &Path, file: &str| -> f64 {
        common::csv_rows(&dir.join(file)).last().expect("rows")["prompt_tokens"]
            .parse()
            .expect("prompt_tokens")
    };
    let own: f64 = common::csv_rows(&second.join("requests.csv"))
        .iter()
        .map(|r| r["prompt_tokens"].parse::<f64>().unwrap_or(0.0))
        .sum();
    let counted = tokens(&second, "metrics.csv");
    let server = tokens(&second, "metrics_raw.csv");
    assert!(
        (counted - own).abs() <= 0.05 * own,
        "metrics.csv {counted}, the cell's requests {own}"
    );
    assert!(
        server >= counted + tokens(&first, "metrics.csv") * 0.95,
        "the server's own counter ({server}) holds both cells"
    );
}

#[test]
fn a_bad_engine_flag_fails_within_the_health_timeout_with_the_log_tail() {
    let f = Fixture::new(&["--frobnicate"], 2, 4);
    let out = f.run("rc_cpu_tp1_users2_offloadoff", &[]);
    assert!(!out.status.success());
    let status = f.status();
    assert_eq!(status["status"], "failed");
    // The engine's exit ended the wait, not the health timeout (whose reason says "within").
    assert!(
        status["reason"]
            .as_str()
            .expect("reason")
            .contains("exited"),
        "{status}"
    );
    let tail = status["server_log_tail"].as_str().expect("tail");
    assert!(tail.contains("--frobnicate"), "{tail}");
    assert!(common::stderr(&out).contains("--frobnicate"));
    assert!(f.out().join("server.log").exists());
}

#[test]
fn an_engine_that_dies_mid_run_leaves_a_partial_cell_with_what_was_recorded() {
    let f = Fixture::new(&["--speed", "0.5", "--exit-after-s", "4"], 4, 30);
    let out = f.run("rc_cpu_tp1_users4_offloadoff", &[]);
    assert!(!out.status.success());
    let status = f.status();
    assert_eq!(status["status"], "partial", "{status}");
    assert!(
        status["reason"]
            .as_str()
            .expect("reason")
            .contains("engine exited mid-run"),
        "{status}"
    );
    assert!(
        status["server_log_tail"]
            .as_str()
            .expect("tail")
            .contains("--exit-after-s")
    );
    assert!(
        csv_len(&f.out().join("requests.csv")) > 0,
        "requests so far are kept"
    );
    let summary = json(&f.out().join("summary.json"));
    assert_eq!(summary["completed"], false, "{summary}");
    // By the replay's own clock, it was stopped when the engine died, before its 30 s were up.
    assert!(
        summary["duration_s"].as_f64().expect("duration") < 30.0,
        "{summary}"
    );
}

#[test]
fn more_than_ten_percent_failed_requests_fail_the_cell() {
    let f = Fixture::new(&["--instant", "--fail-rate", "0.5"], 4, 3);
    let out = f.run("rc_cpu_tp1_users4_offloadoff", &[]);
    assert!(!out.status.success());
    let status = f.status();
    assert_eq!(status["status"], "failed", "{status}");
    assert!(
        status["reason"]
            .as_str()
            .expect("reason")
            .contains("more than 10%"),
        "{status}"
    );
    assert!(status["failed_requests"].as_u64().expect("count") > 0);
}

#[test]
fn an_engine_that_never_gets_healthy_times_out() {
    let f = Fixture::new(&["--startup-delay-s", "60"], 2, 3);
    let start = Instant::now();
    let out = f.run("rc_cpu_tp1_users2_offloadoff", &["--health-timeout", "2"]);
    assert!(!out.status.success());
    // Over before the engine would have become healthy: the timeout ended it, not the engine.
    assert!(start.elapsed() < Duration::from_secs(60));
    let status = f.status();
    assert_eq!(status["status"], "failed");
    assert_eq!(
        status["reason"],
        "the engine did not become healthy within 2s"
    );
}

#[test]
fn sigterm_stops_the_cell_and_keeps_a_partial_result() {
    let f = Fixture::new(&["--speed", "0.5"], 4, 60);
    let mut child = f
        .command("rc_cpu_tp1_users4_offloadoff", &[])
        .spawn()
        .expect("run-cell starts");
    let requests = f.out().join("requests.csv");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(requests.exists() && csv_len(&requests) > 0) {
        assert!(Instant::now() < deadline, "no request finished in 30 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    // SAFETY: sends a signal to a child this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let exit = child.wait().expect("wait");
    assert!(!exit.success());
    let status = f.status();
    assert_eq!(status["status"], "partial", "{status}");
    assert_eq!(status["reason"], "terminated (SIGTERM)");
    assert!(csv_len(&requests) > 0);
}

#[test]
fn a_directory_in_use_is_refused_and_left_alone() {
    let f = Fixture::new(&["--instant"], 2, 3);
    std::fs::create_dir_all(f.out()).expect("mkdir");
    write(&f.out(), "notes.txt", "mine");
    let out = f.run("rc_cpu_tp1_users2_offloadoff", &[]);
    assert!(!out.status.success());
    assert!(common::stderr(&out).contains("is not empty"));
    assert_eq!(files(&f.out()), ["notes.txt"]);
}

#[test]
fn planted_tokens_never_reach_the_cell_artifact() {
    let f = Fixture::new(&["--instant"], 1, 2);
    let cpu = f.dir.path().join("runners/cpu.yaml");
    let yaml = std::fs::read_to_string(&cpu).expect("cpu.yaml");
    let yaml = yaml.replacen(
        "    offload:\n",
        "    env:\n      SIM_API_TOKEN: tok_planted_in_the_runner_1234\n    offload:\n",
        1,
    );
    std::fs::write(&cpu, yaml).expect("write");
    let hf = "hf_planted_in_the_environment_5678";
    let zip_path = f.dir.path().join("cell.zip");
    let out = f
        .command(
            "rc_cpu_tp1_users1_offloadoff",
            &["--zip", zip_path.to_str().expect("utf-8")],
        )
        .env("HF_TOKEN", hf)
        .output()
        .expect("run-cell");
    assert!(out.status.success(), "{}", common::stderr(&out));
    let commands = std::fs::read_to_string(f.out().join("commands.txt")).expect("commands");
    assert!(
        commands.contains("env 'SIM_API_TOKEN=[redacted]' "),
        "{commands}"
    );
    for entry in std::fs::read_dir(f.out()).expect("out") {
        let path = entry.expect("entry").path();
        let text = String::from_utf8_lossy(&std::fs::read(&path).expect("read")).into_owned();
        for secret in [hf, "tok_planted_in_the_runner_1234"] {
            assert!(!text.contains(secret), "{} holds {secret}", path.display());
        }
    }
    let mut zip =
        zip::ZipArchive::new(std::fs::File::open(&zip_path).expect("zip")).expect("a zip");
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).expect("entry");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry, &mut text).ok();
        assert!(!text.contains("tok_planted_in_the_runner_1234") && !text.contains(hf));
    }
}

/// A directory holding executable `name`s that print `line`, for a PATH of stand-in tools.
fn stub_tools(dir: &Path, tools: &[(&str, &str)]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).expect("mkdir");
    for (name, line) in tools {
        let path = write(dir, name, &format!("#!/bin/sh\necho '{line}'\n"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    dir.to_path_buf()
}

/// `dir` first, then this process's PATH.
fn path_with(dir: &Path) -> String {
    let rest = std::env::var_os("PATH").unwrap_or_default();
    let paths = std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(&rest));
    std::env::join_paths(paths)
        .expect("a PATH")
        .to_string_lossy()
        .into_owned()
}

#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs curl")]
fn the_script_and_run_cell_record_the_same_engine_start_and_versions() {
    common::require_tool("curl");
    let f = Fixture::new(&["--instant"], 1, 2);
    let cell = "rc_cpu_tp1_users1_offloadoff";
    let nvidia = stub_tools(&f.dir.path().join("bin"), &[("nvidia-smi", "555.42.06")]);
    let path = path_with(&nvidia);
    let runners = f.dir.path().join("runners");
    let spec = f.dir.path().join("spec.yaml");
    // One fixed port for both, so that the engine command lines can match word for word.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
        .to_string();

    let ran = common::run(
        common::kvsweep()
            .env("KVSWEEP_RUNNERS_DIR", &runners)
            .env("PATH", &path)
            .arg("run-cell")
            .arg(&spec)
            .args(["--cell", cell, "--port", &port, "--out"])
            .arg(f.out()),
    );
    assert!(ran.status.success(), "{}", common::stderr(&ran));

    let script_dir = f.dir.path().join("script");
    let rendered = common::run(
        common::kvsweep()
            .env("KVSWEEP_RUNNERS_DIR", &runners)
            .arg("render")
            .arg(&spec)
            .args(["--cell", cell, "--port", &port, "--out"])
            .arg(&script_dir),
    );
    assert!(rendered.status.success(), "{}", common::stderr(&rendered));
    let results = f.dir.path().join("script-results");
    let script = common::run(
        Command::new("bash")
            .arg(script_dir.join("run.sh"))
            .env("KVSWEEP_BIN", env!("CARGO_BIN_EXE_kvsweep"))
            .env("KVSWEEP_RESULTS", &results)
            .env("PATH", &path),
    );
    assert!(script.status.success(), "{}", common::stderr(&script));
    assert_eq!(json(&results.join("status.json"))["status"], "ok");

    // The same versions.json from both: one probe found the stand-in nvidia-smi for each.
    let from_run_cell = Versions::read(&f.out()).expect("run-cell's versions.json");
    let from_script = Versions::read(&results).expect("the script's versions.json");
    assert_eq!(from_script, from_run_cell);
    assert_eq!(from_script.gpu_driver, "555.42.06");
    assert_eq!(from_script.rendered_by, kvsweep::VERSION);
    assert_eq!(from_script.kvsweep, kvsweep::VERSION);

    // The engine start each recorded first in commands.txt, as the shell reads it back.
    let engine_words = |dir: &Path| -> Vec<String> {
        let text = std::fs::read_to_string(dir.join("commands.txt")).expect("commands.txt");
        let first = text.lines().next().expect("a first command").to_owned();
        shlex::split(&first).unwrap_or_else(|| panic!("not shell words: {first}"))
    };
    let started = engine_words(&f.out());
    assert!(started.iter().any(|w| w == "sim-server"), "{started:?}");
    assert_eq!(engine_words(&results), started);
}

#[test]
fn the_gpu_driver_comes_from_nvidia_smi_else_amd_smi_else_unknown() {
    // A finished cell's plan, to finish again in directories of its own.
    let f = Fixture::new(&["--instant"], 1, 2);
    let ran = f.run("rc_cpu_tp1_users1_offloadoff", &[]);
    assert!(ran.status.success(), "{}", common::stderr(&ran));
    let amd_line = "AMDSMI Tool: 24.6.2 | ROCm version: 6.2.0";
    let cases = [
        (
            "both",
            vec![("nvidia-smi", "570.1"), ("amd-smi", amd_line)],
            "570.1",
        ),
        ("amd", vec![("amd-smi", amd_line)], amd_line),
        ("none", vec![], "unknown"),
    ];
    for (name, tools, driver) in cases {
        let dir = f.dir.path().join(format!("finish-{name}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::copy(f.out().join("cell.json"), dir.join("cell.json")).expect("copy");
        write(&dir, "raw_dump.jsonl", "not on the whitelist");
        // Only the stand-ins on PATH: a real nvidia-smi on this machine must not answer.
        let bin = stub_tools(&f.dir.path().join(format!("bin-{name}")), &tools);
        let out = common::run(
            common::kvsweep()
                .env("PATH", &bin)
                .args(["cell", "finish"])
                .arg(&dir)
                .args([
                    "--status",
                    "ok",
                    "--reason",
                    "completed",
                    "--exit-code",
                    "0",
                ])
                .args(["--rendered-by", "0.0.1 (render)", "--container", "none"]),
        );
        assert!(out.status.success(), "{}", common::stderr(&out));
        let versions = Versions::read(&dir).expect("versions.json");
        assert_eq!(versions.gpu_driver, driver, "{name}");
        assert_eq!(versions.rendered_by, "0.0.1 (render)");
        assert_eq!(files(&dir), ["cell.json", "status.json", "versions.json"]);
    }
}
