//! `kvsweep slurm`: a sweep as Slurm array jobs, one array task per cell.
//!
//! `submit` renders an sbatch script per (runner, tp) group (`templates/sweep.sbatch.j2`: typed
//! GRES, `--exclusive`, `--mem=0`, a time limit from the duration), checks the partition offers
//! the GPUs it asks for, submits, and writes a manifest (`OUT/slurm-manifest.json`) naming the
//! job and cell of every array index. `status`, `cancel` and `resubmit --failed` work from the
//! manifest, so they only ever touch the jobs this sweep submitted.

pub mod queue;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use crate::base::runner::{ContainerRuntime, Runner, RunnerSet, Vendor};
use crate::base::shutdown::Shutdown;
use crate::base::workload::Workload;
use crate::plan::render::{self, CellOverrides};
use crate::plan::spec::{self, Cell, LoadOptions, Sweep};
use queue::TaskState;

const TEMPLATE: &str = include_str!("../../../templates/sweep.sbatch.j2");
const MANIFEST: &str = "slurm-manifest.json";

/// Submit, watch and cancel a sweep on a Slurm cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct SlurmArgs {
    #[command(subcommand)]
    pub action: SlurmAction,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum SlurmAction {
    /// Render and submit the sweep as array jobs; write the manifest.
    Submit(Box<SubmitArgs>),
    /// The state of every cell of a submitted sweep.
    Status(ManifestArgs),
    /// Cancel the jobs this sweep submitted (and only those).
    Cancel(ManifestArgs),
    /// Submit again the cells that failed, stopped early or never ran.
    Resubmit(ResubmitArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct SubmitArgs {
    /// The sweep spec (InferenceX or native shape).
    pub spec: PathBuf,
    /// The sweep's directory on a filesystem the compute nodes share.
    #[arg(long)]
    pub out: PathBuf,
    /// The entry of an InferenceX-shape spec.
    #[arg(long)]
    pub key: Option<String>,
    /// Only this runner's cells (required for InferenceX-shape specs).
    #[arg(long)]
    pub runner: Option<String>,
    /// How many array tasks of a job may run at once.
    #[arg(long, default_value_t = 4)]
    max_parallel: u32,
    /// Render the scripts and print the sbatch commands without submitting.
    #[arg(long)]
    dry_run: bool,
    /// Wait in the foreground until every cell has finished (Ctrl-C cancels this sweep's jobs).
    #[arg(long)]
    pub wait: bool,
    /// The kvsweep binary the tasks run (default: this one; it must be on a shared path).
    #[arg(long)]
    pub kvsweep: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: CellOverrides,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ManifestArgs {
    /// The manifest, or the sweep directory holding slurm-manifest.json.
    #[arg(default_value = ".")]
    pub manifest: PathBuf,
    /// Print the states as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ResubmitArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// Resubmit the cells that failed, stopped early, or ended without a status.
    #[arg(long, required = true)]
    pub failed: bool,
    /// Wait in the foreground until they have finished.
    #[arg(long)]
    pub wait: bool,
}

/// One submitted array job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub job_id: String,
    pub runner: String,
    pub tp: u32,
    pub script: PathBuf,
    /// The cell of each array index.
    pub cells: Vec<String>,
}

/// `slurm-manifest.json`: what was submitted, and how to submit more of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub sweep: String,
    pub spec: PathBuf,
    pub out: PathBuf,
    pub kvsweep: PathBuf,
    pub key: Option<String>,
    pub runner: Option<String>,
    pub runners_dir: Option<PathBuf>,
    max_parallel: u32,
    /// The submit's overrides, which every task (and every resubmitted one) applies; render
    /// turns them into `kvsweep run-cell` flags for the script.
    pub overrides: CellOverrides,
    pub jobs: Vec<Job>,
}

impl Manifest {
    fn path_in(dir: &Path) -> PathBuf {
        dir.join(MANIFEST)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let path = if path.is_dir() {
            Self::path_in(path)
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {} (give the manifest or the sweep directory that `slurm submit` wrote)",
                path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a manifest", path.display()))
    }

    fn save(&self) -> Result<()> {
        crate::data::artifact::write_json_atomic(
            &Self::path_in(&self.out),
            &serde_json::to_value(self)?,
        )
    }

    fn cells_dir(&self) -> PathBuf {
        self.out.join("cells")
    }
}

/// The sbatch template's view of one array job.
#[derive(Serialize)]
struct ScriptContext<'a> {
    sweep_name: &'a str,
    kvsweep_version: &'a str,
    job_name: String,
    runner: &'a str,
    tp: u32,
    cells: &'a [String],
    max_parallel: u32,
    time_limit_min: u64,
    log_dir: String,
    gres: Option<String>,
    partition: Option<&'a str>,
    account: Option<&'a str>,
    exclude: Option<String>,
    cells_dir: String,
    kvsweep: String,
    enroot_image: Option<String>,
    enroot_file: String,
    run_cell_args: Vec<String>,
}

/// `--gres` for a cell of `tp` GPUs on `runner`: typed where the runner names a type.
pub fn gres(runner: &Runner, tp: u32) -> Option<String> {
    match (&runner.slurm.gres_type, runner.vendor) {
        (Some(t), _) => Some(format!("gpu:{t}:{tp}")),
        (None, Vendor::Cpu) => None,
        (None, _) => Some(format!("gpu:{tp}")),
    }
}

/// Minutes for a task: the replay's duration and drain and the engine's health timeout, once
/// per repeat (run-cell runs the spec's `repeats:` one after another), and a margin for loading
/// and stopping.
fn time_limit_min(plans: &[render::CellPlan], repeats: u32) -> u64 {
    let drain = |p: &render::CellPlan| match &p.workload {
        Workload::Replay(r) => r.drain,
        // A tester has no drain; the replay's default stands in as a margin.
        Workload::Test(_) => 30.0,
    };
    let secs = plans
        .iter()
        .map(|p| p.duration_s as f64 + drain(p) + p.health_timeout_s as f64)
        .fold(0.0, f64::max);
    ((secs * f64::from(repeats.max(1)) + 600.0) / 60.0).ceil() as u64
}

/// Cells grouped by (runner, tp): one array job each, since an array shares its resources.
fn groups<'a>(
    sweep: &'a Sweep,
    cells: &[&'a Cell],
    runners: &'a RunnerSet,
) -> Result<Vec<(&'a Runner, u32, Vec<&'a Cell>)>> {
    let mut out: Vec<(&Runner, u32, Vec<&Cell>)> = Vec::new();
    for cell in cells {
        let runner = render::cell_runner(sweep, cell, runners)?;
        match out
            .iter_mut()
            .find(|(r, tp, _)| r.name == runner.name && *tp == cell.tp)
        {
            Some((_, _, members)) => members.push(cell),
            None => out.push((runner, cell.tp, vec![cell])),
        }
    }
    Ok(out)
}

/// Renders one group's sbatch script; returns the job name, the script and the cells in
/// array-index order.
fn render_job(
    m: &Manifest,
    sweep: &Sweep,
    runner: &Runner,
    tp: u32,
    cells: &[&Cell],
    overrides: &CellOverrides,
) -> Result<(String, String, Vec<String>)> {
    let plans = cells
        .iter()
        .map(|c| render::plan(sweep, c, runner, overrides))
        .collect::<Result<Vec<_>>>()?;
    let names: Vec<String> = cells.iter().map(|c| c.name.clone()).collect();
    let job_name = format!("kvsweep-{}-{}-tp{tp}", sweep.settings.name, runner.name);
    let mut run_cell_args: Vec<String> = Vec::new();
    if let Some(dir) = &m.runners_dir {
        run_cell_args.extend(["--runners-dir".into(), dir.display().to_string()]);
    }
    run_cell_args.extend(["run-cell".into(), m.spec.display().to_string()]);
    if let Some(k) = &m.key {
        run_cell_args.extend(["--key".into(), k.clone()]);
    }
    if let Some(r) = &m.runner {
        run_cell_args.extend(["--runner".into(), r.clone()]);
    }
    run_cell_args.extend(m.overrides.to_args());
    let enroot_image = (runner.container == ContainerRuntime::Enroot)
        .then(|| plans.first().and_then(|p| p.image.clone()))
        .flatten();
    let ctx = ScriptContext {
        sweep_name: &sweep.settings.name,
        kvsweep_version: crate::VERSION,
        job_name: job_name.clone(),
        runner: &runner.name,
        tp,
        cells: &names,
        max_parallel: m.max_parallel.max(1),
        time_limit_min: time_limit_min(&plans, sweep.settings.repeats),
        log_dir: m.out.join("slurm/logs").display().to_string(),
        gres: gres(runner, tp),
        partition: runner.slurm.partition.as_deref(),
        account: runner.slurm.account.as_deref(),
        exclude: (!runner.slurm.exclude_nodes.is_empty())
            .then(|| runner.slurm.exclude_nodes.join(",")),
        cells_dir: m.cells_dir().display().to_string(),
        kvsweep: m.kvsweep.display().to_string(),
        enroot_file: enroot_image
            .as_deref()
            .map(render::image_file_name)
            .unwrap_or_default(),
        enroot_image,
        run_cell_args,
    };
    let mut env = render::shell_environment();
    env.add_template("sweep.sbatch", TEMPLATE)
        .context("the sbatch template does not parse")?;
    let script = env
        .get_template("sweep.sbatch")?
        .render(minijinja::value::Serde(&ctx))
        .context("cannot render the sbatch template")?;
    Ok((job_name, script + "\n", names))
}

/// Renders and submits jobs for `cells`, appending them to the manifest.
fn submit_cells(
    m: &mut Manifest,
    sweep: &Sweep,
    cells: &[&Cell],
    overrides: &CellOverrides,
    runners: &RunnerSet,
    dry_run: bool,
) -> Result<()> {
    let groups = groups(sweep, cells, runners)?;
    // Check every group before writing or submitting anything, so a bad runner leaves no trace.
    for (runner, tp, _) in &groups {
        if !dry_run && let Some(g) = gres(runner, *tp) {
            queue::check_gres(runner, &g)?;
        }
    }
    let script_dir = m.out.join("slurm");
    std::fs::create_dir_all(script_dir.join("logs"))
        .with_context(|| format!("cannot create {}", script_dir.display()))?;
    for (runner, tp, members) in groups {
        let (job_name, script, names) = render_job(m, sweep, runner, tp, &members, overrides)?;
        let path = script_dir.join(format!("{job_name}-{}.sbatch", m.jobs.len() + 1));
        std::fs::write(&path, script)
            .with_context(|| format!("cannot write {}", path.display()))?;
        if dry_run {
            println!("would run: sbatch --parsable {}", path.display());
            continue;
        }
        let job_id = queue::sbatch(&path)?;
        eprintln!(
            "submitted job {job_id}: {} cells of runner {} (tp {tp})",
            names.len(),
            runner.name
        );
        m.jobs.push(Job {
            job_id,
            runner: runner.name.clone(),
            tp,
            script: path,
            cells: names,
        });
        m.save()?;
    }
    Ok(())
}

fn load_sweep(m: &Manifest, runners: &RunnerSet) -> Result<Sweep> {
    Ok(spec::load(
        &m.spec,
        LoadOptions {
            key: m.key.as_deref(),
            runner: m.runner.as_deref(),
            runners,
        },
    )?)
}

fn submit(
    args: &SubmitArgs,
    runners: &RunnerSet,
    runners_dir: Option<&Path>,
    runtime: &Handle,
) -> Result<()> {
    let abs =
        |p: &Path| std::path::absolute(p).with_context(|| format!("bad path {}", p.display()));
    let out = abs(&args.out)?;
    if Manifest::path_in(&out).exists() && !args.dry_run {
        bail!(
            "{} already has a submitted sweep: see `kvsweep slurm status {}`, or resubmit with `kvsweep slurm resubmit --failed {}`",
            out.display(),
            out.display(),
            out.display()
        );
    }
    let kvsweep = match &args.kvsweep {
        Some(p) => abs(p)?,
        None => std::env::current_exe().context("cannot find the kvsweep binary")?,
    };
    let mut m = Manifest {
        sweep: String::new(),
        spec: abs(&args.spec)?,
        out,
        kvsweep,
        key: args.key.clone(),
        runner: args.runner.clone(),
        runners_dir: runners_dir.map(abs).transpose()?,
        max_parallel: args.max_parallel,
        overrides: CellOverrides {
            // The tasks run from another directory.
            traces: args.overrides.traces.as_deref().map(abs).transpose()?,
            ..args.overrides.clone()
        },
        jobs: Vec::new(),
    };
    let sweep = load_sweep(&m, runners)?;
    m.sweep = sweep.settings.name.clone();
    let cells: Vec<&Cell> = sweep.cells.iter().collect();
    let overrides = m.overrides.clone();
    submit_cells(&mut m, &sweep, &cells, &overrides, runners, args.dry_run)?;
    if args.dry_run {
        return Ok(());
    }
    eprintln!("manifest: {}", Manifest::path_in(&m.out).display());
    if args.wait {
        wait(&m, runtime)?;
    }
    Ok(())
}

fn resubmit(args: &ResubmitArgs, runners: &RunnerSet, runtime: &Handle) -> Result<()> {
    let mut m = Manifest::load(&args.manifest.manifest)?;
    let states = queue::cell_states(&m)?;
    let redo: Vec<String> = states
        .iter()
        .filter(|s| s.state.needs_rerun())
        .map(|s| s.cell.clone())
        .collect();
    if redo.is_empty() {
        eprintln!("nothing to resubmit: every cell is ok, queued or running");
        return Ok(());
    }
    let sweep = load_sweep(&m, runners)?;
    let cells: Vec<&Cell> = sweep
        .cells
        .iter()
        .filter(|c| redo.contains(&c.name))
        .collect();
    eprintln!("resubmitting {} cells: {}", cells.len(), redo.join(", "));
    let overrides = m.overrides.clone();
    submit_cells(&mut m, &sweep, &cells, &overrides, runners, false)?;
    if args.wait {
        wait(&m, runtime)?;
    }
    Ok(())
}

/// Polls until no cell is queued or running; Ctrl-C cancels this sweep's jobs.
fn wait(m: &Manifest, runtime: &Handle) -> Result<()> {
    let mut last = String::new();
    loop {
        let states = queue::cell_states(m)?;
        let line = queue::tally(&states);
        if line != last {
            eprintln!("{line}");
            last = line;
        }
        if states.iter().all(|s| !s.state.is_active()) {
            print_states(&states, false)?;
            return if states.iter().all(|s| s.state == TaskState::Ok) {
                Ok(())
            } else {
                bail!(
                    "some cells did not finish ok: `kvsweep slurm resubmit --failed {}` runs them again",
                    m.out.display()
                )
            };
        }
        let interrupted = runtime.block_on(async {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => false,
                _ = Shutdown::interrupted() => true,
            }
        });
        if interrupted {
            queue::cancel(m)?;
            bail!("interrupted: cancelled this sweep's jobs ({})", job_ids(m));
        }
    }
}

fn job_ids(m: &Manifest) -> String {
    m.jobs
        .iter()
        .map(|j| j.job_id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_states(states: &[queue::CellStatus], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(states)?);
        return Ok(());
    }
    let width = states
        .iter()
        .map(|s| s.cell.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!("{:width$}  {:10}  {:>12}  reason", "cell", "state", "job");
    for s in states {
        println!(
            "{:width$}  {:10}  {:>12}  {}",
            s.cell,
            s.state.as_str(),
            s.job,
            s.reason
        );
    }
    Ok(())
}

/// `kvsweep slurm`; `--wait` polls on `runtime`.
pub fn run(
    args: &SlurmArgs,
    runners: &RunnerSet,
    runners_dir: Option<&Path>,
    runtime: &Handle,
) -> Result<()> {
    match &args.action {
        SlurmAction::Submit(a) => submit(a, runners, runners_dir, runtime),
        SlurmAction::Status(a) => {
            let m = Manifest::load(&a.manifest)?;
            let states = queue::cell_states(&m)?;
            if !a.json {
                eprintln!("{}", queue::tally(&states));
            }
            print_states(&states, a.json)
        }
        SlurmAction::Cancel(a) => {
            let m = Manifest::load(&a.manifest)?;
            queue::cancel(&m)?;
            eprintln!("cancelled jobs {}", job_ids(&m));
            Ok(())
        }
        SlurmAction::Resubmit(a) => resubmit(a, runners, runtime),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_keeps_its_overrides_as_json_and_renders_them_as_flags() {
        let m = Manifest {
            sweep: "s".into(),
            spec: "/s.yaml".into(),
            out: "/out".into(),
            kvsweep: "/kvsweep".into(),
            key: None,
            runner: None,
            runners_dir: None,
            max_parallel: 1,
            overrides: CellOverrides {
                model: Some("m".into()),
                duration: Some(60),
                traces: Some("/traces".into()),
                port: 8000,
                ..CellOverrides::default()
            },
            jobs: Vec::new(),
        };
        let json = serde_json::to_value(&m).expect("to JSON");
        assert_eq!(json["overrides"]["duration"], 60);
        let back: Manifest = serde_json::from_value(json).expect("from JSON");
        assert_eq!(
            back.overrides.to_args(),
            ["--model", "m", "--duration", "60", "--traces", "/traces"]
        );
    }
}
