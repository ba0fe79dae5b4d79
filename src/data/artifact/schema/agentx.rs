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
    /// The sampled instant t*, seconds into the trace on its idle-capped timeline (AIPerf's
    /// wall-clock snapshot); `None` where the lane fell back to the turn-count rule.
    #[serde(deserialize_with = "required")]
    pub t_star_s: Option<f64>,
    /// The root's start turn (primed whole, before timing): its last turn before t*.
    pub start_turn: usize,
    /// Warm-up requests answered (the primers and the extra one-token turns).
    pub warmup_requests: u64,
    /// The root's first profiled turn (its turn count when all its turns were before t*).
    pub profile_from: usize,
    /// The subagents live at t*, resumed with the root.
    pub subagents: Vec<SubagentStart>,
}

/// A subagent live at a lane's sampled instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubagentStart {
    pub session: String,
    /// Its turn primed before timing (`None`: it had sent nothing yet).
    #[serde(deserialize_with = "required")]
    pub start_turn: Option<usize>,
    /// Its first profiled turn.
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
    pub(crate) failed_request_threshold: Option<f64>,
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
    /// 2: each lane's sampled instant and its live subagents.
    const VERSION: u32 = 2;
    fn format_version(&self) -> u32 {
        self.format_version
    }
}
