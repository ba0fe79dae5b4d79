//! Finding cell artifacts (directories and zips) and reading each into one summary row.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use indexmap::IndexMap;

pub use super::result::{AgentX, CellResult, Configuration, Figures, MeasuredBy};
use super::validity;
use crate::base::kinds::EngineKind;
use crate::data::artifact::ZIP_EXPAND_CAP;
use crate::data::artifact::schema::{
    CellPlan, FormatError, JsonArtifact, Metadata, MetricsRow, Prediction, RequestRow, Status,
    Summary, read_csv_rows,
};

/// How deep under each given path artifacts are looked for.
const MAX_DEPTH: usize = 5;

/// A cell left out of the summary, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub cell: String,
    pub reason: String,
    pub path: String,
}

/// Cell directories found under the given paths; zips are extracted into temporary folders
/// that live as long as this.
pub struct Found {
    pub dirs: Vec<PathBuf>,
    /// AIPerf artifact directories (`collect::aiperf_cells`), each to be converted into a cell.
    pub aiperf: Vec<PathBuf>,
    pub skipped: Vec<Skipped>,
    /// Where zips were unpacked: `dirs` inside them last as long as this.
    pub(crate) extracted: Extracted,
}

/// Zips unpacked into temporary folders, removed when this is dropped.
pub(crate) struct Extracted(Vec<tempfile::TempDir>);

impl Extracted {
    /// Keeps `dir` (and what collect read from it) until this is dropped.
    pub fn keep(&mut self, dir: tempfile::TempDir) {
        self.0.push(dir);
    }
}

pub(crate) fn dir_name(dir: &Path) -> String {
    dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Finds cell directories (a directory with `status.json` or `cell.json`), AIPerf artifact
/// directories and artifact zips.
pub fn find(paths: &[PathBuf]) -> Result<Found> {
    let mut found = Found {
        dirs: Vec::new(),
        aiperf: Vec::new(),
        skipped: Vec::new(),
        extracted: Extracted(Vec::new()),
    };
    for path in paths {
        if !path.exists() {
            bail!("{} does not exist", path.display());
        }
        walk(path, 0, &mut found)?;
    }
    Ok(found)
}

fn walk(path: &Path, depth: usize, found: &mut Found) -> Result<()> {
    if path.is_file() {
        if path.extension().is_some_and(|e| e == "zip") {
            match extract(path) {
                Ok(tmp) => {
                    let root = tmp.path().to_path_buf();
                    found.extracted.0.push(tmp);
                    walk(&root, depth, found)?;
                }
                Err(e) => found.skipped.push(Skipped {
                    cell: dir_name(path).trim_end_matches(".zip").to_owned(),
                    reason: format!("{e:#}"),
                    path: path.display().to_string(),
                }),
            }
        }
        return Ok(());
    }
    if !path.is_dir() {
        return Ok(());
    }
    if path.join("status.json").is_file() || path.join("cell.json").is_file() {
        found.dirs.push(path.to_path_buf());
        return Ok(());
    }
    if is_aiperf_dir(path) {
        found.aiperf.push(path.to_path_buf());
        return Ok(());
    }
    if depth >= MAX_DEPTH {
        return Ok(());
    }
    let mut children: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("cannot list {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    children.sort();
    for child in children {
        walk(&child, depth + 1, found)?;
    }
    Ok(())
}

/// Whether `dir` holds an AIPerf run's artifacts (`collect::aiperf_cells` makes a cell of it).
fn is_aiperf_dir(dir: &Path) -> bool {
    use crate::data::aiperf::schema::{PROFILE_EXPORT_FILE, RECORDS_FILE};
    dir.join(RECORDS_FILE).is_file() && dir.join(PROFILE_EXPORT_FILE).is_file()
}

/// Extracts an artifact zip into a new temporary folder.
fn extract(zip_path: &Path) -> Result<tempfile::TempDir> {
    let tmp = tempfile::Builder::new()
        .prefix("kvsweep-artifact-")
        .tempdir()?;
    crate::base::archive::extract_zip(zip_path, tmp.path(), ZIP_EXPAND_CAP)?;
    Ok(tmp)
}

/// Reads one JSON artifact of a cell: a missing file is a reason to skip the cell (it did not
/// get that far), a file that does not fit the schema is an error (a [`FormatError`]).
///
/// [`FormatError`]: crate::data::artifact::schema::FormatError
fn read<T: JsonArtifact>(dir: &Path) -> Result<T> {
    if !dir.join(T::FILE).exists() {
        bail!("missing {}", T::FILE);
    }
    T::read(dir)
}

/// The last row of `metrics.csv` (cumulative server counters at the end of the run), if the
/// cell has one.
fn last_metrics(dir: &Path) -> Result<Option<MetricsRow>> {
    let path = dir.join(MetricsRow::FILE);
    if !path.exists() {
        return Ok(None);
    }
    let mut rows = read_csv_rows(
        &path,
        |r: &MetricsRow| r.format_version,
        MetricsRow::VERSION,
    )?;
    Ok(rows.pop())
}

/// The speed of the simulator a cell's replay ran against, from its `metadata.json`; `None`
/// for another engine, a simulator that took no time (`--instant`), or a cell without the file.
fn sim_speed(dir: &Path) -> Result<Option<f64>> {
    if !dir.join(Metadata::FILE).exists() {
        return Ok(None);
    }
    let speed = Metadata::read(dir)?.simulator().and_then(|s| s.speed);
    match speed {
        Some(s) if !(s.is_finite() && s > 0.0) => Err(FormatError {
            file: dir.join(Metadata::FILE),
            message: format!("simulator speed {s}: a speed must be a positive number"),
        }
        .into()),
        _ => Ok(speed),
    }
}

/// Reads one cell directory: its figures as the replay measured them, in wall-clock time
/// (`collect::modelled_time` then turns a simulated cell's into the modelled hardware's).
pub fn load(dir: &Path) -> Result<CellResult> {
    let plan: CellPlan = read(dir)?;
    if let Some(kind) = plan.workload.tester_kind() {
        bail!(
            "a `kvsweep test {kind}` cell: its results are in tester/ (tester/index.html), not in the sweep's tables"
        );
    }
    let status: Status = read(dir)?;
    let summary: Summary = read(dir)?;
    if !dir.join(RequestRow::FILE).exists() {
        bail!("missing {}", RequestRow::FILE);
    }
    let requests = read_csv_rows(
        &dir.join(RequestRow::FILE),
        |r: &RequestRow| r.format_version,
        RequestRow::VERSION,
    )?;
    let verdict = validity::judge(&validity::Evidence {
        plan: &plan,
        status: &status,
        summary: &summary,
        requests: &requests,
    });
    let tp = plan.cell.tp;
    let gpus = f64::from(tp.max(1));
    let tput = &summary.throughput;
    let metrics = last_metrics(dir)?.unwrap_or_default();
    let server_hit_rate = match (metrics.prefix_hits, metrics.prefix_queries) {
        (Some(h), Some(q)) if q > 0.0 => Some(h / q),
        _ => None,
    };
    let offload_bytes = match (metrics.offload_bytes_to_cpu, metrics.offload_bytes_to_gpu) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
    };
    let tpot_p50 = summary.tpot_ms.p50;
    let sim_speed = sim_speed(dir)?;
    Ok(CellResult {
        name: plan.cell.name,
        config: Configuration {
            runner: plan.runner,
            model: plan.model,
            engine: plan.engine,
            precision: plan.precision,
            tp,
            ep: plan.cell.ep,
            users: plan.cell.users,
            offload: plan.cell.offload,
        },
        state: status.status,
        simulated: plan.engine == EngineKind::Sim || summary.simulated || sim_speed.is_some(),
        sim_speed,
        measured_by: if dir.join(Prediction::FILE).is_file() {
            MeasuredBy::Predicted
        } else {
            MeasuredBy::Kvsweep
        },
        figures: Figures {
            requests_ok: summary.requests.ok,
            requests_failed: summary.requests.failed,
            error_rate: summary.requests.error_rate,
            duration_s: summary.duration_s,
            input_tps: tput.input_tokens_per_s,
            output_tps: tput.output_tokens_per_s,
            total_tps: tput.total_tokens_per_s,
            input_tps_per_gpu: tput.input_tokens_per_s / gpus,
            output_tps_per_gpu: tput.output_tokens_per_s / gpus,
            total_tps_per_gpu: tput.total_tokens_per_s / gpus,
            ttft_p50_ms: summary.ttft_ms.p50,
            ttft_p90_ms: summary.ttft_ms.p90,
            ttft_p99_ms: summary.ttft_ms.p99,
            tpot_p50_ms: tpot_p50,
            tpot_p90_ms: summary.tpot_ms.p90,
            tpot_p99_ms: summary.tpot_ms.p99,
            itl_p50_ms: summary.itl_ms.p50,
            itl_p90_ms: summary.itl_ms.p90,
            itl_p99_ms: summary.itl_ms.p99,
            e2e_p50_ms: summary.e2e_ms.p50,
            e2e_p90_ms: summary.e2e_ms.p90,
            e2e_p99_ms: summary.e2e_ms.p99,
            interactivity: tpot_p50.filter(|t| *t > 0.0).map(|t| 1000.0 / t),
            client_hit_rate: summary.cache.hit_rate,
            server_hit_rate,
            offload_bytes,
        },
        agentx: AgentX::default(),
        oracle: None,
        valid: verdict.valid(),
        invalid_reasons: verdict.reasons.join("; "),
        warmup_window_s: summary.warmup_window_s,
        repeats: 1,
        spread: IndexMap::new(),
        seed: plan.workload.seed(),
        cost: None,
        tiers: None,
        dir: dir.to_path_buf(),
    })
}
