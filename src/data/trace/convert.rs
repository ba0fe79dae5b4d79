//! `kvsweep trace convert`: kv-cache-tester JSON ↔ Mooncake JSONL, with re-blocking.
//!
//! Hash ids are re-derived from prefix paths: a target block is named by the source prefix path
//! that ends where it ends (and the offset inside that source block), so two requests share a
//! target block exactly when the source says they share that much prefix. Coarsening (64 → 512)
//! keeps sharing at the coarser grain; refining (512 → 64) cannot invent sharing the source did
//! not record. A partial last block (Mooncake counts it) is unique to its request.
//!
//! Lossy directions: Mooncake → kv-cache-tester writes one file per session, so sharing between
//! sessions (Mooncake's global scope) is not kept, and `api_time` is unknown (0). kv-cache-tester
//! → Mooncake keeps each file's sharing inside that file only (its scope is local) and drops
//! `api_time`, models and content types; subagents become sessions of their own.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::{Session, TraceRequest, TraceSet};
use crate::base::hash::chain;

/// Names target blocks after source prefix paths.
#[derive(Default)]
struct Reblocker {
    ids: HashMap<(u64, u32), u64>,
    next: u64,
}

impl Reblocker {
    fn fresh(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// The ids of a request of `input` tokens whose `ids` name `src`-token blocks in `scope`,
    /// for `dst`-token blocks; `partial` adds an id for a last, partly filled block.
    fn reblock(
        &mut self,
        scope: u64,
        ids: &[u64],
        input: u32,
        src: u32,
        dst: u32,
        partial: bool,
    ) -> Vec<u64> {
        let mut chains = Vec::with_capacity(ids.len());
        let mut h = scope;
        for id in ids {
            h = chain(h, *id);
            chains.push(h);
        }
        let full = input / dst;
        let count = if partial { input.div_ceil(dst) } else { full };
        (0..count)
            .map(|k| {
                let end = u64::from(k + 1) * u64::from(dst);
                // The source block holding the last token of this block, and the offset of the
                // block's end inside it.
                let src_block = ((end - 1) / u64::from(src)) as usize;
                let offset = (end - src_block as u64 * u64::from(src)) as u32;
                if k < full && src_block < chains.len() {
                    let key = (chains[src_block], offset);
                    if let Some(id) = self.ids.get(&key) {
                        *id
                    } else {
                        let id = self.fresh();
                        self.ids.insert(key, id);
                        id
                    }
                } else {
                    self.fresh()
                }
            })
            .collect()
    }
}

/// Every request of a session and its subagents as its own session, with absolute starts.
fn sessions_flat<'a>(
    s: &'a Session,
    base: f64,
    out: &mut Vec<(String, f64, &'a [TraceRequest], u64, u32)>,
) {
    let start = base + s.start_s;
    if !s.requests.is_empty() {
        out.push((s.id.clone(), start, &s.requests, s.scope, s.block_size));
    }
    for c in &s.children {
        sessions_flat(c, start, out);
    }
}

/// Writes the set as one Mooncake JSONL file with `block_size`-token blocks.
pub(crate) fn to_mooncake(set: &TraceSet, block_size: u32, out: &Path) -> Result<usize> {
    let mut flat = Vec::new();
    for s in &set.sessions {
        sessions_flat(s, 0.0, &mut flat);
    }
    let mut rb = Reblocker::default();
    let mut lines: Vec<(f64, String)> = Vec::new();
    for (id, start, requests, scope, src) in flat {
        for r in requests {
            let ids = rb.reblock(scope, &r.hash_ids, r.input_tokens, src, block_size, true);
            let at = start + r.offset_s;
            let line = json!({
                "session_id": id,
                "timestamp": (at * 1000.0).round() as u64,
                "delay": (r.think_time_s * 1000.0).round() as u64,
                "input_length": r.input_tokens,
                "output_length": r.output_tokens,
                "hash_ids": ids,
            });
            lines.push((at, line.to_string()));
        }
    }
    lines.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?,
    );
    for (_, l) in &lines {
        writeln!(f, "{l}")?;
    }
    f.flush()?;
    Ok(lines.len())
}

fn kvct_requests(rb: &mut Reblocker, s: &Session, block_size: u32) -> Vec<serde_json::Value> {
    let mut out: Vec<serde_json::Value> = s
        .requests
        .iter()
        .map(|r| {
            json!({
                "t": r.offset_s,
                "type": "s",
                "in": r.input_tokens,
                "out": r.output_tokens,
                "hash_ids": rb.reblock(s.scope, &r.hash_ids, r.input_tokens, s.block_size, block_size, false),
                "think_time": r.think_time_s,
                "api_time": r.api_time_s,
            })
        })
        .collect();
    for c in &s.children {
        out.push(json!({
            "t": c.start_s,
            "type": "subagent",
            "agent_id": c.id.rsplit('/').next().unwrap_or(&c.id),
            "requests": kvct_requests(rb, c, block_size),
        }));
    }
    out
}

/// Writes every session as a kv-cache-tester file in `dir`; returns how many were written.
pub(crate) fn to_kvct(set: &TraceSet, block_size: u32, dir: &Path) -> Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut names: HashMap<String, u32> = HashMap::new();
    for s in &set.sessions {
        let mut rb = Reblocker::default();
        // Session ids can hold `/` and `#`: keep file names plain and unique.
        let base: String =
            s.id.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
        let n = names.entry(base.clone()).or_default();
        *n += 1;
        let name = if *n == 1 { base } else { format!("{base}_{n}") };
        let doc = json!({
            "id": name,
            "models": [],
            "block_size": block_size,
            "hash_id_scope": "local",
            "tool_tokens": 0,
            "system_tokens": 0,
            "requests": kvct_requests(&mut rb, s, block_size),
        });
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_vec(&doc)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(set.sessions.len())
}

/// Checks that a block size can be re-blocked from `src`.
pub(crate) fn check_blocks(src: u32, dst: u32) -> Result<()> {
    if dst == 0 || (!src.is_multiple_of(dst) && !dst.is_multiple_of(src)) {
        bail!(
            "cannot re-block {src}-token blocks into {dst}-token blocks: one must divide the other"
        );
    }
    Ok(())
}
