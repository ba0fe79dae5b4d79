//! The cell artifact directory: the stable boundary between running a cell and collecting a sweep.
//!
//! A cell's results are a flat directory of these files (documented in README.md, "Artifacts").
//! Nothing else is uploaded: raw per-request dumps made InferenceX artifacts 10–18 GB each.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

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

/// Writes JSON through a temporary file and a rename, so readers see the old or the new file.
pub fn write_json_atomic(path: &Path, value: &Value) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut f = File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    serde_json::to_writer_pretty(&mut f, value)?;
    f.write_all(b"\n")?;
    f.sync_data().ok();
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
