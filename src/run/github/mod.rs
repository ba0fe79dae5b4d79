//! `kvsweep artifacts download`: a workflow run's cell artifacts from GitHub Actions, ready for
//! `kvsweep collect`.
//!
//! Lists the run's artifacts page by page (octocrab), keeps those matching `--pattern`, and
//! extracts each into `OUT/<artifact>/` as `actions/download-artifact` would, refusing entries
//! that would escape that folder and archives over the size cap. Requests are retried with
//! backoff; an artifact that still fails is reported and the others are kept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use octocrab::Octocrab;
use octocrab::models::workflows::WorkflowListArtifact;
use octocrab::params::actions::ArchiveFormat;
use tokio::runtime::Handle;

use crate::base::archive::extract_zip;
use crate::data::artifact::ZIP_EXPAND_CAP;

/// Download a workflow run's cell artifacts from GitHub Actions.
#[derive(Debug, Clone, clap::Args)]
pub struct ArtifactsArgs {
    #[command(subcommand)]
    pub action: ArtifactsAction,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ArtifactsAction {
    /// Download and extract the run's artifacts into `OUT/<artifact>/` (needs GITHUB_TOKEN).
    Download(DownloadArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct DownloadArgs {
    /// The repository, OWNER/NAME.
    #[arg(long)]
    pub repo: String,
    /// The workflow run id (the number in the run's URL).
    #[arg(long)]
    pub run: u64,
    /// Only artifacts whose name matches this glob (e.g. `multiturn_*`).
    #[arg(long, default_value = "*")]
    pub pattern: String,
    #[arg(long)]
    pub out: PathBuf,
    /// The GitHub REST API.
    #[arg(long, env = "GITHUB_API_URL", default_value = "https://api.github.com")]
    api_url: String,
    /// Refuse artifacts larger than this (compressed or extracted).
    #[arg(long, default_value_t = ZIP_EXPAND_CAP)]
    max_bytes: u64,
}

const ATTEMPTS: u32 = 4;

/// Runs `op` until it succeeds or [`ATTEMPTS`] tries have failed, waiting 0.5 s, 1 s, 2 s between.
async fn retry<T, F, Fut>(what: &str, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = octocrab::Result<T>>,
{
    let mut wait = Duration::from_millis(500);
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < ATTEMPTS && retryable(&e) => {
                eprintln!("artifacts: {what} failed ({e}); retrying in {wait:?}");
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("{what} failed"))),
        }
    }
}

/// Server errors, rate limits and transport failures are worth another try; 404 or 401 is not.
fn retryable(e: &octocrab::Error) -> bool {
    match e {
        octocrab::Error::GitHub { source, .. } => {
            source.status_code.is_server_error() || source.status_code.as_u16() == 429
        }
        octocrab::Error::Serde { .. } | octocrab::Error::Json { .. } => false,
        _ => true,
    }
}

fn client(api_url: &str) -> Result<Octocrab> {
    let token = std::env::var("GITHUB_TOKEN")
        .context("set GITHUB_TOKEN to a token that can read the repository's Actions artifacts")?;
    Octocrab::builder()
        .base_uri(api_url)
        .with_context(|| format!("bad --api-url `{api_url}`"))?
        .personal_token(token)
        .build()
        .context("cannot build the GitHub client")
}

/// Every artifact of the run, following the listing's pages.
async fn list(
    gh: &Octocrab,
    owner: &str,
    repo: &str,
    run: u64,
) -> Result<Vec<WorkflowListArtifact>> {
    let what = format!("listing the artifacts of run {run} of {owner}/{repo}");
    let first = retry(&what, || async {
        gh.actions()
            .list_workflow_run_artifacts(owner, repo, run.into())
            .per_page(100)
            .send()
            .await
    })
    .await?;
    let mut page = first
        .value
        .context("GitHub answered the listing with no body")?;
    let mut all = Vec::new();
    loop {
        all.append(&mut page.items);
        let next = page.next.clone();
        match retry(&what, || gh.get_page::<WorkflowListArtifact>(&next)).await? {
            Some(p) => page = p,
            None => return Ok(all),
        }
    }
}

/// An artifact name safe as one folder name.
fn folder_name(name: &str) -> Result<&str> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        bail!("artifact name `{name}` is not a safe folder name");
    }
    Ok(name)
}

async fn fetch(
    gh: &Octocrab,
    owner: &str,
    repo: &str,
    a: &WorkflowListArtifact,
    out: &Path,
    cap: u64,
) -> Result<()> {
    let name = folder_name(&a.name)?;
    if a.expired {
        bail!("artifact `{name}` has expired");
    }
    if a.size_in_bytes as u64 > cap {
        bail!(
            "artifact `{name}` is {} bytes, over the {cap}-byte cap",
            a.size_in_bytes
        );
    }
    let bytes = retry(&format!("downloading `{name}`"), || async {
        gh.actions()
            .download_artifact(owner, repo, a.id, ArchiveFormat::Zip)
            .await
    })
    .await?;
    let dest = out.join(name);
    if dest.exists() {
        std::fs::remove_dir_all(&dest)
            .with_context(|| format!("cannot replace {}", dest.display()))?;
    }
    let zip = tempfile::NamedTempFile::new()?;
    std::fs::write(zip.path(), &bytes)?;
    std::fs::create_dir_all(&dest)?;
    if let Err(e) = extract_zip(zip.path(), &dest, cap) {
        let _ = std::fs::remove_dir_all(&dest);
        return Err(e.context(format!("artifact `{name}`")));
    }
    Ok(())
}

/// `kvsweep artifacts download`, on `runtime`.
pub fn run(args: &ArtifactsArgs, runtime: &Handle) -> Result<()> {
    let ArtifactsAction::Download(args) = &args.action;
    let (owner, repo) = args
        .repo
        .split_once('/')
        .filter(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'))
        .with_context(|| format!("--repo must be OWNER/NAME, got `{}`", args.repo))?;
    let pattern = glob::Pattern::new(&args.pattern)
        .with_context(|| format!("--pattern `{}` is not a glob", args.pattern))?;
    runtime.block_on(async {
        let gh = client(&args.api_url)?;
        let artifacts = list(&gh, owner, repo, args.run).await?;
        let wanted: Vec<&WorkflowListArtifact> = artifacts
            .iter()
            .filter(|a| pattern.matches(&a.name))
            .collect();
        if wanted.is_empty() {
            bail!(
                "run {} of {} has {} artifacts and none matches `{}`",
                args.run,
                args.repo,
                artifacts.len(),
                args.pattern
            );
        }
        std::fs::create_dir_all(&args.out)
            .with_context(|| format!("cannot create {}", args.out.display()))?;
        let bar = indicatif::ProgressBar::new(wanted.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
                .expect("valid template"),
        );
        let mut failed = Vec::new();
        for a in &wanted {
            bar.set_message(a.name.clone());
            if let Err(e) = fetch(&gh, owner, repo, a, &args.out, args.max_bytes).await {
                bar.suspend(|| eprintln!("artifacts: {e:#}"));
                failed.push(a.name.clone());
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        eprintln!(
            "artifacts: {} of {} downloaded into {}{}",
            wanted.len() - failed.len(),
            wanted.len(),
            args.out.display(),
            if failed.is_empty() {
                String::new()
            } else {
                format!("; failed: {}", failed.join(", "))
            }
        );
        if failed.is_empty() {
            Ok(())
        } else {
            bail!("{} artifacts could not be downloaded", failed.len())
        }
    })
}
