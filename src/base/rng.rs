//! Deterministic pseudo-random numbers: the simulator's outputs and faults, the trace tools'
//! synthetic content, the replay's session order and prompts, the oracle's sampling.
//!
//! Hand-written rather than `rand`: the same `--seed` must give the same outputs and faults across
//! releases, and `rand` does not promise its small generators stay the same between versions.
//! SplitMix64 is a stateless mix, so any (seed, key) pair gives its value without shared state.

/// The SplitMix64 finalizer: a well-distributed 64-bit mix of `x`.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A value in [0, 1) for (seed, key).
pub fn unit(seed: u64, key: u64) -> f64 {
    (mix(seed ^ mix(key)) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_is_deterministic_and_spread() {
        assert_eq!(unit(7, 42), unit(7, 42));
        assert_ne!(unit(7, 42), unit(8, 42));
        let below_half = (0..10_000).filter(|k| unit(1, *k) < 0.5).count();
        assert!((4_700..5_300).contains(&below_half), "{below_half}");
    }
}
