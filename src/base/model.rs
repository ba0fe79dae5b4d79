//! Model KV-cache geometry: built-in presets and hand-given geometry.
//!
//! The sweep only needs to know how many bytes one token of KV cache takes (to size caches and
//! offload tiers) and how large the weights are (to know what is left of HBM for the cache).

use serde::{Deserialize, Serialize};

/// Element type of the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvDtype {
    Fp8,
    Bf16,
    Fp16,
    Fp32,
}

impl KvDtype {
    pub fn bytes(self) -> u64 {
        match self {
            KvDtype::Fp8 => 1,
            KvDtype::Bf16 | KvDtype::Fp16 => 2,
            KvDtype::Fp32 => 4,
        }
    }
}

/// How attention stores its KV cache, which decides the bytes per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "attention", rename_all = "lowercase")]
pub enum Attention {
    /// Grouped-query (and multi-head) attention: a K and a V vector per KV head per layer.
    Gqa { kv_heads: u32, head_dim: u32 },
    /// Multi-head latent attention (DeepSeek): one compressed latent plus a RoPE key per layer.
    Mla { kv_lora_rank: u32, rope_dim: u32 },
}

/// The KV geometry of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Geometry {
    pub layers: u32,
    #[serde(flatten)]
    pub attention: Attention,
    pub dtype: KvDtype,
    /// Parameters in billions; 0 when unknown (hand-given geometry).
    pub params_b: u32,
    /// Parameters used per token, in billions (less than `params_b` for mixture-of-experts).
    pub(crate) active_params_b: u32,
    /// Model (residual) width, for attention FLOPs.
    pub hidden: u32,
}

impl Geometry {
    /// Bytes of KV cache one token takes across all layers (whole model, before TP sharding).
    pub fn kv_bytes_per_token(&self) -> u64 {
        let per_layer = match self.attention {
            Attention::Gqa { kv_heads, head_dim } => 2 * u64::from(kv_heads) * u64::from(head_dim),
            Attention::Mla {
                kv_lora_rank,
                rope_dim,
            } => u64::from(kv_lora_rank) + u64::from(rope_dim),
        };
        per_layer * u64::from(self.layers) * self.dtype.bytes()
    }
}

/// A named preset: the geometry of a model users commonly sweep.
pub struct Preset {
    pub name: &'static str,
    pub geometry: Geometry,
}

const fn gqa(
    layers: u32,
    kv_heads: u32,
    head_dim: u32,
    hidden: u32,
    params_b: u32,
    active_params_b: u32,
) -> Geometry {
    Geometry {
        layers,
        attention: Attention::Gqa { kv_heads, head_dim },
        dtype: KvDtype::Bf16,
        params_b,
        active_params_b,
        hidden,
    }
}

/// Built-in presets, from the models' published `config.json`. KV dtype is bf16 unless a spec
/// overrides it.
const PRESETS: &[Preset] = &[
    Preset {
        name: "llama-3.1-8b",
        geometry: gqa(32, 8, 128, 4096, 8, 8),
    },
    Preset {
        name: "llama-3.1-70b",
        geometry: gqa(80, 8, 128, 8192, 71, 71),
    },
    Preset {
        name: "qwen3-32b",
        geometry: gqa(64, 8, 128, 5120, 33, 33),
    },
    Preset {
        name: "qwen3-235b-a22b",
        geometry: gqa(94, 4, 128, 4096, 235, 22),
    },
    Preset {
        name: "gpt-oss-120b",
        geometry: gqa(36, 8, 64, 2880, 117, 5),
    },
    Preset {
        name: "deepseek-r1",
        geometry: Geometry {
            layers: 61,
            attention: Attention::Mla {
                kv_lora_rank: 512,
                rope_dim: 64,
            },
            dtype: KvDtype::Bf16,
            params_b: 671,
            active_params_b: 37,
            hidden: 7168,
        },
    },
];

/// Looks a preset up by name.
pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// Names of all presets, for error messages and `--help`.
pub(crate) fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|p| p.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_70b_bf16_takes_320_kib_per_token() {
        let g = preset("llama-3.1-70b").expect("preset").geometry;
        assert_eq!(g.kv_bytes_per_token(), 2 * 8 * 128 * 80 * 2);
        assert_eq!(g.kv_bytes_per_token(), 327_680);
    }

    #[test]
    fn mla_stores_one_latent_per_layer() {
        let g = preset("deepseek-r1").expect("preset").geometry;
        assert_eq!(g.kv_bytes_per_token(), (512 + 64) * 61 * 2);
    }

    #[test]
    fn fp8_halves_the_cache() {
        let mut g = preset("llama-3.1-8b").expect("preset").geometry;
        let bf16 = g.kv_bytes_per_token();
        g.dtype = KvDtype::Fp8;
        assert_eq!(g.kv_bytes_per_token() * 2, bf16);
    }
}
