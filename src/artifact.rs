//! The cell artifact directory: the stable boundary between running a cell and collecting a sweep.
//!
//! A cell's results are a flat directory of these files (documented in README.md, "Artifacts").
//! Nothing else is uploaded: raw per-request dumps made InferenceX artifacts 10–18 GB each.

/// Files a cell's artifact directory may hold; the runner script deletes anything else.
pub const CELL_FILES: &[&str] = &[
    "cell.json",
    "status.json",
    "requests.csv",
    "periods.csv",
    "summary.json",
    "metadata.json",
    "metrics.csv",
    "metrics_raw.csv",
    "metrics_meta.json",
    "gpu.csv",
    "server.log",
    "commands.txt",
    "versions.json",
];

/// The engine log is kept to its last this-many bytes.
pub const SERVER_LOG_CAP_BYTES: u64 = 5 * 1024 * 1024;
