//! The `kvsweep` command line: parses arguments and hands each subcommand to its module, with
//! the process's one async runtime and one shutdown signal.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tokio::runtime::Handle;

use kvsweep::base::runner::RunnerSet;
use kvsweep::base::shutdown::Shutdown;
use kvsweep::base::workload::replay::ReplayCommand;
use kvsweep::base::workload::tester::{TestArgs, TestCommand};
use kvsweep::cli::calibrate::CalibrateArgs;
use kvsweep::cli::predict::PredictArgs;
use kvsweep::cli::sweep::SweepArgs;
use kvsweep::data::trace::cli::TraceArgs;
use kvsweep::data::trace_cache::TracesArgs;
use kvsweep::plan::kvsize::KvSizeArgs;
use kvsweep::plan::render::RenderArgs;
use kvsweep::plan::spec::matrix::MatrixArgs;
use kvsweep::results::collect::CollectArgs;
use kvsweep::results::collect::compare::CompareArgs;
use kvsweep::results::gate::GateArgs;
use kvsweep::results::history::HistoryArgs;
use kvsweep::results::oracle::OracleArgs;
use kvsweep::run::github::ArtifactsArgs;
use kvsweep::run::metrics::MetricsCommand;
use kvsweep::run::replay::ReplayArgs;
use kvsweep::run::run_cell::RunCellArgs;
use kvsweep::run::run_cell::finish::CellCommand;
use kvsweep::run::sim::SimArgs;
use kvsweep::run::slurm::SlurmArgs;

/// Benchmark LLM inference servers on agentic multi-turn workloads, with and without KV-cache
/// offload, across a sweep of configurations, and turn the results into Pareto frontiers.
#[derive(Debug, Parser)]
#[command(name = "kvsweep", version = kvsweep::VERSION, propagate_version = true)]
struct Cli {
    /// Read runner definitions from DIR/*.yaml instead of the built-in ones.
    #[arg(long, global = true, env = "KVSWEEP_RUNNERS_DIR", value_name = "DIR")]
    runners_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Expand a sweep spec into a GitHub Actions job matrix.
    Matrix(MatrixArgs),
    /// Render the runner script of one sweep cell.
    Render(RenderArgs),
    /// Run the simulated OpenAI-compatible inference server.
    SimServer(SimArgs),
    /// Replay agentic traces against a server and measure it.
    Replay(ReplayCommand),
    /// Scrape a server's Prometheus metrics while a cell runs.
    Metrics(MetricsCommand),
    /// Run one sweep cell end to end on this machine.
    RunCell(RunCellArgs),
    /// Steps of a cell that its runner script hands to kvsweep (`cell finish`).
    Cell(CellCommand),
    /// Run a whole sweep locally, then collect and report.
    Sweep(SweepArgs),
    /// Fit the simulator's time model to measured cells of one engine, model, runner and TP.
    Calibrate(CalibrateArgs),
    /// Predict a sweep with the calibrated simulator on a virtual clock, then collect it.
    Predict(PredictArgs),
    /// Submit, watch and cancel a sweep on a Slurm cluster.
    Slurm(SlurmArgs),
    /// Aggregate cell artifacts into tables, Pareto frontiers and plots.
    Collect(CollectArgs),
    /// Compare two collected sweeps side by side.
    Compare(CompareArgs),
    /// Store collected sweeps in a database and follow configurations across runs.
    History(HistoryArgs),
    /// Fail (exit 1) when a collected sweep regressed against a baseline beyond the noise.
    Gate(GateArgs),
    /// Download a workflow run's cell artifacts from GitHub Actions.
    Artifacts(ArtifactsArgs),
    /// Analyze, convert, synthesize and generate traces.
    Trace(TraceArgs),
    /// Download traces named by URL into the trace cache.
    Traces(TracesArgs),
    /// Bound the best cache hit rate any cache could reach on a trace.
    Oracle(OracleArgs),
    /// KV-cache bytes per token and tokens per GPU for a model.
    KvSize(KvSizeArgs),
    /// Synthetic cache testers: single-prompt, cache-rate, working-set.
    Test(TestCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match start(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the runtime and the shutdown signal, then dispatches.
fn start(cli: Cli) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let shutdown = Shutdown::new(runtime.handle().clone());
    dispatch(cli, runtime.handle(), &shutdown)
}

fn dispatch(cli: Cli, rt: &Handle, shutdown: &Shutdown) -> Result<()> {
    let runners = || RunnerSet::load(cli.runners_dir.as_deref());
    match &cli.command {
        Command::Matrix(args) => kvsweep::plan::spec::matrix::run(args, &runners()?),
        Command::Render(args) => kvsweep::plan::render::run(args, &runners()?),
        Command::SimServer(args) => kvsweep::run::sim::run(args, &runners()?, rt, shutdown),
        Command::Replay(args) => {
            kvsweep::run::replay::run(&ReplayArgs::try_from(args.clone())?, rt, shutdown)
        }
        Command::Metrics(args) => kvsweep::run::metrics::command(args, rt, shutdown),
        Command::RunCell(args) => kvsweep::run::run_cell::run(args, &runners()?, rt, shutdown),
        Command::Cell(args) => kvsweep::run::run_cell::finish::run(args),
        Command::Sweep(args) => kvsweep::cli::sweep::run(args, &runners()?, rt, shutdown),
        Command::Calibrate(args) => kvsweep::cli::calibrate::run(args),
        Command::Predict(args) => kvsweep::cli::predict::run(args, &runners()?),
        Command::Slurm(args) => {
            kvsweep::run::slurm::run(args, &runners()?, cli.runners_dir.as_deref(), rt)
        }
        Command::Collect(args) => kvsweep::cli::collect::run(args, &runners()?),
        Command::Compare(args) => kvsweep::results::collect::compare::run(args),
        Command::History(args) => kvsweep::results::history::run(args),
        Command::Gate(args) => kvsweep::results::gate::run(args),
        Command::Artifacts(args) => kvsweep::run::github::run(args, rt),
        Command::Trace(args) => kvsweep::data::trace::cli::run(args),
        Command::Traces(args) => kvsweep::data::trace_cache::run(args, rt),
        Command::Oracle(args) => kvsweep::results::oracle::run(args, &runners()?, rt),
        Command::KvSize(args) => kvsweep::plan::kvsize::run(args, &runners()?),
        Command::Test(args) => kvsweep::run::testers::run(&TestArgs::try_from(args.clone())?, rt),
    }
}
