//! The rendered runner script's behaviour, run for real with bash: start, health wait, metrics,
//! replay, stop, status.json and the artifact whitelist, on success and on each kind of failure.
//!
//! The engine is the simulator's command line, served by a stand-in `kvsweep` (a shell script given
//! through KVSWEEP_BIN) whose engine is a tiny Python HTTP server, so these tests check the
//! script's orchestration, not the simulator. The stand-in hands `kvsweep cell finish` to the
//! real binary: the finish step is kvsweep's, shared with run-cell.

use crate::common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{kvsweep_ok, repo_root, require_tool, write};
use kvsweep::data::artifact::schema::{JsonArtifact, Status, Versions};

const FAKE_KVSWEEP: &str = r#"#!/usr/bin/env bash
set -euo pipefail
arg_after() { local want=$1 prev=""; shift; for a in "$@"; do [[ "$prev" == "$want" ]] && { echo "$a"; return; }; prev=$a; done; }
case "${1:-}" in
  cell) exec "$REAL_KVSWEEP" "$@" ;;
  sim-server)
    printf '%s\n' "$@" >"$FAKE_STATE/engine-argv"
    # An engine that prints what it was given, secrets included.
    [[ -n "${FAKE_ENGINE_SAYS:-}" ]] && echo "fake engine: $FAKE_ENGINE_SAYS" >&2
    case "${FAKE_ENGINE:-ok}" in
      dead) echo "fake engine: unknown flag --frobnicate" >&2; exit 3 ;;
      # Like vLLM with an offload connector its platform lacks: dies well into start-up.
      late) sleep 3; echo "fake engine: Engine core initialization failed" >&2; exit 1 ;;
      hang) exec sleep 600 ;;
    esac
    exec python3 "$FAKE_STATE/health.py" "$(arg_after --port "$@")"
    ;;
  metrics)
    out=$(arg_after --out "$@")
    echo "time,running" >"$out/metrics.csv"
    exec sleep 600
    ;;
  replay)
    out=$(arg_after --out "$@")
    printf '%s\n' "$@" >"$FAKE_STATE/replay-argv"
    cp "$(arg_after --plan "$@")" "$FAKE_STATE/replay-plan"
    echo $$ >"$FAKE_STATE/replay-pid"
    echo "request_id,ttft_ms" >"$out/requests.csv"
    echo "a large raw dump" >"$out/raw_dump.jsonl"
    mkdir -p "$out/scratch"
    [[ "${FAKE_REPLAY:-ok}" == slow ]] && exec sleep 600
    exit "${FAKE_REPLAY_RC:-0}"
    ;;
  *) echo "fake kvsweep: unexpected $*" >&2; exit 64 ;;
esac
"#;

const HEALTH_SERVER: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    def log_message(self, fmt, *args):
        sys.stderr.write("fake engine: " + fmt % args + "\n")
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

struct Cell {
    dir: tempfile::TempDir,
    port: u16,
}

impl Cell {
    /// Renders a local-sim cell (engine sim on the cpu runner) on a free port.
    fn render(extra: &[&str]) -> Cell {
        require_tool("python3");
        require_tool("curl");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let spec = repo_root().join("sweeps/local-sim.yaml");
        let port_arg = port.to_string();
        let out = dir.path().join("cell");
        let mut args = vec![
            "render",
            spec.to_str().expect("utf-8"),
            "--cell",
            "local-sim_cpu_tp1_users8_offloadon",
            "--out",
            out.to_str().expect("utf-8"),
            "--port",
            &port_arg,
        ];
        args.extend_from_slice(extra);
        kvsweep_ok(&args);
        let fake = write(dir.path(), "fake-kvsweep", FAKE_KVSWEEP);
        make_executable(&fake);
        write(dir.path(), "health.py", HEALTH_SERVER);
        Cell { dir, port }
    }

    fn results(&self) -> PathBuf {
        self.dir.path().join("cell/results")
    }

    fn command(&self, env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(self.dir.path().join("cell/run.sh"))
            .env("KVSWEEP_BIN", self.dir.path().join("fake-kvsweep"))
            .env("FAKE_STATE", self.dir.path())
            .env("REAL_KVSWEEP", env!("CARGO_BIN_EXE_kvsweep"))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn run(&self, env: &[(&str, &str)]) -> Output {
        self.command(env).output().expect("bash runs")
    }

    fn spawn(&self, env: &[(&str, &str)]) -> Child {
        self.command(env).spawn().expect("bash runs")
    }

    /// The script's status.json, read back into the artifact schema's `Status` (so the
    /// script's `printf` and the struct cannot drift apart), as JSON to index.
    fn status(&self) -> serde_json::Value {
        let status = Status::read(&self.results()).expect("status.json reads as a Status");
        serde_json::to_value(status).expect("to JSON")
    }

    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.results())
            .expect("results dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn state(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs python3 and curl")]
fn a_good_run_leaves_only_the_whitelisted_files_and_status_ok() {
    let cell = Cell::render(&[]);
    let out = cell.run(&[]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let status = cell.status();
    assert_eq!(status["status"], "ok");
    assert_eq!(status["reason"], "completed");
    assert_eq!(status["cell"], "local-sim_cpu_tp1_users8_offloadon");
    assert_eq!(
        cell.files(),
        [
            "cell.json",
            "commands.txt",
            "metrics.csv",
            "requests.csv",
            "server.log",
            "status.json",
            "versions.json"
        ]
    );
    let commands = std::fs::read_to_string(cell.results().join("commands.txt")).expect("commands");
    let lines: Vec<&str> = commands.lines().collect();
    assert_eq!(lines.len(), 3, "{commands}");
    assert!(
        lines[0].contains(" sim-server --host 127.0.0.1 --port "),
        "{commands}"
    );
    assert!(
        lines[1].contains(" metrics --url http://127.0.0.1:"),
        "{commands}"
    );
    // The replay runs the plan the results keep; the command says only where.
    let plan_path = cell.results().join("cell.json");
    assert!(
        lines[2].contains(&format!(" replay --plan {} --traces ", plan_path.display())),
        "{commands}"
    );
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_path).expect("cell.json"))
            .expect("json");
    let replay = &plan["workload"]["replay"];
    assert_eq!(
        (
            &replay["model"],
            &replay["api"],
            &replay["format"],
            &replay["users"],
            &replay["duration"]
        ),
        (
            &serde_json::json!("llama-3.1-8b"),
            &serde_json::json!("completions"),
            &serde_json::json!("kvct"),
            &serde_json::json!(8),
            &serde_json::json!(14.0)
        ),
        "{replay}"
    );

    let cell_json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(cell.results().join("cell.json")).expect("cell.json"),
    )
    .expect("cell.json is JSON");
    assert_eq!(cell_json["cell"]["users"], 8);
    assert_eq!(cell_json["engine"], "sim");
    assert_eq!(cell_json["offload_gib"], 256.0);
    let versions = Versions::read(&cell.results()).expect("versions.json reads as Versions");
    // Written by the kvsweep that finished the cell, naming the one that rendered the script.
    assert_eq!(versions.kvsweep, kvsweep::VERSION);
    assert_eq!(versions.rendered_by, kvsweep::VERSION);
    assert_eq!(versions.engine, kvsweep::plan::engine::EngineKind::Sim);
    assert!(
        std::fs::read_to_string(cell.results().join("server.log"))
            .expect("log")
            .contains("GET /health")
    );
    // The engine was stopped.
    assert!(
        TcpStream::connect(("127.0.0.1", cell.port)).is_err(),
        "engine still listening"
    );
}

#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs python3 and curl")]
fn a_failed_replay_is_a_failed_cell_that_keeps_its_results() {
    let cell = Cell::render(&[]);
    let out = cell.run(&[("FAKE_REPLAY_RC", "1")]);
    assert_eq!(out.status.code(), Some(1));
    let status = cell.status();
    assert_eq!(status["status"], "failed");
    assert_eq!(status["reason"], "the replay failed");
    assert_eq!(status["exit_code"], 1);
    assert!(cell.files().contains(&"requests.csv".to_owned()));
    assert!(!cell.files().contains(&"raw_dump.jsonl".to_owned()));
}

#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs python3 and curl")]
fn an_engine_that_dies_fails_fast_with_its_log_tail() {
    let cell = Cell::render(&[]);
    let out = cell.run(&[("FAKE_ENGINE", "dead")]);
    assert!(!out.status.success());
    let status = cell.status();
    assert_eq!(status["status"], "failed");
    assert_eq!(
        status["reason"],
        "the engine exited before it became healthy"
    );
    assert!(common::stderr(&out).contains("fake engine: unknown flag --frobnicate"));
    // As run-cell's: the log's end in status.json too.
    let tail = status["server_log_tail"].as_str().expect("server_log_tail");
    assert!(tail.contains("unknown flag --frobnicate"), "{status}");
    let log = std::fs::read_to_string(cell.results().join("server.log")).expect("server.log");
    assert!(log.contains("unknown flag --frobnicate"));
    assert!(
        cell.state("replay-argv").is_empty(),
        "the replay must not start"
    );
}

#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs python3 and curl")]
fn a_kvsweep_that_cannot_finish_the_cell_still_leaves_a_failed_status() {
    let cell = Cell::render(&[]);
    let missing = cell.dir.path().join("no-such-kvsweep");
    let out = cell.run(&[("REAL_KVSWEEP", missing.to_str().expect("utf-8"))]);
    // The replay went well, but without kvsweep's finish step the cell is no result.
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let status = cell.status();
    assert_eq!(status["status"], "failed");
    assert_eq!(status["reason"], "kvsweep cell finish did not run");
    assert_eq!(status["exit_code"], 0);
}

#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs python3 and curl")]
fn an_engine_that_dies_late_in_start_up_fails_at_its_exit_not_at_the_health_timeout() {
    let cell = Cell::render(&["--health-timeout", "600"]);
    let out = cell.run(&[("FAKE_ENGINE", "late")]);
    assert!(!out.status.success());
    // Ended by the exit: at the 600 s timeout the reason would say "did not become healthy".
    assert_eq!(
        cell.status()["reason"],
        "the engine exited before it became healthy"
    );
    assert!(common::stderr(&out).contains("Engine core initialization failed"));
}

#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs python3 and curl")]
fn an_engine_that_never_answers_times_out() {
    let cell = Cell::render(&["--health-timeout", "2"]);
    let start = Instant::now();
    let out = cell.run(&[("FAKE_ENGINE", "hang")]);
    // Over before the hung engine's own end (it sleeps 600 s): the timeout stopped it.
    assert!(start.elapsed() < Duration::from_secs(600));
    assert!(!out.status.success());
    assert_eq!(
        cell.status()["reason"],
        "the engine did not become healthy within 2s"
    );
}

#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs python3 and curl")]
fn a_non_empty_results_directory_is_refused_and_left_alone() {
    let cell = Cell::render(&[]);
    std::fs::create_dir_all(cell.results()).expect("mkdir");
    write(&cell.results(), "precious.txt", "keep me");
    let out = cell.run(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(common::stderr(&out).contains("is not empty"));
    assert_eq!(cell.files(), ["precious.txt"]);
}

#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs python3 and curl")]
fn a_terminated_run_stops_the_replay_and_says_so() {
    let cell = Cell::render(&[]);
    let child = cell.spawn(&[("FAKE_REPLAY", "slow")]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while cell.state("replay-pid").trim().is_empty() {
        assert!(Instant::now() < deadline, "the replay never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    let script_pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &script_pid])
            .status()
            .expect("kill")
            .success()
    );
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130));
    let status = cell.status();
    assert_eq!(status["status"], "failed");
    assert_eq!(status["reason"], "interrupted by a signal");
    let replay_pid = cell.state("replay-pid");
    let alive = Command::new("kill")
        .args(["-0", replay_pid.trim()])
        .status()
        .expect("kill");
    assert!(!alive.success(), "the replay was left running");
}

#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs python3 and curl")]
fn hostile_values_reach_the_engine_intact_and_inject_nothing() {
    let dir_marker = std::env::temp_dir().join(format!("kvsweep-pwned-{}", std::process::id()));
    let hostile = format!(
        "my model $(touch {0}) `touch {0}` \"q\" 'x'; touch {0}",
        dir_marker.display()
    );
    let cell = Cell::render(&["--model", &hostile]);
    let out = cell.run(&[]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(!dir_marker.exists(), "the model name was executed");
    let argv = cell.state("engine-argv");
    let args: Vec<&str> = argv.lines().collect();
    let i = args.iter().position(|a| *a == "--model").expect("--model");
    assert_eq!(args[i + 1], hostile);
    let plan: serde_json::Value =
        serde_json::from_str(&cell.state("replay-plan")).expect("the replay's plan");
    assert_eq!(plan["workload"]["replay"]["model"], hostile.as_str());
}

#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs python3 and curl")]
fn planted_tokens_never_reach_the_artifact() {
    // A runner whose engine environment holds a secret, and secrets in the script's environment
    // that the engine prints to its log.
    let runners = tempfile::tempdir().expect("tempdir");
    let cpu = std::fs::read_to_string(repo_root().join("runners/cpu.yaml")).expect("cpu.yaml");
    let cpu = cpu.replacen(
        "  sim:\n    args: [--runner, h100]\n",
        "  sim:\n    args: [--runner, h100]\n    env:\n      SIM_API_TOKEN: tok_planted_in_the_runner_1234\n",
        1,
    );
    assert!(
        cpu.contains("tok_planted_in_the_runner_1234"),
        "the runner file changed shape"
    );
    write(runners.path(), "cpu.yaml", &cpu);
    std::fs::copy(
        repo_root().join("runners/h100.yaml"),
        runners.path().join("h100.yaml"),
    )
    .expect("copy runner");
    let cell = Cell::render(&["--runners-dir", runners.path().to_str().expect("utf-8")]);
    let hf = "hf_planted_in_the_environment_5678";
    let gh = "ghp_planted_in_the_environment_9012";
    let out = cell.run(&[
        ("HF_TOKEN", hf),
        ("GITHUB_TOKEN", gh),
        ("FAKE_ENGINE_SAYS", &format!("token {hf} and {gh} loaded")),
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let log = std::fs::read_to_string(cell.results().join("server.log")).expect("server.log");
    assert!(
        log.contains("token [redacted] and [redacted] loaded"),
        "{log}"
    );
    let commands = std::fs::read_to_string(cell.results().join("commands.txt")).expect("commands");
    assert!(
        commands.contains("SIM_API_TOKEN=\\[redacted\\]")
            || commands.contains("SIM_API_TOKEN=[redacted]"),
        "{commands}"
    );
    for entry in std::fs::read_dir(cell.results()).expect("results") {
        let path = entry.expect("entry").path();
        let text = String::from_utf8_lossy(&std::fs::read(&path).expect("read")).into_owned();
        for secret in [hf, gh, "tok_planted_in_the_runner_1234"] {
            assert!(!text.contains(secret), "{} holds {secret}", path.display());
        }
    }
}
