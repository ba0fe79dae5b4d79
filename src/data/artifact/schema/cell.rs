//! `cell.json`: the plan of one cell.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{JsonArtifact, required};
use crate::base::economics::SpecEconomics;
use crate::base::kinds::{EngineKind, OffloadBackend, TraceFormat};
use crate::base::matrix_cell::Cell;
use crate::base::recipe::Recipe;
use crate::base::validity::ValidityThresholds;
use crate::base::workload::Workload;
use crate::data::trace_cache::RemoteTraces;

/// `cell.json`: everything about one cell that the script and run-cell were given.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellPlan {
    pub format_version: u32,
    pub cell: Cell,
    pub spec: PathBuf,
    pub runner: String,
    pub engine: EngineKind,
    /// The name the engine serves and the replay asks for.
    pub model: String,
    /// A local model directory the engine loads (serving it as `model`), as an absolute path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_path: Option<PathBuf>,
    /// The engine's longest sequence, from the spec's `model.max_len`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_model_len: Option<u32>,
    #[serde(deserialize_with = "required")]
    pub image: Option<String>,
    #[serde(deserialize_with = "required")]
    pub precision: Option<String>,
    pub offload_backend: OffloadBackend,
    /// GiB of host memory for the offload tier, when offload is on.
    #[serde(deserialize_with = "required")]
    pub offload_gib: Option<f64>,
    /// The spec's `engine_args`, appended to the engine command.
    pub engine_args: Vec<String>,
    /// The InferenceX launch the engine starts with, in place of the runner's flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<Recipe>,
    pub duration_s: u64,
    /// Where a replay cell finds its traces on the machine that runs it, as an absolute path.
    /// `None` for a tester cell, and for traces named by URL until `run-cell` has fetched them.
    #[serde(deserialize_with = "required")]
    pub traces: Option<PathBuf>,
    /// The URL a replay cell's traces are fetched from into the trace cache, when the spec names
    /// them by URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_url: Option<RemoteTraces>,
    pub trace_format: TraceFormat,
    /// What the cell runs against its engine, typed: `kvsweep replay` (`--url`, `--traces` and
    /// `--out` are set where the cell runs) or `kvsweep test KIND`, whose results go to
    /// `tester/`.
    pub workload: Workload,
    pub port: u16,
    pub health_timeout_s: u64,
    /// When the cell's figures are a trustworthy point, for collect's verdict.
    pub validity: ValidityThresholds,
    /// The spec's price and power figures in place of the runner's; absent where it gave none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub economics: Option<SpecEconomics>,
}

impl JsonArtifact for CellPlan {
    const FILE: &'static str = "cell.json";
    const VERSION: u32 = 2;
    fn format_version(&self) -> u32 {
        self.format_version
    }
}
