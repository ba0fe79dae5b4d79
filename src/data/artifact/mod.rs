//! The cell artifact directory: the stable boundary between running a cell and collecting a sweep.
//!
//! A cell's results are a flat directory of these files (documented in README.md, "Artifacts").
//! Nothing else is uploaded: raw per-request dumps made InferenceX artifacts 10–18 GB each.
//! The shapes of the files themselves are in [`schema`].

pub mod schema;

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

/// Files a cell's artifact directory may hold; the finish step ([`prune`]) deletes anything else.
/// `tester` is a directory: a synthetic test cell's results (`kvsweep test`), all kept.
const CELL_FILES: &[&str] = &[
    "cell.json",
    "status.json",
    "requests.csv",
    "periods.csv",
    "summary.json",
    "metadata.json",
    "agentx.json",
    "metrics.csv",
    "metrics_raw.csv",
    "metrics_meta.json",
    "gpu.csv",
    "server.log",
    "commands.txt",
    "versions.json",
    "tester",
];

/// Whether an environment variable's value is a secret, by its name: one of its `_`-separated
/// words is TOKEN, SECRET, PASSWORD, PASSWD or KEY (`HF_TOKEN`, `AWS_SECRET_ACCESS_KEY`, not
/// `TOKENIZER_PATH`).
fn is_secret_name(name: &str) -> bool {
    name.to_ascii_uppercase()
        .split('_')
        .any(|w| matches!(w, "TOKEN" | "SECRET" | "PASSWORD" | "PASSWD" | "KEY"))
}

/// `text` with the value of every secret in `env` (and in this process's environment) replaced
/// by `[redacted]`: what goes into commands.txt, server.log and status.json. Values shorter than
/// six characters are left alone (they would redact ordinary words).
pub(crate) fn redact(text: &str, env: &[(String, String)]) -> String {
    let mut out = text.to_owned();
    let process: Vec<(String, String)> = std::env::vars().collect();
    for (name, value) in env.iter().chain(&process) {
        if is_secret_name(name) && value.len() >= 6 && out.contains(value.as_str()) {
            out = out.replace(value.as_str(), "[redacted]");
        }
    }
    out
}

/// The engine log is kept to its last this-many bytes.
pub const SERVER_LOG_CAP_BYTES: u64 = 5 * 1024 * 1024;

/// Writes JSON through a temporary file and a rename, so readers see the old or the new file.
pub(crate) fn write_json_atomic(path: &Path, value: &impl Serialize) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut f = File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    serde_json::to_writer_pretty(&mut f, value)?;
    f.write_all(b"\n")?;
    f.sync_data().ok();
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// A CSV file appended to as a run goes, that reaches the disk only in whole records.
///
/// `csv::Writer<File>` writes its buffer out whenever it fills, which can be half-way through a
/// record; a run killed right after that would leave a torn last line. Here records gather in
/// memory and go to the file together on [`CsvLog::flush`] (or when 64 KiB have gathered), so
/// a reader of a killed run's file sees every flushed record whole and nothing else.
pub struct CsvLog {
    pending: csv::Writer<Vec<u8>>,
    file: File,
    path: std::path::PathBuf,
}

impl CsvLog {
    const SPILL_BYTES: usize = 64 * 1024;

    /// Creates (truncates) `path` and writes its header row to disk.
    pub fn create(path: &Path, header: &[&str]) -> Result<Self> {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut log = Self {
            pending: Self::pending(),
            file,
            path: path.to_path_buf(),
        };
        log.append(header)?;
        log.flush()?;
        Ok(log)
    }

    /// A buffer for records; the header is written by [`CsvLog::create`], not by serde.
    fn pending() -> csv::Writer<Vec<u8>> {
        csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new())
    }

    /// Queues one typed row (a [`schema`] row type, in the header's order).
    pub(crate) fn append_row(&mut self, row: &impl Serialize) -> Result<()> {
        self.pending.serialize(row)?;
        self.spill()
    }

    /// Queues one record; it reaches the file at the next flush.
    pub fn append<I, T>(&mut self, record: I) -> Result<()>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        self.pending.write_record(record)?;
        self.spill()
    }

    /// Writes the queued records out once they pass the spill size.
    fn spill(&mut self) -> Result<()> {
        // Moves the csv writer's own buffer (now ending on a record) into the pending bytes.
        self.pending.flush()?;
        if self.pending.get_ref().len() >= Self::SPILL_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes every queued record to the file.
    pub fn flush(&mut self) -> Result<()> {
        if self.pending.get_ref().is_empty() {
            return Ok(());
        }
        let pending = std::mem::replace(&mut self.pending, Self::pending());
        let bytes = pending.into_inner().map_err(|e| e.into_error())?;
        self.file
            .write_all(&bytes)
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// Default cap on a packed cell artifact.
pub(crate) const ZIP_CAP_BYTES: u64 = 512 * 1024 * 1024;

/// Packs exactly the whitelisted files of a cell directory into `zip_path`, refusing to write
/// more than `cap` bytes of input (an artifact that large means something is being recorded
/// that should not be).
pub(crate) fn pack_zip(dir: &Path, zip_path: &Path, cap: u64) -> Result<u64> {
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
pub(crate) const ZIP_EXPAND_CAP: u64 = 4 * 1024 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_log_reaches_the_disk_in_whole_records_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log.csv");
        let mut log = CsvLog::create(&path, &["id", "text"]).expect("create");
        log.append(["1", "a, quoted\nfield"]).expect("append");
        let read = || std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            read(),
            "id,text\n",
            "a record reached the disk before a flush"
        );
        log.flush().expect("flush");
        assert_eq!(read(), "id,text\n1,\"a, quoted\nfield\"\n");
        // Past the spill size the file grows without a flush, and still ends on a whole record.
        let long = "x".repeat(1000);
        for i in 0..100 {
            log.append([i.to_string().as_str(), long.as_str()])
                .expect("append");
        }
        let text = read();
        assert!(text.len() > 64 * 1024 && text.ends_with(&format!("{long}\n")));
        let rows = csv::Reader::from_reader(text.as_bytes()).records().count();
        assert!((65..100).contains(&rows), "{rows} rows spilled");
    }

    #[test]
    fn secrets_are_redacted_by_the_name_they_come_under() {
        let env = [
            ("HF_TOKEN".to_owned(), "hf_abcdef123".to_owned()),
            ("MY_API_KEY".to_owned(), "key-98765".to_owned()),
            ("PATH_TOKEN".to_owned(), "ab".to_owned()),
            ("MODEL".to_owned(), "llama-3.1-8b".to_owned()),
        ];
        let text = "export HF_TOKEN=hf_abcdef123; key-98765 twice key-98765; ab; llama-3.1-8b";
        assert_eq!(
            redact(text, &env),
            "export HF_TOKEN=[redacted]; [redacted] twice [redacted]; ab; llama-3.1-8b"
        );
        assert!(is_secret_name("github_token") && is_secret_name("AWS_SECRET_ACCESS_KEY"));
        assert!(!is_secret_name("TOKENIZER_PATH") && !is_secret_name("MONKEY"));
    }
}
