//! `metadata.json`: what a replay ran against and with.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{JsonArtifact, required};
use crate::base::kinds::Api;
use crate::base::workload::replay::Timing;

/// Who owns the simulated server's models in its `/v1/models` answer.
const SIMULATOR_OWNER: &str = "kvsweep-sim";

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

/// The simulated server's clock and hardware (`metadata.json` → `simulator`), as its
/// `/v1/models` answer gave them (`sim_speed`, `sim_runner`). Collect puts a simulated cell's
/// figures into the modelled hardware's time with the speed, and prices the cell as the runner.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Simulator {
    /// How many times faster than the modelled hardware the simulator ran (`--speed`): its
    /// rates are this many times the hardware's, its latencies this many times shorter. `null`
    /// with `--instant`, whose steps take no time at all.
    #[serde(deserialize_with = "required")]
    pub speed: Option<f64>,
    /// The runner whose GPUs it modelled.
    #[serde(deserialize_with = "required")]
    pub runner: Option<String>,
}

impl Simulator {
    /// What a `/v1/models` answer says of the simulator: `None` when no model in it is the
    /// simulator's (owned by `kvsweep-sim`, or with its `sim_speed` or `sim_runner`).
    pub(crate) fn from_models(models: &Value) -> Option<Self> {
        models["data"].as_array()?.iter().find_map(|m| {
            let own = m["owned_by"] == SIMULATOR_OWNER
                || m.get("sim_speed").is_some()
                || m.get("sim_runner").is_some();
            own.then(|| Self {
                speed: m["sim_speed"].as_f64(),
                runner: m["sim_runner"].as_str().map(str::to_owned),
            })
        })
    }
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
    /// As the command line spells it (`chat`, `completions`).
    pub api: Api,
    pub users: u32,
    pub duration_s: f64,
    /// As the command line spells it (`think-only`); the Rust names (`ThinkOnly`) that older
    /// replays wrote are still read.
    #[serde(deserialize_with = "timing_either_spelling")]
    pub timing: Timing,
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
    /// When the server was the simulator: its speed and modelled hardware, typed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulator: Option<Simulator>,
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

/// Reads `timing` as the command line spells it, or as the Rust name older replays wrote
/// (`ThinkOnly`, `ApiScaled`, `Original`): those artifacts are kept and still collected.
fn timing_either_spelling<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Timing, D::Error> {
    let text = String::deserialize(d)?;
    match text.as_str() {
        "ThinkOnly" => Ok(Timing::ThinkOnly),
        "ApiScaled" => Ok(Timing::ApiScaled),
        "Original" => Ok(Timing::Original),
        _ => Timing::deserialize(serde::de::value::StrDeserializer::<D::Error>::new(&text)),
    }
}

impl Metadata {
    /// The simulator's speed and hardware, when the server was the simulator. A
    /// `metadata.json` written before the replay recorded `simulator` has them only in the
    /// `/v1/models` answer it kept (`models`), so they are read there.
    pub fn simulator(&self) -> Option<Simulator> {
        self.simulator
            .clone()
            .or_else(|| Simulator::from_models(self.models.as_ref()?))
    }
}
