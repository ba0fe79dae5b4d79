//! The shared vocabulary of a sweep: engine kinds, offload modes and backends, trace formats,
//! the API a client sends prompts to.
//!
//! Specs, runners, engines, the replay and the oracle all name these; they live here, apart from
//! every one of them, so that none has to import another for a word. Each derives serde (the
//! spelling in YAML and JSON) and clap's `ValueEnum` (the spelling on the command line); the two
//! spellings are the same, and a test holds them together.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    Vllm,
    Sglang,
    LlamaServer,
    /// `kvsweep sim-server`, the simulated server.
    Sim,
}

impl EngineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Vllm => "vllm",
            EngineKind::Sglang => "sglang",
            EngineKind::LlamaServer => "llama-server",
            EngineKind::Sim => "sim",
        }
    }

    /// How long to wait for `/health` by default: real engines load weights and compile graphs.
    pub(crate) fn default_health_timeout_s(self) -> u64 {
        match self {
            EngineKind::Vllm | EngineKind::Sglang => 1800,
            EngineKind::LlamaServer => 300,
            EngineKind::Sim => 60,
        }
    }

    /// The endpoint that empties the prefix cache between runs, where the engine has one.
    pub(crate) fn reset_path(self) -> Option<&'static str> {
        match self {
            EngineKind::Vllm | EngineKind::Sim => Some("/reset_prefix_cache"),
            EngineKind::Sglang => Some("/flush_cache"),
            EngineKind::LlamaServer => None,
        }
    }

    /// The `--api` the replay should use: token ids where the engine accepts them (exact prompt
    /// lengths, no tokenizer mismatch), chat otherwise.
    pub(crate) fn replay_api(self) -> Api {
        match self {
            EngineKind::Vllm | EngineKind::Sim => Api::Completions,
            EngineKind::Sglang | EngineKind::LlamaServer => Api::Chat,
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a cell uses the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Offload {
    /// Prefix caching in HBM plus a host-memory offload tier.
    On,
    /// Prefix caching in HBM only (the engine's default).
    Off,
    /// No prefix reuse at all: the floor every cache is measured against.
    Noprefix,
}

impl Offload {
    pub fn as_str(self) -> &'static str {
        match self {
            Offload::On => "on",
            Offload::Off => "off",
            Offload::Noprefix => "noprefix",
        }
    }
}

impl fmt::Display for Offload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which connector provides the offload tier when offload is `on`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum OffloadBackend {
    /// The engine's built-in offloading (vLLM `--kv_offloading_backend native`, SGLang HiCache).
    #[default]
    Native,
    Lmcache,
    /// vLLM's SimpleCPUOffloadConnector through `--kv-transfer-config`.
    SimpleCpu,
}

impl fmt::Display for OffloadBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OffloadBackend::Native => "native",
            OffloadBackend::Lmcache => "lmcache",
            OffloadBackend::SimpleCpu => "simple-cpu",
        })
    }
}

/// Which endpoint prompts go to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Api {
    /// `/v1/completions` with token-id prompts: exact lengths, no tokenizer involved.
    #[default]
    Completions,
    /// `/v1/chat/completions` with text.
    Chat,
}

/// Trace file formats the replay reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TraceFormat {
    /// Detect from the file contents.
    #[default]
    Auto,
    /// kv-cache-tester trace JSON.
    Kvct,
    /// Mooncake / AIPerf JSONL.
    Mooncake,
    /// Qwen-Bailian JSONL (Alibaba's usage traces: `chat_id`/`parent_chat_id` chains).
    Bailian,
}

impl fmt::Display for TraceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TraceFormat::Auto => "auto",
            TraceFormat::Kvct => "kvct",
            TraceFormat::Mooncake => "mooncake",
            TraceFormat::Bailian => "bailian",
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;

    /// The command-line spelling of a value.
    fn cli<T: ValueEnum>(v: &T) -> String {
        v.to_possible_value()
            .expect("not skipped")
            .get_name()
            .to_owned()
    }

    /// The YAML/JSON spelling of a value.
    fn serialized<T: Serialize>(v: &T) -> String {
        serde_json::to_value(v)
            .expect("serializes")
            .as_str()
            .expect("a string")
            .to_owned()
    }

    #[test]
    fn engine_kinds_are_spelled_alike_everywhere() {
        for k in EngineKind::value_variants() {
            assert_eq!(cli(k), k.as_str());
            assert_eq!(serialized(k), k.as_str());
            assert_eq!(k.to_string(), k.as_str());
        }
        assert_eq!(EngineKind::LlamaServer.as_str(), "llama-server");
    }

    #[test]
    fn offload_modes_and_backends_are_spelled_alike_everywhere() {
        for o in Offload::value_variants() {
            assert_eq!(cli(o), o.as_str());
            assert_eq!(serialized(o), o.as_str());
        }
        assert_eq!(Offload::Noprefix.as_str(), "noprefix");
        for b in OffloadBackend::value_variants() {
            assert_eq!(cli(b), b.to_string());
            assert_eq!(serialized(b), b.to_string());
        }
        assert_eq!(OffloadBackend::SimpleCpu.to_string(), "simple-cpu");
    }

    #[test]
    fn trace_formats_are_spelled_alike_everywhere() {
        for f in TraceFormat::value_variants() {
            assert_eq!(cli(f), f.to_string());
            assert_eq!(serialized(f), f.to_string());
        }
        assert_eq!(TraceFormat::default(), TraceFormat::Auto);
    }

    #[test]
    fn apis_are_spelled_alike_everywhere() {
        for a in Api::value_variants() {
            assert_eq!(cli(a), serialized(a));
        }
    }

    #[test]
    fn engine_defaults_follow_the_kind() {
        assert_eq!(EngineKind::Vllm.reset_path(), Some("/reset_prefix_cache"));
        assert_eq!(EngineKind::Sglang.reset_path(), Some("/flush_cache"));
        assert_eq!(EngineKind::LlamaServer.reset_path(), None);
        assert_eq!(EngineKind::Sim.replay_api(), Api::Completions);
        assert_eq!(EngineKind::LlamaServer.replay_api(), Api::Chat);
        assert!(
            EngineKind::Vllm.default_health_timeout_s()
                > EngineKind::Sim.default_health_timeout_s()
        );
    }
}
