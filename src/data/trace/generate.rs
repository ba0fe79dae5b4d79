//! `kvsweep trace generate`: kv-cache-tester traces from a statistical profile of real ones.
//!
//! A [`Profile`] holds, as 21 quantiles each, the distributions that shape an agentic session:
//! turns per session, the first prompt's size, how a prompt changes from one turn to the next
//! (append: tokens added; replace tail: share of blocks kept and size ratio; drop back: size
//! ratio) with the mix of the three, think times and output lengths, and subagents. It is fitted
//! from a corpus (`--fit`) or taken from the built-in one, fitted from the sample traces
//! (`traces/profile-kv-cache-tester.json`). Generation samples each distribution by inverse CDF
//! with a seeded mixer, so the same seed gives the same traces.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::analyze::{Growth, growth};
use super::{Session, TraceSet};
use crate::base::rng::mix;
use crate::base::stats::percentile;

const BUILTIN: &str = include_str!("../../../traces/profile-kv-cache-tester.json");

/// Quantiles p0, p5, ..., p100 of a distribution.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Quantiles(pub Vec<f64>);

impl Quantiles {
    fn fit(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Self(vec![0.0; 21]);
        }
        v.sort_by(f64::total_cmp);
        Self(
            (0..=20)
                .map(|i| percentile(&v, f64::from(i) * 5.0))
                .collect(),
        )
    }

    /// The value at cumulative share `u` in 0..=1, interpolated.
    fn sample(&self, u: f64) -> f64 {
        let q = &self.0;
        if q.is_empty() {
            return 0.0;
        }
        let pos = u.clamp(0.0, 1.0) * (q.len() - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = pos.ceil() as usize;
        q[lo] + (q[hi] - q[lo]) * (pos - lo as f64)
    }

    pub fn median(&self) -> f64 {
        self.sample(0.5)
    }
}

/// The statistics generation reproduces.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Profile {
    pub block_size: u32,
    pub turns: Quantiles,
    pub(crate) first_input: Quantiles,
    pub p_append: f64,
    pub p_replace_tail: f64,
    pub p_drop_back: f64,
    append_tokens: Quantiles,
    replace_keep_share: Quantiles,
    replace_size_ratio: Quantiles,
    drop_size_ratio: Quantiles,
    pub think_time_s: Quantiles,
    pub output_tokens: Quantiles,
    subagents_per_session: f64,
    subagent_turns: Quantiles,
}

impl Profile {
    pub fn builtin() -> Result<Self> {
        serde_json::from_str(BUILTIN).context("the built-in trace profile does not parse")
    }

    /// Fits a profile to a trace set.
    pub fn fit(set: &TraceSet) -> Self {
        #[derive(Default)]
        struct F {
            turns: Vec<f64>,
            first: Vec<f64>,
            class: [u64; 3],
            append: Vec<f64>,
            keep: Vec<f64>,
            replace_ratio: Vec<f64>,
            drop_ratio: Vec<f64>,
            think: Vec<f64>,
            output: Vec<f64>,
            sub_turns: Vec<f64>,
        }
        fn walk(s: &Session, f: &mut F, top: bool) {
            if top {
                f.turns.push(s.requests.len() as f64);
            } else {
                f.sub_turns.push(s.requests.len() as f64);
            }
            if let Some(r) = s.requests.first() {
                f.first.push(f64::from(r.input_tokens));
            }
            for w in s.requests.windows(2) {
                let (p, c) = (&w[0], &w[1]);
                let (pl, cl) = (f64::from(p.input_tokens), f64::from(c.input_tokens));
                match growth(&p.hash_ids, &c.hash_ids) {
                    Growth::Append => {
                        f.class[0] += 1;
                        f.append.push((cl - pl).max(0.0));
                    }
                    Growth::ReplaceTail => {
                        f.class[1] += 1;
                        let common = p
                            .hash_ids
                            .iter()
                            .zip(&c.hash_ids)
                            .take_while(|(a, b)| a == b)
                            .count();
                        f.keep.push(common as f64 / p.hash_ids.len().max(1) as f64);
                        f.replace_ratio.push(cl / pl.max(1.0));
                    }
                    Growth::DropBack => {
                        f.class[2] += 1;
                        f.drop_ratio.push(cl / pl.max(1.0));
                    }
                }
            }
            for r in &s.requests {
                f.think.push(r.think_time_s);
                f.output.push(f64::from(r.output_tokens));
            }
            for c in &s.children {
                walk(c, f, false);
            }
        }
        let mut f = F::default();
        for s in &set.sessions {
            walk(s, &mut f, true);
        }
        let turns: u64 = f.class.iter().sum::<u64>().max(1);
        Self {
            block_size: set.sessions.first().map_or(64, |s| s.block_size),
            turns: Quantiles::fit(&f.turns),
            first_input: Quantiles::fit(&f.first),
            p_append: f.class[0] as f64 / turns as f64,
            p_replace_tail: f.class[1] as f64 / turns as f64,
            p_drop_back: f.class[2] as f64 / turns as f64,
            append_tokens: Quantiles::fit(&f.append),
            replace_keep_share: Quantiles::fit(&f.keep),
            replace_size_ratio: Quantiles::fit(&f.replace_ratio),
            drop_size_ratio: Quantiles::fit(&f.drop_ratio),
            think_time_s: Quantiles::fit(&f.think),
            output_tokens: Quantiles::fit(&f.output),
            subagents_per_session: f.sub_turns.len() as f64 / f.turns.len().max(1) as f64,
            subagent_turns: Quantiles::fit(&f.sub_turns),
        }
    }
}

/// A seeded source of uniform numbers in [0, 1).
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> f64 {
        self.0 = mix(self.0.wrapping_add(0x9E37_79B9_7F4A_7C15));
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The requests of one generated session (JSON), its ids unique within `next_id`'s file.
fn requests(
    p: &Profile,
    d: &mut Draw,
    turns: usize,
    max_input: u32,
    next_id: &mut u64,
) -> Vec<serde_json::Value> {
    let bs = p.block_size.max(1);
    let mut ids: Vec<u64> = Vec::new();
    let mut input = 0u32;
    let mut t = 0.0;
    let mut out = Vec::new();
    let mut fresh = |ids: &mut Vec<u64>, upto: usize| {
        while ids.len() < upto {
            *next_id += 1;
            ids.push(*next_id);
        }
    };
    for turn in 0..turns.max(1) {
        if turn == 0 {
            input = p.first_input.sample(d.next()).max(1.0) as u32;
        } else {
            let u = d.next();
            let prev = f64::from(input);
            if u < p.p_append {
                input = (prev + p.append_tokens.sample(d.next())) as u32;
            } else if u < p.p_append + p.p_replace_tail {
                let keep = (p.replace_keep_share.sample(d.next()) * ids.len() as f64) as usize;
                ids.truncate(keep.min(ids.len().saturating_sub(1)));
                input = (prev * p.replace_size_ratio.sample(d.next())).max(1.0) as u32;
            } else {
                input = (prev * p.drop_size_ratio.sample(d.next()).min(0.99)).max(1.0) as u32;
                ids.truncate((input / bs) as usize);
            }
        }
        input = input.clamp(1, max_input.max(1));
        ids.truncate((input / bs) as usize);
        fresh(&mut ids, (input / bs) as usize);
        let think = if turn == 0 {
            0.0
        } else {
            p.think_time_s.sample(d.next())
        };
        let output = p.output_tokens.sample(d.next()).max(1.0) as u32;
        t += think;
        out.push(json!({
            "t": t, "type": "s", "in": input, "out": output, "hash_ids": ids,
            "think_time": think, "api_time": f64::from(output) / 50.0,
        }));
        t += f64::from(output) / 50.0;
    }
    out
}

/// Writes `sessions` generated traces into `dir`; returns their paths.
pub fn generate(
    p: &Profile,
    sessions: usize,
    seed: u64,
    max_input: u32,
    dir: &Path,
) -> Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut paths = Vec::new();
    for i in 0..sessions {
        let mut d = Draw(mix(
            seed ^ (i as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03)
        ));
        let mut next_id = 0u64;
        let turns = p.turns.sample(d.next()).round().max(1.0) as usize;
        let mut reqs = requests(p, &mut d, turns, max_input, &mut next_id);
        // Subagents: a whole number on average matching the profile.
        let mut n_sub = p.subagents_per_session.floor() as usize;
        if d.next() < p.subagents_per_session.fract() {
            n_sub += 1;
        }
        for a in 0..n_sub {
            let at = reqs
                .get((d.next() * reqs.len() as f64) as usize)
                .and_then(|r| r["t"].as_f64())
                .unwrap_or(0.0);
            let sub_turns = p.subagent_turns.sample(d.next()).round().max(1.0) as usize;
            let sub = requests(p, &mut d, sub_turns, max_input, &mut next_id);
            reqs.push(json!({"t": at, "type": "subagent", "agent_id": format!("agent{a}"), "requests": sub}));
        }
        let name = format!("gen_{seed}_{i:04}");
        let doc = json!({
            "id": name, "models": ["generated"], "block_size": p.block_size,
            "hash_id_scope": "local", "tool_tokens": 0, "system_tokens": 0,
            "requests": reqs,
        });
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_vec(&doc)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        paths.push(path);
    }
    Ok(paths)
}
