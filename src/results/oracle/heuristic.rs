//! Trace-free estimates (`estimate-multi-agent`) and fitting their two free parameters to a
//! trace (`calibrate-multi-agent`).
//!
//! The scenario: `concurrent_agents` agents share a `shared_prefix_tokens` prefix; each session
//! runs `avg_turns_per_session` turns, adding `avg_new_tokens_per_turn` private tokens a turn,
//! up to a `private_window_tokens` window (past it the window slides and the private prefix no
//! longer repeats). Turn `k` then reads `P + min(k n, W)` tokens, of which the content bound
//! reuses `P + (k-1) n` while `k n <= W` and `P` after.
//!
//! With a cache of `K` tokens the shared prefix is kept first; the rest holds a fraction `x` of
//! the agents' private contexts (`N × min(T n, W)` tokens), and a curve maps `x` to the share
//! of private reuse captured: `linear` (`x`), `zipf_harmonic` (the top `x N` of `N` agents
//! ranked by a Zipf(`s`) popularity: `H(xN, s) / H(N, s)`) or `power_law_fit` (its continuous
//! form, `((xN+1)^(1-s) - 1) / ((N+1)^(1-s) - 1)`). The strict-prefix estimate takes the
//! running request's prompt out of the cache first, as the trace oracle does; the LRU estimate
//! is the strict-prefix one times `lru_like`.

use anyhow::Context as _;
use serde::Serialize;

use super::buckets::Policy;
use super::config::Config;
use super::plan;
use super::scenario::{CurveMode, Scenario};

/// Estimated hit rates at one capacity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub content: f64,
    pub relaxed: f64,
    pub strict_prefix: f64,
    pub lru: f64,
}

impl Scenario {
    fn turns(&self) -> u32 {
        self.avg_turns_per_session.round().max(1.0) as u32
    }

    /// (input tokens, shared-prefix reuse, private reuse) of one session.
    fn session(&self) -> (f64, f64, f64) {
        let (p, n, w) = (
            self.shared_prefix_tokens,
            self.avg_new_tokens_per_turn,
            self.private_window_tokens,
        );
        let (mut input, mut shared, mut private) = (0.0, 0.0, 0.0);
        for k in 1..=self.turns() {
            let k = f64::from(k);
            input += p + (k * n).min(w);
            shared += p;
            if k * n <= w {
                private += (k - 1.0) * n;
            }
        }
        (input, shared, private)
    }

    /// Mean prompt length.
    fn mean_input(&self) -> f64 {
        self.session().0 / f64::from(self.turns())
    }

    /// Share of private reuse kept when a fraction `x` of the private working set fits.
    pub fn curve(&self, x: f64) -> f64 {
        let x = x.clamp(0.0, 1.0);
        let n = self.concurrent_agents.max(1.0);
        let s = self.zipf_s;
        match self.curve_mode {
            CurveMode::Linear => x,
            CurveMode::ZipfHarmonic => {
                let h = |m: f64| {
                    let whole = m.floor() as u64;
                    let sum: f64 = (1..=whole).map(|i| (i as f64).powf(-s)).sum();
                    sum + (m - whole as f64) * ((whole + 1) as f64).powf(-s)
                };
                h(x * n) / h(n)
            }
            CurveMode::PowerLawFit => {
                let g = |m: f64| {
                    if (s - 1.0).abs() < 1e-9 {
                        (m + 1.0).ln()
                    } else {
                        ((m + 1.0).powf(1.0 - s) - 1.0) / (1.0 - s)
                    }
                };
                g(x * n) / g(n)
            }
        }
    }

    /// Hit rates with a cache of `capacity_tokens`.
    pub fn estimate(&self, capacity_tokens: f64) -> Estimate {
        let (input, shared, private) = self.session();
        let content = (shared + private) / input;
        let private_set = self.concurrent_agents
            * (f64::from(self.turns()) * self.avg_new_tokens_per_turn)
                .min(self.private_window_tokens);
        let at = |k: f64| {
            let k = k.max(0.0);
            let p = self.shared_prefix_tokens;
            let shared_kept = if p > 0.0 { (k / p).min(1.0) } else { 1.0 };
            let x = if private_set > 0.0 {
                (k - p).max(0.0) / private_set
            } else {
                1.0
            };
            (shared * shared_kept + private * self.curve(x)) / input
        };
        let relaxed = at(capacity_tokens).min(content);
        let strict_prefix = at(capacity_tokens - self.mean_input()).min(relaxed);
        Estimate {
            content,
            relaxed,
            strict_prefix,
            lru: strict_prefix * self.policy_efficiency.lru_like,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::scenario::PolicyEfficiency;
    use super::*;

    fn scenario(mode: CurveMode) -> Scenario {
        Scenario {
            concurrent_agents: 10.0,
            shared_prefix_tokens: 1000.0,
            avg_new_tokens_per_turn: 500.0,
            avg_turns_per_session: 4.0,
            private_window_tokens: 100_000.0,
            curve_mode: mode,
            zipf_s: 0.8,
            policy_efficiency: PolicyEfficiency { lru_like: 0.9 },
        }
    }

    #[test]
    fn content_bound_by_hand() {
        // Inputs 1500, 2000, 2500, 3000 = 9000; reuse 4 × 1000 + (0 + 500 + 1000 + 1500) = 7000.
        let e = scenario(CurveMode::Linear).estimate(1e12);
        assert!((e.content - 7000.0 / 9000.0).abs() < 1e-12);
        assert!((e.relaxed - e.content).abs() < 1e-12);
        assert!((e.lru - 0.9 * e.strict_prefix).abs() < 1e-12);
    }

    #[test]
    fn estimates_are_ordered_and_monotone_for_every_curve() {
        for mode in [
            CurveMode::Linear,
            CurveMode::PowerLawFit,
            CurveMode::ZipfHarmonic,
        ] {
            let s = scenario(mode);
            let mut last = s.estimate(0.0);
            assert_eq!(last.relaxed, 0.0);
            for k in (0..60).map(|i| f64::from(i) * 500.0) {
                let e = s.estimate(k);
                assert!(e.lru <= e.strict_prefix && e.strict_prefix <= e.relaxed);
                assert!(e.relaxed <= e.content + 1e-12);
                assert!(
                    e.relaxed >= last.relaxed && e.lru >= last.lru,
                    "{mode:?} at {k}"
                );
                last = e;
            }
            assert!((s.curve(1.0) - 1.0).abs() < 1e-12 && s.curve(0.0).abs() < 1e-12);
        }
        // A skewed popularity captures more with a small cache than a flat one.
        let zipf = scenario(CurveMode::ZipfHarmonic);
        assert!(zipf.curve(0.2) > 0.2);
    }
}

/// One deployment's estimate at every tier, and its plans.
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentEstimate {
    pub label: String,
    pub deployment: super::config::Deployment,
    pub tiers: Vec<(String, f64, Estimate)>,
    pub planning: Vec<super::buckets::PlanRow>,
}

/// Estimates every deployment of `config` with `scenario`.
pub fn estimate_all(
    config: &Config,
    scenario: &Scenario,
) -> anyhow::Result<Vec<DeploymentEstimate>> {
    let kv = config.model_profile.shape()?;
    config
        .deployments
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let anchors = d.anchors.or(&config.anchors);
            let extra = anchors.extra_capacity_tiers.clone().unwrap_or_default();
            let capacity = plan::capacity(d, d.accelerator_count, &kv, &extra)
                .with_context(|| format!("deployments[{i}]"))?;
            let tiers: Vec<(String, f64, Estimate)> = capacity
                .tiers
                .iter()
                .map(|(label, tokens)| (label.clone(), *tokens, scenario.estimate(*tokens)))
                .collect();
            let mut planning = Vec::new();
            for (tier_index, (label, _, e)) in tiers.iter().enumerate() {
                let tiers_here: Vec<_> = tier_index
                    .checked_sub(1)
                    .and_then(|t| extra.get(t))
                    .cloned()
                    .into_iter()
                    .collect();
                for policy in [Policy::StrictPrefix, Policy::Lru] {
                    let pick = |e: &Estimate| match policy {
                        Policy::StrictPrefix => e.strict_prefix,
                        Policy::Lru => e.lru,
                    };
                    let mut rate_at = |cards: u32| {
                        plan::capacity(d, cards, &kv, &tiers_here)
                            .ok()
                            .and_then(|c| c.tiers.last().map(|t| t.1))
                            .map_or(0.0, |tokens| pick(&scenario.estimate(tokens)))
                    };
                    planning.push(super::buckets::plan_from_rate(
                        config,
                        &kv,
                        d,
                        &anchors,
                        label,
                        pick(e),
                        policy,
                        &mut rate_at,
                    ));
                }
            }
            Ok(DeploymentEstimate {
                label: d.name.clone().unwrap_or_else(|| {
                    format!(
                        "{}x{}",
                        plan::machines(d.accelerator_count, d.cards_per_machine),
                        d.cards_per_machine
                    )
                }),
                deployment: d.clone(),
                tiers,
                planning,
            })
        })
        .collect()
}

/// `estimate-multi-agent`.
pub fn run(a: &super::EstimateArgs) -> anyhow::Result<()> {
    let config = Config::load(&a.config)?;
    let scenario = config
        .heuristic_multi_agent
        .clone()
        .with_context(|| format!("{}: heuristic_multi_agent is required", a.config.display()))?;
    scenario
        .check()
        .with_context(|| a.config.display().to_string())?;
    if config.deployments.is_empty() {
        anyhow::bail!("{}: deployments is empty", a.config.display());
    }
    std::fs::create_dir_all(&a.output_dir)
        .with_context(|| format!("cannot create {}", a.output_dir.display()))?;
    let estimates = estimate_all(&config, &scenario)?;
    write_estimates(&a.output_dir, &config, &scenario, &estimates)?;
    for d in &estimates {
        let (_, tokens, e) = &d.tiers[0];
        println!(
            "{}: HBM {:.0} tokens: content {:.4}, relaxed {:.4}, strict-prefix {:.4}, LRU {:.4}",
            d.label, tokens, e.content, e.relaxed, e.strict_prefix, e.lru
        );
    }
    Ok(())
}

fn bottleneck(e: &Estimate) -> &'static str {
    super::buckets::bottleneck(e.content, e.strict_prefix, e.lru)
}

fn write_estimates(
    dir: &std::path::Path,
    config: &Config,
    scenario: &Scenario,
    estimates: &[DeploymentEstimate],
) -> anyhow::Result<()> {
    use super::buckets::{Table, f};
    let mut summary = Table::new(&[
        "Deployment",
        "Machine Spec",
        "Accelerators",
        "Cards Per Machine",
        "HBM KV Tokens",
        "Content Upper Bound",
        "Relaxed Upper Bound",
        "Exact Strict-Prefix",
        "LRU Baseline",
        "HBM Current Bottleneck",
    ]);
    let mut tiers = Table::new(&[
        "Deployment",
        "Tier",
        "Capacity Tokens",
        "Strict-Prefix Hit Rate",
        "LRU Hit Rate",
        "Strict-Prefix Gain vs Previous Tier",
        "LRU Gain vs Previous Tier",
        "Current Bottleneck",
    ]);
    for d in estimates {
        let (_, hbm_tokens, e) = &d.tiers[0];
        summary.push(vec![
            d.label.clone(),
            d.deployment.machine_spec.clone().unwrap_or_default(),
            d.deployment.accelerator_count.to_string(),
            d.deployment.cards_per_machine.to_string(),
            format!("{hbm_tokens:.0}"),
            f(e.content),
            f(e.relaxed),
            f(e.strict_prefix),
            f(e.lru),
            bottleneck(e).to_owned(),
        ]);
        let mut previous: Option<&Estimate> = None;
        for (label, tokens, e) in &d.tiers {
            tiers.push(vec![
                d.label.clone(),
                label.clone(),
                format!("{tokens:.0}"),
                f(e.strict_prefix),
                f(e.lru),
                f(previous.map_or(0.0, |p| e.strict_prefix - p.strict_prefix)),
                f(previous.map_or(0.0, |p| e.lru - p.lru)),
                bottleneck(e).to_owned(),
            ]);
            previous = Some(e);
        }
    }
    summary.write(&dir.join("heuristic_summary.csv"))?;
    tiers.write(&dir.join("heuristic_tier_summary.csv"))?;
    let plans: Vec<(String, super::buckets::PlanRow)> = estimates
        .iter()
        .flat_map(|d| d.planning.iter().map(|p| (d.label.clone(), p.clone())))
        .collect();
    super::buckets::write_plans(&plans, dir)?;
    crate::data::artifact::write_json_atomic(
        &dir.join("metadata.json"),
        &serde_json::json!({
            "tool": "kvsweep oracle",
            "version": crate::VERSION,
            "command": "estimate-multi-agent",
            "status": "complete",
            "config": config,
            "definitions": super::definitions(),
        }),
    )?;
    crate::data::artifact::write_json_atomic(
        &dir.join("details.json"),
        &serde_json::json!({ "scenario": scenario, "deployments": estimates }),
    )?;
    for lang in [Lang::En, Lang::Zh] {
        let path = dir.join(match lang {
            Lang::En => "heuristic_report.en.md",
            Lang::Zh => "heuristic_report.zh.md",
        });
        std::fs::write(&path, report(scenario, estimates, lang))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lang {
    En,
    Zh,
}

/// The explanatory report: assumptions, formulas, parameters and how far the answer moves when
/// the two free parameters do.
fn report(s: &Scenario, estimates: &[DeploymentEstimate], lang: Lang) -> String {
    use std::fmt::Write as _;
    let en = lang == Lang::En;
    let t = |e: &'static str, z: &'static str| if en { e } else { z };
    let mut md = String::new();
    let _ = writeln!(md, "# {}\n", t("Heuristic estimate", "启发式估算报告"));
    let _ = writeln!(
        md,
        "{}\n",
        t(
            "No trace was used: these numbers come from the scenario below and the formulas in this report. Treat them as a first sizing, and calibrate them on a trace (`calibrate-multi-agent`) when one exists.",
            "本估算未使用 trace：数字来自下述场景与公式。请将其视为初步容量规划；有 trace 时请用 `calibrate-multi-agent` 校准。"
        )
    );
    let _ = writeln!(md, "## {}\n", t("Scenario", "场景参数"));
    let params = [
        ("concurrent_agents", s.concurrent_agents),
        ("shared_prefix_tokens", s.shared_prefix_tokens),
        ("avg_new_tokens_per_turn", s.avg_new_tokens_per_turn),
        ("avg_turns_per_session", s.avg_turns_per_session),
        ("private_window_tokens", s.private_window_tokens),
        ("zipf_s", s.zipf_s),
        ("policy_efficiency.lru_like", s.policy_efficiency.lru_like),
    ];
    for (k, v) in params {
        let _ = writeln!(md, "- `{k}` = {v}");
    }
    let _ = writeln!(md, "- `curve_mode` = {:?}\n", s.curve_mode);
    let _ = writeln!(md, "## {}\n", t("Formulas", "公式"));
    let _ = writeln!(
        md,
        "{}\n",
        t(
            "Turn k reads P + min(k·n, W) tokens and reuses P + (k−1)·n of them while k·n ≤ W (P after: a sliding window breaks the prefix). With K tokens of cache the shared prefix is kept first (share min(1, K/P)); the remaining K − P holds a fraction x of the private working set N·min(T·n, W), and the curve maps x to the share of private reuse captured: linear x; zipf_harmonic H(xN, s)/H(N, s); power_law_fit ((xN+1)^(1−s) − 1)/((N+1)^(1−s) − 1). Strict-prefix: the same with one running prompt taken out of K. LRU: strict-prefix × lru_like. TPS: baseline / (1 − alpha × hit rate).",
            "第 k 轮读取 P + min(k·n, W) 个 token，在 k·n ≤ W 时复用其中 P + (k−1)·n 个（之后只复用 P：滑动窗口会破坏前缀）。缓存容量为 K 时优先保留共享前缀（占比 min(1, K/P)）；剩余 K − P 容纳私有工作集 N·min(T·n, W) 的比例 x，曲线将 x 映射为私有复用的捕获比例：linear 为 x；zipf_harmonic 为 H(xN, s)/H(N, s)；power_law_fit 为 ((xN+1)^(1−s) − 1)/((N+1)^(1−s) − 1)。严格前缀：同上，但先从 K 中扣除一个正在运行的请求。LRU：严格前缀 × lru_like。TPS：baseline / (1 − alpha × 命中率)。"
        )
    );
    let _ = writeln!(
        md,
        "## {}\n",
        t("Results and uncertainty", "结果与不确定性")
    );
    let _ = writeln!(
        md,
        "{}\n",
        t(
            "The range is the strict-prefix and LRU hit rate with zipf_s ± 0.3 and lru_like ± 0.1 (the parameters a trace would calibrate).",
            "区间为 zipf_s ± 0.3、lru_like ± 0.1 时严格前缀与 LRU 命中率的变化范围（即 trace 校准的两个参数）。"
        )
    );
    let _ = writeln!(
        md,
        "| {} | {} | {} | {} | {} | {} |\n|---|---|---|---|---|---|",
        t("Deployment", "部署"),
        t("Tier", "层"),
        t("Content", "内容上界"),
        t("Strict-prefix (range)", "严格前缀（区间）"),
        t("LRU (range)", "LRU（区间）"),
        t("Capacity tokens", "容量 token")
    );
    for d in estimates {
        for (label, tokens, e) in &d.tiers {
            let mut lo = (e.strict_prefix, e.lru);
            let mut hi = lo;
            for dz in [-0.3, 0.3] {
                for dl in [-0.1, 0.1] {
                    let mut v = s.clone();
                    v.zipf_s = (v.zipf_s + dz).max(0.0);
                    v.policy_efficiency.lru_like =
                        (v.policy_efficiency.lru_like + dl).clamp(0.0, 1.0);
                    let x = v.estimate(*tokens);
                    lo = (lo.0.min(x.strict_prefix), lo.1.min(x.lru));
                    hi = (hi.0.max(x.strict_prefix), hi.1.max(x.lru));
                }
            }
            let _ = writeln!(
                md,
                "| {} | {} | {:.4} | {:.4} ({:.4}–{:.4}) | {:.4} ({:.4}–{:.4}) | {:.0} |",
                d.label, label, e.content, e.strict_prefix, lo.0, hi.0, e.lru, lo.1, hi.1, tokens
            );
        }
    }
    md
}
