//! `calibrate-multi-agent`: fit the heuristic's `zipf_s` and `lru_like` to what the oracle
//! measures on a trace, and read the scenario's structure off the trace.

use std::collections::HashMap;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::runtime::Handle;

use super::buckets::{self, Table, f};
use super::config::Config;
use super::scenario::Scenario;
use super::stream::{self, Scope, child_key};
use super::{CalibrateArgs, load_traces};
use crate::base::stats::percentile;
use crate::data::artifact::write_json_atomic;
use crate::data::trace::TraceSet;

/// What the oracle measured at one capacity: the values the heuristic is fitted to.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub bucket: String,
    pub tier: String,
    pub(crate) capacity_tokens: f64,
    pub content: f64,
    pub strict_prefix: f64,
    pub lru: f64,
}

/// One point of the grid search.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Trial {
    pub zipf_s: f64,
    pub(crate) lru_like: f64,
    /// Root mean square over targets of the strict-prefix and LRU errors.
    pub rmse: f64,
    max_abs_error: f64,
}

/// Scores `scenario` against the targets.
fn score(scenario: &Scenario, targets: &[Target]) -> Trial {
    let mut sq = 0.0;
    let mut max: f64 = 0.0;
    for t in targets {
        let e = scenario.estimate(t.capacity_tokens);
        for d in [e.strict_prefix - t.strict_prefix, e.lru - t.lru] {
            sq += d * d;
            max = max.max(d.abs());
        }
    }
    Trial {
        zipf_s: scenario.zipf_s,
        lru_like: scenario.policy_efficiency.lru_like,
        rmse: (sq / (2 * targets.len().max(1)) as f64).sqrt(),
        max_abs_error: max,
    }
}

/// Every grid point, and the best.
fn grid_search(scenario: &Scenario, targets: &[Target]) -> (Vec<Trial>, Trial) {
    let mut trials = Vec::new();
    for zi in 0..=40 {
        for li in 0..=50 {
            let mut s = scenario.clone();
            s.zipf_s = f64::from(zi) * 0.05;
            s.policy_efficiency.lru_like = 0.5 + f64::from(li) * 0.01;
            trials.push(score(&s, targets));
        }
    }
    let best = *trials
        .iter()
        .min_by(|a, b| a.rmse.total_cmp(&b.rmse))
        .expect("the grid is not empty");
    (trials, best)
}

/// The scenario structure a trace shows (its sessions as agents).
fn structure(set: &TraceSet, base: &Scenario) -> Scenario {
    let entries = stream::order(set, Scope::Global, &|_| true);
    let mut sessions: HashMap<u32, Vec<&stream::Entry>> = HashMap::new();
    for e in &entries {
        sessions.entry(e.session).or_default().push(e);
    }
    let keys = |e: &stream::Entry| -> Vec<u64> {
        let mut parent = e.seed;
        e.request.hash_ids[..e.blocks()]
            .iter()
            .map(|&id| {
                parent = child_key(parent, id);
                parent
            })
            .collect()
    };
    // How many sessions' first prompts contain each block.
    let firsts: Vec<Vec<u64>> = sessions.values().map(|s| keys(s[0])).collect();
    let mut seen: HashMap<u64, u32> = HashMap::new();
    for k in firsts.iter().flatten() {
        *seen.entry(*k).or_default() += 1;
    }
    let block = f64::from(entries.first().map_or(1, |e| e.block_size));
    let mut shared: Vec<f64> = firsts
        .iter()
        .map(|ks| ks.iter().take_while(|k| seen[*k] >= 2).count() as f64 * block)
        .collect();
    shared.sort_by(f64::total_cmp);
    let shared_prefix = percentile(&shared, 50.0);
    // Most sessions running at once.
    let mut events: Vec<(f64, i32)> = sessions
        .values()
        .flat_map(|s| [(s[0].time_s, 1), (s[s.len() - 1].time_s, -1)])
        .collect();
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
    let (mut running, mut most) = (0, 0);
    for (_, d) in events {
        running += d;
        most = most.max(running);
    }
    let growth: Vec<f64> = sessions
        .values()
        .flat_map(|s| {
            s.windows(2).map(|w| {
                (f64::from(w[1].request.input_tokens) - f64::from(w[0].request.input_tokens))
                    .max(0.0)
            })
        })
        .collect();
    let mut private: Vec<f64> = entries
        .iter()
        .map(|e| (f64::from(e.request.input_tokens) - shared_prefix).max(0.0))
        .collect();
    private.sort_by(f64::total_cmp);
    Scenario {
        concurrent_agents: f64::from(most.max(1)),
        shared_prefix_tokens: shared_prefix,
        avg_new_tokens_per_turn: if growth.is_empty() {
            0.0
        } else {
            growth.iter().sum::<f64>() / growth.len() as f64
        },
        avg_turns_per_session: entries.len() as f64 / sessions.len().max(1) as f64,
        private_window_tokens: percentile(&private, 90.0),
        ..base.clone()
    }
}

pub fn run(a: &CalibrateArgs, runtime: &Handle) -> Result<()> {
    let bucket_config = Config::load(&a.bucket_config)?;
    let raw: Value = serde_json::from_str(
        &std::fs::read_to_string(&a.heuristic_config)
            .with_context(|| format!("cannot read {}", a.heuristic_config.display()))?,
    )
    .with_context(|| format!("{} is not JSON", a.heuristic_config.display()))?;
    let heuristic_config = Config::load(&a.heuristic_config)?;
    let scenario = heuristic_config
        .heuristic_multi_agent
        .clone()
        .with_context(|| {
            format!(
                "{}: heuristic_multi_agent is required",
                a.heuristic_config.display()
            )
        })?;
    scenario.check()?;
    std::fs::create_dir_all(&a.output_dir)
        .with_context(|| format!("cannot create {}", a.output_dir.display()))?;
    let set = load_traces(&a.traces, &a.input, runtime)?;
    let analysis = buckets::analyze(&set, &bucket_config)?;
    let targets: Vec<Target> = analysis
        .buckets
        .iter()
        .flat_map(|b| {
            b.tiers.iter().map(|t| Target {
                bucket: b.label.clone(),
                tier: t.label.clone(),
                capacity_tokens: t.capacity_tokens,
                content: t.content,
                strict_prefix: t.strict_prefix,
                lru: t.lru,
            })
        })
        .collect();
    let (trials, best) = grid_search(&scenario, &targets);
    let mut calibrated = scenario.clone();
    calibrated.zipf_s = best.zipf_s;
    calibrated.policy_efficiency.lru_like = best.lru_like;
    let recommended = structure(&set, &calibrated);

    let mut table = Table::new(&["zipf_s", "lru_like", "rmse", "max_abs_error"]);
    for t in &trials {
        table.push(vec![
            format!("{:.2}", t.zipf_s),
            format!("{:.2}", t.lru_like),
            f(t.rmse),
            f(t.max_abs_error),
        ]);
    }
    table.write(&a.output_dir.join("calibration_trials.csv"))?;
    let per_tier: Vec<Value> = targets
        .iter()
        .map(|t| {
            let e = calibrated.estimate(t.capacity_tokens);
            json!({
                "bucket": t.bucket,
                "tier": t.tier,
                "capacity_tokens": t.capacity_tokens,
                "observed": {"content": t.content, "strict_prefix": t.strict_prefix, "lru": t.lru},
                "estimated": e,
                "error_strict_prefix": e.strict_prefix - t.strict_prefix,
                "error_lru": e.lru - t.lru,
                "content_gap": t.content - e.content,
            })
        })
        .collect();
    write_json_atomic(
        &a.output_dir.join("calibration.json"),
        &json!({
            "targets": targets,
            "best": best,
            "per_tier": per_tier,
            "grid": {"zipf_s": [0.0, 2.0, 0.05], "lru_like": [0.5, 1.0, 0.01]},
            "note": "a large content_gap means the scenario's structure (shared prefix, window, agents) is off: use recommended_heuristic_config.json rather than pushing zipf_s or lru_like further",
        }),
    )?;
    let with = |s: &Scenario| -> Result<Value> {
        let mut v = raw.clone();
        v["heuristic_multi_agent"] = serde_json::to_value(s)?;
        Ok(v)
    };
    write_json_atomic(
        &a.output_dir.join("calibrated_config.json"),
        &with(&calibrated)?,
    )?;
    write_json_atomic(
        &a.output_dir.join("recommended_heuristic_config.json"),
        &with(&recommended)?,
    )?;
    println!(
        "best zipf_s {:.2}, lru_like {:.2}: rmse {:.4} over {} targets; files in {}",
        best.zipf_s,
        best.lru_like,
        best.rmse,
        targets.len(),
        a.output_dir.display()
    );
    Ok(())
}
