//! `metadata.json`: what a replay ran against and with.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{JsonArtifact, required};

/// The trace set a replay read (`metadata.json` → `traces`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceSetInfo {
    pub files: usize,
    pub sessions: usize,
    pub digest: String,
    pub skipped_records: usize,
    /// The first 100 records left out, and why.
    pub skipped: Vec<String>,
}

/// `metadata.json`: what a replay ran against and with. Written when the run starts and again
/// as it learns more (the server's answer, the warm-up, the end); the fields it has not learned
/// yet are absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub format_version: u32,
    pub command: Vec<String>,
    pub kvsweep_version: String,
    /// `--engine-label`, then what the server turned out to be (`sim` for the simulator).
    #[serde(deserialize_with = "required")]
    pub engine: Option<String>,
    pub url: Vec<String>,
    pub api: String,
    pub users: u32,
    pub duration_s: f64,
    pub timing: String,
    pub time_scale: f64,
    pub seed: u64,
    /// The lowest and highest token id of completions prompts (none for chat).
    #[serde(deserialize_with = "required")]
    pub prompt_token_ids: Option<[u32; 2]>,
    pub traces: TraceSetInfo,
    /// Unix seconds.
    pub started_at: f64,
    #[serde(deserialize_with = "required")]
    pub finished_at: Option<f64>,
    pub completed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulated: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The server's `/v1/models` answer, as it gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_reset: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_requests: Option<u64>,
    /// Set at the end: `null` when the cache did not look warm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_cache_warning: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abandoned_requests: Option<usize>,
}

impl JsonArtifact for Metadata {
    const FILE: &'static str = "metadata.json";
    const VERSION: u32 = 1;
    fn format_version(&self) -> u32 {
        self.format_version
    }
}

impl Metadata {
    /// The simulator's speed, when the server was the simulator and said it.
    pub fn sim_speed(&self) -> Option<f64> {
        self.models.as_ref()?["data"]
            .as_array()?
            .iter()
            .find_map(|m| m["sim_speed"].as_f64())
    }

    /// The runner whose GPUs the simulator modelled, when the server was the simulator and
    /// said it.
    pub fn sim_runner(&self) -> Option<&str> {
        self.models.as_ref()?["data"]
            .as_array()?
            .iter()
            .find_map(|m| m["sim_runner"].as_str())
    }
}
