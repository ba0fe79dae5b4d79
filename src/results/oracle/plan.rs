//! Capacity → hit rate → TPS → cards and machines.
//!
//! A deployment's KV capacity is its cards' KV budget (given, or what memory leaves after the
//! weight shard and the runtime reserve) over each card's share of a token's KV, times the
//! replicas (`accelerator_count / (tp × pp)`), as if one cache spanned them (prefix-aware routing);
//! an extra tier adds `kv_gb_per_machine` of whole-token KV on every machine.
//!
//! A hit rate `h` saves `alpha × h` of the work, so a card's TPS becomes
//! `baseline / (1 - alpha × h)`. The minimum cards for a target are searched, not extrapolated:
//! fewer cards also means less cache, so each candidate count gets its own hit rate.

use anyhow::{Result, bail};
use serde::Serialize;

use super::config::{Anchors, Deployment, GIB, KvShape, Tier, TpsUnit};

/// The KV capacity of a deployment, in tokens, per tier (HBM first).
#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    hbm_kv_bytes_per_card: f64,
    pub(crate) hbm_tokens: f64,
    pub tiers: Vec<(String, f64)>,
}

/// KV budget of one card, bytes.
fn kv_bytes_per_card(d: &Deployment, shape: &KvShape) -> Result<f64> {
    if let Some(gb) = d.hbm_kv_gb_per_card {
        return Ok(gb * GIB);
    }
    let Some(total) = d.gpu_memory_gb_per_card else {
        bail!("give hbm_kv_gb_per_card or gpu_memory_gb_per_card");
    };
    if shape.weight_bytes_per_card == 0.0 {
        bail!("gpu_memory_gb_per_card needs model_profile.parameter_count to subtract the weights");
    }
    let left = total * GIB
        - shape.weight_bytes_per_card
        - d.runtime_reserve_gb_per_card.unwrap_or(0.0) * GIB;
    if left <= 0.0 {
        bail!(
            "{total} GiB per card leaves no KV budget after {:.1} GiB of weights",
            shape.weight_bytes_per_card / GIB
        );
    }
    Ok(left)
}

/// Machines that hold `cards` cards.
pub(crate) fn machines(cards: u32, cards_per_machine: u32) -> u32 {
    cards.div_ceil(cards_per_machine.max(1))
}

/// Capacity of `cards` cards of the deployment's kind, per tier.
pub fn capacity(d: &Deployment, cards: u32, shape: &KvShape, tiers: &[Tier]) -> Result<Capacity> {
    let per_card = kv_bytes_per_card(d, shape)?;
    let replicas = f64::from(cards / shape.cards_per_replica.max(1));
    let hbm_tokens = (per_card / shape.bytes_per_token_per_card).floor() * replicas;
    let machines = f64::from(machines(cards, d.cards_per_machine));
    let mut out = vec![("HBM".to_owned(), hbm_tokens)];
    out.extend(tiers.iter().map(|t| {
        let extra = (t.kv_gb_per_machine * GIB / shape.bytes_per_token).floor() * machines;
        (t.label.clone(), hbm_tokens + extra)
    }));
    Ok(Capacity {
        hbm_kv_bytes_per_card: per_card,
        hbm_tokens,
        tiers: out,
    })
}

/// TPS conversion of one hit rate.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Gain {
    pub(crate) prefill_savings: f64,
    pub(crate) tps_gain_factor: f64,
}

/// Savings are capped at 99 % so a hit rate of 1 stays finite.
pub fn gain(hit_rate: f64, alpha: f64) -> Gain {
    let savings = (alpha * hit_rate).clamp(0.0, 0.99);
    Gain {
        prefill_savings: savings,
        tps_gain_factor: 1.0 / (1.0 - savings),
    }
}

/// `total_tps` as a cluster total.
pub(crate) fn cluster_tps(anchors: &Anchors, d: &Deployment) -> Option<f64> {
    let tps = anchors.total_tps?;
    Some(
        match anchors.total_tps_unit.unwrap_or(TpsUnit::ClusterTotal) {
            TpsUnit::ClusterTotal => tps,
            TpsUnit::PerMachine => {
                tps * f64::from(machines(d.accelerator_count, d.cards_per_machine))
            }
            TpsUnit::PerCard => tps * f64::from(d.accelerator_count),
        },
    )
}

/// The fewest cards (whole replicas) whose TPS, with the hit rate their own capacity gives,
/// meets `target`; `hit_rate_at` maps a card count to its hit rate. `None` when even
/// `limit` cards do not.
pub(crate) fn min_cards(
    target: f64,
    baseline_per_card: f64,
    alpha: f64,
    step: u32,
    limit: u32,
    hit_rate_at: &mut dyn FnMut(u32) -> f64,
) -> Option<(u32, f64)> {
    let step = step.max(1);
    let meets = |cards: u32, h: f64| {
        f64::from(cards) * baseline_per_card * gain(h, alpha).tps_gain_factor >= target
    };
    let (mut lo, mut hi) = (1u32, limit.div_ceil(step).max(1));
    let h = hit_rate_at(hi * step);
    if !meets(hi * step, h) {
        return None;
    }
    let mut best = (hi * step, h);
    // More cards never lower the hit rate, so "meets" is monotone in the count.
    while lo < hi {
        let mid = (lo + hi) / 2;
        let h = hit_rate_at(mid * step);
        if meets(mid * step, h) {
            best = (mid * step, h);
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    if lo * step != best.0 {
        best = (lo * step, hit_rate_at(lo * step));
    }
    Some(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_cards_counts_the_hit_rate_of_the_smaller_cache() {
        // Without hits 10 cards are needed; a hit rate of 0.5 at alpha 1 doubles a card's TPS,
        // but only from 8 cards up: 8 cards give 16 ≥ 10.
        let mut at = |cards: u32| if cards >= 8 { 0.5 } else { 0.0 };
        assert_eq!(min_cards(10.0, 1.0, 1.0, 1, 10, &mut at), Some((8, 0.5)));
        // With hits from 5 cards: 5 × 2 = 10.
        let mut at = |cards: u32| if cards >= 5 { 0.5 } else { 0.0 };
        assert_eq!(min_cards(10.0, 1.0, 1.0, 1, 10, &mut at), Some((5, 0.5)));
        // Whole TP groups of 4: 8.
        assert_eq!(
            min_cards(10.0, 1.0, 1.0, 4, 12, &mut at).map(|m| m.0),
            Some(8)
        );
        assert_eq!(min_cards(100.0, 1.0, 0.0, 1, 10, &mut at), None);
    }

    #[test]
    fn gain_is_the_inverse_of_the_work_left() {
        let g = gain(0.5, 0.8);
        assert!((g.prefill_savings - 0.4).abs() < 1e-12);
        assert!((g.tps_gain_factor - 1.0 / 0.6).abs() < 1e-12);
    }
}
