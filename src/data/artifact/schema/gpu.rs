//! The rows of `gpu.csv`: the GPU telemetry `kvsweep metrics` samples beside the server metrics.

use serde::{Deserialize, Serialize};

/// One GPU at one sample; empty where the vendor tool did not report a value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuRow {
    /// Unix seconds of the sample.
    pub time: f64,
    /// The vendor tool's index of the GPU.
    pub gpu: String,
    pub util_pct: Option<f64>,
    pub mem_used_mib: Option<f64>,
    pub mem_total_mib: Option<f64>,
    pub power_w: Option<f64>,
}

impl GpuRow {
    pub const FILE: &'static str = "gpu.csv";
    /// `gpu.csv` has no format_version column; this is the shape its first version has.
    pub const VERSION: u32 = 1;
}
