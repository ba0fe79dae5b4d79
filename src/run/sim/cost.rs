//! The simulator's step-time model: a roofline of the runner's GPUs.
//!
//! One engine step runs a batch: some prefill chunks (new prompt tokens on top of a context) and
//! some decodes (one token each on top of their context). Its time is the larger of compute time
//! and memory time, plus a fixed per-step overhead, plus any host→GPU copies of offloaded blocks:
//!
//! - compute: 2 × active parameters per token, plus attention, 4 × layers × hidden per (query
//!   token, context token) pair; at `MFU` of the TP group's peak BF16 FLOP/s;
//! - memory: the weights once per step, plus the KV cache every token attends to; at `MBU` of the
//!   TP group's HBM bandwidth;
//! - offload loads: bytes over the host links of the TP group.
//!
//! So prefill cost grows with prompt length and context, decode cost with batch size and context.
//!
//! With a calibration (`sim::calibration`), the step time is instead the fitted linear model of
//! the same [`StepWork`], in the measured engine's seconds.

use super::calibration::Calibration;
use crate::base::model::Geometry;
use crate::base::runner::Runner;

/// Share of peak FLOP/s a well-batched step reaches.
const MFU: f64 = 0.5;
/// Share of peak HBM bandwidth a step reaches.
const MBU: f64 = 0.8;
/// Scheduling, sampling and launch overhead of one step.
const STEP_OVERHEAD_S: f64 = 0.002;

#[derive(Debug, Clone, Copy)]
pub struct CostModel {
    flops_per_s: f64,
    hbm_bytes_per_s: f64,
    host_bytes_per_s: f64,
    weight_bytes: f64,
    flops_per_token: f64,
    attn_flops_per_pair: f64,
    kv_bytes_per_token: f64,
    /// Fitted step terms that replace the roofline.
    calibrated: Option<Fitted>,
}

/// The calibrated step model's coefficients, in seconds per unit of [`StepWork`].
#[derive(Debug, Clone, Copy)]
struct Fitted {
    overhead: f64,
    prefill_token: f64,
    prefill_pair: f64,
    decode_seq: f64,
    decode_context: f64,
    load_token: f64,
}

/// What one step computes.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepWork {
    /// New prompt tokens computed this step.
    pub(crate) prefill_tokens: u64,
    /// Σ over prefill chunks of chunk × (context before it + chunk / 2): attention pairs.
    pub(crate) prefill_pairs: u64,
    /// Σ over prefill chunks of the context before them (KV read).
    pub(crate) prefill_context: u64,
    pub(crate) decode_seqs: u64,
    /// Σ over decoding sequences of their context length.
    pub(crate) decode_context: u64,
    /// Tokens copied back from the offload tier before this step.
    pub(crate) loaded_tokens: u64,
}

impl CostModel {
    pub fn new(runner: &Runner, geometry: &Geometry, tp: u32, weight_bytes: f64) -> Self {
        let tp = f64::from(tp);
        Self {
            flops_per_s: runner.bf16_tflops * 1e12 * tp * MFU,
            hbm_bytes_per_s: runner.hbm_bandwidth_tb_s * 1e12 * tp * MBU,
            host_bytes_per_s: runner.host_link_gb_s * 1e9 * tp,
            weight_bytes,
            flops_per_token: 2.0 * f64::from(geometry.active_params_b) * 1e9,
            attn_flops_per_pair: 4.0 * f64::from(geometry.layers) * f64::from(geometry.hidden),
            kv_bytes_per_token: geometry.kv_bytes_per_token() as f64,
            calibrated: None,
        }
    }

    /// The fitted step model of `calibration` (KV bytes per token from it too).
    pub fn calibrated(calibration: &Calibration) -> Self {
        let t = &calibration.terms;
        let load = t.load_per_token.value;
        let kv = calibration.limits.kv_bytes_per_token.max(1) as f64;
        Self {
            flops_per_s: 0.0,
            hbm_bytes_per_s: 0.0,
            // Transfers are counted at the fitted load rate (both ways); no fitted rate: free.
            host_bytes_per_s: if load > 0.0 { kv / load } else { f64::INFINITY },
            weight_bytes: 0.0,
            flops_per_token: 0.0,
            attn_flops_per_pair: 0.0,
            kv_bytes_per_token: kv,
            calibrated: Some(Fitted {
                overhead: t.step_overhead.value,
                prefill_token: t.prefill_per_token.value,
                prefill_pair: t.prefill_per_pair.value,
                decode_seq: t.decode_per_seq.value,
                decode_context: t.decode_per_context.value,
                load_token: load,
            }),
        }
    }

    /// Modelled seconds for a step.
    pub(crate) fn step_seconds(&self, w: &StepWork) -> f64 {
        if let Some(f) = &self.calibrated {
            return f.overhead
                + f.prefill_token * w.prefill_tokens as f64
                + f.prefill_pair * w.prefill_pairs as f64
                + f.decode_seq * w.decode_seqs as f64
                + f.decode_context * w.decode_context as f64
                + f.load_token * w.loaded_tokens as f64;
        }
        let tokens = (w.prefill_tokens + w.decode_seqs) as f64;
        let pairs = (w.prefill_pairs + w.decode_context) as f64;
        let flops = tokens * self.flops_per_token + pairs * self.attn_flops_per_pair;
        let kv_read = (w.prefill_context + w.decode_context) as f64 * self.kv_bytes_per_token;
        let kv_write = tokens * self.kv_bytes_per_token;
        let bytes = self.weight_bytes + kv_read + kv_write;
        let compute = (flops / self.flops_per_s).max(bytes / self.hbm_bytes_per_s);
        let load = w.loaded_tokens as f64 * self.kv_bytes_per_token / self.host_bytes_per_s;
        STEP_OVERHEAD_S + compute + load
    }

    /// Seconds to copy `tokens` tokens of KV between host and GPU.
    pub(crate) fn transfer_seconds(&self, tokens: u64) -> f64 {
        tokens as f64 * self.kv_bytes_per_token / self.host_bytes_per_s
    }

    pub fn kv_bytes_per_token(&self) -> f64 {
        self.kv_bytes_per_token
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::model::preset;
    use crate::base::runner::RunnerSet;

    fn model() -> CostModel {
        let runners = RunnerSet::builtin().expect("runners");
        let g = preset("llama-3.1-70b").expect("preset").geometry;
        CostModel::new(runners.get("h100").expect("h100"), &g, 4, 71e9 * 2.0)
    }

    #[test]
    fn decode_is_memory_bound_and_grows_with_context() {
        let m = model();
        let short = m.step_seconds(&StepWork {
            decode_seqs: 32,
            decode_context: 32 * 1_000,
            ..Default::default()
        });
        let long = m.step_seconds(&StepWork {
            decode_seqs: 32,
            decode_context: 32 * 100_000,
            ..Default::default()
        });
        // 142 GB of weights over 4 × 3.35 TB/s × 0.8: about 13 ms plus overhead.
        assert!((0.012..0.02).contains(&short), "{short}");
        assert!(long > 2.0 * short, "{short} vs {long}");
    }

    #[test]
    fn prefill_grows_with_prompt_and_context() {
        let m = model();
        let chunk = |tokens: u64, ctx: u64| {
            m.step_seconds(&StepWork {
                prefill_tokens: tokens,
                prefill_pairs: tokens * (ctx + tokens / 2),
                prefill_context: ctx,
                ..Default::default()
            })
        };
        assert!(chunk(8192, 0) > 3.0 * chunk(1024, 0));
        assert!(chunk(2048, 100_000) > 1.5 * chunk(2048, 0));
    }

    #[test]
    fn loading_from_host_costs_transfer_time() {
        let m = model();
        let base = m.step_seconds(&StepWork::default());
        let loaded = m.step_seconds(&StepWork {
            loaded_tokens: 100_000,
            ..Default::default()
        });
        let expected = m.transfer_seconds(100_000);
        assert!((loaded - base - expected).abs() < 1e-9);
        // 100k tokens × 320 KiB over 4 × 50 GB/s ≈ 0.16 s.
        assert!((0.15..0.18).contains(&expected), "{expected}");
    }
}
