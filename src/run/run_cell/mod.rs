//! `kvsweep run-cell`: one sweep cell end to end, in-process.
//!
//! Does what the rendered runner script does, with the same plan ([`render::plan`]), engine
//! command ([`CellPlan::host_command`]) and finish step ([`finish::finish`]): start the engine,
//! wait for `/health`, scrape its metrics beside the replay, stop everything in order and leave
//! the cell's artifact directory. With `--server`
//! it starts no engine and runs the cell against one already serving (one engine start for
//! several cells in turn: the replay empties its prefix cache first, and the metrics count from
//! the recorder's first scrape). Failures are results: the status says `ok`, `partial` (stopped
//! early, everything so far kept) or `failed`, with the reason and the end of the server log.

pub mod finish;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::base::repeats;
use crate::base::runner::{Runner, RunnerSet};
use crate::base::shutdown::{Shutdown, StopSignal, stop_when};
use crate::base::workload::Workload;
use crate::data::artifact;
use crate::data::artifact::schema::{CellState, JsonArtifact, Status};
use crate::data::trace_cache;
use crate::plan::engine;
use crate::plan::engine::process::{self, EngineProcess};
use crate::plan::render::{self, CellOverrides, CellPlan, CellSelector};
use crate::run::metrics::{self, MetricsArgs};
use crate::run::replay::{self, ReplayOutcome};
use crate::run::testers;

/// Run one sweep cell end to end on this machine.
#[derive(Debug, Clone, clap::Args)]
pub struct RunCellArgs {
    #[command(flatten)]
    pub cell: CellSelector,
    /// The cell's artifact directory (created; must be empty if it exists).
    #[arg(long)]
    pub out: PathBuf,
    /// Also pack the artifact's files into this zip.
    #[arg(long)]
    pub zip: Option<PathBuf>,
    /// The most bytes the zip may hold before packing is refused.
    #[arg(long, default_value_t = artifact::ZIP_CAP_BYTES)]
    zip_cap_bytes: u64,
    /// Run the cell this many times (over the spec's `repeats:`), into OUT/repeat-K/.
    #[arg(long)]
    pub repeats: Option<u32>,
    /// An engine already serving at this URL (http://host:port) with the cell's settings:
    /// run-cell starts and stops none, and records the metrics and the replay against it. Its
    /// flags are not checked: it must have been started with the cell's engine command.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    #[command(flatten)]
    pub overrides: CellOverrides,
}

/// A free local port for an engine started on this host.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(l.local_addr()?.port())
}

/// Runs a planned cell into `out` and returns its status (also written to `out/status.json`).
/// `interrupt` carries a reason when the cell must stop early (a signal); `server`, the URL of
/// an engine already serving the cell (none is started then).
pub(crate) async fn run_planned(
    plan: &CellPlan,
    runner: &Runner,
    out: &Path,
    interrupt: watch::Receiver<Option<String>>,
    server: Option<&str>,
) -> Result<Status> {
    if out.exists()
        && std::fs::read_dir(out)
            .with_context(|| format!("cannot list {}", out.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} is not empty: a cell writes into an empty directory",
            out.display()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let started = SystemTime::now();
    let mut status = Status {
        cell: Some(plan.cell.name.clone()),
        started_at: Some(finish::rfc3339(started)),
        ..Status::new(CellState::Running, "the cell has not finished")
    };
    status.write(out)?;
    status.status = CellState::Failed;
    status.requests = Some(0);
    status.failed_requests = Some(0);
    // Traces named by URL get their local path here, so that `cell.json` records it.
    let mut plan = plan.clone();
    let fetched = fetch_traces(&mut plan).await;
    let plan = &plan;
    plan.write(out)?;
    let work = tempfile::Builder::new()
        .prefix(&format!("kvsweep-{}-", plan.cell.name))
        .tempdir()
        .context("cannot create a work directory")?;
    let server_log = work.path().join("server.log");

    let result = match fetched {
        Ok(()) => {
            let engine = match server {
                Some(url) => Engine::Serving(url.trim_end_matches('/').to_owned()),
                None => Engine::Start(&server_log),
            };
            drive(plan, runner, out, engine, interrupt, &mut status).await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        status.status = CellState::Failed;
        status.reason = format!("{e:#}");
    }
    // The engine's environment, for redacting its secrets (none when its command did not build).
    let engine_env = plan.host_command(runner).map(|c| c.env).unwrap_or_default();
    let versions = finish::versions(plan, runner.container, crate::VERSION);
    let what = finish::Finish {
        server_log: Some(&server_log),
        engine_env: &engine_env,
        versions: &versions,
    };
    finish::finish(out, &mut status, &what)?;
    Ok(status)
}

/// Downloads a replay cell's traces into the trace cache when the spec names them by URL and
/// the cache does not hold them yet, and points the plan at them (so `cell.json` says where
/// they were read from).
pub(crate) async fn fetch_traces(plan: &mut CellPlan) -> Result<()> {
    if plan.traces.is_none()
        && let Some(remote) = &plan.trace_url
    {
        let local = trace_cache::fetch(remote, &trace_cache::cache_dir()?).await?;
        plan.traces = Some(local);
    }
    Ok(())
}

/// The engine a cell runs against.
enum Engine<'a> {
    /// Started for the cell, its output into this log, and stopped after it.
    Start(&'a Path),
    /// Already serving at this base URL (`run-cell --server`): neither started nor stopped.
    Serving(String),
}

/// Whether the server at `base` answers `/health` (an engine run-cell did not start).
async fn serving(base: &str) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("no HTTP client: {e}"))?;
    match client.get(format!("{base}/health")).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!(
            "the server at {base} answered /health with {}",
            r.status()
        )),
        Err(e) => Err(format!("the server at {base} does not answer /health: {e}")),
    }
}

/// The steps between the directory being ready and the engine being stopped.
async fn drive(
    plan: &CellPlan,
    runner: &Runner,
    out: &Path,
    engine: Engine<'_>,
    interrupt: watch::Receiver<Option<String>>,
    status: &mut Status,
) -> Result<()> {
    let kvsweep = std::env::current_exe().context("cannot find the kvsweep binary")?;
    let container = format!("kvsweep-{}-{}", plan.cell.name, std::process::id());
    let cmd = plan.host_command(runner)?;
    let argv = cmd.argv(&engine::HostValues::here(&container, &kvsweep))?;
    let base = match &engine {
        Engine::Start(_) => format!("http://127.0.0.1:{}", plan.port),
        Engine::Serving(url) => url.clone(),
    };
    let mut workload = plan.workload.clone();
    match &mut workload {
        Workload::Test(t) => {
            let common = t
                .tester
                .common_mut()
                .context("the cell's tester does not run against a server")?;
            common.url = base.clone();
            common.output_dir = out.join("tester");
        }
        Workload::Replay(r) => {
            let traces = plan
                .traces
                .as_ref()
                .context("the cell replays traces but its plan names none")?;
            r.traces = vec![traces.clone()];
            r.url = vec![base.clone()];
            r.out = out.to_path_buf();
        }
    }
    let metrics_args = MetricsArgs {
        url: format!("{base}/metrics"),
        out: out.to_path_buf(),
        interval: Duration::from_secs(1),
        duration: None,
        until_pid: None,
    };
    let quoted =
        |argv: &[String]| shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_default();
    let env = cmd.env.clone();
    let mut commands = vec![match &engine {
        Engine::Start(_) => quoted(&argv),
        Engine::Serving(url) => format!(
            "# not started: {url} served the cell (run-cell --server), its engine command being {}",
            quoted(&argv)
        ),
    }];
    let kv = kvsweep.display().to_string();
    commands.push(quoted(&[
        kv.clone(),
        "metrics".into(),
        "--url".into(),
        metrics_args.url.clone(),
        "--out".into(),
        out.display().to_string(),
        "--interval".into(),
        "1s".into(),
    ]));
    // The plan (cell.json, in `out`) says what runs; the command only where.
    let at = crate::base::workload::RunAt {
        plan: &out.join(<CellPlan as JsonArtifact>::FILE),
        url: &base,
        traces: plan.traces.as_deref(),
        out,
    };
    commands.push(quoted(
        &std::iter::once(kv)
            .chain(workload.plan_argv(&at)?)
            .collect::<Vec<_>>(),
    ));
    std::fs::write(
        out.join("commands.txt"),
        artifact::redact(&(commands.join("\n") + "\n"), &env),
    )?;

    // `None`: an engine run-cell did not start, which it neither watches nor stops.
    let mut engine = match engine {
        Engine::Start(log) => Some(EngineProcess::spawn(
            &argv,
            log,
            cmd.docker.then_some(container),
        )?),
        Engine::Serving(_) => None,
    };
    let tail = |engine: &Option<EngineProcess>| {
        engine
            .as_ref()
            .map(|e| process::log_tail(e.log_path(), finish::LOG_TAIL_LINES))
    };
    let health_url = format!("{base}/health");
    let healthy = async {
        match engine.as_mut() {
            Some(e) => e
                .wait_healthy(&health_url, plan.health_timeout_s)
                .await
                .map_err(|e| e.to_string()),
            None => serving(&base).await,
        }
    };
    let health = tokio::select! {
        h = healthy => h,
        why = stop_when(interrupt.clone()) => Err(why),
    };
    if let Err(why) = health {
        if let Some(e) = engine.as_mut() {
            e.stop().await;
        }
        status.status = CellState::Failed;
        status.reason = why;
        status.server_log_tail = tail(&engine);
        return Ok(());
    }

    let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let scraper = tokio::spawn(metrics::record(metrics_args, async move {
        let _ = metrics_stopped.await;
    }));

    // The replay stops early on an interrupt or when the engine dies.
    let (stop_tx, stop_rx) = watch::channel(None::<String>);
    let stop_tx = Arc::new(stop_tx);
    let forward = {
        let stop_tx = stop_tx.clone();
        let mut interrupt = stop_when(interrupt);
        tokio::spawn(async move {
            let why = (&mut interrupt).await;
            stop_tx.send_replace(Some(why));
        })
    };
    let replay = run_workload(workload, stop_when(stop_rx));
    tokio::pin!(replay);
    let mut watch_engine = tokio::time::interval(Duration::from_millis(500));
    let mut engine_exit = None;
    let outcome = loop {
        tokio::select! {
            r = &mut replay => break r,
            _ = watch_engine.tick() => {
                let exited = engine.as_mut().and_then(EngineProcess::exited);
                if engine_exit.is_none() && let Some(st) = exited {
                    engine_exit = Some(st);
                    stop_tx.send_replace(Some(format!("the engine exited mid-run ({st})")));
                }
            }
        }
    };
    forward.abort();
    let _ = metrics_stop.send(());
    match scraper.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("kvsweep: the metrics scraper stopped: {e:#}"),
        Err(e) => eprintln!("kvsweep: the metrics scraper panicked: {e}"),
    }
    if let Some(e) = engine.as_mut() {
        e.stop().await;
    }

    match outcome {
        Ok(o) => {
            status.requests = Some(o.requests);
            status.failed_requests = Some(o.errors);
            let stopped_early = o.interrupted;
            status.reason = o.reason;
            status.status = match (o.status, stopped_early) {
                (CellState::Ok, _) => CellState::Ok,
                // More than 10% failed requests, or none sent: the run finished but is no result.
                (_, false) => CellState::Failed,
                (_, true) => CellState::Partial,
            };
            if engine_exit.is_some() {
                status.server_log_tail = tail(&engine);
            }
        }
        Err(e) => {
            status.status = CellState::Failed;
            status.reason = match plan.workload.tester_kind() {
                Some(kind) => format!("the {kind} test failed: {e:#}"),
                None => format!("the replay failed: {e:#}"),
            };
            status.server_log_tail = tail(&engine);
        }
    }
    Ok(())
}

/// Runs the cell's replay, or its synthetic test, until it ends or `stop` fires.
async fn run_workload(workload: Workload, stop: StopSignal) -> Result<ReplayOutcome> {
    match workload {
        Workload::Replay(args) => replay::replay(args, stop).await,
        // A tester writes each finished step as it goes (and resumes from progress.json), so
        // stopping it mid-step loses only that step.
        Workload::Test(args) => tokio::select! {
            r = testers::run_async(&args) => r.map(|()| ReplayOutcome {
                status: CellState::Ok,
                reason: "completed".into(),
                interrupted: false,
                requests: 0,
                errors: 0,
            }),
            why = stop => Ok(ReplayOutcome {
                status: CellState::Failed,
                reason: why,
                interrupted: true,
                requests: 0,
                errors: 0,
            }),
        },
    }
}

/// Resolves the cell, picks a port where asked, and runs it.
pub fn run(
    args: &RunCellArgs,
    runners: &RunnerSet,
    runtime: &Handle,
    shutdown: &Shutdown,
) -> Result<()> {
    let (sweep, cell, runner) = render::select(&args.cell, runners)?;
    let mut plan = render::plan(&sweep, &cell, runner, &args.overrides)?;
    let fixed_port = plan.port != 0 || args.server.is_some();
    let interrupt = shutdown.watch()?;
    let n = repeats::resolve(args.repeats, sweep.settings.repeats)?;
    let mut status = Status::new(CellState::Failed, "not run");
    for k in 1..=n {
        if !fixed_port {
            plan.port = free_port()?;
        }
        let out = repeats::dir(&args.out, k, n);
        let repeat = render::CellPlan {
            workload: repeats::workload(&plan.workload, k, n),
            ..plan.clone()
        };
        status = runtime.block_on(run_planned(
            &repeat,
            runner,
            &out,
            interrupt.clone(),
            args.server.as_deref(),
        ))?;
        if status.status != CellState::Ok {
            break;
        }
    }
    if let Some(zip) = &args.zip {
        let bytes = artifact::pack_zip(&args.out, zip, args.zip_cap_bytes)?;
        eprintln!("kvsweep: packed {bytes} bytes into {}", zip.display());
    }
    let name = &plan.cell.name;
    finish::announce(name, &status, &args.out);
    if status.status != CellState::Ok {
        bail!("cell {name} {}: {}", status.status.as_str(), status.reason);
    }
    Ok(())
}
