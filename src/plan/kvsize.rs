//! `kvsweep kv-size`: KV-cache bytes per token of a model (GQA or MLA), from a preset or a
//! Hugging Face `config.json`, and how many tokens fit per GPU and per TP group after weights.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;

use crate::base::capacity;
use crate::base::model::{self, Attention, Geometry, KvDtype};
use crate::base::runner::RunnerSet;

/// KV-cache bytes per token and tokens per GPU for a model.
#[derive(Debug, Clone, clap::Args)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["config", "preset"]))]
pub struct KvSizeArgs {
    /// A Hugging Face config.json.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A built-in model preset.
    #[arg(long)]
    pub preset: Option<String>,
    /// KV cache element type.
    #[arg(long, value_enum, default_value_t = DtypeArg::Bf16)]
    pub dtype: DtypeArg,
    /// Weight element type (for what is left of HBM).
    #[arg(long, value_enum, default_value_t = DtypeArg::Bf16)]
    weight_dtype: DtypeArg,
    /// Parameters in billions, instead of the estimate from config.json.
    #[arg(long)]
    pub params_b: Option<f64>,
    /// A hardware runner: also print tokens per GPU and per TP group.
    #[arg(long)]
    pub runner: Option<String>,
    #[arg(long, default_value_t = 1, requires = "runner")]
    pub tp: u32,
    /// Share of HBM the engine may use (vLLM's --gpu-memory-utilization).
    #[arg(long, default_value_t = 0.9)]
    pub(crate) gpu_memory_utilization: f64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DtypeArg {
    Fp8,
    Bf16,
}

impl DtypeArg {
    fn kv(self) -> KvDtype {
        match self {
            DtypeArg::Fp8 => KvDtype::Fp8,
            DtypeArg::Bf16 => KvDtype::Bf16,
        }
    }
}

/// What `kv-size` reports.
#[derive(Debug, Clone, Serialize)]
pub struct KvSize {
    pub model: String,
    pub layers: u32,
    pub attention: &'static str,
    pub kv_bytes_per_token: u64,
    pub params_b: f64,
    /// True when `params_b` was estimated from the config's shapes.
    params_estimated: bool,
    pub fit: Option<Fit>,
}

/// How the cache fits on a runner with a TP size.
#[derive(Debug, Clone, Serialize)]
pub struct Fit {
    pub runner: String,
    pub tp: u32,
    pub(crate) hbm_gb_per_gpu: f64,
    weights_gb_per_gpu: f64,
    kv_gb_per_gpu: f64,
    pub kv_bytes_per_token_per_gpu: f64,
    pub tokens_per_gpu: u64,
    /// Every GPU of a TP group holds a shard of the same tokens.
    tokens_per_tp_group: u64,
    tp_groups_per_node: u32,
    pub tokens_per_node: u64,
}

fn field(config: &Value, names: &[&str]) -> Option<f64> {
    names
        .iter()
        .find_map(|n| config.get(*n).and_then(Value::as_f64))
}

/// The KV geometry and parameter count of a Hugging Face config (its `text_config` for
/// multimodal models). Hybrid models list `layer_types`: only full-attention layers count.
fn from_hf_config(config: &Value) -> Result<(Geometry, f64)> {
    let c = config.get("text_config").unwrap_or(config);
    let need = |names: &[&str]| {
        field(c, names).with_context(|| format!("config.json has no `{}`", names[0]))
    };
    let layers = need(&["num_hidden_layers", "n_layer", "num_layers"])? as u32;
    let hidden = need(&["hidden_size", "n_embd", "d_model"])?;
    let heads = need(&["num_attention_heads", "n_head"])?;
    let kv_heads = field(c, &["num_key_value_heads", "num_kv_heads"]).unwrap_or(heads);
    let head_dim = field(c, &["head_dim"]).unwrap_or(hidden / heads);
    let kv_layers = match c.get("layer_types").and_then(Value::as_array) {
        Some(types) => types
            .iter()
            .filter(|t| {
                t.as_str()
                    .is_some_and(|t| t == "full_attention" || t == "attention")
            })
            .count() as u32,
        None => layers,
    };
    let vocab = field(c, &["vocab_size"]).unwrap_or(0.0);
    let tied = c
        .get("tie_word_embeddings")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let intermediate = field(c, &["intermediate_size", "ffn_dim"]).unwrap_or(4.0 * hidden);
    let experts =
        field(c, &["n_routed_experts", "num_experts", "num_local_experts"]).unwrap_or(0.0);
    let moe_intermediate = field(c, &["moe_intermediate_size"]).unwrap_or(intermediate);
    let shared_experts = field(c, &["n_shared_experts"]).unwrap_or(0.0);
    let dense_layers = if experts > 0.0 {
        field(c, &["first_k_dense_replace"]).unwrap_or(0.0)
    } else {
        f64::from(layers)
    };
    let mla = field(c, &["kv_lora_rank"]);
    let (attention, attn_params) = match mla {
        Some(rank) => {
            let rope = field(c, &["qk_rope_head_dim"]).unwrap_or(64.0);
            let nope = field(c, &["qk_nope_head_dim"]).unwrap_or(128.0);
            let v = field(c, &["v_head_dim"]).unwrap_or(128.0);
            let q_rank = field(c, &["q_lora_rank"]).unwrap_or(0.0);
            let q = if q_rank > 0.0 {
                hidden * q_rank + q_rank * heads * (nope + rope)
            } else {
                hidden * heads * (nope + rope)
            };
            let params =
                q + hidden * (rank + rope) + rank * heads * (nope + v) + heads * v * hidden;
            (
                Attention::Mla {
                    kv_lora_rank: rank as u32,
                    rope_dim: rope as u32,
                },
                params,
            )
        }
        None => (
            Attention::Gqa {
                kv_heads: kv_heads as u32,
                head_dim: head_dim as u32,
            },
            2.0 * hidden * heads * head_dim + 2.0 * hidden * kv_heads * head_dim,
        ),
    };
    let moe_layers = f64::from(layers) - dense_layers;
    let params = vocab * hidden * if tied { 1.0 } else { 2.0 }
        + f64::from(layers) * attn_params
        + dense_layers * 3.0 * hidden * intermediate
        + moe_layers * (experts + shared_experts) * 3.0 * hidden * moe_intermediate;
    let geometry = Geometry {
        layers: kv_layers,
        attention,
        dtype: KvDtype::Bf16,
        params_b: (params / 1e9).round() as u32,
        active_params_b: 0,
        hidden: hidden as u32,
    };
    Ok((geometry, params / 1e9))
}

pub fn size(args: &KvSizeArgs, runners: &RunnerSet) -> Result<KvSize> {
    let (name, mut geometry, mut params_b, estimated) = match (&args.preset, &args.config) {
        (Some(p), _) => {
            let preset = model::preset(p).with_context(|| {
                format!(
                    "unknown preset `{p}`; known: {}",
                    model::preset_names().join(", ")
                )
            })?;
            (
                p.clone(),
                preset.geometry,
                f64::from(preset.geometry.params_b),
                false,
            )
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let config: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?;
            let (g, p) = from_hf_config(&config).with_context(|| path.display().to_string())?;
            let name = config
                .get("_name_or_path")
                .or_else(|| config.get("model_type"))
                .and_then(Value::as_str)
                .unwrap_or("config.json")
                .to_owned();
            (name, g, p, true)
        }
        (None, None) => bail!("give --config or --preset"),
    };
    if let Some(p) = args.params_b {
        params_b = p;
    }
    geometry.dtype = args.dtype.kv();
    let per_token = geometry.kv_bytes_per_token();
    let fit = match &args.runner {
        None => None,
        Some(r) => {
            let runner = runners.get(r).with_context(|| {
                format!(
                    "unknown runner `{r}`; known: {}",
                    runners.names().join(", ")
                )
            })?;
            if args.tp == 0 || runner.gpus_per_node % args.tp != 0 {
                bail!(
                    "--tp {} does not divide the {} GPUs of {r}",
                    args.tp,
                    runner.gpus_per_node
                );
            }
            let tp = f64::from(args.tp);
            let weights =
                capacity::weight_bytes(params_b, args.weight_dtype.kv().bytes() as f64) / tp;
            let kv = capacity::kv_bytes(
                runner.hbm_gb_per_gpu,
                1.0,
                args.gpu_memory_utilization,
                weights,
            );
            // GQA heads are split over TP (a head is never split: fewer heads than ranks are
            // replicated); an MLA latent is replicated on every rank.
            let per_gpu = match geometry.attention {
                Attention::Gqa { kv_heads, .. } => {
                    per_token as f64 / f64::from(kv_heads) * f64::from(kv_heads.div_ceil(args.tp))
                }
                Attention::Mla { .. } => per_token as f64,
            };
            let tokens = if kv > 0.0 {
                (kv / per_gpu).floor() as u64
            } else {
                0
            };
            let groups = runner.gpus_per_node / args.tp;
            Some(Fit {
                runner: runner.name.clone(),
                tp: args.tp,
                hbm_gb_per_gpu: runner.hbm_gb_per_gpu,
                weights_gb_per_gpu: weights / 1e9,
                kv_gb_per_gpu: kv.max(0.0) / 1e9,
                kv_bytes_per_token_per_gpu: per_gpu,
                tokens_per_gpu: tokens,
                tokens_per_tp_group: tokens,
                tp_groups_per_node: groups,
                tokens_per_node: tokens * u64::from(groups),
            })
        }
    };
    Ok(KvSize {
        model: name,
        layers: geometry.layers,
        attention: match geometry.attention {
            Attention::Gqa { .. } => "gqa",
            Attention::Mla { .. } => "mla",
        },
        kv_bytes_per_token: per_token,
        params_b,
        params_estimated: estimated && args.params_b.is_none(),
        fit,
    })
}

pub fn run(args: &KvSizeArgs, runners: &RunnerSet) -> Result<()> {
    let s = size(args, runners)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!("model                {}", s.model);
    println!(
        "attention            {} over {} layers",
        s.attention, s.layers
    );
    println!(
        "KV per token         {} bytes ({:.1} KiB, {:?})",
        s.kv_bytes_per_token,
        s.kv_bytes_per_token as f64 / 1024.0,
        args.dtype
    );
    println!(
        "parameters           {:.1} B{}",
        s.params_b,
        if s.params_estimated {
            " (estimated from config.json; --params-b to set)"
        } else {
            ""
        }
    );
    if let Some(f) = &s.fit {
        println!(
            "runner               {} ({} GB HBM per GPU), TP {}",
            f.runner, f.hbm_gb_per_gpu, f.tp
        );
        println!("weights per GPU      {:.1} GB", f.weights_gb_per_gpu);
        println!(
            "KV per GPU           {:.1} GB at --gpu-memory-utilization {}",
            f.kv_gb_per_gpu, args.gpu_memory_utilization
        );
        println!("tokens per GPU       {}", f.tokens_per_gpu);
        println!(
            "tokens per TP group  {} ({} groups per node: {} tokens)",
            f.tokens_per_tp_group, f.tp_groups_per_node, f.tokens_per_node
        );
    }
    Ok(())
}
