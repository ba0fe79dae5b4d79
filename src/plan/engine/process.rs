//! A running engine: started in its own process group with its output in a log, checked on
//! `/health`, and stopped (container first, then the group: TERM, a grace period, KILL).

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How long an engine gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// The engine's process, its log and, when it runs in Docker, its container's name.
pub(crate) struct EngineProcess {
    child: tokio::process::Child,
    pid: i32,
    log: PathBuf,
    docker_container: Option<String>,
}

/// Why an engine never became healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HealthError {
    Exited(String),
    TimedOut(u64),
}

impl std::fmt::Display for HealthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HealthError::Exited(status) => {
                write!(f, "the engine exited ({status}) before it became healthy")
            }
            HealthError::TimedOut(s) => write!(f, "the engine did not become healthy within {s}s"),
        }
    }
}

impl EngineProcess {
    /// Starts `argv` (which sets its own environment: `env`, or the container's), stdout and
    /// stderr going to `log`.
    pub fn spawn(argv: &[String], log: &Path, docker_container: Option<String>) -> Result<Self> {
        let (program, args) = argv.split_first().context("empty engine command")?;
        let out = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        let child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own group, so that stopping it reaches the workers an engine forks.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start `{program}`"))?;
        let pid = child
            .id()
            .context("the engine exited before its pid was read")? as i32;
        Ok(Self {
            child,
            pid,
            log: log.to_path_buf(),
            docker_container,
        })
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }

    /// The exit status, if the engine has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Polls `url` until it answers 200, the engine exits, or `timeout_s` passes.
    pub(crate) async fn wait_healthy(
        &mut self,
        url: &str,
        timeout_s: u64,
    ) -> Result<(), HealthError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| HealthError::Exited(format!("no HTTP client: {e}")))?;
        let deadline = Instant::now() + Duration::from_secs(timeout_s);
        loop {
            if let Some(status) = self.exited() {
                return Err(HealthError::Exited(status.to_string()));
            }
            if client
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(HealthError::TimedOut(timeout_s));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Stops the engine: its container, then its process group (TERM, grace period, KILL).
    pub async fn stop(&mut self) {
        if let Some(name) = &self.docker_container {
            let _ = tokio::process::Command::new("docker")
                .args(["stop", "--time", "30", name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
        }
        if self.exited().is_some() {
            return;
        }
        signal_group(self.pid, libc::SIGTERM);
        if tokio::time::timeout(STOP_GRACE, self.child.wait())
            .await
            .is_err()
        {
            signal_group(self.pid, libc::SIGKILL);
            let _ = self.child.wait().await;
        }
    }
}

fn signal_group(pgid: i32, signal: libc::c_int) {
    // SAFETY: killpg only sends a signal; a stale group id fails with ESRCH, which is fine here.
    unsafe {
        libc::killpg(pgid, signal);
    }
}

/// The last `lines` lines of a log, for status.json and error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    // Only the end matters, and engine logs can be gigabytes.
    let start = text.len().saturating_sub(64 * 1024);
    let text = String::from_utf8_lossy(&text[start..]);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Copies the last `cap` bytes of `from` to `to`.
pub(crate) fn copy_tail(from: &Path, to: &Path, cap: u64) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f =
        std::fs::File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(cap)))?;
    let mut buf = Vec::with_capacity(len.min(cap) as usize);
    f.read_to_end(&mut buf)?;
    std::fs::write(to, buf).with_context(|| format!("cannot write {}", to.display()))
}
