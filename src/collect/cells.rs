//! Finding cell artifacts (directories and zips) and reading each into one summary row.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use indexmap::IndexMap;

use super::validity;
use crate::artifact::ZIP_EXPAND_CAP;
use crate::artifact::schema::{
    CellPlan, FormatError, JsonArtifact, Metadata, MetricsRow, Prediction, RequestRow, Status,
    Summary, read_csv_rows,
};
use crate::student_t::Sample;

/// Columns of `summary.csv`, in order (the field order of [`CellResult`]).
pub const SUMMARY_COLUMNS: &[&str] = &[
    "cell",
    "runner",
    "model",
    "engine",
    "precision",
    "tp",
    "ep",
    "users",
    "offload",
    "simulated",
    "sim_speed",
    "measured_by",
    "status",
    "requests_ok",
    "requests_failed",
    "error_rate",
    "duration_s",
    "input_tps",
    "output_tps",
    "total_tps",
    "input_tps_per_gpu",
    "output_tps_per_gpu",
    "total_tps_per_gpu",
    "ttft_p50_ms",
    "ttft_p90_ms",
    "ttft_p99_ms",
    "tpot_p50_ms",
    "tpot_p90_ms",
    "tpot_p99_ms",
    "itl_p50_ms",
    "itl_p90_ms",
    "itl_p99_ms",
    "e2e_p50_ms",
    "e2e_p90_ms",
    "e2e_p99_ms",
    "interactivity",
    // InferenceX's AgentX metrics (collect::inferencex).
    "e2e_norm_intvty_p50",
    "e2e_norm_intvty_p90",
    "e2e_norm_intvty_p99",
    "agentx_input_tps_per_gpu",
    "agentx_output_tps_per_gpu",
    "agentx_total_tps_per_gpu",
    "client_hit_rate",
    "server_hit_rate",
    "oracle_hit_rate",
    "oracle_lru_hit_rate",
    "oracle_capacity_tokens",
    "offload_bytes",
    "valid",
    "invalid_reasons",
    "warmup_window_s",
    "repeats",
    // Cost, energy and cache tiers (collect::cost, collect::tiers).
    "usd_per_mtok_total_hyperscaler",
    "usd_per_mtok_input_hyperscaler",
    "usd_per_mtok_output_hyperscaler",
    "usd_per_mtok_total_neocloud",
    "usd_per_mtok_input_neocloud",
    "usd_per_mtok_output_neocloud",
    "usd_per_mtok_total_rental_3y",
    "usd_per_mtok_input_rental_3y",
    "usd_per_mtok_output_rental_3y",
    "tps_per_mw",
    "power_w_per_gpu",
    "joules_per_output_token",
    "joules_per_total_token",
    "energy_basis",
    "priced_as",
    "prompt_tokens_hbm",
    "prompt_tokens_host",
    "prompt_tokens_computed",
    "offload_to_host_gb_s",
    "offload_from_host_gb_s",
];

/// How deep under each given path artifacts are looked for.
const MAX_DEPTH: usize = 5;

/// One collected cell: a row of `summary.csv`.
#[derive(Debug, Clone, Serialize)]
pub struct CellResult {
    #[serde(rename = "cell")]
    pub name: String,
    pub runner: String,
    pub model: String,
    pub engine: String,
    pub precision: Option<String>,
    pub tp: u32,
    pub ep: u32,
    pub users: u32,
    pub offload: String,
    pub simulated: bool,
    /// How many times faster than the hardware it modelled a simulated cell's server ran
    /// (`metadata.json` → `simulator.speed`). Every rate and latency of the row is already the
    /// modelled hardware's (`collect::modelled_time`); the cell's own files stay in wall-clock time.
    pub sim_speed: Option<f64>,
    /// Which tool sent the requests and timed them: kvsweep's replay, or AIPerf (an AIPerf
    /// artifact directory collected as a cell, `collect::aiperf_cells`).
    pub measured_by: MeasuredBy,
    pub status: String,
    pub requests_ok: u64,
    pub requests_failed: u64,
    pub error_rate: f64,
    pub duration_s: f64,
    pub input_tps: f64,
    pub output_tps: f64,
    pub total_tps: f64,
    pub input_tps_per_gpu: f64,
    pub output_tps_per_gpu: f64,
    pub total_tps_per_gpu: f64,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p90_ms: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    pub tpot_p50_ms: Option<f64>,
    pub tpot_p90_ms: Option<f64>,
    pub tpot_p99_ms: Option<f64>,
    pub itl_p50_ms: Option<f64>,
    pub itl_p90_ms: Option<f64>,
    pub itl_p99_ms: Option<f64>,
    pub e2e_p50_ms: Option<f64>,
    pub e2e_p90_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
    /// 1000 / TPOT p50: output tokens per second one user sees.
    pub interactivity: Option<f64>,
    // InferenceX's AgentX metrics (collect::inferencex): empty without requests.csv.
    /// 1 / percentile(E2E latency / output tokens): output tokens/s/user, slow tail at P90.
    pub e2e_norm_intvty_p50: Option<f64>,
    pub e2e_norm_intvty_p90: Option<f64>,
    pub e2e_norm_intvty_p99: Option<f64>,
    /// Tokens of the successful requests over first start to last end, per GPU (TP × PP × PCP).
    pub agentx_input_tps_per_gpu: Option<f64>,
    pub agentx_output_tps_per_gpu: Option<f64>,
    pub agentx_total_tps_per_gpu: Option<f64>,
    pub client_hit_rate: Option<f64>,
    pub server_hit_rate: Option<f64>,
    /// The best hit rate any cache of the cell's size could reach on the requests it sent
    /// (`kvsweep oracle`'s exact strict-prefix bound), and what LRU reaches there.
    pub oracle_hit_rate: Option<f64>,
    pub oracle_lru_hit_rate: Option<f64>,
    /// The cell's KV capacity the bound assumes: HBM after weights at 0.9 utilization, plus
    /// the offload tier when on.
    pub oracle_capacity_tokens: Option<f64>,
    /// Bytes moved between GPU and host cache tiers, both ways, as the server counted them.
    pub offload_bytes: Option<f64>,
    /// Whether the cell is a trustworthy point (`collect::validity`): an invalid one stays in
    /// the tables and plots, marked, and is never on a frontier.
    pub valid: bool,
    /// Why it is not, `; `-separated; empty when valid.
    pub invalid_reasons: String,
    /// Requests sent in the run's first this many seconds are left out of its figures.
    pub warmup_window_s: f64,
    /// How many runs of the cell its figures are the mean of (their spread: `repeats.csv`).
    pub repeats: u32,
    /// Per metric, the repeats' count, mean and standard deviation (empty for one run).
    #[serde(skip)]
    pub spread: IndexMap<&'static str, Sample>,
    /// The seed its workload ran with (each repeat has its own; `repeats.csv` lists them).
    #[serde(skip)]
    pub seed: Option<u64>,
    // Cost and energy (collect::cost): empty where the runner has no price or power figures.
    /// $ per million total, input and output tokens under each of the runner's prices.
    pub usd_per_mtok_total_hyperscaler: Option<f64>,
    pub usd_per_mtok_input_hyperscaler: Option<f64>,
    pub usd_per_mtok_output_hyperscaler: Option<f64>,
    pub usd_per_mtok_total_neocloud: Option<f64>,
    pub usd_per_mtok_input_neocloud: Option<f64>,
    pub usd_per_mtok_output_neocloud: Option<f64>,
    pub usd_per_mtok_total_rental_3y: Option<f64>,
    pub usd_per_mtok_input_rental_3y: Option<f64>,
    pub usd_per_mtok_output_rental_3y: Option<f64>,
    /// Total tok/s per megawatt of `power_w_per_gpu`.
    pub tps_per_mw: Option<f64>,
    pub power_w_per_gpu: Option<f64>,
    pub joules_per_output_token: Option<f64>,
    pub joules_per_total_token: Option<f64>,
    /// Where the power came from: measured, estimated (the runner's figure) or simulated.
    pub energy_basis: Option<crate::economics::EnergyBasis>,
    /// The runner whose figures priced the cell (a simulator cell's modelled hardware).
    pub priced_as: Option<String>,
    // Cache tiers (collect::tiers): prompt tokens by where they came from, and offload traffic.
    pub prompt_tokens_hbm: Option<f64>,
    pub prompt_tokens_host: Option<f64>,
    pub prompt_tokens_computed: Option<f64>,
    /// Mean KV offload bandwidth to and from host memory over the run, GB/s.
    pub offload_to_host_gb_s: Option<f64>,
    pub offload_from_host_gb_s: Option<f64>,
    #[serde(skip)]
    pub dir: PathBuf,
}

/// The tool whose requests and timings a cell's figures are (`summary.csv` → `measured_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MeasuredBy {
    Kvsweep,
    Aiperf,
    /// Not measured: `kvsweep predict`'s calibrated simulator on a virtual clock
    /// (`prediction.json` in the cell).
    Predicted,
}

impl MeasuredBy {
    /// What a chart's point label adds, so an AIPerf point is never taken for kvsweep's.
    pub fn point_label(self) -> &'static str {
        match self {
            MeasuredBy::Kvsweep => "",
            MeasuredBy::Aiperf => " (AIPerf)",
            MeasuredBy::Predicted => " (predicted)",
        }
    }
}

/// A cell left out of the summary, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub cell: String,
    pub reason: String,
    pub path: String,
}

impl CellResult {
    /// The offload mode a chart groups it under: a predicted cell apart from measured ones, so
    /// that both frontiers show on one panel.
    pub fn mode(&self) -> String {
        match self.measured_by {
            MeasuredBy::Predicted => format!("{} predicted", self.offload),
            _ => self.offload.clone(),
        }
    }

    /// A numeric `summary.csv` column the Pareto panels plot.
    pub fn column(&self, name: &str) -> Option<f64> {
        match name {
            "input_tps_per_gpu" => Some(self.input_tps_per_gpu),
            "output_tps_per_gpu" => Some(self.output_tps_per_gpu),
            "total_tps_per_gpu" => Some(self.total_tps_per_gpu),
            "ttft_p50_ms" => self.ttft_p50_ms,
            "e2e_p50_ms" => self.e2e_p50_ms,
            "interactivity" => self.interactivity,
            "usd_per_mtok_total_hyperscaler" => self.usd_per_mtok_total_hyperscaler,
            "tps_per_mw" => self.tps_per_mw,
            "e2e_norm_intvty_p50" => self.e2e_norm_intvty_p50,
            "e2e_norm_intvty_p90" => self.e2e_norm_intvty_p90,
            "e2e_norm_intvty_p99" => self.e2e_norm_intvty_p99,
            "agentx_input_tps_per_gpu" => self.agentx_input_tps_per_gpu,
            "agentx_output_tps_per_gpu" => self.agentx_output_tps_per_gpu,
            "agentx_total_tps_per_gpu" => self.agentx_total_tps_per_gpu,
            _ => None,
        }
    }

    /// Whether the cell is a result: it finished (ok, or stopped early with what it recorded
    /// kept), with at most 10% failed requests. A result can still be an invalid point.
    pub fn gate(&self) -> std::result::Result<(), String> {
        if self.status != "ok" && self.status != "partial" {
            return Err(format!("status {}", self.status));
        }
        if self.requests_ok == 0 {
            return Err("no successful request".into());
        }
        if self.error_rate > 0.10 {
            return Err(format!(
                "{:.1}% of requests failed (more than 10%)",
                self.error_rate * 100.0
            ));
        }
        Ok(())
    }
}

/// Cell directories found under the given paths; zips are extracted into temporary folders
/// that live as long as this.
pub struct Found {
    pub dirs: Vec<PathBuf>,
    /// AIPerf artifact directories (`collect::aiperf_cells`), each to be converted into a cell.
    pub aiperf: Vec<PathBuf>,
    pub skipped: Vec<Skipped>,
    /// Where zips were unpacked: `dirs` inside them last as long as this.
    pub extracted: Extracted,
}

/// Zips unpacked into temporary folders, removed when this is dropped.
pub struct Extracted(Vec<tempfile::TempDir>);

impl Extracted {
    /// Keeps `dir` (and what collect read from it) until this is dropped.
    pub fn keep(&mut self, dir: tempfile::TempDir) {
        self.0.push(dir);
    }
}

pub fn dir_name(dir: &Path) -> String {
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
pub fn is_aiperf_dir(dir: &Path) -> bool {
    use crate::aiperf::schema::{PROFILE_EXPORT_FILE, RECORDS_FILE};
    dir.join(RECORDS_FILE).is_file() && dir.join(PROFILE_EXPORT_FILE).is_file()
}

/// Extracts an artifact zip into a new temporary folder.
fn extract(zip_path: &Path) -> Result<tempfile::TempDir> {
    let tmp = tempfile::Builder::new()
        .prefix("kvsweep-artifact-")
        .tempdir()?;
    crate::archive::extract_zip(zip_path, tmp.path(), ZIP_EXPAND_CAP)?;
    Ok(tmp)
}

/// Reads one JSON artifact of a cell: a missing file is a reason to skip the cell (it did not
/// get that far), a file that does not fit the schema is an error (a [`FormatError`]).
///
/// [`FormatError`]: crate::artifact::schema::FormatError
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
    let engine = plan.engine.to_string();
    let tpot_p50 = summary.tpot_ms.p50;
    let sim_speed = sim_speed(dir)?;
    Ok(CellResult {
        runner: plan.runner.clone(),
        model: plan.model.clone(),
        simulated: engine == "sim" || summary.simulated || sim_speed.is_some(),
        sim_speed,
        measured_by: if dir.join(Prediction::FILE).is_file() {
            MeasuredBy::Predicted
        } else {
            MeasuredBy::Kvsweep
        },
        engine,
        precision: plan.precision.clone(),
        tp,
        ep: plan.cell.ep,
        users: plan.cell.users,
        offload: plan.cell.offload.to_string(),
        status: status.status.as_str().to_owned(),
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
        e2e_norm_intvty_p50: None,
        e2e_norm_intvty_p90: None,
        e2e_norm_intvty_p99: None,
        agentx_input_tps_per_gpu: None,
        agentx_output_tps_per_gpu: None,
        agentx_total_tps_per_gpu: None,
        client_hit_rate: summary.cache.hit_rate,
        server_hit_rate,
        oracle_hit_rate: None,
        oracle_lru_hit_rate: None,
        oracle_capacity_tokens: None,
        offload_bytes,
        valid: verdict.valid(),
        invalid_reasons: verdict.reasons.join("; "),
        warmup_window_s: summary.warmup_window_s,
        repeats: 1,
        spread: IndexMap::new(),
        seed: plan.workload.seed(),
        usd_per_mtok_total_hyperscaler: None,
        usd_per_mtok_input_hyperscaler: None,
        usd_per_mtok_output_hyperscaler: None,
        usd_per_mtok_total_neocloud: None,
        usd_per_mtok_input_neocloud: None,
        usd_per_mtok_output_neocloud: None,
        usd_per_mtok_total_rental_3y: None,
        usd_per_mtok_input_rental_3y: None,
        usd_per_mtok_output_rental_3y: None,
        tps_per_mw: None,
        power_w_per_gpu: None,
        joules_per_output_token: None,
        joules_per_total_token: None,
        energy_basis: None,
        priced_as: None,
        prompt_tokens_hbm: None,
        prompt_tokens_host: None,
        prompt_tokens_computed: None,
        offload_to_host_gb_s: None,
        offload_from_host_gb_s: None,
        name: plan.cell.name,
        dir: dir.to_path_buf(),
    })
}
