//! The KV-cache capacity formula: HBM the engine may use, less the weights. The simulator sizes
//! its cache with it, `kv-size` reports it, and the oracle bounds cells and sizes deployments
//! with it; one definition keeps the four from drifting apart.

/// Bytes left for the KV cache on `gpus` GPUs of `hbm_gb_per_gpu` GB (10⁹ bytes) each, of
/// which the engine may use the share `utilization` (vLLM's `--gpu-memory-utilization`), once
/// `weight_bytes` of weights are loaded on them. Negative when the weights do not fit.
pub(crate) fn kv_bytes(hbm_gb_per_gpu: f64, gpus: f64, utilization: f64, weight_bytes: f64) -> f64 {
    hbm_gb_per_gpu * 1e9 * gpus * utilization - weight_bytes
}

/// Bytes of `params_b` billion parameters stored in `bytes_per_param` bytes each.
pub(crate) fn weight_bytes(params_b: f64, bytes_per_param: f64) -> f64 {
    params_b * 1e9 * bytes_per_param
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_gets_the_usable_hbm_after_the_weights() {
        // Llama 3.1 70B in bf16 on 8 × 80 GB at 0.9: 576 GB usable, 140 GB of weights.
        let weights = weight_bytes(70.0, 2.0);
        assert_eq!(weights, 140e9);
        assert_eq!(kv_bytes(80.0, 8.0, 0.9, weights), 436e9);
    }

    #[test]
    fn weights_that_do_not_fit_leave_a_negative_budget() {
        assert!(kv_bytes(24.0, 1.0, 0.9, weight_bytes(70.0, 2.0)) < 0.0);
        assert_eq!(
            kv_bytes(80.0, 1.0, 0.5, 0.0),
            40e9,
            "no weights: the usable share"
        );
    }
}
