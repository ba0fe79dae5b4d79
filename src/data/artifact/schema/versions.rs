//! `versions.json`: what ran, for comparing results across runs.

use serde::{Deserialize, Serialize};

use super::{JsonArtifact, required};
use crate::base::kinds::EngineKind;
use crate::base::runner::ContainerRuntime;

/// `versions.json`, written by the one finish step (`kvsweep cell finish`, which the runner
/// script's trap calls, and `run-cell`), so both paths record the same fields the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versions {
    pub format_version: u32,
    /// The kvsweep that finished the cell (the one that ran its metrics and replay).
    pub kvsweep: String,
    /// The kvsweep that planned the cell: `render` for a script, itself for `run-cell`.
    pub rendered_by: String,
    pub engine: EngineKind,
    /// The container image, `null` for an engine started as a plain process without one.
    #[serde(deserialize_with = "required")]
    pub image: Option<String>,
    pub container: ContainerRuntime,
    pub host: String,
    /// The GPU driver's version as `nvidia-smi` or `amd-smi` reports it, else `unknown`.
    pub gpu_driver: String,
}

impl JsonArtifact for Versions {
    const FILE: &'static str = "versions.json";
    const VERSION: u32 = 1;
    fn format_version(&self) -> u32 {
        self.format_version
    }
}
