//! One HTTP download into a file, checked as it arrives: the byte count against the
//! Content-Length the server announced, and the sha256 of exactly what was written.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

/// What arrived.
pub(crate) struct Downloaded {
    pub bytes: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// Downloads `url` into `path` (created), with a progress bar on a terminal. A connection that
/// ends before the announced length, or stalls for two minutes, is an error.
pub(crate) async fn to_file(url: &str, path: &Path) -> Result<Downloaded> {
    let client = reqwest::Client::builder()
        .user_agent(concat!("kvsweep/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(120))
        .build()
        .context("cannot build the HTTP client")?;
    let mut response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("cannot download {url}"))?;
    let status = response.status();
    if !status.is_success() {
        bail!("cannot download {url}: the server answered {status}");
    }
    let announced = response.content_length();
    let mut out = BufWriter::new(
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    let mut hasher = Sha256::new();
    let mut written = 0u64;
    let bar = progress_bar(announced);
    let cut = |written: u64| match announced {
        Some(len) => format!("the download of {url} was cut after {written} of {len} bytes"),
        None => format!("the download of {url} was cut after {written} bytes"),
    };
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                bar.finish_and_clear();
                return Err(anyhow::Error::new(e).context(cut(written)));
            }
        };
        out.write_all(&chunk)
            .with_context(|| format!("cannot write {}", path.display()))?;
        hasher.update(&chunk);
        written += chunk.len() as u64;
        bar.set_position(written);
    }
    bar.finish_and_clear();
    if announced.is_some_and(|len| len != written) {
        bail!(cut(written));
    }
    out.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Downloaded {
        bytes: written,
        sha256: format!("{:x}", hasher.finalize()),
    })
}

/// Bytes, rate and time left; a spinner when the server gives no length. Drawn only on a
/// terminal (indicatif hides it otherwise), so logs get none of it.
fn progress_bar(len: Option<u64>) -> ProgressBar {
    let (bar, template) = match len {
        Some(len) => (
            ProgressBar::new(len),
            "{bar:30} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}, {eta} left",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{spinner} {binary_bytes} {binary_bytes_per_sec}",
        ),
    };
    bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
    bar
}
