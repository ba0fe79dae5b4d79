//! Sweep specs: the YAML a user writes, checked and expanded into the cells of a job matrix.
//!
//! Two shapes are read, told apart by their top-level keys:
//! - the **InferenceX shape** (`inferencex`), the agentic-trace config of the InferenceX workflow,
//!   read as-is so existing configs keep working;
//! - the **native shape** (`native`), which also says what to run (model, engine, runners, traces,
//!   offload budget). `sweeps/README.md` documents it field by field.
//!
//! Both produce the same [`Sweep`]: settings plus an ordered list of [`Cell`]s. Every error names
//! the file, line, column and field.

mod agentx;
mod inferencex;
pub mod master;
pub mod matrix;
mod native;
pub mod options;

use std::fmt;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Serialize;

use crate::base::kinds::EngineKind;
pub use crate::base::kinds::{Offload, OffloadBackend, TraceFormat};
pub use crate::base::matrix_cell::Cell;
use crate::base::model::Geometry;
use crate::base::runner::{Runner, RunnerSet};
use crate::base::yaml::{SpecError, YamlDoc};
use crate::data::trace_cache::RemoteTraces;

pub use matrix::{MAX_MATRIX_JOBS, Shard};
pub use options::SpecWorkload;

/// Which shape the spec file had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// The InferenceX config shape; `entry` is the selected top-level key, if the file had entries.
    InferenceX {
        entry: Option<String>,
    },
    Native,
}

/// The model a sweep serves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Model {
    /// The name the engine loads (a Hugging Face id), and clients ask for.
    pub name: String,
    /// A local model directory the engine loads instead, serving it as `name`.
    pub path: Option<PathBuf>,
    /// The longest sequence (prompt and answer) the engine must accept.
    pub max_len: Option<u32>,
    pub preset: Option<String>,
    /// KV geometry, when known (from a preset or given by hand).
    pub geometry: Option<Geometry>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Traces {
    pub source: TraceSource,
    pub format: TraceFormat,
}

/// Where a sweep's traces are.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceSource {
    /// A file or directory, resolved against the spec file's directory. It must exist where the
    /// cells run, so it suits the simulator and a cluster's shared filesystem.
    Path(PathBuf),
    /// Downloaded into the trace cache where the cells run (see [`crate::data::trace_cache`]).
    Url(RemoteTraces),
}

/// Host memory for the offload tier of one cell.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OffloadBudget {
    /// GiB in total across the cell's TP group.
    Gib(f64),
    /// A fraction of the runner's host DRAM per node.
    DramFraction(f64),
}

impl OffloadBudget {
    /// The budget in GiB on `runner`.
    pub(crate) fn gib(self, runner: &Runner) -> f64 {
        match self {
            OffloadBudget::Gib(gib) => gib,
            OffloadBudget::DramFraction(f) => runner.host_dram_gb * f,
        }
    }
}

/// Everything a sweep says besides its cells. The InferenceX shape says none of it; there the
/// values come from the command line at render time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub name: String,
    pub model: Option<Model>,
    pub engine: EngineKind,
    pub image: Option<String>,
    pub precision: Option<String>,
    pub duration_s: u64,
    pub traces: Option<Traces>,
    /// Why a spec without traces has none and where they are, for the error that asks for
    /// `--traces` (an AgentX job names InferenceX's corpus).
    pub(crate) missing_traces_hint: Option<String>,
    /// What each cell runs against its engine, typed, before the cell sets its own part.
    pub workload: SpecWorkload,
    /// Extra engine flags every cell's engine command ends with (the spec's `engine_args`), for
    /// what a runner file should not fix for every sweep: the simulator's `--speed`, say.
    pub engine_args: Vec<String>,
    /// The recorded InferenceX launch every cell's engine starts with (an AgentX job's own, or
    /// the one a native spec names with `recipe:`), in place of the runner's engine flags.
    pub recipe: Option<crate::base::recipe::Recipe>,
    /// A native spec's `recipe:`, resolved for each TP of its cells.
    pub(crate) tp_recipes: Vec<(u32, crate::base::recipe::Recipe)>,
    pub(crate) offload_budget: Option<OffloadBudget>,
    pub offload_backend: OffloadBackend,
    /// When a cell's figures are a trustworthy point (the spec's `validity:`, else defaults).
    pub validity: crate::base::validity::ValidityThresholds,
    /// How many times each cell runs (the spec's `repeats:`, default 1).
    pub repeats: u32,
    /// Price and power figures in place of the runners' (`economics:`), for collect.
    pub economics: Option<crate::base::economics::SpecEconomics>,
}

/// Default cell duration, as in the InferenceX workflow.
pub(crate) const DEFAULT_DURATION_S: u64 = 1800;

/// A loaded, checked sweep.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub path: PathBuf,
    pub shape: Shape,
    pub settings: Settings,
    pub cells: Vec<Cell>,
    /// Where to point an error about the matrix as a whole (too many cells).
    matrix_field: String,
    matrix_location: (usize, usize),
}

impl Sweep {
    pub fn cell(&self, name: &str) -> Option<&Cell> {
        self.cells.iter().find(|c| c.name == name)
    }

    /// An error about the whole matrix, located at the spec's selected entry.
    pub(crate) fn matrix_error(&self, message: impl Into<String>) -> SpecError {
        SpecError {
            file: self.path.clone(),
            line: self.matrix_location.0,
            column: self.matrix_location.1,
            field: self.matrix_field.clone(),
            message: message.into(),
        }
    }
}

/// What the command line adds to a spec when loading it.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions<'a> {
    /// The InferenceX entry to use (`--key`).
    pub key: Option<&'a str>,
    /// Keep only this runner's cells (native) or attach this runner to every cell (InferenceX).
    pub runner: Option<&'a str>,
    pub runners: &'a RunnerSet,
}

/// Top-level keys that only the native shape has; any of them marks a file as native.
const NATIVE_KEYS: &[&str] = &[
    "name",
    "model",
    "engine",
    "image",
    "precision",
    "runners",
    "duration_s",
    "traces",
    "replay",
    "offload_gb",
    "offload_dram_fraction",
    "offload_backend",
    "tp",
    "ep",
    "users",
    "offload",
    "per_tp",
    "exclude",
    "include",
];

/// Reads, checks and expands a sweep spec.
pub fn load(path: &Path, opts: LoadOptions<'_>) -> Result<Sweep, SpecError> {
    load_doc(&YamlDoc::read(path)?, opts)
}

/// Loads a spec from `text`, with errors naming `path` (for specs that are not files).
pub fn load_text(path: &Path, text: String, opts: LoadOptions<'_>) -> Result<Sweep, SpecError> {
    load_doc(&YamlDoc::from_text(path, text)?, opts)
}

fn load_doc(doc: &YamlDoc, opts: LoadOptions<'_>) -> Result<Sweep, SpecError> {
    let top: IndexMap<String, serde_norway::Value> = doc.parse().map_err(|mut e| {
        e.message = format!("a sweep spec must be a YAML mapping: {}", e.message);
        e
    })?;
    let keys: Vec<String> = top.into_keys().collect();
    if keys.is_empty() {
        return Err(doc.error("", "the spec is empty"));
    }
    let sweep = if agentx::is_job(&keys) {
        agentx::load(doc, opts)?
    } else if keys.iter().any(|k| NATIVE_KEYS.contains(&k.as_str())) {
        native::load(doc, opts)?
    } else {
        inferencex::load(doc, &keys, opts)?
    };
    Ok(sweep)
}

/// Checks what every cell must satisfy on its runner, pointing errors at the fields it came from.
pub(crate) struct CellFields<'a> {
    pub tp: &'a str,
    pub ep: &'a str,
}

pub(crate) fn check_parallelism(
    doc: &YamlDoc,
    cell: &Cell,
    runner: Option<&Runner>,
    fields: &CellFields<'_>,
) -> Result<(), SpecError> {
    if cell.tp == 0 {
        return Err(doc.error(fields.tp, "tp must be at least 1"));
    }
    if let Some(runner) = runner
        && runner.gpus_per_node % cell.tp != 0
    {
        return Err(doc.error(
            fields.tp,
            format!(
                "tp {} does not divide the {} GPUs per node of runner `{}`",
                cell.tp, runner.gpus_per_node, runner.name
            ),
        ));
    }
    if cell.ep > cell.tp {
        return Err(doc.error(
            fields.ep,
            format!(
                "ep {} is larger than the {} GPUs of the cell (tp {})",
                cell.ep, cell.tp, cell.tp
            ),
        ));
    }
    Ok(())
}

/// Looks a runner up, with an error that lists the known ones.
pub(crate) fn find_runner<'a>(
    doc: &YamlDoc,
    runners: &'a RunnerSet,
    name: &str,
    field: &str,
) -> Result<&'a Runner, SpecError> {
    runners.get(name).ok_or_else(|| {
        doc.error(
            field,
            format!(
                "unknown runner `{name}`; known runners: {}",
                runners.names().join(", ")
            ),
        )
    })
}

/// Errors on the first repeated value of an axis, since it would make duplicate cells.
pub(crate) fn check_unique<T: PartialEq + fmt::Display>(
    doc: &YamlDoc,
    field: &str,
    values: &[T],
) -> Result<(), SpecError> {
    for (i, v) in values.iter().enumerate() {
        if values[..i].contains(v) {
            return Err(doc.error(
                &format!("{field}[{i}]"),
                format!("duplicate value `{v}` would make duplicate cells"),
            ));
        }
    }
    Ok(())
}

pub(crate) fn check_not_empty<T>(
    doc: &YamlDoc,
    field: &str,
    values: &[T],
) -> Result<(), SpecError> {
    if values.is_empty() {
        return Err(doc.error(field, "empty axis: give at least one value"));
    }
    Ok(())
}

/// Parses a `tpN` key (`tp4` → 4).
pub(crate) fn parse_tp_key(doc: &YamlDoc, field: &str, key: &str) -> Result<u32, SpecError> {
    key.strip_prefix("tp")
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            doc.error(
                field,
                format!("`{key}` is not a tensor-parallel key: expected tp followed by a positive number, e.g. tp4"),
            )
        })
}
