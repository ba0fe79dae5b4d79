//! Talking to Slurm: `sinfo` (what GPUs a partition offers), `sbatch`, `squeue`, `scancel`, and
//! each cell's state from the queue and from its `status.json`.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::Manifest;
use crate::base::runner::Runner;
use crate::data::artifact::schema::{CellState, JsonArtifact, Status};

/// Where a cell of a submitted sweep stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TaskState {
    Pending,
    Running,
    Ok,
    Partial,
    Failed,
    /// Its status still says running, but its task is gone: it was killed.
    Unfinished,
    /// Its task is gone and it left no status: cancelled before it started, or lost.
    Missing,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Ok => "ok",
            TaskState::Partial => "partial",
            TaskState::Failed => "failed",
            TaskState::Unfinished => "unfinished",
            TaskState::Missing => "missing",
        }
    }

    pub(crate) fn is_active(self) -> bool {
        matches!(self, TaskState::Pending | TaskState::Running)
    }

    pub(crate) fn needs_rerun(self) -> bool {
        matches!(
            self,
            TaskState::Partial | TaskState::Failed | TaskState::Unfinished | TaskState::Missing
        )
    }
}

/// One cell's state, with the array task it belongs to.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CellStatus {
    pub cell: String,
    pub state: TaskState,
    /// `JOBID_INDEX` of the cell's latest submission.
    pub job: String,
    pub reason: String,
}

fn run(cmd: &mut Command) -> Result<std::process::Output> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.output().with_context(|| {
        format!("cannot run `{program}`: is this a Slurm login node (is {program} on PATH)?")
    })
}

/// A GRES entry of `sinfo -o %G`: `gpu:h100:4(S:0-1)` → ("gpu", Some("h100"), 4).
fn parse_gres(entry: &str) -> Option<(String, Option<String>, u32)> {
    let entry = entry.split('(').next()?.trim();
    let parts: Vec<&str> = entry.split(':').collect();
    match parts.as_slice() {
        [name, kind, count] => Some(((*name).into(), Some((*kind).into()), count.parse().ok()?)),
        [name, count] => Some(((*name).into(), None, count.parse().ok()?)),
        _ => None,
    }
}

/// Refuses, before anything is submitted, a GRES request no node of the partition can meet.
/// Where `sinfo` is missing or says nothing, sbatch is left to decide.
pub(crate) fn check_gres(runner: &Runner, gres: &str) -> Result<()> {
    let Some((_, want_type, want)) = parse_gres(gres) else {
        return Ok(());
    };
    let mut cmd = Command::new("sinfo");
    cmd.args(["--noheader", "--format=%G"]);
    if let Some(p) = &runner.slurm.partition {
        cmd.arg(format!("--partition={p}"));
    }
    let Ok(out) = cmd.output() else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let offers: Vec<String> = text
        .lines()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect();
    if !out.status.success() || offers.is_empty() {
        return Ok(());
    }
    let fits = offers
        .iter()
        .filter_map(|e| parse_gres(e))
        .any(|(name, kind, count)| {
            name == "gpu" && count >= want && (want_type.is_none() || kind == want_type)
        });
    if fits {
        return Ok(());
    }
    bail!(
        "runner `{}` asks for --gres={gres}, but {} offers {}: no job was submitted. \
         Pick the runner that matches this cluster (--runner), or fix slurm.gres_type in its runner file",
        runner.name,
        runner
            .slurm
            .partition
            .as_deref()
            .map_or_else(|| "the cluster".to_owned(), |p| format!("partition `{p}`")),
        offers.join(", ")
    )
}

/// Submits a script; returns the job id.
pub fn sbatch(script: &Path) -> Result<String> {
    let out = run(Command::new("sbatch").arg("--parsable").arg(script))?;
    if !out.status.success() {
        bail!(
            "sbatch refused {}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text.trim().split(';').next().unwrap_or_default().to_owned();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        bail!(
            "sbatch printed no job id for {}: `{}`",
            script.display(),
            text.trim()
        );
    }
    Ok(id)
}

/// Queue states of the manifest's array tasks, by `JOBID_INDEX`.
fn queued(m: &Manifest) -> Result<HashMap<String, String>> {
    if m.jobs.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<&str> = m.jobs.iter().map(|j| j.job_id.as_str()).collect();
    let out = run(Command::new("squeue").args([
        "--array",
        "--noheader",
        "--format=%i|%T",
        &format!("--jobs={}", ids.join(",")),
    ]))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Jobs that have left the queue are "invalid" to squeue: nothing of them is queued.
    if !out.status.success() && !stderr.contains("Invalid job id") {
        bail!("squeue failed: {}", stderr.trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (id, state) = l.trim().split_once('|')?;
            Some((id.to_owned(), state.to_owned()))
        })
        .collect())
}

/// Every cell of the manifest, by its latest submission.
pub(crate) fn cell_states(m: &Manifest) -> Result<Vec<CellStatus>> {
    let queue = queued(m)?;
    let mut latest: Vec<(String, String)> = Vec::new();
    for job in &m.jobs {
        for (i, cell) in job.cells.iter().enumerate() {
            let task = format!("{}_{i}", job.job_id);
            match latest.iter_mut().find(|(c, _)| c == cell) {
                Some(entry) => entry.1 = task,
                None => latest.push((cell.clone(), task)),
            }
        }
    }
    let cells_dir = m.cells_dir();
    latest
        .into_iter()
        .map(|(cell, job)| {
            let (state, reason) = match queue.get(&job).map(String::as_str) {
                Some("PENDING") => (TaskState::Pending, String::new()),
                Some(s) if !s.is_empty() => (TaskState::Running, s.to_lowercase()),
                _ => from_status(&cells_dir.join(&cell))?,
            };
            Ok(CellStatus {
                cell,
                state,
                job,
                reason,
            })
        })
        .collect()
}

/// A finished task's state, from what its cell wrote.
fn from_status(dir: &Path) -> Result<(TaskState, String)> {
    if !dir.join(Status::FILE).exists() {
        return Ok((
            TaskState::Missing,
            "no status.json: cancelled before it started, or lost (see slurm/logs)".into(),
        ));
    }
    let status = Status::read(dir)?;
    let state = match status.status {
        CellState::Ok => TaskState::Ok,
        CellState::Partial => TaskState::Partial,
        CellState::Failed => TaskState::Failed,
        CellState::Running => {
            return Ok((
                TaskState::Unfinished,
                "its status still says running but its task is gone: killed".into(),
            ));
        }
    };
    Ok((state, status.reason))
}

/// `3 ok, 1 running, 2 pending`.
pub(crate) fn tally(states: &[CellStatus]) -> String {
    let mut counts: Vec<(TaskState, usize)> = Vec::new();
    for s in states {
        match counts.iter_mut().find(|(k, _)| *k == s.state) {
            Some((_, n)) => *n += 1,
            None => counts.push((s.state, 1)),
        }
    }
    counts.sort_by_key(|(k, _)| *k as u8);
    let parts: Vec<String> = counts
        .iter()
        .map(|(k, n)| format!("{n} {}", k.as_str()))
        .collect();
    format!("{} cells: {}", states.len(), parts.join(", "))
}

/// Cancels the manifest's jobs.
pub fn cancel(m: &Manifest) -> Result<()> {
    if m.jobs.is_empty() {
        return Ok(());
    }
    let out = run(Command::new("scancel").args(m.jobs.iter().map(|j| j.job_id.as_str())))?;
    if !out.status.success() {
        bail!(
            "scancel failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
