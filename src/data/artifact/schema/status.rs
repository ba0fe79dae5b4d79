//! `status.json`: how a cell or a bare replay stands.

use serde::{Deserialize, Serialize};

use super::JsonArtifact;

/// How a cell (or a bare replay) stands: the one state `status.json` records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellState {
    /// Started and not finished; a status still saying this after its process is gone was killed.
    Running,
    Ok,
    /// Stopped early (the engine died, a signal): everything recorded so far is kept.
    Partial,
    Failed,
}

impl CellState {
    pub fn as_str(self) -> &'static str {
        match self {
            CellState::Running => "running",
            CellState::Ok => "ok",
            CellState::Partial => "partial",
            CellState::Failed => "failed",
        }
    }
}

/// `status.json`, written by `kvsweep replay`, `kvsweep run-cell` and the runner script through
/// `kvsweep cell finish` (each fills what it knows; a bare replay knows no cell name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub format_version: u32,
    pub status: CellState,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<String>,
    /// RFC 3339, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_requests: Option<u64>,
    /// The runner script's exit status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The last lines of the server log, where the engine is why the cell did not finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_log_tail: Option<String>,
}

impl Status {
    /// A status with only the state and the reason.
    pub fn new(status: CellState, reason: impl Into<String>) -> Self {
        Self {
            format_version: Self::VERSION,
            status,
            reason: reason.into(),
            cell: None,
            started_at: None,
            finished_at: None,
            requests: None,
            failed_requests: None,
            exit_code: None,
            server_log_tail: None,
        }
    }
}

impl JsonArtifact for Status {
    const FILE: &'static str = "status.json";
    const VERSION: u32 = 1;
    fn format_version(&self) -> u32 {
        self.format_version
    }
}
