//! `kvsweep sweep --local`: every cell of a sweep on this machine, one after another, into
//! `OUT/cells/<cell>/`, then the collect step over them. A re-run skips the cells whose status is
//! already ok, so an interrupted sweep resumes where it stopped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::runtime::Handle;

use crate::base::runner::RunnerSet;
use crate::base::shutdown::Shutdown;
use crate::data::artifact::schema::{CellPlan, CellState, JsonArtifact, Status, Summary};
use crate::plan::render::{self, CellOverrides};
use crate::plan::spec::{self, LoadOptions};
use crate::run::run_cell;

/// Run a whole sweep on this machine, then collect it into tables, Pareto frontiers and a report.
#[derive(Debug, Clone, clap::Args)]
pub struct SweepArgs {
    /// The sweep spec (InferenceX or native shape).
    pub spec: PathBuf,
    /// Run the cells on this machine (for a cluster, see `kvsweep slurm submit`).
    #[arg(long, required = true)]
    pub local: bool,
    /// The sweep's directory: `cells/<cell>/` for each cell, then the collected results.
    #[arg(long)]
    pub out: PathBuf,
    /// The entry of an InferenceX-shape spec.
    #[arg(long)]
    pub key: Option<String>,
    /// Only this runner's cells (required for InferenceX-shape specs).
    #[arg(long)]
    pub runner: Option<String>,
    /// Run every cell again, even those whose last run was ok.
    #[arg(long)]
    pub rerun: bool,
    /// Run each cell this many times (over the spec's `repeats:`), into `cells/<cell>/repeat-K/`.
    #[arg(long)]
    pub repeats: Option<u32>,
    #[command(flatten)]
    pub overrides: CellOverrides,
}

/// Whether a cell directory's `status.json` says the cell ran ok, with its plan and summary in
/// this kvsweep's formats. An artifact that does not read (another version's, a hand-edited
/// one) is said on stderr and the cell runs again.
fn ran_ok(dir: &Path) -> bool {
    if !dir.join(Status::FILE).exists() {
        return false;
    }
    // A cell an older kvsweep left (artifacts of another format_version) runs again, rather
    // than being skipped here and refused by collect.
    let current_and_ok = || -> anyhow::Result<bool> {
        if Status::read(dir)?.status != CellState::Ok {
            return Ok(false);
        }
        let plan = CellPlan::read(dir)?;
        if plan.workload.tester_kind().is_none() {
            Summary::read(dir)?;
        }
        Ok(true)
    };
    match current_and_ok() {
        Ok(ok) => ok,
        Err(e) => {
            eprintln!("kvsweep: {e:#}; running the cell again");
            false
        }
    }
}

fn short(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

pub fn run(
    args: &SweepArgs,
    runners: &RunnerSet,
    runtime: &Handle,
    shutdown: &Shutdown,
) -> Result<()> {
    let sweep = spec::load(
        &args.spec,
        LoadOptions {
            key: args.key.as_deref(),
            runner: args.runner.as_deref(),
            runners,
        },
    )?;
    let cells_dir = args.out.join("cells");
    std::fs::create_dir_all(&cells_dir)
        .with_context(|| format!("cannot create {}", cells_dir.display()))?;
    let mut overrides = args.overrides.clone();
    // Cells run one at a time on this host: each engine gets a free port.
    overrides.port = 0;
    let repeats = crate::base::repeats::resolve(args.repeats, sweep.settings.repeats)?;
    let mut plans = Vec::new();
    for cell in &sweep.cells {
        let runner = render::cell_runner(&sweep, cell, runners)?;
        plans.push((render::plan(&sweep, cell, runner, &overrides)?, runner));
    }
    let interrupt = shutdown.watch()?;
    // Traces named by URL are fetched before the first cell: a bad URL or checksum stops the
    // sweep here instead of failing (and downloading again for) every cell.
    for (plan, _) in &mut plans {
        runtime.block_on(run_cell::fetch_traces(plan))?;
    }

    // Each repeat is a run of its own, with its own folder, status and resume.
    let cells = &cells_dir;
    let plans: Vec<_> = plans
        .into_iter()
        .flat_map(|(plan, runner)| {
            (1..=repeats).map(move |k| {
                let dir = crate::base::repeats::dir(&cells.join(&plan.cell.name), k, repeats);
                let mut plan = plan.clone();
                plan.workload = crate::base::repeats::workload(&plan.workload, k, repeats);
                (plan, runner, dir)
            })
        })
        .collect();
    let total = plans.len();
    let started = Instant::now();
    let mut ran = 0u32;
    let (mut ok, mut not_ok) = (0u32, Vec::new());
    eprintln!(
        "sweep {}: {total} cells into {}",
        sweep.settings.name,
        args.out.display()
    );
    for (i, (mut plan, runner, dir)) in plans.into_iter().enumerate() {
        let n = i + 1;
        if !args.rerun && ran_ok(&dir) {
            eprintln!("[{n}/{total}] {}: ok before, skipped", plan.cell.name);
            ok += 1;
            continue;
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot clear {}", dir.display()))?;
        }
        let eta = (ran > 0).then(|| {
            let left = (total - i) as u32;
            short(started.elapsed() / ran * left)
        });
        eprintln!(
            "[{n}/{total}] {}: running (elapsed {}{})",
            plan.cell.name,
            short(started.elapsed()),
            eta.map(|e| format!(", about {e} left")).unwrap_or_default()
        );
        plan.port = run_cell::free_port()?;
        let status = runtime.block_on(run_cell::run_planned(
            &plan,
            runner,
            &dir,
            interrupt.clone(),
            None,
        ))?;
        ran += 1;
        eprintln!(
            "[{n}/{total}] {}: {} ({})",
            plan.cell.name,
            status.status.as_str(),
            status.reason
        );
        if status.status == CellState::Ok {
            ok += 1;
        } else {
            not_ok.push(format!("{} ({})", plan.cell.name, status.status.as_str()));
        }
        if let Some(why) = interrupt.borrow().clone() {
            bail!(
                "sweep stopped: {why}; {ok} of {total} cells ok so far; run the same command again to resume"
            );
        }
    }
    eprintln!(
        "sweep {}: {ok} of {total} cells ok in {}{}",
        sweep.settings.name,
        short(started.elapsed()),
        if not_ok.is_empty() {
            String::new()
        } else {
            format!("; not ok: {}", not_ok.join(", "))
        }
    );
    crate::cli::collect::collect_sweep(&cells_dir, &args.out, runners)
}
