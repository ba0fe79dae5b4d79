//! The parts of `profile_export_aiperf.json`'s `input_config` (AIPerf's resolved
//! `BenchmarkConfig`) that say what a run was asked to do: the model and the profiling phase's
//! concurrency and duration. The schema keeps `input_config` as written (its shape changes with
//! every AIPerf release); this is the narrow view `kvsweep collect` reads of it, checked against
//! AIPerf 0.13.0's files.

use serde::Deserialize;

use crate::data::artifact::schema::parse_json;

/// `input_config`: the model list and the phases.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct InputConfig {
    pub models: Models,
    pub phases: Vec<PhaseConfig>,
}

/// `input_config.models`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct Models {
    pub items: Vec<ModelItem>,
}

/// `input_config.models.items[]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct ModelItem {
    pub name: String,
}

/// `input_config.phases[]`: one phase of the run (`kind` profiling or warmup); a phase that is
/// not concurrency-driven has no `concurrency`, one stopped by request count no `duration`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct PhaseConfig {
    pub kind: String,
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Seconds of sending.
    #[serde(default)]
    pub duration: Option<f64>,
}

impl InputConfig {
    /// Reads the view from the aggregate's `input_config` value; the error names the field.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, String> {
        parse_json(&value.to_string()).map_err(|e| format!("`input_config`: {e}"))
    }

    /// The profiling phase, if the run had one.
    pub fn profiling(&self) -> Option<&PhaseConfig> {
        self.phases.iter().find(|p| p.kind == "profiling")
    }
}
