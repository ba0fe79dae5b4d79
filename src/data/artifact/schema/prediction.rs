//! `prediction.json`: marks a cell whose figures `kvsweep predict` computed with a calibrated
//! simulator on a virtual clock, rather than measured; collect labels it `predicted`.

use serde::{Deserialize, Serialize};

use super::JsonArtifact;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prediction {
    pub format_version: u32,
    /// The calibration file the simulator used.
    pub calibration: String,
    /// What it was fitted to: engine, model, runner and TP.
    pub(crate) calibrated_for: String,
    /// Virtual seconds the cell modelled, and the wall seconds the prediction took.
    pub(crate) modelled_s: f64,
    pub(crate) wall_s: f64,
}

impl JsonArtifact for Prediction {
    const FILE: &'static str = "prediction.json";
    const VERSION: u32 = 1;
    fn format_version(&self) -> u32 {
        self.format_version
    }
}
