//! The end of a cell, one step for both ways of running it: the rendered script's exit trap
//! calls `kvsweep cell finish`, and `run-cell` calls [`finish`] in-process. Once the processes
//! are stopped it keeps the end of the server log (capped, secrets redacted), writes
//! `versions.json` and `status.json`, and leaves only the whitelisted files, so the two paths
//! cannot drift apart in what a cell's artifact holds.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use anyhow::{Context, Result};

use crate::base::runner::ContainerRuntime;
use crate::data::artifact::schema::{CellPlan, CellState, JsonArtifact, Status, Versions};
use crate::data::artifact::{self, SERVER_LOG_CAP_BYTES};
use crate::plan::engine::process;

/// How many lines of the server log a status keeps when the engine is why the cell failed.
pub(crate) const LOG_TAIL_LINES: usize = 30;

/// Steps of a cell that the rendered runner script hands to kvsweep.
#[derive(Debug, clap::Args)]
pub struct CellCommand {
    #[command(subcommand)]
    pub step: CellStep,
}

#[derive(Debug, clap::Subcommand)]
pub enum CellStep {
    /// Finish a cell whose processes have stopped: keep the server log's end (secrets
    /// redacted), write versions.json and status.json, delete what is not on the whitelist.
    Finish(FinishArgs),
}

/// How the runner script ended, as its exit trap knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScriptState {
    /// The replay finished.
    Ok,
    Failed,
}

#[derive(Debug, clap::Args)]
pub struct FinishArgs {
    /// The cell's results directory, holding its cell.json.
    pub dir: PathBuf,
    #[arg(long, value_enum)]
    pub status: ScriptState,
    #[arg(long)]
    pub reason: String,
    /// The script's exit status: an `ok` cell whose script did not exit 0 failed.
    #[arg(long, allow_negative_numbers = true)]
    pub exit_code: i32,
    /// When the cell started (RFC 3339, UTC).
    #[arg(long)]
    pub started_at: Option<String>,
    /// The engine's log; its end is kept as server.log. Missing when no engine was started.
    #[arg(long)]
    pub(crate) server_log: Option<PathBuf>,
    /// The engine is why the cell failed: status.json and stderr get the log's last lines.
    #[arg(long)]
    pub server_log_tail: bool,
    /// The kvsweep version that rendered the script.
    #[arg(long)]
    pub rendered_by: String,
    /// How the runner starts its engines.
    #[arg(long, value_enum)]
    pub container: ContainerRuntime,
}

/// What the finish step keeps besides the status.
pub struct Finish<'a> {
    /// The engine's own log (in a work directory); `None` when no engine was started.
    pub(crate) server_log: Option<&'a Path>,
    /// The engine's environment, whose secrets are redacted as this process's are.
    pub(crate) engine_env: &'a [(String, String)],
    pub versions: &'a Versions,
}

/// Finishes a cell whose processes have stopped: `server.log` (the log's last
/// [`SERVER_LOG_CAP_BYTES`], secrets redacted), `versions.json`, `status.json` (with its
/// `finished_at`, written atomically), then [`artifact::prune`] to the whitelist.
pub fn finish(dir: &Path, status: &mut Status, what: &Finish<'_>) -> Result<()> {
    if let Some(log) = what.server_log.filter(|l| l.exists())
        && let Err(e) = keep_server_log(log, &dir.join("server.log"), what.engine_env)
    {
        // The cell's status matters more than its log: say so and go on.
        eprintln!("kvsweep: cannot keep the server log: {e:#}");
    }
    status.server_log_tail = status
        .server_log_tail
        .take()
        .map(|t| artifact::redact(&t, what.engine_env));
    what.versions.write(dir)?;
    status.finished_at = Some(rfc3339(SystemTime::now()));
    status.write(dir)?;
    artifact::prune(dir)
}

/// Copies the end of the engine's log into the cell and redacts the secrets in it.
fn keep_server_log(log: &Path, kept: &Path, env: &[(String, String)]) -> Result<()> {
    process::copy_tail(log, kept, SERVER_LOG_CAP_BYTES)?;
    let text = std::fs::read(kept).with_context(|| format!("cannot read {}", kept.display()))?;
    let clean = artifact::redact(&String::from_utf8_lossy(&text), env);
    // Rewritten only when a secret was in it, so a log that is not UTF-8 stays byte for byte.
    if clean.as_bytes() != text {
        std::fs::write(kept, clean).with_context(|| format!("cannot write {}", kept.display()))?;
    }
    Ok(())
}

/// `versions.json` of a cell planned as `plan`, run by this kvsweep on this host.
pub fn versions(plan: &CellPlan, container: ContainerRuntime, rendered_by: &str) -> Versions {
    Versions {
        format_version: Versions::VERSION,
        kvsweep: crate::VERSION.to_owned(),
        rendered_by: rendered_by.to_owned(),
        engine: plan.engine,
        image: plan.image.clone(),
        container,
        host: host_name(),
        gpu_driver: gpu_driver(),
    }
}

/// This machine's host name, `unknown` where the kernel does not say.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// The GPU driver's version: what `nvidia-smi` reports, else the first line of `amd-smi
/// version`, else `unknown` (a CPU runner, or a tool that fails).
pub fn gpu_driver() -> String {
    let probes: [(&str, &[&str]); 2] = [
        (
            "nvidia-smi",
            &["--query-gpu=driver_version", "--format=csv,noheader"],
        ),
        ("amd-smi", &["version"]),
    ];
    probes
        .iter()
        .find_map(|(program, args)| first_line(program, args))
        .unwrap_or_else(|| "unknown".into())
}

/// The first non-empty line a program prints, when it runs and succeeds.
fn first_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}

/// RFC 3339 in UTC, to the second.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Says on stderr how a cell ended, with the server log's end where the engine is why.
pub(crate) fn announce(name: &str, status: &Status, dir: &Path) {
    eprintln!(
        "kvsweep: cell {name} finished: {} ({}); results in {}",
        status.status.as_str(),
        status.reason,
        dir.display()
    );
    if let Some(tail) = &status.server_log_tail {
        eprintln!("kvsweep: last lines of the server log:\n{tail}");
    }
}

/// `kvsweep cell ...`.
pub fn run(cmd: &CellCommand) -> Result<()> {
    match &cmd.step {
        CellStep::Finish(args) => finish_script(args),
    }
}

/// `kvsweep cell finish`: the runner script's end, after its trap stopped the processes.
fn finish_script(a: &FinishArgs) -> Result<()> {
    let plan = CellPlan::read(&a.dir).context("cannot finish the cell without its plan")?;
    let (state, reason) = match (a.status, a.exit_code) {
        (ScriptState::Ok, 0) => (CellState::Ok, a.reason.clone()),
        (ScriptState::Ok, rc) => (
            CellState::Failed,
            format!("the script exited with status {rc}"),
        ),
        (ScriptState::Failed, _) => (CellState::Failed, a.reason.clone()),
    };
    let mut status = Status {
        cell: Some(plan.cell.name.clone()),
        started_at: a.started_at.clone(),
        exit_code: Some(a.exit_code),
        ..Status::new(state, reason)
    };
    if a.server_log_tail
        && let Some(log) = &a.server_log
    {
        status.server_log_tail = Some(process::log_tail(log, LOG_TAIL_LINES));
    }
    let versions = versions(&plan, a.container, &a.rendered_by);
    let what = Finish {
        server_log: a.server_log.as_deref(),
        engine_env: &[],
        versions: &versions,
    };
    finish(&a.dir, &mut status, &what)?;
    announce(&plan.cell.name, &status, &a.dir);
    Ok(())
}
