//! `analyze-buckets`: every prompt-length bucket as its own deployment, with its four bounds at
//! every capacity tier and its card and machine planning.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;

use super::bounds::{self, Hits};
use super::config::{Anchors, BucketDeployment, Config, KvShape};
use super::plan::{self, Capacity};
use super::stream::{self, Reuse};
use crate::data::trace::TraceSet;

/// A gap under this (hit-rate points) is not a bottleneck.
const BOTTLENECK_THRESHOLD: f64 = 0.01;

/// The four hit rates at one capacity.
#[derive(Debug, Clone, Serialize)]
pub struct TierResult {
    pub label: String,
    pub(crate) capacity_tokens: f64,
    pub hits: Hits,
    pub content: f64,
    pub relaxed: f64,
    pub strict_prefix: f64,
    pub lru: f64,
}

impl TierResult {
    /// `Capacity` (more memory helps), `Policy` (a smarter cache helps) or `None`.
    pub fn bottleneck(&self) -> &'static str {
        bottleneck(self.content, self.strict_prefix, self.lru)
    }
}

/// `Capacity` when the content bound is further above the strict-prefix optimum than that is
/// above LRU (more memory helps most), `Policy` the other way round (a smarter cache helps
/// most), `None` when both gaps are under a point.
pub fn bottleneck(content: f64, strict_prefix: f64, lru: f64) -> &'static str {
    let capacity_gap = content - strict_prefix;
    let policy_gap = strict_prefix - lru;
    if capacity_gap.max(policy_gap) < BOTTLENECK_THRESHOLD {
        "None"
    } else if capacity_gap >= policy_gap {
        "Capacity"
    } else {
        "Policy"
    }
}

/// Which hit rate a plan is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    StrictPrefix,
    Lru,
}

/// Hit rate → TPS → cards for one tier and policy.
#[derive(Debug, Clone, Serialize)]
pub struct PlanRow {
    pub policy: Policy,
    pub tier: String,
    pub hit_rate: f64,
    pub(crate) prefill_savings: f64,
    pub(crate) tps_gain_factor: f64,
    /// Zero-hit cards that would deliver what the deployment delivers with its hits.
    equivalent_cards: f64,
    current_total_tps: Option<f64>,
    pub baseline_per_card_tps: Option<f64>,
    per_card_tps: Option<f64>,
    cluster_tps_capacity: Option<f64>,
    pub planning_target_total_tps: Option<f64>,
    pub(crate) min_cards: Option<u32>,
    min_machines: Option<u32>,
    hit_rate_at_min_cards: Option<f64>,
}

/// One bucket's results.
#[derive(Debug, Clone, Serialize)]
pub struct BucketResult {
    pub label: String,
    pub lower_tokens: u64,
    pub upper_tokens: Option<u64>,
    pub requests: usize,
    pub input_tokens: u64,
    reread_blocks: u64,
    pub bucket: BucketDeployment,
    pub anchors: Anchors,
    pub capacity: Capacity,
    pub tiers: Vec<TierResult>,
    /// Hit rates at fractions and multiples of the HBM capacity.
    pub curve: Vec<TierResult>,
    pub planning: Vec<PlanRow>,
}

impl BucketResult {
    pub fn hbm(&self) -> &TierResult {
        &self.tiers[0]
    }
}

/// Everything one analysis found.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub block_size: u32,
    pub kv: KvShape,
    pub buckets: Vec<BucketResult>,
}

/// Multiples of the HBM capacity the curve is sampled at.
const CURVE: [f64; 11] = [
    1.0 / 64.0,
    1.0 / 16.0,
    1.0 / 8.0,
    1.0 / 4.0,
    1.0 / 2.0,
    1.0,
    2.0,
    4.0,
    8.0,
    16.0,
    64.0,
];

/// Runs every bucket of `config` over `set` (buckets in parallel).
pub fn analyze(set: &TraceSet, config: &Config) -> Result<Analysis> {
    let block_size = super::block_size(set)?;
    let kv = config.model_profile.shape()?;
    let buckets = std::thread::scope(|scope| {
        let handles: Vec<_> = config
            .bucket_deployments
            .iter()
            .map(|b| scope.spawn(move || bucket(set, config, &kv, b)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a bucket thread panicked"))
            .collect::<Result<Vec<_>>>()
    })?;
    Ok(Analysis {
        block_size,
        kv,
        buckets,
    })
}

/// The reuse of the requests of one bucket.
fn bucket_reuse(set: &TraceSet, config: &Config, b: &BucketDeployment) -> Reuse {
    let entries = stream::order(set, config.scope, &|r| {
        b.contains(u64::from(r.input_tokens))
    });
    stream::reuse(&entries, config.include_output_kvcache)
}

fn tier_result(reuse: &Reuse, label: &str, tokens: f64, hits: Hits) -> TierResult {
    let rate = |blocks: u64| reuse.hit_rate(blocks);
    TierResult {
        label: label.to_owned(),
        capacity_tokens: tokens,
        content: rate(hits.content),
        relaxed: rate(hits.relaxed),
        strict_prefix: rate(hits.strict_prefix),
        lru: rate(hits.lru),
        hits,
    }
}

/// The bounds of `reuse` at each `(label, tokens)` capacity.
fn at_capacities(reuse: &Reuse, capacities: &[(String, f64)]) -> Vec<TierResult> {
    let blocks: Vec<u64> = capacities
        .iter()
        .map(|(_, t)| (t / f64::from(reuse.block_size.max(1))).floor() as u64)
        .collect();
    bounds::hits(reuse, &blocks)
        .into_iter()
        .zip(capacities)
        .map(|(h, (label, tokens))| tier_result(reuse, label, *tokens, h))
        .collect()
}

fn bucket(
    set: &TraceSet,
    config: &Config,
    kv: &KvShape,
    b: &BucketDeployment,
) -> Result<BucketResult> {
    let at = format!("bucket {}", b.label());
    let d = &b.deployment;
    let anchors = d.anchors.or(&config.anchors);
    let extra = anchors.extra_capacity_tiers.clone().unwrap_or_default();
    let capacity = plan::capacity(d, d.accelerator_count, kv, &extra).context(at.clone())?;
    let reuse = bucket_reuse(set, config, b);
    let tiers = at_capacities(&reuse, &capacity.tiers);
    let curve_points: Vec<(String, f64)> = CURVE
        .iter()
        .map(|m| (format!("HBM x {m}"), capacity.hbm_tokens * m))
        .collect();
    let curve = at_capacities(&reuse, &curve_points);
    let mut planning = Vec::new();
    for (tier_index, tier) in tiers.iter().enumerate() {
        for policy in [Policy::StrictPrefix, Policy::Lru] {
            planning.push(plan_row(
                &reuse, config, kv, b, &anchors, &extra, tier_index, tier, policy,
            ));
        }
    }
    Ok(BucketResult {
        label: b.label(),
        lower_tokens: b.lower_tokens,
        upper_tokens: b.upper_tokens,
        requests: reuse.accesses.len(),
        input_tokens: reuse.input_tokens(),
        reread_blocks: tiers[0].hits.content,
        bucket: b.clone(),
        anchors,
        capacity,
        tiers,
        curve,
        planning,
    })
}

#[allow(clippy::too_many_arguments)]
fn plan_row(
    reuse: &Reuse,
    config: &Config,
    kv: &KvShape,
    b: &BucketDeployment,
    anchors: &Anchors,
    extra: &[super::config::Tier],
    tier_index: usize,
    tier: &TierResult,
    policy: Policy,
) -> PlanRow {
    let d = &b.deployment;
    let hit_rate = match policy {
        Policy::StrictPrefix => tier.strict_prefix,
        Policy::Lru => tier.lru,
    };
    // Tier 0 is HBM alone; tier i adds the i-th extra tier only.
    let tiers_here: Vec<_> = tier_index
        .checked_sub(1)
        .and_then(|i| extra.get(i))
        .cloned()
        .into_iter()
        .collect();
    let mut rate_at = |cards: u32| -> f64 {
        let Ok(c) = plan::capacity(d, cards, kv, &tiers_here) else {
            return 0.0;
        };
        let tokens = c.tiers.last().map_or(0.0, |t| t.1);
        let blocks = (tokens / f64::from(reuse.block_size.max(1))).floor() as u64;
        let hits = match policy {
            Policy::StrictPrefix => bounds::greedy(reuse, blocks, true),
            Policy::Lru => bounds::lru(reuse, blocks),
        };
        reuse.hit_rate(hits)
    };
    plan_from_rate(
        config,
        kv,
        d,
        anchors,
        &tier.label,
        hit_rate,
        policy,
        &mut rate_at,
    )
}

/// A plan row from a hit rate; `rate_at` gives the hit rate of a smaller or larger deployment
/// (cards), for the minimum-card search.
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan_from_rate(
    config: &Config,
    kv: &KvShape,
    d: &super::config::Deployment,
    anchors: &Anchors,
    tier: &str,
    hit_rate: f64,
    policy: Policy,
    rate_at: &mut dyn FnMut(u32) -> f64,
) -> PlanRow {
    let alpha = config.prefill_savings_alpha;
    let g = plan::gain(hit_rate, alpha);
    let baseline = anchors.baseline_per_card_tps.filter(|b| *b > 0.0);
    let per_card = baseline.map(|b| b * g.tps_gain_factor);
    let target = anchors.planning_target_total_tps;
    let min = match (baseline, target) {
        (Some(base), Some(target)) => {
            let limit = (target / base).ceil().max(1.0) as u32;
            plan::min_cards(target, base, alpha, kv.cards_per_replica, limit, rate_at)
        }
        _ => None,
    };
    PlanRow {
        policy,
        tier: tier.to_owned(),
        hit_rate,
        prefill_savings: g.prefill_savings,
        tps_gain_factor: g.tps_gain_factor,
        equivalent_cards: f64::from(d.accelerator_count) * g.tps_gain_factor,
        current_total_tps: plan::cluster_tps(anchors, d),
        baseline_per_card_tps: baseline,
        per_card_tps: per_card,
        cluster_tps_capacity: per_card.map(|p| p * f64::from(d.accelerator_count)),
        planning_target_total_tps: target,
        min_cards: min.map(|m| m.0),
        min_machines: min.map(|m| plan::machines(m.0, d.cards_per_machine)),
        hit_rate_at_min_cards: min.map(|m| m.1),
    }
}

/// planning_strict_prefix.csv and planning_lru.csv from (bucket or deployment, plan) rows.
pub(crate) fn write_plans(plans: &[(String, PlanRow)], dir: &Path) -> Result<()> {
    let header = [
        "Bucket",
        "Tier",
        "Hit Rate",
        "Prefill Savings",
        "TPS Gain Factor",
        "Equivalent Cards",
        "Current Total TPS",
        "Baseline Per-Card TPS",
        "Per-Card TPS",
        "Cluster TPS Capacity",
        "Planning Target Total TPS",
        "Min Cards",
        "Min Machines",
        "Hit Rate At Min Cards",
    ];
    let mut strict = Table::new(&header);
    let mut lru = Table::new(&header);
    for (label, p) in plans {
        let row = vec![
            label.clone(),
            p.tier.clone(),
            f(p.hit_rate),
            f(p.prefill_savings),
            f(p.tps_gain_factor),
            f(p.equivalent_cards),
            optf(p.current_total_tps),
            optf(p.baseline_per_card_tps),
            optf(p.per_card_tps),
            optf(p.cluster_tps_capacity),
            optf(p.planning_target_total_tps),
            opt(p.min_cards),
            opt(p.min_machines),
            optf(p.hit_rate_at_min_cards),
        ];
        match p.policy {
            Policy::StrictPrefix => strict.push(row),
            Policy::Lru => lru.push(row),
        }
    }
    strict.write(&dir.join("planning_strict_prefix.csv"))?;
    lru.write(&dir.join("planning_lru.csv"))
}

/// A CSV table built row by row.
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|s| (*s).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.header.len());
        self.rows.push(row);
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let mut w = csv::Writer::from_path(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        w.write_record(&self.header)?;
        for r in &self.rows {
            w.write_record(r)?;
        }
        w.flush()
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }
}

pub fn f(x: f64) -> String {
    format!("{x:.6}")
}

fn opt<T: ToString>(x: Option<T>) -> String {
    x.map(|v| v.to_string()).unwrap_or_default()
}

fn optf(x: Option<f64>) -> String {
    x.map(f).unwrap_or_default()
}

/// hit_summary.csv, tier_summary.csv, planning_*.csv and summary.csv.
pub(crate) fn write_tables(analysis: &Analysis, dir: &Path) -> Result<()> {
    let mut hit = Table::new(&[
        "Bucket",
        "Lower Tokens",
        "Upper Tokens",
        "Requests",
        "Input Tokens",
        "Machine Spec",
        "Accelerators",
        "Cards Per Machine",
        "HBM KV Tokens",
        "Content Upper Bound",
        "Relaxed Upper Bound",
        "Exact Strict-Prefix",
        "LRU Baseline",
        "Capacity Gap",
        "Policy Gap",
        "HBM Current Bottleneck",
    ]);
    let mut tier = Table::new(&[
        "Bucket",
        "Tier",
        "Capacity Tokens",
        "Content Upper Bound",
        "Relaxed Upper Bound",
        "Strict-Prefix Hit Rate",
        "LRU Hit Rate",
        "Strict-Prefix Gain vs Previous Tier",
        "LRU Gain vs Previous Tier",
        "Current Bottleneck",
    ]);
    let mut summary = Table::new(&[
        "Bucket",
        "Requests",
        "Content Upper Bound",
        "Relaxed Upper Bound",
        "Exact Strict-Prefix",
        "LRU Baseline",
        "HBM Current Bottleneck",
        "TPS Gain Factor",
        "Min Cards",
        "Min Machines",
    ]);
    for b in &analysis.buckets {
        let h = b.hbm();
        let d = &b.bucket.deployment;
        hit.push(vec![
            b.label.clone(),
            b.lower_tokens.to_string(),
            opt(b.upper_tokens),
            b.requests.to_string(),
            b.input_tokens.to_string(),
            d.machine_spec.clone().unwrap_or_default(),
            d.accelerator_count.to_string(),
            d.cards_per_machine.to_string(),
            format!("{:.0}", b.capacity.hbm_tokens),
            f(h.content),
            f(h.relaxed),
            f(h.strict_prefix),
            f(h.lru),
            f(h.content - h.strict_prefix),
            f(h.strict_prefix - h.lru),
            h.bottleneck().to_owned(),
        ]);
        let mut previous: Option<&TierResult> = None;
        for t in &b.tiers {
            tier.push(vec![
                b.label.clone(),
                t.label.clone(),
                format!("{:.0}", t.capacity_tokens),
                f(t.content),
                f(t.relaxed),
                f(t.strict_prefix),
                f(t.lru),
                f(previous.map_or(0.0, |p| t.strict_prefix - p.strict_prefix)),
                f(previous.map_or(0.0, |p| t.lru - p.lru)),
                t.bottleneck().to_owned(),
            ]);
            previous = Some(t);
        }
        let hbm_plan = b
            .planning
            .iter()
            .find(|p| p.policy == Policy::StrictPrefix)
            .context("a bucket without a plan")?;
        summary.push(vec![
            b.label.clone(),
            b.requests.to_string(),
            f(h.content),
            f(h.relaxed),
            f(h.strict_prefix),
            f(h.lru),
            h.bottleneck().to_owned(),
            f(hbm_plan.tps_gain_factor),
            opt(hbm_plan.min_cards),
            opt(hbm_plan.min_machines),
        ]);
    }
    hit.write(&dir.join("hit_summary.csv"))?;
    tier.write(&dir.join("tier_summary.csv"))?;
    let plans: Vec<(String, PlanRow)> = analysis
        .buckets
        .iter()
        .flat_map(|b| b.planning.iter().map(|p| (b.label.clone(), p.clone())))
        .collect();
    write_plans(&plans, dir)?;
    summary.write(&dir.join("summary.csv"))?;
    Ok(())
}

/// details.json: every bucket's figures, tiers, curve and plans.
pub fn details(analysis: &Analysis) -> serde_json::Value {
    json!({
        "block_size": analysis.block_size,
        "kv": analysis.kv,
        "buckets": analysis.buckets,
    })
}
