//! numpy's `np.random.default_rng(seed)` and its `uniform(low, high)`, bit for bit: AIPerf 0.13.0
//! draws each AgentX lane's sampling instant with them (`timing/trajectory_source.py`), and the
//! same `--seed` must give kvsweep the same instants.
//!
//! `default_rng(seed)` is a PCG64 (128-bit LCG, XSL-RR output) whose state and increment come from
//! numpy's `SeedSequence(seed).generate_state(4, uint64)`. The generator itself is `rand_pcg`'s
//! `Pcg64` (the same step-then-output order and the same seeding arithmetic as numpy's
//! `pcg64_set_seed`); `SeedSequence` is hand-written here because no crate implements it (it is
//! numpy's own hash-based entropy pool, `numpy/random/bit_generator.pyx`). The tests hold numbers
//! numpy printed (`scripts/numpy-pcg64-reference.py`).

use rand_pcg::Pcg64;
use rand_pcg::rand_core::Rng;

const POOL_SIZE: usize = 4;
const INIT_A: u32 = 0x43b0_d7e5;
const MULT_A: u32 = 0x931e_8875;
const INIT_B: u32 = 0x8b51_f9dd;
const MULT_B: u32 = 0x58f3_8ded;
const MIX_MULT_L: u32 = 0xca01_f9dd;
const MIX_MULT_R: u32 = 0x4973_f715;
const XSHIFT: u32 = 16;

fn hashmix(value: u32, hash_const: &mut u32) -> u32 {
    let mut v = value ^ *hash_const;
    *hash_const = hash_const.wrapping_mul(MULT_A);
    v = v.wrapping_mul(*hash_const);
    v ^ (v >> XSHIFT)
}

fn mix(x: u32, y: u32) -> u32 {
    let r = MIX_MULT_L
        .wrapping_mul(x)
        .wrapping_sub(MIX_MULT_R.wrapping_mul(y));
    r ^ (r >> XSHIFT)
}

/// `SeedSequence(entropy).generate_state(4, np.uint64)`: the entropy pool mixed from the seed's
/// 32-bit words (least significant first), then four 64-bit words drawn from it.
fn seed_sequence_state(entropy: u64) -> [u64; 4] {
    // A 64-bit seed is at most two words: fewer than the pool, so the rest hash as zeros (numpy
    // writes 0 as one zero word; a missing word mixes the same as a zero one).
    let words = [entropy as u32, (entropy >> 32) as u32];
    let mut pool = [0u32; POOL_SIZE];
    let mut hash_const = INIT_A;
    for (i, slot) in pool.iter_mut().enumerate() {
        *slot = hashmix(words.get(i).copied().unwrap_or(0), &mut hash_const);
    }
    for src in 0..POOL_SIZE {
        for dst in 0..POOL_SIZE {
            if src != dst {
                pool[dst] = mix(pool[dst], hashmix(pool[src], &mut hash_const));
            }
        }
    }
    let mut hash_const = INIT_B;
    let mut out = [0u32; 2 * POOL_SIZE];
    for (i, word) in out.iter_mut().enumerate() {
        let mut v = pool[i % POOL_SIZE] ^ hash_const;
        hash_const = hash_const.wrapping_mul(MULT_B);
        v = v.wrapping_mul(hash_const);
        *word = v ^ (v >> XSHIFT);
    }
    // The 32-bit words viewed as little-endian 64-bit ones.
    std::array::from_fn(|i| u64::from(out[2 * i]) | (u64::from(out[2 * i + 1]) << 32))
}

/// numpy's `Generator(PCG64(seed))`, as far as AIPerf uses it.
pub(crate) struct DefaultRng(Pcg64);

impl DefaultRng {
    /// `np.random.default_rng(seed)`.
    pub fn new(seed: u64) -> Self {
        let s = seed_sequence_state(seed);
        // numpy's pcg64_set_seed: state = (s0 << 64) | s1, increment from (s2 << 64) | s3.
        let state = (u128::from(s[0]) << 64) | u128::from(s[1]);
        let stream = (u128::from(s[2]) << 64) | u128::from(s[3]);
        Self(Pcg64::new(state, stream))
    }

    /// The next raw 64-bit output (`PCG64.random_raw()`).
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// `Generator.uniform(low, high)`: `low + (high - low) * next_double`, the double from the
    /// top 53 bits.
    pub(crate) fn uniform(&mut self, low: f64, high: f64) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0);
        low + (high - low) * unit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Printed by `scripts/numpy-pcg64-reference.py` (numpy 2.4.6).
    #[test]
    fn seed_sequence_matches_numpy() {
        assert_eq!(
            seed_sequence_state(0),
            [
                0xdb2c_d7e7_b0f4_78be,
                0xabf4_641a_2c71_ba49,
                0x20c6_ed6d_9d7b_8d41,
                0x2c40_99de_223c_39d4
            ]
        );
        assert_eq!(
            seed_sequence_state(42),
            [
                0x9f1e_2e6d_cd54_0ab7,
                0xd578_73dc_79fb_94b6,
                0x7d28_2a1b_64d4_20b7,
                0x3365_7971_4692_d5ff
            ]
        );
        assert_eq!(
            seed_sequence_state(u64::MAX),
            [
                0xaebc_a151_928c_ad0d,
                0x119c_3044_8638_dc7a,
                0x1bbb_1556_59e6_42a7,
                0xa76b_11e3_e8c4_a8f6
            ]
        );
    }

    #[test]
    fn pcg64_outputs_match_numpy() {
        let raw = |seed| {
            let mut g = DefaultRng::new(seed);
            [g.next_u64(), g.next_u64(), g.next_u64()]
        };
        assert_eq!(
            raw(0),
            [
                0xa30f_ebcf_d9c2_825f,
                0x4510_bdf8_82d9_d721,
                0x0a7d_3da9_4ecd_e8b8
            ]
        );
        assert_eq!(
            raw(42),
            [
                0xc621_fbcd_16d9_2688,
                0x705a_5661_a791_ffc1,
                0xdbcd_12c2_6eda_1624
            ]
        );
        assert_eq!(
            raw(u64::MAX),
            [
                0xae16_3a7a_8c47_568f,
                0xd866_59f5_f338_2359,
                0x01e5_2b19_5bc2_d24a
            ]
        );
    }

    #[test]
    fn uniform_matches_numpy() {
        assert_eq!(
            DefaultRng::new(471_509_553_059_106_708).uniform(1000.0, 5000.0),
            2_353.578_822_217_823_5
        );
        assert_eq!(
            DefaultRng::new(15_561_901_713_069_592_733).uniform(1000.0, 5000.0),
            4_280.599_807_631_694
        );
    }
}
