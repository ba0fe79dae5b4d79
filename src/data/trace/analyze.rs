//! `kvsweep trace analyze`: what a trace set will do to a cache, before any GPU time is spent.
//!
//! Files are parsed in parallel, one at a time per thread, and reduced to statistics as they go,
//! so a corpus larger than memory can be analyzed. For every format the `aiperf` section uses
//! `aiperf analyze-trace`'s definitions (AIPerf 0.x `PrefixAnalyzer`): requests in file order,
//! a theoretical hit rate per request from the first hash id not seen before, prefix reuse
//! over every prefix of every request, context length from (position, id) pairs seen twice.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{Value, json};

use super::{LoadOptions, Session, TraceRequest, TraceSet};
use crate::base::hash::{HashedMap, HashedSet, chain};
use crate::base::kinds::TraceFormat;
use crate::base::rng::mix;
use crate::base::stats::percentile;

/// mean, std, min, p25, median, p75, p90, p99, max of a list.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
struct Dist {
    pub count: usize,
    pub mean: f64,
    std_dev: f64,
    pub min: f64,
    pub p25: f64,
    pub median: f64,
    pub p75: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Dist {
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        Self {
            count: v.len(),
            mean,
            std_dev: var.sqrt(),
            min: v[0],
            p25: percentile(&v, 25.0),
            median: percentile(&v, 50.0),
            p75: percentile(&v, 75.0),
            p90: percentile(&v, 90.0),
            p99: percentile(&v, 99.0),
            max: v[v.len() - 1],
        }
    }
}

/// How a request's context relates to the previous request of its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Growth {
    /// Every block of the previous prompt is still there, and more may follow.
    Append,
    /// A shared prefix, then different blocks: the tail was replaced.
    ReplaceTail,
    /// Shorter than before and a prefix of it (or diverging early): context compaction.
    DropBack,
}

/// The growth class of `cur` after `prev` (hash ids of the same session).
pub fn growth(prev: &[u64], cur: &[u64]) -> Growth {
    let common = prev.iter().zip(cur).take_while(|(a, b)| a == b).count();
    if common == prev.len() {
        Growth::Append
    } else if cur.len() < prev.len() {
        Growth::DropBack
    } else {
        Growth::ReplaceTail
    }
}

/// Raw figures of one file (or, merged, of a set), reduced to [`Report`]s at the end.
#[derive(Debug, Default)]
struct Acc {
    files: usize,
    sessions: usize,
    subagents: usize,
    inputs: Vec<f64>,
    outputs: Vec<f64>,
    think: Vec<f64>,
    growth: [u64; 3],
    input_tokens: u64,
    session_hit_tokens: u64,
    global_hit_tokens: u64,
    unique_blocks: u64,
    block_size: u32,
    aiperf: AiperfAcc,
}

/// AIPerf `PrefixAnalyzer` figures, computed over one file's requests in order.
#[derive(Debug, Default)]
struct AiperfAcc {
    requests: usize,
    unique_prefixes: u64,
    prefix_groups: u64,
    hit_rates: Vec<f64>,
    reused_prefixes: u64,
    total_prefixes: u64,
    context_lengths: Vec<f64>,
    unique_prompt_lengths: Vec<f64>,
}

fn aiperf(requests: &[(u32, u32, &[u64])], block_size: u32) -> AiperfAcc {
    // Keys are mixed to well-spread u64s so the maps can skip hashing them again.
    let pos_key = |pos: usize, id: u64| mix(id ^ (pos as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F));
    let blocks: usize = requests.iter().map(|(_, _, ids)| ids.len()).sum();
    let mut prefix_count: HashedMap<u64> =
        HashedMap::with_capacity_and_hasher(blocks, Default::default());
    let mut pos_id: HashedMap<u64> =
        HashedMap::with_capacity_and_hasher(blocks, Default::default());
    let mut first_blocks: HashedMap<u64> = HashedMap::default();
    for (_, _, ids) in requests {
        let mut h = 0;
        for (pos, id) in ids.iter().enumerate() {
            h = chain(h, *id);
            *prefix_count.entry(h).or_default() += 1;
            *pos_id.entry(pos_key(pos, *id)).or_default() += 1;
        }
        if let Some(first) = ids.first() {
            *first_blocks.entry(mix(*first)).or_default() += 1;
        }
    }
    let mut acc = AiperfAcc {
        requests: requests.len(),
        unique_prefixes: prefix_count.len() as u64,
        prefix_groups: first_blocks.values().filter(|c| **c > 1).count() as u64,
        reused_prefixes: prefix_count.values().filter(|c| **c > 1).sum(),
        total_prefixes: prefix_count.values().sum(),
        ..AiperfAcc::default()
    };
    let mut seen = HashedSet::with_capacity_and_hasher(blocks, Default::default());
    for (isl, _, ids) in requests {
        if ids.is_empty() {
            acc.context_lengths.push(0.0);
            acc.unique_prompt_lengths.push(f64::from(*isl));
            continue;
        }
        let first_unseen = ids
            .iter()
            .position(|id| !seen.contains(&mix(*id)))
            .unwrap_or(ids.len());
        acc.hit_rates.push(first_unseen as f64 / ids.len() as f64);
        // Everything before the first unseen id is in the set already.
        seen.extend(ids[first_unseen..].iter().map(|id| mix(*id)));
        let repeated = ids
            .iter()
            .enumerate()
            .filter(|(pos, id)| pos_id.get(&pos_key(*pos, **id)).is_some_and(|c| *c > 1))
            .count();
        let context = if repeated == ids.len() {
            f64::from(*isl)
        } else {
            (repeated as u64 * u64::from(block_size)) as f64
        };
        acc.context_lengths.push(context);
        acc.unique_prompt_lengths.push(f64::from(*isl) - context);
    }
    acc
}

/// Every request of a session and its subagents, with its absolute start time.
fn flatten<'a>(s: &'a Session, base: f64, out: &mut Vec<(f64, &'a TraceRequest)>) {
    let start = base + s.start_s;
    out.extend(s.requests.iter().map(|r| (start + r.offset_s, r)));
    for c in &s.children {
        flatten(c, start, out);
    }
}

fn session_blocks(s: &Session) -> usize {
    s.requests.iter().map(|r| r.hash_ids.len()).sum::<usize>()
        + s.children.iter().map(session_blocks).sum::<usize>()
}

fn session_figures(s: &Session, acc: &mut Acc, global: &mut HashedSet) {
    let mut seen = HashedSet::default();
    let mut prev: Option<&[u64]> = None;
    for r in &s.requests {
        acc.inputs.push(f64::from(r.input_tokens));
        acc.outputs.push(f64::from(r.output_tokens));
        acc.think.push(r.think_time_s);
        acc.input_tokens += u64::from(r.input_tokens);
        if let Some(p) = prev {
            acc.growth[growth(p, &r.hash_ids) as usize] += 1;
        }
        prev = Some(&r.hash_ids);
        // An unbounded prefix cache: a block hits when its whole path was seen before.
        let (mut h, mut session_hit, mut global_hit, mut on_session, mut on_global) =
            (0, 0u64, 0u64, true, true);
        for id in &r.hash_ids {
            h = chain(h, *id);
            // One probe each: `insert` says whether the path was new.
            on_session &= !seen.insert(h);
            let new = global.insert(h);
            on_global &= !new;
            session_hit += u64::from(on_session);
            global_hit += u64::from(on_global);
            acc.unique_blocks += u64::from(new);
        }
        let bs = u64::from(s.block_size);
        acc.session_hit_tokens += session_hit * bs;
        acc.global_hit_tokens += global_hit * bs;
    }
    for c in &s.children {
        acc.subagents += 1;
        session_figures(c, acc, global);
    }
}

/// Figures of one parsed file; `ordered` is the requests in file order (Mooncake lines), or
/// `None` to order them by start time.
fn file_figures(set: &TraceSet, ordered: Option<Vec<(u32, u32, Vec<u64>)>>) -> Acc {
    let mut acc = Acc {
        files: 1,
        sessions: set.sessions.len(),
        block_size: set.sessions.first().map_or(0, |s| s.block_size),
        ..Acc::default()
    };
    let blocks: usize = set.sessions.iter().map(session_blocks).sum();
    let mut global = HashedSet::with_capacity_and_hasher(blocks, Default::default());
    for s in &set.sessions {
        session_figures(s, &mut acc, &mut global);
    }
    acc.aiperf = match &ordered {
        Some(lines) => {
            let view: Vec<(u32, u32, &[u64])> =
                lines.iter().map(|(i, o, h)| (*i, *o, &h[..])).collect();
            aiperf(&view, acc.block_size)
        }
        None => {
            let mut all = Vec::new();
            for s in &set.sessions {
                flatten(s, 0.0, &mut all);
            }
            all.sort_by(|a, b| a.0.total_cmp(&b.0));
            let view: Vec<(u32, u32, &[u64])> = all
                .iter()
                .map(|(_, r)| (r.input_tokens, r.output_tokens, &r.hash_ids[..]))
                .collect();
            aiperf(&view, acc.block_size)
        }
    };
    acc
}

/// Mooncake lines in file order, as AIPerf reads them.
fn mooncake_lines(text: &str) -> Vec<(u32, u32, Vec<u64>)> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            let n = |k: &str| v[k].as_u64().unwrap_or(0) as u32;
            let ids = v["hash_ids"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            (n("input_length"), n("output_length"), ids)
        })
        .collect()
}

impl Acc {
    fn merge(&mut self, o: Acc) {
        self.files += o.files;
        self.sessions += o.sessions;
        self.subagents += o.subagents;
        self.inputs.extend(o.inputs);
        self.outputs.extend(o.outputs);
        self.think.extend(o.think);
        for i in 0..3 {
            self.growth[i] += o.growth[i];
        }
        self.input_tokens += o.input_tokens;
        self.session_hit_tokens += o.session_hit_tokens;
        self.global_hit_tokens += o.global_hit_tokens;
        self.unique_blocks += o.unique_blocks;
        if self.block_size == 0 {
            self.block_size = o.block_size;
        }
        let a = &mut self.aiperf;
        a.requests += o.aiperf.requests;
        a.unique_prefixes += o.aiperf.unique_prefixes;
        a.prefix_groups += o.aiperf.prefix_groups;
        a.hit_rates.extend(o.aiperf.hit_rates);
        a.reused_prefixes += o.aiperf.reused_prefixes;
        a.total_prefixes += o.aiperf.total_prefixes;
        a.context_lengths.extend(o.aiperf.context_lengths);
        a.unique_prompt_lengths
            .extend(o.aiperf.unique_prompt_lengths);
    }

    fn report(&self, kv_bytes_per_token: Option<f64>) -> Value {
        let turns: u64 = self.growth.iter().sum();
        let share = |n: u64| (turns > 0).then(|| n as f64 / turns as f64);
        let tokens = self.unique_blocks * u64::from(self.block_size);
        let a = &self.aiperf;
        json!({
            "files": self.files,
            "sessions": self.sessions,
            "subagents": self.subagents,
            "requests": self.inputs.len(),
            "input_tokens": Dist::of(&self.inputs),
            "output_tokens": Dist::of(&self.outputs),
            "think_time_s": Dist::of(&self.think),
            "growth": {
                "turns": turns,
                "append": share(self.growth[0]),
                "replace_tail": share(self.growth[1]),
                "drop_back": share(self.growth[2]),
            },
            "reuse": {
                "block_size": self.block_size,
                "session_scope_hit_rate": (self.input_tokens > 0).then(|| self.session_hit_tokens as f64 / self.input_tokens as f64),
                "global_scope_hit_rate": (self.input_tokens > 0).then(|| self.global_hit_tokens as f64 / self.input_tokens as f64),
                "unique_blocks": self.unique_blocks,
                "working_set_tokens": tokens,
                "working_set_bytes": kv_bytes_per_token.map(|b| tokens as f64 * b),
            },
            "aiperf": {
                "total_requests": a.requests,
                "unique_prefixes": a.unique_prefixes,
                "num_prefix_groups": a.prefix_groups,
                "cache_hit_rate": if a.hit_rates.is_empty() { 0.0 } else { a.hit_rates.iter().sum::<f64>() / a.hit_rates.len() as f64 },
                "prefix_reuse_ratio": if a.total_prefixes == 0 { 0.0 } else { a.reused_prefixes as f64 / a.total_prefixes as f64 },
                "context_length": Dist::of(&a.context_lengths),
                "unique_prompt_length": Dist::of(&a.unique_prompt_lengths),
                "hit_rate": Dist::of(&a.hit_rates),
            },
        })
    }
}

/// Parses and reduces one file; also returns its digest, skipped records and warnings.
fn analyze_file(
    path: &Path,
    index: usize,
    opts: LoadOptions,
) -> Result<(Acc, u64, Vec<String>, Vec<String>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut set = TraceSet::default();
    super::parse_file(path, &text, index, opts, &mut set)?;
    let ordered = (super::file_format(path, &text, opts) == TraceFormat::Mooncake)
        .then(|| mooncake_lines(&text));
    // Same requests, same content: a duplicate whatever the file is called.
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for s in &set.sessions {
        let mut all = Vec::new();
        flatten(s, 0.0, &mut all);
        for (_, r) in all {
            h.update(&r.input_tokens.to_le_bytes());
            h.update(&r.output_tokens.to_le_bytes());
            for id in &r.hash_ids {
                h.update(&id.to_le_bytes());
            }
        }
    }
    let skipped = set.skipped.iter().map(ToString::to_string).collect();
    let warnings = std::mem::take(&mut set.warnings);
    Ok((file_figures(&set, ordered), h.digest(), skipped, warnings))
}

/// The analysis of `files`: per file and for the whole set.
pub fn analyze(
    files: &[PathBuf],
    opts: LoadOptions,
    kv_bytes_per_token: Option<f64>,
) -> Result<Value> {
    let results = super::per_file_parallel(files, |i, f| analyze_file(f, i, opts));
    let mut total = Acc::default();
    let mut per_file = Vec::new();
    let mut digests: HashMap<u64, Vec<String>> = HashMap::new();
    let mut skipped = Vec::new();
    let mut warnings = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        let (acc, digest, skips, warns) = r?;
        let name = files[i].display().to_string();
        per_file.push(json!({"file": name, "stats": acc.report(kv_bytes_per_token)}));
        digests.entry(digest).or_default().push(name);
        skipped.extend(skips);
        warnings.extend(warns);
        total.merge(acc);
    }
    let mut duplicates: Vec<Vec<String>> = digests.into_values().filter(|g| g.len() > 1).collect();
    duplicates.sort();
    Ok(json!({
        "set": total.report(kv_bytes_per_token),
        "duplicate_traces": duplicates,
        "skipped_records": skipped,
        "warnings": warnings,
        "files": per_file,
    }))
}
