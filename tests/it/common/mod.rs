//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The kvsweep binary built for this test run.
pub fn kvsweep() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kvsweep"))
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the command starts")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs kvsweep with `args`, expecting success, and returns stdout.
pub fn kvsweep_ok(args: &[&str]) -> String {
    let out = run(kvsweep().args(args));
    assert!(
        out.status.success(),
        "kvsweep {args:?} failed:\n{}",
        stderr(&out)
    );
    stdout(&out)
}

/// Runs kvsweep with `args`, expecting failure, and returns stderr.
pub fn kvsweep_err(args: &[&str]) -> String {
    let out = run(kvsweep().args(args));
    assert!(
        !out.status.success(),
        "kvsweep {args:?} should have failed; stdout:\n{}",
        stdout(&out)
    );
    stderr(&out)
}

/// A JSON file's value; a file that is missing or not JSON fails the test naming the file.
pub fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A CSV file's rows as column → value maps.
pub fn csv_rows(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    csv::Reader::from_path(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .deserialize()
        .map(|r| r.expect("a complete row"))
        .collect()
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write test file");
    path
}

/// Fails with a pointer to the install script when a tool the suite relies on is missing: a test
/// that silently skips would pass without checking anything.
pub fn require_tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("`{name}` is not on PATH: run scripts/install-test-deps.sh (scripts/test.sh does)")
    })
}

/// Asserts that shellcheck finds nothing, style included, in the bash `scripts`. Only in the
/// whole suite (the `external-tools` feature, with shellcheck installed by scripts/test.sh): the
/// fast tier still checks everything else a test asserts of its scripts.
pub fn assert_shellcheck_clean<P: AsRef<std::ffi::OsStr>>(scripts: impl IntoIterator<Item = P>) {
    if !cfg!(feature = "external-tools") {
        return;
    }
    let out = run(Command::new(require_tool("shellcheck"))
        .args(["--shell=bash", "--severity=style"])
        .args(scripts));
    assert!(
        out.status.success(),
        "shellcheck findings:\n{}",
        stdout(&out)
    );
}

pub mod aiperf;
pub mod cells;
pub mod sim;

/// Writes `cell`'s files as its repeat `k`, `parent/<name>/repeat-K`, as a sweep with `repeats:`
/// leaves them; returns that directory. (Not in `cells.rs`: the collect benchmark shares that
/// file and has no repeats.)
pub fn write_repeat(cell: &cells::SyntheticCell, parent: &Path, k: u32) -> PathBuf {
    let dir = parent.join(&cell.name);
    let staging = dir.join(format!("staging-{k}"));
    let written = cell.write(&staging);
    let repeat = dir.join(format!("repeat-{k}"));
    std::fs::rename(&written, &repeat).expect("move the repeat into place");
    std::fs::remove_dir(&staging).expect("remove the staging folder");
    repeat
}

/// A Mooncake trace of short multi-turn sessions, each unlike the others, so that replays with
/// different seeds (which shuffle the sessions) sample different workloads.
pub struct SessionTrace {
    pub sessions: u32,
    /// Turns of session `s`: `s % turns_mod + 1`.
    pub turns_mod: u32,
    /// Turn `k`'s prompt is `prompt_block × (k + 1)` tokens over the hash ids `s*10 ..= s*10+k`
    /// (each turn extends the one before).
    pub prompt_block: u32,
    /// Output tokens of session `s`: `output.0 + output.1 × (s % output.2)`.
    pub output: (u32, u32, u32),
    /// Think time before each turn of session `s` in ms, `delay.0 + delay.1 × (s % 5)`; none
    /// when `None`.
    pub delay: Option<(u32, u32)>,
}

impl SessionTrace {
    /// Writes the trace as `dir/name`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let mut text = String::new();
        for s in 0..self.sessions {
            let delay = self
                .delay
                .map(|(base, step)| format!(",\"delay\":{}", base + step * (s % 5)))
                .unwrap_or_default();
            for k in 0..=(s % self.turns_mod) {
                let hash_ids: Vec<String> = (0..=k).map(|j| (s * 10 + j).to_string()).collect();
                let (base, step, modulo) = self.output;
                text.push_str(&format!(
                    "{{\"timestamp\":0,\"input_length\":{},\"output_length\":{},\"hash_ids\":[{}],\"session_id\":\"s{s}\"{delay}}}\n",
                    self.prompt_block * (k + 1),
                    base + step * (s % modulo),
                    hash_ids.join(",")
                ));
            }
        }
        write(dir, name, &text)
    }
}

/// The plan a rendered runner script writes into its results (cell.json, a here-document in the
/// script), which its `kvsweep replay --plan` or `kvsweep test --plan` runs.
pub fn script_plan(script: &str) -> serde_json::Value {
    let start = "<<'KVSWEEP_CELL_JSON'\n";
    let body = script
        .split_once(start)
        .and_then(|(_, rest)| rest.split_once("\nKVSWEEP_CELL_JSON\n"))
        .map(|(json, _)| json)
        .expect("the script writes cell.json");
    serde_json::from_str(body).expect("cell.json in the script is JSON")
}
