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
/// `tester` is a directory: a synthetic test cell's results (`kvsweep test`), all kept.
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
    "tester",
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

/// Default cap on a packed cell artifact.
pub const ZIP_CAP_BYTES: u64 = 512 * 1024 * 1024;

/// Packs exactly the whitelisted files of a cell directory into `zip_path`, refusing to write
/// more than `cap` bytes of input (an artifact that large means something is being recorded
/// that should not be).
pub fn pack_zip(dir: &Path, zip_path: &Path, cap: u64) -> Result<u64> {
    // Whitelisted files, and the files directly inside a whitelisted directory.
    let mut files: Vec<(String, u64)> = Vec::new();
    for name in CELL_FILES {
        let path = dir.join(name);
        let Ok(meta) = path.metadata() else { continue };
        if meta.is_dir() {
            let mut inner: Vec<_> = std::fs::read_dir(&path)
                .with_context(|| format!("cannot list {}", path.display()))?
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .collect();
            inner.sort_by_key(|e| e.file_name());
            for e in inner {
                let len = e.metadata()?.len();
                files.push((format!("{name}/{}", e.file_name().to_string_lossy()), len));
            }
        } else {
            files.push(((*name).to_owned(), meta.len()));
        }
    }
    let total: u64 = files.iter().map(|(_, len)| len).sum();
    if total > cap {
        let (largest, len) = files
            .iter()
            .max_by_key(|(_, len)| *len)
            .map(|(n, l)| (n.as_str(), *l))
            .unwrap_or(("?", 0));
        anyhow::bail!(
            "{}: the artifact would be {total} bytes, over the {cap}-byte cap ({largest} is {len} bytes)",
            dir.display()
        );
    }
    let tmp = zip_path.with_extension("zip.tmp");
    let mut zip = zip::ZipWriter::new(
        File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?,
    );
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, _) in &files {
        zip.start_file(name.as_str(), options)?;
        let mut f = File::open(dir.join(name))?;
        std::io::copy(&mut f, &mut zip)?;
    }
    zip.finish()?;
    std::fs::rename(&tmp, zip_path)
        .with_context(|| format!("cannot write {}", zip_path.display()))?;
    Ok(total)
}

/// Removes everything in a cell directory that is not a whitelisted file.
pub fn prune(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if CELL_FILES.iter().any(|f| name == *f) {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        }
        .with_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(())
}

/// The most bytes one artifact zip may expand to.
pub const ZIP_EXPAND_CAP: u64 = 4 * 1024 * 1024 * 1024;

/// Extracts a zip into `dest`, refusing entries that would land outside it (`../`, absolute
/// paths) and archives that expand beyond `cap` bytes, whatever their headers claim.
pub fn extract_zip(zip_path: &Path, dest: &Path, cap: u64) -> Result<()> {
    use std::io::Read;
    let file =
        File::open(zip_path).with_context(|| format!("cannot open {}", zip_path.display()))?;
    let mut archive = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a zip archive", zip_path.display()))?;
    let mut total = 0u64;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        let Some(rel) = entry.enclosed_name() else {
            anyhow::bail!(
                "{}: entry `{}` would be written outside the extraction folder",
                zip_path.display(),
                entry.name().unwrap_or_default()
            );
        };
        let out_path = dest.join(rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&out_path)?;
            continue;
        }
        if let Some(parent) = out_path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut out = File::create(&out_path)
            .with_context(|| format!("cannot create {}", out_path.display()))?;
        let copied = std::io::copy(&mut (&mut entry).take(cap - total + 1), &mut out)?;
        total += copied;
        if total > cap {
            anyhow::bail!("{} expands to more than {cap} bytes", zip_path.display());
        }
    }
    Ok(())
}
