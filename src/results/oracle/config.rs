//! The oracle's JSON config: model profile, deployments (per prompt-length bucket in trace mode),
//! TPS anchors and the trace-free scenario. Field names follow kvcache-upper-bound's configs so
//! theirs load unchanged; memory fields are GiB (their `1024` for 1 TiB).

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::stream::Scope;
use crate::base::model::{self, Attention};

pub(crate) const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The whole config file.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub model_profile: ModelProfile,
    /// Trace mode: one deployment per prompt-length bucket.
    pub bucket_deployments: Vec<BucketDeployment>,
    /// Heuristic mode: the deployments to estimate for.
    pub deployments: Vec<Deployment>,
    /// Share of the prefill work a hit saves that turns into throughput.
    pub prefill_savings_alpha: f64,
    /// Count the KV of generated tokens (prefill and decode on the same GPUs).
    pub include_output_kvcache: bool,
    /// Which requests may share blocks.
    pub scope: Scope,
    /// Defaults for every deployment that does not set its own.
    #[serde(flatten)]
    pub anchors: Anchors,
    pub heuristic_multi_agent: Option<super::scenario::Scenario>,
}

fn default_alpha() -> f64 {
    0.8
}

fn yes() -> bool {
    true
}

/// KV-cache shape and weight footprint of the served model.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelProfile {
    #[serde(default)]
    pub name: Option<String>,
    /// A kvsweep model preset (`kvsweep kv-size --help` lists them) instead of the shape fields.
    #[serde(default)]
    pub preset: Option<String>,
    #[serde(default)]
    pub(crate) n_layers: Option<u32>,
    #[serde(default)]
    pub(crate) n_kv_heads: Option<u32>,
    #[serde(default)]
    pub head_dim: Option<u32>,
    /// Multi-head latent attention: the latent and RoPE key widths instead of KV heads.
    #[serde(default)]
    pub(crate) kv_lora_rank: Option<u32>,
    #[serde(default)]
    pub(crate) qk_rope_head_dim: Option<u32>,
    #[serde(default = "two")]
    pub(crate) dtype_bytes: f64,
    /// The engine's block size (informational: the trace's block size is what hits are counted in).
    #[serde(default)]
    pub block_size: Option<u32>,
    /// Hybrid models: layers with a token-linear KV cache.
    #[serde(default)]
    pub(crate) kv_cache_layer_count: Option<u32>,
    /// Bytes of KV one token takes (whole model), instead of the shape fields; split evenly
    /// over a replica's cards.
    #[serde(default)]
    pub kv_bytes_per_token: Option<f64>,
    #[serde(default = "one")]
    pub tp_size: u32,
    #[serde(default = "one")]
    pub(crate) pp_size: u32,
    #[serde(default)]
    pub(crate) parameter_count: Option<f64>,
    #[serde(default = "two")]
    pub(crate) weight_dtype_bytes: f64,
}

fn one() -> u32 {
    1
}

fn two() -> f64 {
    2.0
}

/// KV bytes per token, whole model and per card.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct KvShape {
    /// All layers, all heads: what a host tier stores per token.
    pub(crate) bytes_per_token: f64,
    /// One card's shard (heads split by TP, layers by PP; an MLA latent is not split by TP).
    pub(crate) bytes_per_token_per_card: f64,
    /// Weights one card holds, bytes (0 when unknown).
    pub(crate) weight_bytes_per_card: f64,
    pub(crate) cards_per_replica: u32,
}

impl ModelProfile {
    /// The profile of a kvsweep model preset.
    pub fn from_preset(name: &str) -> Result<Self> {
        let mut profile = Self {
            preset: Some(name.to_owned()),
            tp_size: 1,
            pp_size: 1,
            dtype_bytes: 2.0,
            weight_dtype_bytes: 2.0,
            ..Self::default()
        };
        profile.resolve_preset()?;
        Ok(profile)
    }

    fn resolve_preset(&mut self) -> Result<()> {
        let Some(name) = &self.preset else {
            return Ok(());
        };
        let preset = model::preset(name).with_context(|| {
            format!(
                "model_profile.preset: unknown preset `{name}`; known: {}",
                model::preset_names().join(", ")
            )
        })?;
        let g = preset.geometry;
        self.name.get_or_insert_with(|| name.clone());
        self.n_layers.get_or_insert(g.layers);
        match g.attention {
            Attention::Gqa { kv_heads, head_dim } => {
                self.n_kv_heads.get_or_insert(kv_heads);
                self.head_dim.get_or_insert(head_dim);
            }
            Attention::Mla {
                kv_lora_rank,
                rope_dim,
            } => {
                self.kv_lora_rank.get_or_insert(kv_lora_rank);
                self.qk_rope_head_dim.get_or_insert(rope_dim);
            }
        }
        self.parameter_count
            .get_or_insert(f64::from(g.params_b) * 1e9);
        Ok(())
    }

    pub fn shape(&self) -> Result<KvShape> {
        let (tp, pp) = (self.tp_size.max(1), self.pp_size.max(1));
        let weight_bytes_per_card =
            self.parameter_count.unwrap_or(0.0) * self.weight_dtype_bytes / f64::from(tp * pp);
        if let Some(bytes) = self.kv_bytes_per_token {
            if bytes <= 0.0 {
                bail!("model_profile.kv_bytes_per_token must be positive");
            }
            return Ok(KvShape {
                bytes_per_token: bytes,
                bytes_per_token_per_card: bytes / f64::from(tp * pp),
                weight_bytes_per_card,
                cards_per_replica: tp * pp,
            });
        }
        let layers = self
            .kv_cache_layer_count
            .or(self.n_layers)
            .context("model_profile: n_layers (or kv_cache_layer_count, or preset) is required")?;
        let layers_per_card = f64::from(layers.div_ceil(pp));
        let (per_layer, per_layer_per_card) = match (self.kv_lora_rank, self.n_kv_heads) {
            (Some(rank), _) => {
                let width = f64::from(rank + self.qk_rope_head_dim.unwrap_or(0));
                (width, width)
            }
            (None, Some(heads)) => {
                let dim = f64::from(
                    self.head_dim
                        .context("model_profile.head_dim is required with n_kv_heads")?,
                );
                (
                    2.0 * f64::from(heads) * dim,
                    2.0 * f64::from(heads.div_ceil(tp)) * dim,
                )
            }
            (None, None) => bail!(
                "model_profile: give n_kv_heads and head_dim (GQA), kv_lora_rank (MLA), or a preset"
            ),
        };
        if self.dtype_bytes <= 0.0 {
            bail!("model_profile.dtype_bytes must be positive");
        }
        Ok(KvShape {
            bytes_per_token: per_layer * f64::from(layers) * self.dtype_bytes,
            bytes_per_token_per_card: per_layer_per_card * layers_per_card * self.dtype_bytes,
            weight_bytes_per_card,
            cards_per_replica: tp * pp,
        })
    }
}

/// TPS and planning anchors, and extra KV tiers: set at the top level or per deployment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Anchors {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_tps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_tps_unit: Option<TpsUnit>,
    /// Per-card TPS with no cache hits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_per_card_tps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planning_target_total_tps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_capacity_tiers: Option<Vec<Tier>>,
}

impl Anchors {
    /// These anchors, with `defaults` where they have none.
    pub fn or(&self, defaults: &Anchors) -> Anchors {
        Anchors {
            total_tps: self.total_tps.or(defaults.total_tps),
            total_tps_unit: self.total_tps_unit.or(defaults.total_tps_unit),
            baseline_per_card_tps: self
                .baseline_per_card_tps
                .or(defaults.baseline_per_card_tps),
            planning_target_total_tps: self
                .planning_target_total_tps
                .or(defaults.planning_target_total_tps),
            extra_capacity_tiers: self
                .extra_capacity_tiers
                .clone()
                .or_else(|| defaults.extra_capacity_tiers.clone()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TpsUnit {
    ClusterTotal,
    PerMachine,
    PerCard,
}

/// An extra host or SSD KV tier on every machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub label: String,
    pub kv_gb_per_machine: f64,
}

/// How many cards, and how much of each card the KV cache gets.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Deployment {
    pub name: Option<String>,
    pub accelerator_count: u32,
    pub cards_per_machine: u32,
    /// A spec label such as `h20`, never a count.
    pub machine_spec: Option<String>,
    pub hbm_kv_gb_per_card: Option<f64>,
    pub gpu_memory_gb_per_card: Option<f64>,
    pub runtime_reserve_gb_per_card: Option<f64>,
    #[serde(flatten)]
    pub anchors: Anchors,
}

/// A deployment that serves the requests whose prompt length is in `lower..upper` tokens.
#[derive(Debug, Clone, Serialize)]
pub struct BucketDeployment {
    pub lower_tokens: u64,
    /// Exclusive; absent means no upper limit.
    pub upper_tokens: Option<u64>,
    #[serde(flatten)]
    pub deployment: Deployment,
}

impl BucketDeployment {
    pub fn label(&self) -> String {
        if let Some(name) = &self.deployment.name {
            return name.clone();
        }
        let k = |t: u64| {
            if t.is_multiple_of(1024) {
                format!("{}K", t / 1024)
            } else {
                t.to_string()
            }
        };
        match self.upper_tokens {
            Some(u) => format!("{}-{}", k(self.lower_tokens), k(u)),
            None => format!("{}+", k(self.lower_tokens)),
        }
    }

    pub fn contains(&self, input_tokens: u64) -> bool {
        input_tokens >= self.lower_tokens && self.upper_tokens.is_none_or(|u| input_tokens < u)
    }
}

/// The [`Anchors`] fields of a config-file struct (the top level and each deployment carry the
/// same five).
macro_rules! anchors_of {
    ($file:ident) => {
        Anchors {
            total_tps: $file.total_tps,
            total_tps_unit: $file.total_tps_unit,
            baseline_per_card_tps: $file.baseline_per_card_tps,
            planning_target_total_tps: $file.planning_target_total_tps,
            extra_capacity_tiers: $file.extra_capacity_tiers,
        }
    };
}

/// The file's shape. Written out without `#[serde(flatten)]`, which would buffer the input and
/// lose the path an error names (and `deny_unknown_fields` with it).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    model_profile: ModelProfile,
    #[serde(default)]
    bucket_deployments: Vec<DeploymentFile>,
    #[serde(default)]
    deployments: Vec<DeploymentFile>,
    #[serde(default = "default_alpha")]
    prefill_savings_alpha: f64,
    #[serde(default = "yes")]
    include_output_kvcache: bool,
    #[serde(default)]
    scope: Scope,
    total_tps: Option<f64>,
    total_tps_unit: Option<TpsUnit>,
    baseline_per_card_tps: Option<f64>,
    planning_target_total_tps: Option<f64>,
    extra_capacity_tiers: Option<Vec<Tier>>,
    heuristic_multi_agent: Option<super::scenario::Scenario>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeploymentFile {
    name: Option<String>,
    lower_tokens: Option<u64>,
    upper_tokens: Option<u64>,
    accelerator_count: u32,
    cards_per_machine: u32,
    machine_spec: Option<String>,
    hbm_kv_gb_per_card: Option<f64>,
    gpu_memory_gb_per_card: Option<f64>,
    runtime_reserve_gb_per_card: Option<f64>,
    total_tps: Option<f64>,
    total_tps_unit: Option<TpsUnit>,
    baseline_per_card_tps: Option<f64>,
    planning_target_total_tps: Option<f64>,
    extra_capacity_tiers: Option<Vec<Tier>>,
}

impl DeploymentFile {
    fn into_bucket(self) -> BucketDeployment {
        BucketDeployment {
            lower_tokens: self.lower_tokens.unwrap_or(0),
            upper_tokens: self.upper_tokens,
            deployment: self.into_deployment(),
        }
    }

    fn into_deployment(self) -> Deployment {
        Deployment {
            name: self.name,
            accelerator_count: self.accelerator_count,
            cards_per_machine: self.cards_per_machine,
            machine_spec: self.machine_spec,
            hbm_kv_gb_per_card: self.hbm_kv_gb_per_card,
            gpu_memory_gb_per_card: self.gpu_memory_gb_per_card,
            runtime_reserve_gb_per_card: self.runtime_reserve_gb_per_card,
            anchors: anchors_of!(self),
        }
    }
}

impl Config {
    /// Reads and checks a config file; errors name the file and the field.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let de = &mut serde_json::Deserializer::from_str(&text);
        let file: ConfigFile = serde_path_to_error::deserialize(de).map_err(|e| {
            anyhow::anyhow!("{}: field `{}`: {}", path.display(), e.path(), e.inner())
        })?;
        let mut config = Config {
            model_profile: file.model_profile,
            bucket_deployments: file
                .bucket_deployments
                .into_iter()
                .map(DeploymentFile::into_bucket)
                .collect(),
            deployments: file
                .deployments
                .into_iter()
                .map(DeploymentFile::into_deployment)
                .collect(),
            prefill_savings_alpha: file.prefill_savings_alpha,
            include_output_kvcache: file.include_output_kvcache,
            scope: file.scope,
            anchors: anchors_of!(file),
            heuristic_multi_agent: file.heuristic_multi_agent,
        };
        config
            .model_profile
            .resolve_preset()
            .with_context(|| path.display().to_string())?;
        config
            .check()
            .with_context(|| format!("invalid config {}", path.display()))?;
        Ok(config)
    }

    pub fn check(&self) -> Result<()> {
        self.model_profile.shape()?;
        if !(0.0..=1.0).contains(&self.prefill_savings_alpha) {
            bail!("prefill_savings_alpha must be in [0, 1]");
        }
        let named = self
            .bucket_deployments
            .iter()
            .map(|b| (format!("bucket_deployments[{}]", b.label()), &b.deployment))
            .chain(
                self.deployments
                    .iter()
                    .enumerate()
                    .map(|(i, d)| (format!("deployments[{i}]"), d)),
            );
        for (at, d) in named {
            if d.accelerator_count == 0 || d.cards_per_machine == 0 {
                bail!("{at}: accelerator_count and cards_per_machine must be positive");
            }
            if d.hbm_kv_gb_per_card.is_none() && d.gpu_memory_gb_per_card.is_none() {
                bail!("{at}: give hbm_kv_gb_per_card or gpu_memory_gb_per_card");
            }
            if let Some(spec) = &d.machine_spec
                && spec.contains(['*', 'x', '×'])
                && spec.chars().any(|c| c.is_ascii_digit())
            {
                bail!(
                    "{at}: machine_spec `{spec}` is a spec label; put counts in accelerator_count"
                );
            }
        }
        for b in &self.bucket_deployments {
            if b.upper_tokens.is_some_and(|u| u <= b.lower_tokens) {
                bail!(
                    "bucket_deployments[{}]: upper_tokens must exceed lower_tokens",
                    b.label()
                );
            }
        }
        Ok(())
    }
}
