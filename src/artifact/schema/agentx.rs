//! `agentx.json`: what the AgentX scenario (`replay --scenario agentx`) did before timing: the
//! rules as run and where each lane started.

use serde::{Deserialize, Serialize};

use super::{JsonArtifact, required};

/// One lane's start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaneStart {
    pub lane: u32,
    pub session: String,
    pub turns: usize,
    /// The start turn (primed whole, before timing).
    pub start_turn: usize,
    /// Warm-up requests answered (the primer and the extra one-token turns).
    pub warmup_requests: u64,
    /// The first profiled turn.
    pub profile_from: usize,
}

/// The scenario's rules as run and each lane's start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentxRecord {
    pub format_version: u32,
    #[serde(deserialize_with = "required")]
    pub start_ratio: Option<(f64, f64)>,
    pub warmup_requests_per_lane: u32,
    #[serde(deserialize_with = "required")]
    pub system_idle_gap_cap_s: Option<f64>,
    #[serde(deserialize_with = "required")]
    pub trace_idle_gap_cap_s: Option<f64>,
    #[serde(deserialize_with = "required")]
    pub failed_request_threshold: Option<f64>,
    /// The per-run marker mixed into every prompt (`--cache-bust first-turn-prefix`), if any.
    #[serde(deserialize_with = "required")]
    pub cache_bust_marker: Option<u64>,
    pub lanes: Vec<LaneStart>,
    /// Seconds the system-idle cap skipped, and how many times it moved the waits.
    pub system_idle_skipped_s: f64,
    pub system_idle_jumps: u64,
}

impl JsonArtifact for AgentxRecord {
    const FILE: &'static str = "agentx.json";
    const VERSION: u32 = 1;
    fn format_version(&self) -> u32 {
        self.format_version
    }
}
