//! `kvsweep history`: collected sweeps stored in a database (SQLite by default, one file;
//! PostgreSQL by URL), so that a configuration can be followed across commits and engine
//! releases, and `kvsweep gate` can compare a candidate against a stored baseline and each
//! configuration's noise.
//!
//! Adding a sweep is one transaction: a killed `add` leaves the database as it was. The same
//! sweep (byte-identical summary.csv and repeats.csv) is refused the second time, naming the
//! run that holds it, rather than silently ignored: a CI step adding twice is a mistake to see.

pub mod db;
pub mod migrations;
pub mod store;
pub mod sweep;
pub mod trend;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use store::{History, RunMeta};

/// Where the history is: a SQLite file or a `postgres://` URL.
#[derive(Debug, Clone, clap::Args)]
pub struct DbArg {
    /// The history database: a SQLite file (created by `history add`) or a
    /// postgres://USER:PASSWORD@HOST/DB URL.
    #[arg(
        long,
        env = "KVSWEEP_DB",
        default_value = "kvsweep.db",
        value_name = "URL"
    )]
    pub db: String,
}

/// Store collected sweeps and follow configurations across runs.
#[derive(Debug, Clone, clap::Args)]
pub struct HistoryArgs {
    #[command(subcommand)]
    pub command: HistoryCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum HistoryCommand {
    /// Store a collected sweep (a directory `kvsweep collect` wrote) as one run.
    Add(AddArgs),
    /// The stored runs and configurations.
    List(DbArg),
    /// A configuration's runs: date, commit and main figures with their intervals.
    Show(ShowArgs),
    /// Plot a metric of each configuration over its runs, with each run's interval.
    Trend(TrendArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct AddArgs {
    /// The collected sweep: a directory holding summary.csv (and repeats.csv).
    pub dir: PathBuf,
    #[command(flatten)]
    pub db: DbArg,
    /// A name to pick this run by later (`gate --baseline db:LABEL`), e.g. `main`.
    #[arg(long)]
    pub label: Option<String>,
    /// The commit the sweep measured (default: $GITHUB_SHA, else `git rev-parse HEAD` here).
    #[arg(long, env = "GITHUB_SHA")]
    pub commit: Option<String>,
    /// The CI run that produced it (default: $GITHUB_RUN_ID).
    #[arg(long, env = "GITHUB_RUN_ID")]
    pub run_id: Option<String>,
    /// When it ran, RFC 3339 (default: now).
    #[arg(long)]
    pub date: Option<String>,
    /// The engine's container image.
    #[arg(long)]
    pub image: Option<String>,
    /// The engine's version.
    #[arg(long)]
    pub engine_version: Option<String>,
    /// The sweep spec, whose SHA-256 is stored to tell runs of different specs apart.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// A cell name, or COLUMN=VALUE filters on the configuration (e.g. `users=8 offload=on`).
    pub config: String,
    #[command(flatten)]
    pub db: DbArg,
}

#[derive(Debug, Clone, clap::Args)]
pub struct TrendArgs {
    /// The summary.csv metric to plot.
    #[arg(long, default_value = "total_tps_per_gpu")]
    pub metric: String,
    /// Only configurations matching this (a cell name or COLUMN=VALUE filters).
    #[arg(long)]
    pub config: Option<String>,
    /// Where the plots (PNG and SVG), trend.csv and trend.html go.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub db: DbArg,
}

/// Now, RFC 3339 in UTC to the second.
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

pub fn run(args: &HistoryArgs) -> Result<()> {
    match &args.command {
        HistoryCommand::Add(a) => add(a),
        HistoryCommand::List(db) => list(db),
        HistoryCommand::Show(a) => show(a),
        HistoryCommand::Trend(a) => trend::run(a),
    }
}

fn add(args: &AddArgs) -> Result<()> {
    let sweep = sweep::read(&args.dir)?;
    let date = match &args.date {
        Some(d) => {
            let t = humantime::parse_rfc3339_weak(d)
                .with_context(|| format!("--date `{d}` is not an RFC 3339 date"))?;
            humantime::format_rfc3339_seconds(t).to_string()
        }
        None => now_rfc3339(),
    };
    let spec_digest = match &args.spec {
        Some(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("cannot read --spec {}", path.display()))?;
            Some(format!("{:x}", Sha256::digest(&bytes)))
        }
        None => None,
    };
    let meta = RunMeta {
        label: args.label.clone(),
        date,
        git_commit: args.commit.clone().or_else(git_head),
        kvsweep_version: crate::VERSION.to_owned(),
        run_id: args.run_id.clone(),
        image: args.image.clone(),
        engine_version: args.engine_version.clone(),
        spec_digest,
        source: args.dir.display().to_string(),
    };
    let mut history = History::open(&args.db.db, true)?;
    let id = history.add(&sweep, &meta)?;
    eprintln!(
        "history: stored {} ({} cells) as run {id} in {}",
        args.dir.display(),
        sweep.cells.len(),
        history.place
    );
    println!("{id}");
    Ok(())
}

/// The commit checked out here, where there is one.
fn git_head() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn list(db: &DbArg) -> Result<()> {
    let mut history = History::open(&db.db, false)?;
    let runs = history.runs()?;
    println!("runs in {}:", history.place);
    println!(
        "{:>5}  {:<20}  {:<12}  {:<12}  {:>5}  source",
        "id", "date", "label", "commit", "cells"
    );
    for r in &runs {
        println!(
            "{:>5}  {:<20}  {:<12}  {:<12}  {:>5}  {}",
            r.id,
            r.meta.date,
            r.meta.label.as_deref().unwrap_or("-"),
            short(r.meta.git_commit.as_deref()),
            r.cells,
            r.meta.source
        );
    }
    println!("\nconfigurations:");
    for (config, n) in history.configs()? {
        println!("{n:>5} runs  {config}");
    }
    Ok(())
}

fn short(commit: Option<&str>) -> &str {
    commit.map_or("-", |c| &c[..c.len().min(12)])
}

/// The stored configurations `filter` names: a cell name, or COLUMN=VALUE filters all of
/// which the configuration meets.
pub(crate) fn matching_configs(history: &mut History, filter: &str) -> Result<Vec<String>> {
    let configs = history.configs()?;
    let terms: Vec<&str> = filter.split([' ', ',']).filter(|t| !t.is_empty()).collect();
    let by_filter: Vec<String> = if terms.iter().all(|t| t.contains('=')) {
        configs
            .iter()
            .filter(|(c, _)| terms.iter().all(|t| c.split(' ').any(|part| part == *t)))
            .map(|(c, _)| c.clone())
            .collect()
    } else {
        Vec::new()
    };
    if !by_filter.is_empty() {
        return Ok(by_filter);
    }
    // A cell name: the configurations cells of that name measured.
    let mut named = Vec::new();
    for (config, _) in &configs {
        let runs = history.config_runs(config, 1)?;
        if runs.iter().any(|(_, c)| c.cell == filter) {
            named.push(config.clone());
        }
    }
    if named.is_empty() {
        bail!(
            "no stored configuration matches `{filter}` (give a cell name or COLUMN=VALUE filters; `kvsweep history list` shows them)"
        );
    }
    Ok(named)
}

/// The figures `show` prints for each run.
const SHOW_METRICS: &[&str] = &[
    "total_tps_per_gpu",
    "output_tps_per_gpu",
    "ttft_p50_ms",
    "tpot_p50_ms",
    "e2e_p50_ms",
];

fn show(args: &ShowArgs) -> Result<()> {
    let mut history = History::open(&args.db.db, false)?;
    for config in matching_configs(&mut history, &args.config)? {
        println!("{config}");
        print!(
            "{:>5}  {:<20}  {:<12}  {:<12}  {:>3}",
            "run", "date", "label", "commit", "n"
        );
        for m in SHOW_METRICS {
            print!("  {m:>24}");
        }
        println!();
        for (run, cell) in history.config_runs(&config, i64::MAX)? {
            print!(
                "{:>5}  {:<20}  {:<12}  {:<12}  {:>3}",
                run.id,
                run.meta.date,
                run.meta.label.as_deref().unwrap_or("-"),
                short(run.meta.git_commit.as_deref()),
                cell.repeats
            );
            for m in SHOW_METRICS {
                let text = match cell.sample(m) {
                    Some(s) => match s.half_width(crate::results::collect::repeats::LEVEL) {
                        Some(h) => format!("{:.4} ± {:.3}", s.mean, h),
                        None => format!("{:.4}", s.mean),
                    },
                    None => "-".into(),
                };
                print!("  {text:>24}");
            }
            println!();
        }
        println!();
    }
    Ok(())
}
