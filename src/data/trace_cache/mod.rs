//! The trace cache: traces named by URL, downloaded once per machine and found there afterwards.
//!
//! A spec's `traces: {url, sha256, path}` names a `.json` or `.jsonl` trace file, or a `.zip`,
//! `.tar.gz` or `.tgz` archive of them. `kvsweep traces fetch` (the step a rendered runner script
//! starts with) and `run-cell` download it into the cache directory: `$KVSWEEP_CACHE`, else
//! `$XDG_CACHE_HOME/kvsweep/traces`, else `~/.cache/kvsweep/traces`.
//!
//! Everything happens in a scratch folder inside the cache (the download, its length and sha256
//! checks, the unpacking) and the result is renamed into place last, so an entry that exists is
//! complete: a cut download or a checksum mismatch leaves nothing a later run would take for
//! traces. A lock file per entry makes fetches that start together (Slurm array tasks on one
//! node) download once; the others wait and then find the entry.

mod download;

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::runtime::Handle;

use crate::base::archive;

/// The most bytes a trace archive may unpack to (the public kv-cache-tester corpus is 460 MB).
const MAX_UNPACKED_BYTES: u64 = 16 * 1024 * 1024 * 1024;

/// Traces to download: checked when made, so a spec error points at its field before any cell runs.
/// Read back (from `cell.json`) through the same checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RemoteTracesFields")]
pub struct RemoteTraces {
    url: String,
    /// Lowercase hex.
    sha256: Option<String>,
    /// A file or folder inside an archive; `*` and the other glob characters match.
    path: Option<String>,
    #[serde(skip)]
    kind: Kind,
}

/// The serialized fields of a [`RemoteTraces`], checked by [`RemoteTraces::new`] when read.
#[derive(Deserialize)]
struct RemoteTracesFields {
    url: String,
    sha256: Option<String>,
    path: Option<String>,
}

impl TryFrom<RemoteTracesFields> for RemoteTraces {
    type Error = Invalid;
    fn try_from(f: RemoteTracesFields) -> Result<Self, Invalid> {
        RemoteTraces::new(&f.url, f.sha256.as_deref(), f.path.as_deref())
    }
}

/// What the URL names, by its last path segment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// A trace file, kept under this name.
    File(String),
    Zip,
    TarGz,
}

/// Which part of a [`RemoteTraces`] is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Url,
    Sha256,
    Path,
}

impl Field {
    /// The field's name under a spec's `traces:`.
    pub fn name(self) -> &'static str {
        match self {
            Field::Url => "url",
            Field::Sha256 => "sha256",
            Field::Path => "path",
        }
    }
}

/// Why a [`RemoteTraces`] cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub field: Field,
    pub message: String,
}

fn invalid(field: Field, message: impl Into<String>) -> Invalid {
    Invalid {
        field,
        message: message.into(),
    }
}

impl RemoteTraces {
    /// Checks an http(s) URL naming a trace file or an archive of them, an optional sha256 of
    /// the download (64 hex digits) and an optional relative path inside an archive.
    pub fn new(url: &str, sha256: Option<&str>, path: Option<&str>) -> Result<Self, Invalid> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| invalid(Field::Url, format!("`{url}` is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(invalid(
                Field::Url,
                format!("`{url}` is not an http(s) URL with a host"),
            ));
        }
        let name = parsed
            .path_segments()
            .and_then(|mut s| s.next_back())
            .unwrap_or_default()
            .to_owned();
        let lower = name.to_ascii_lowercase();
        let kind = if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
            Kind::TarGz
        } else if lower.ends_with(".zip") {
            Kind::Zip
        } else if lower.ends_with(".json") || lower.ends_with(".jsonl") {
            Kind::File(name)
        } else {
            return Err(invalid(
                Field::Url,
                format!(
                    "the URL must name a .json or .jsonl trace file, or a .zip, .tar.gz or .tgz archive of them; it ends in `{name}`"
                ),
            ));
        };
        let sha256 = sha256
            .map(|s| {
                if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) {
                    Ok(s.to_ascii_lowercase())
                } else {
                    Err(invalid(
                        Field::Sha256,
                        format!("`{s}` is not a sha256: expected 64 hex digits"),
                    ))
                }
            })
            .transpose()?;
        if let Some(p) = path {
            check_inner_path(p, &kind)?;
        }
        Ok(Self {
            url: url.to_owned(),
            sha256,
            path: path.map(str::to_owned),
            kind,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn sha256(&self) -> Option<&str> {
        self.sha256.as_deref()
    }

    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// The `kvsweep` arguments that fetch these traces and print where they are.
    pub(crate) fn fetch_args(&self) -> Vec<String> {
        let mut args = vec!["traces".to_owned(), "fetch".to_owned(), self.url.clone()];
        if let Some(sha) = &self.sha256 {
            args.extend(["--sha256".to_owned(), sha.clone()]);
        }
        if let Some(path) = &self.path {
            args.extend(["--path".to_owned(), path.clone()]);
        }
        args
    }

    /// The cache entry's folder name: readable, and unique per URL and expected sha256.
    fn key(&self) -> String {
        let mut id = Sha256::new();
        id.update(self.url.as_bytes());
        id.update(b"\n");
        id.update(self.sha256.as_deref().unwrap_or_default().as_bytes());
        let id = format!("{:x}", id.finalize());
        let name = self.url.rsplit('/').next().unwrap_or_default();
        let readable: String = name
            .chars()
            .take(48)
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{}-{}", readable.trim_start_matches('.'), &id[..16])
    }

    /// The traces' path inside a complete cache entry.
    fn locate(&self, entry: &Path) -> Result<PathBuf> {
        let inner = match (&self.kind, &self.path) {
            (Kind::File(name), _) => return Ok(entry.join(name)),
            (_, None) => return Ok(entry.to_path_buf()),
            (_, Some(inner)) => inner,
        };
        let base = entry
            .to_str()
            .with_context(|| format!("the cache path {} is not UTF-8", entry.display()))?;
        let pattern = format!("{}/{inner}", glob::Pattern::escape(base));
        let found: Vec<PathBuf> = glob::glob(&pattern)
            .with_context(|| format!("`{inner}` is not a valid path pattern"))?
            .filter_map(Result::ok)
            .collect();
        match found.as_slice() {
            [one] => Ok(one.clone()),
            [] => bail!(
                "{} holds no `{inner}`; its top level holds: {}",
                self.url,
                top_level(entry).join(", ")
            ),
            many => bail!(
                "`{inner}` matches {} paths in {}; make it match one",
                many.len(),
                self.url
            ),
        }
    }
}

/// An archive's inner path must stay inside it, and only archives have one.
fn check_inner_path(path: &str, kind: &Kind) -> Result<(), Invalid> {
    if let Kind::File(_) = kind {
        return Err(invalid(
            Field::Path,
            "names a file or folder inside an archive, but the URL names a single trace file",
        ));
    }
    let parts: Vec<Component> = Path::new(path).components().collect();
    if parts.is_empty() || !parts.iter().all(|c| matches!(c, Component::Normal(_))) {
        return Err(invalid(
            Field::Path,
            format!("`{path}` must be a relative path inside the archive, without `..` or `.`"),
        ));
    }
    Ok(())
}

/// The names at the top of a cache entry, for an error that says what is there.
fn top_level(entry: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(entry)
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The trace cache directory: `$KVSWEEP_CACHE`, else `$XDG_CACHE_HOME/kvsweep/traces`, else
/// `~/.cache/kvsweep/traces`.
pub(crate) fn cache_dir() -> Result<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("KVSWEEP_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    let base = var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .context("cannot find a cache directory: set KVSWEEP_CACHE")?;
    Ok(base.join("kvsweep").join("traces"))
}

/// The local path of `remote`'s traces in `cache`, downloading them first if the cache has no
/// complete entry for them.
pub async fn fetch(remote: &RemoteTraces, cache: &Path) -> Result<PathBuf> {
    // The path is recorded (cell.json) and handed to other processes: never relative.
    let cache = &std::path::absolute(cache)
        .with_context(|| format!("cannot make {} absolute", cache.display()))?;
    let entry = cache.join(remote.key());
    if !entry.exists() {
        fill(remote, cache, &entry)
            .await
            .with_context(|| format!("cannot fetch the traces at {}", remote.url))?;
    }
    remote.locate(&entry)
}

/// Downloads, checks and unpacks `remote` into `entry`, under the entry's lock.
async fn fill(remote: &RemoteTraces, cache: &Path, entry: &Path) -> Result<()> {
    std::fs::create_dir_all(cache)
        .with_context(|| format!("cannot create the trace cache {}", cache.display()))?;
    let key = remote.key();
    let _lock = lock(&cache.join(format!(".{key}.lock")), &remote.url).await?;
    if entry.exists() {
        // Another fetch finished it while this one waited.
        return Ok(());
    }
    let scratch_prefix = format!(".partial-{key}-");
    remove_scratch(cache, &scratch_prefix)?;
    let scratch = tempfile::Builder::new()
        .prefix(&scratch_prefix)
        .tempdir_in(cache)
        .with_context(|| format!("cannot create a folder in {}", cache.display()))?;
    let file = scratch.path().join("download");
    eprintln!(
        "kvsweep: downloading {} into {}",
        remote.url,
        cache.display()
    );
    let got = download::to_file(&remote.url, &file).await?;
    if let Some(expected) = &remote.sha256
        && *expected != got.sha256
    {
        bail!(
            "sha256 mismatch: expected {expected}, the download's is {}; nothing was cached",
            got.sha256
        );
    }
    let content = scratch.path().join("content");
    unpack(&remote.kind, file, content.clone()).await?;
    std::fs::rename(&content, entry)
        .with_context(|| format!("cannot move the traces into {}", entry.display()))?;
    eprintln!(
        "kvsweep: fetched {} ({} bytes, sha256 {})",
        remote.url, got.bytes, got.sha256
    );
    Ok(())
}

/// Takes the entry's lock file, waiting (and saying so) while another process holds it. The
/// lock is released when the file is dropped.
async fn lock(path: &Path, url: &str) -> Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => return Ok(file),
        Err(TryLockError::WouldBlock) => {
            eprintln!("kvsweep: waiting for another kvsweep that is fetching {url}");
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .context("the lock wait was cancelled")?
        .with_context(|| format!("cannot lock {shown}"))
}

/// Removes scratch folders that earlier fetches of this entry left behind when killed. Only
/// called under the entry's lock, so none of them is in use.
fn remove_scratch(cache: &Path, prefix: &str) -> Result<()> {
    for item in
        std::fs::read_dir(cache).with_context(|| format!("cannot list {}", cache.display()))?
    {
        let item = item?;
        if item.file_name().to_string_lossy().starts_with(prefix) {
            std::fs::remove_dir_all(item.path())
                .with_context(|| format!("cannot remove {}", item.path().display()))?;
        }
    }
    Ok(())
}

/// Turns the download into the entry's content folder: the trace file under its name, or the
/// archive's files.
async fn unpack(kind: &Kind, file: PathBuf, content: PathBuf) -> Result<()> {
    let extract: fn(&Path, &Path, u64) -> Result<()> = match kind {
        Kind::File(name) => {
            std::fs::create_dir(&content)
                .with_context(|| format!("cannot create {}", content.display()))?;
            return std::fs::rename(&file, content.join(name))
                .with_context(|| format!("cannot move {}", file.display()));
        }
        Kind::Zip => archive::extract_zip,
        Kind::TarGz => archive::extract_tar_gz,
    };
    tokio::task::spawn_blocking(move || extract(&file, &content, MAX_UNPACKED_BYTES))
        .await
        .context("unpacking was cancelled")?
}

/// Download traces named by URL into the trace cache.
#[derive(Debug, clap::Args)]
pub struct TracesArgs {
    #[command(subcommand)]
    pub action: TracesAction,
}

#[derive(Debug, clap::Subcommand)]
pub enum TracesAction {
    /// Download traces into the trace cache unless they are there, and print their local path.
    ///
    /// The download is checked (its length, and its sha256 when given) and unpacked before it
    /// enters the cache, so a cut or corrupt download is an error that caches nothing.
    Fetch(FetchArgs),
}

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// A .json or .jsonl trace file, or a .zip, .tar.gz or .tgz archive of them (http or https).
    pub url: String,
    /// The download's sha256 (64 hex digits); on a mismatch nothing is cached.
    #[arg(long)]
    pub sha256: Option<String>,
    /// A file or folder inside the archive, to print instead of the archive's top folder; `*`
    /// matches any name (`kv-cache-tester-*/traces` in a GitHub archive).
    #[arg(long)]
    pub path: Option<String>,
    /// The trace cache [default: $XDG_CACHE_HOME/kvsweep/traces or ~/.cache/kvsweep/traces].
    #[arg(long, env = "KVSWEEP_CACHE", value_name = "DIR")]
    pub(crate) cache_dir: Option<PathBuf>,
}

/// `kvsweep traces fetch`, on `runtime`.
pub fn run(args: &TracesArgs, runtime: &Handle) -> Result<()> {
    let TracesAction::Fetch(args) = &args.action;
    let remote = RemoteTraces::new(&args.url, args.sha256.as_deref(), args.path.as_deref())
        .map_err(|e| match e.field {
            Field::Url => anyhow::anyhow!("{e}"),
            flag => anyhow::anyhow!("--{}: {e}", flag.name()),
        })?;
    let cache = match &args.cache_dir {
        Some(dir) => dir.clone(),
        None => cache_dir()?,
    };
    let local = runtime.block_on(fetch(&remote, &cache))?;
    println!("{}", local.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_sha256s_and_inner_paths_are_checked_where_they_are_given() {
        let err = |url, sha, path| RemoteTraces::new(url, sha, path).expect_err("invalid");
        let e = err("ftp://example.com/t.json", None, None);
        assert_eq!(e.field, Field::Url);
        let e = err("https://example.com/traces", None, None);
        assert!(e.message.contains("ends in `traces`"), "{e}");
        let e = err("https://example.com/t.json", Some("abc"), None);
        assert_eq!(e.field, Field::Sha256);
        let e = err("https://example.com/t.json", None, Some("t"));
        assert!(e.message.contains("single trace file"), "{e}");
        for bad in ["../x", "/abs", "a/../b", "./a", ""] {
            let e = err("https://example.com/t.tar.gz", None, Some(bad));
            assert_eq!(e.field, Field::Path, "{bad}");
        }
        let ok = RemoteTraces::new(
            "https://example.com/a/corpus.TGZ?raw=1",
            Some(&"AB".repeat(32)),
            Some("corpus-*/traces"),
        )
        .expect("valid");
        assert_eq!(ok.kind, Kind::TarGz);
        assert_eq!(ok.sha256(), Some("ab".repeat(32).as_str()));
    }

    #[test]
    fn the_cache_key_is_readable_and_changes_with_the_url_and_sha256() {
        let a = RemoteTraces::new("https://example.com/x/corpus.zip", None, None).expect("a");
        let b = RemoteTraces::new("https://example.com/y/corpus.zip", None, None).expect("b");
        let c = RemoteTraces::new(
            "https://example.com/x/corpus.zip",
            Some(&"0".repeat(64)),
            None,
        )
        .expect("c");
        let with_path =
            RemoteTraces::new("https://example.com/x/corpus.zip", None, Some("d")).expect("d");
        assert!(a.key().starts_with("corpus.zip-"), "{}", a.key());
        assert_ne!(a.key(), b.key());
        assert_ne!(a.key(), c.key());
        // The inner path picks inside one entry: it does not make another download.
        assert_eq!(a.key(), with_path.key());
    }

    #[test]
    fn an_https_client_can_be_built() {
        // The TLS backend is a build feature; without it every https fetch would fail.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let err = runtime
            .block_on(download::to_file(
                "https://127.0.0.1:1/t.json",
                &dir.path().join("t"),
            ))
            .err()
            .expect("nothing listens on port 1");
        let text = format!("{err:#}");
        // Without a TLS backend reqwest refuses the URL itself: "builder error: URL scheme is
        // not allowed".
        assert!(!text.contains("scheme is not allowed"), "{text}");
        assert!(
            text.contains("cannot download https://127.0.0.1:1/t.json"),
            "{text}"
        );
    }
}
