//! `kvsweep predict`: a sweep's cells run against the calibrated simulator on a virtual clock
//! ([`des`]), then collected like a measured sweep.
//!
//! Each cell is planned as `kvsweep sweep` plans it (`render::plan`), served by the simulated
//! engine with the calibration of the cell's engine, model, runner and TP, and replayed on one
//! virtual clock in this process, so a cell that models minutes of serving takes a fraction of a
//! second. Its directory holds the files of a measured cell (cell.json, status.json,
//! summary.json, requests.csv, periods.csv, metrics.csv) plus `prediction.json`, which makes
//! collect label every figure of it `predicted`.

pub mod des;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;

use crate::base::kinds::{EngineKind, Offload};
use crate::base::runner::{Runner, RunnerSet};
use crate::base::workload::Workload;
use crate::data::artifact::schema::{CellPlan, CellState, JsonArtifact, Prediction, Status};
use crate::plan::render::{self, CellOverrides};
use crate::plan::spec::{self, LoadOptions};
use crate::run::metrics::Recorder;
use crate::run::replay::output::Collector;
use crate::run::replay::{self, ReplayArgs};
use crate::run::sim::calibration::{Calibration, Identity};
use crate::run::sim::metrics::Flavor;
use crate::run::sim::{self, OnOff, SimArgs, VirtualEngine};

/// Predict a sweep's results with the calibrated simulator (no engine, no GPU, no sleeping).
#[derive(Debug, Clone, clap::Args)]
pub struct PredictArgs {
    /// The sweep spec (InferenceX or native shape).
    pub spec: PathBuf,
    /// Calibration files (`kvsweep calibrate`); each cell uses the one of its engine, model,
    /// runner and TP. Repeat for a spec with several TPs.
    #[arg(long, required = true, value_name = "FILE")]
    pub calibration: Vec<PathBuf>,
    /// The predicted sweep's directory: `cells/<cell>/`, then the collected results.
    #[arg(long)]
    pub out: PathBuf,
    /// The entry of an InferenceX-shape spec.
    #[arg(long)]
    pub key: Option<String>,
    /// Only this runner's cells.
    #[arg(long)]
    pub runner: Option<String>,
    /// Predict each cell this many times (over the spec's `repeats:`).
    #[arg(long)]
    pub repeats: Option<u32>,
    #[command(flatten)]
    pub overrides: CellOverrides,
}

/// The identity a cell's plan asks a calibration for.
pub(crate) fn identity_of(plan: &CellPlan) -> Identity {
    Identity {
        engine: plan.engine.to_string(),
        model: plan.model.clone(),
        runner: plan.runner.clone(),
        tp: plan.cell.tp,
    }
}

/// The calibration for `plan`: refused, naming both, when none is of its engine, model, runner
/// and TP.
fn pick<'a>(
    calibrations: &'a [(PathBuf, Calibration)],
    plan: &CellPlan,
) -> Result<&'a Calibration> {
    let want = identity_of(plan);
    if let Some((_, c)) = calibrations.iter().find(|(_, c)| c.identity == want) {
        return Ok(c);
    }
    if let [(path, c)] = calibrations {
        c.check_identity(&want, path)?;
    }
    bail!(
        "cell {}: no calibration is for its {want}; given: {}",
        plan.cell.name,
        calibrations
            .iter()
            .map(|(p, c)| format!("{} ({})", p.display(), c.identity))
            .collect::<Vec<_>>()
            .join("; ")
    )
}

/// Wraps [`SimArgs`] to parse an engine command line into it.
#[derive(Parser)]
struct SimCommand {
    #[command(flatten)]
    args: SimArgs,
}

/// The simulated server's flags for a cell: a simulator cell's own command line; for another
/// engine, the defaults with the cell's prefix caching and offload tier.
fn sim_args(plan: &CellPlan, runner: &Runner) -> Result<SimArgs> {
    if plan.engine == EngineKind::Sim {
        let launch = plan.launch(runner)?;
        let argv = std::iter::once("kvsweep".to_owned()).chain(launch.args.into_iter().skip(1));
        return SimCommand::try_parse_from(argv)
            .map(|c| c.args)
            .with_context(|| format!("cell {}: its sim-server command", plan.cell.name));
    }
    let mut args = SimCommand::try_parse_from(["kvsweep"])
        .context("default sim-server flags")?
        .args;
    match plan.cell.offload {
        Offload::On => args.offload_gb = plan.offload_gib.unwrap_or(0.0),
        Offload::Off => {}
        Offload::Noprefix => args.prefix_caching = OnOff::Off,
    }
    if let Some(len) = plan.max_model_len {
        args.max_model_len = len as usize;
    }
    Ok(args)
}

/// Predicts one planned cell into `out` with `calibration`.
fn predict_cell(
    plan: &CellPlan,
    runner: &Runner,
    calibration: &Calibration,
    calibration_path: &Path,
    out: &Path,
) -> Result<Status> {
    let started = Instant::now();
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    plan.write(out)?;
    let Workload::Replay(args) = &plan.workload else {
        bail!(
            "cell {}: a tester cell; predict runs replay cells",
            plan.cell.name
        );
    };
    let mut args: ReplayArgs = args.clone();
    let traces = plan
        .traces
        .as_ref()
        .context("the cell replays traces but its plan names none")?;
    args.traces = vec![traces.clone()];
    args.out = out.to_path_buf();
    des::check_supported(&args).with_context(|| format!("cell {}", plan.cell.name))?;
    let (_, sessions) = replay::load_sessions(&args)?;

    let sim_args = sim_args(plan, runner)?;
    let setup = sim::calibrated_setup(&sim_args, calibration);
    let mut engine = VirtualEngine::new(&setup, Flavor::Vllm);

    let engine_label = plan.engine.to_string();
    let mut collector = Collector::create(
        out,
        args.assessment_period.max(0.1),
        &engine_label,
        &[format!("predicted:{}", calibration_path.display())],
        &args.control,
        args.warmup_window,
    )?;
    let mut recorder = Recorder::create(out)?;
    let run = des::run(
        &args,
        &sessions,
        &mut engine,
        des::ServerRules {
            max_model_len: sim_args.max_model_len,
            natural_stop_seed: (plan.engine == EngineKind::Sim).then_some(sim_args.seed),
        },
        &mut collector,
        &mut recorder,
        0.0,
    )?;
    collector.close_period(run.duration_s, 0, (None, None), true)?;
    collector.flush()?;
    collector.write_summary(run.duration_s, true)?;
    Prediction {
        format_version: Prediction::VERSION,
        calibration: calibration_path.display().to_string(),
        calibrated_for: calibration.identity.to_string(),
        modelled_s: run.duration_s,
        wall_s: started.elapsed().as_secs_f64(),
    }
    .write(out)?;
    let error_rate = collector.error_rate();
    let (state, reason) = if run.requests == 0 {
        (CellState::Failed, "no request finished".to_owned())
    } else if error_rate > 0.10 {
        (
            CellState::Failed,
            format!("{:.1}% of requests failed", error_rate * 100.0),
        )
    } else {
        (
            CellState::Ok,
            format!(
                "predicted: {} requests in {:.1} modelled seconds, {} abandoned",
                run.requests, run.duration_s, run.abandoned
            ),
        )
    };
    let status = Status {
        cell: Some(plan.cell.name.clone()),
        requests: Some(run.requests),
        ..Status::new(state, reason)
    };
    status.write(out)?;
    Ok(status)
}

pub fn run(args: &PredictArgs, runners: &RunnerSet) -> Result<()> {
    let sweep = spec::load(
        &args.spec,
        LoadOptions {
            key: args.key.as_deref(),
            runner: args.runner.as_deref(),
            runners,
        },
    )?;
    let calibrations: Vec<(PathBuf, Calibration)> = args
        .calibration
        .iter()
        .map(|p| Ok((p.clone(), Calibration::load(p)?)))
        .collect::<Result<_>>()?;
    let cells_dir = args.out.join("cells");
    if cells_dir.exists() {
        std::fs::remove_dir_all(&cells_dir)
            .with_context(|| format!("cannot clear {}", cells_dir.display()))?;
    }
    let repeats = crate::base::repeats::resolve(args.repeats, sweep.settings.repeats)?;
    let mut planned = Vec::new();
    for cell in &sweep.cells {
        let runner = render::cell_runner(&sweep, cell, runners)?;
        let plan = render::plan(&sweep, cell, runner, &args.overrides)?;
        if plan.trace_url.is_some() && plan.traces.is_none() {
            bail!(
                "cell {}: its traces are named by URL; fetch them first (kvsweep traces fetch)",
                plan.cell.name
            );
        }
        let calibration = pick(&calibrations, &plan)?;
        let path = calibrations
            .iter()
            .find(|(_, c)| std::ptr::eq(c, calibration))
            .map(|(p, _)| p.clone())
            .unwrap_or_default();
        planned.push((plan, runner, calibration, path));
    }
    let total = planned.len() as u32 * repeats;
    eprintln!(
        "predict {}: {total} cells into {} (calibrated simulator, virtual clock)",
        sweep.settings.name,
        args.out.display()
    );
    let started = Instant::now();
    let mut n = 0;
    for (plan, runner, calibration, path) in &planned {
        for k in 1..=repeats {
            n += 1;
            let dir = crate::base::repeats::dir(&cells_dir.join(&plan.cell.name), k, repeats);
            // Each repeat samples the workload with its own seed, as a measured sweep's do.
            let repeat = CellPlan {
                workload: crate::base::repeats::workload(&plan.workload, k, repeats),
                ..plan.clone()
            };
            let status = predict_cell(&repeat, runner, calibration, path, &dir)?;
            eprintln!(
                "[{n}/{total}] {}: {} ({})",
                plan.cell.name,
                status.status.as_str(),
                status.reason
            );
        }
    }
    eprintln!(
        "predict {}: {total} cells in {:.1} s",
        sweep.settings.name,
        started.elapsed().as_secs_f64()
    );
    crate::cli::collect::collect_sweep(&cells_dir, &args.out, runners)
}
