//! The oracle's bounds for what a sweep cell actually replayed, at the cell's cache size, so
//! `collect` can set them beside the hit rate the server measured.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::config::GIB;
use super::{bounds, stream};
use crate::base::capacity;
use crate::base::kinds::Offload;
use crate::base::model;
use crate::base::runner::RunnerSet;
use crate::data::artifact::schema::{CellPlan, JsonArtifact, RequestRow, read_csv_rows};
use crate::data::trace::{self, LoadOptions, Session, TraceRequest, TraceSet};

/// The share of HBM engines give the cache by default (vLLM's --gpu-memory-utilization; the
/// simulator's default too).
const GPU_MEMORY_UTILIZATION: f64 = 0.9;

/// A cell's bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellBound {
    pub(crate) capacity_tokens: f64,
    pub content: f64,
    pub strict_prefix: f64,
    pub lru: f64,
}

/// Trace sets read so far, by path: a sweep's cells usually share one.
#[derive(Default)]
pub struct TraceCache(HashMap<PathBuf, Option<TraceSet>>);

/// KV tokens of the cell's server: HBM of its TP group after weights, plus the offload tier.
fn capacity_tokens(plan: &CellPlan, runners: &RunnerSet) -> Option<f64> {
    let preset = model::preset(&plan.model)?;
    let runner = runners.get(&plan.runner)?;
    let tp = f64::from(plan.cell.tp.max(1));
    let g = preset.geometry;
    let weights = capacity::weight_bytes(f64::from(g.params_b), g.dtype.bytes() as f64);
    let hbm = capacity::kv_bytes(runner.hbm_gb_per_gpu, tp, GPU_MEMORY_UTILIZATION, weights);
    let per_token = g.kv_bytes_per_token() as f64;
    let offload = if plan.cell.offload == Offload::On {
        plan.offload_gib.unwrap_or(0.0) * GIB
    } else {
        0.0
    };
    (hbm > 0.0).then(|| (hbm / per_token).floor() + (offload / per_token).floor())
}

/// The bounds for the requests `dir`'s cell sent, or `None` when its traces, model or runner
/// are not known here (artifacts downloaded from elsewhere, a custom model).
pub fn bound(dir: &Path, cache: &mut TraceCache, runners: &RunnerSet) -> Result<Option<CellBound>> {
    let plan = CellPlan::read(dir)?;
    let (Some(traces), Some(capacity)) = (&plan.traces, capacity_tokens(&plan, runners)) else {
        return Ok(None);
    };
    let set = cache.0.entry(traces.clone()).or_insert_with(|| {
        trace::load(
            std::slice::from_ref(traces),
            LoadOptions {
                format: plan.trace_format,
                jsonl_block_size: None,
                strict: false,
            },
        )
        .ok()
    });
    let Some(set) = set.as_ref() else {
        return Ok(None);
    };
    let mut sessions: HashMap<&str, &Session> = HashMap::new();
    fn index<'a>(s: &'a Session, out: &mut HashMap<&'a str, &'a Session>) {
        out.insert(&s.id, s);
        for c in &s.children {
            index(c, out);
        }
    }
    for s in &set.sessions {
        index(s, &mut sessions);
    }
    let rows = read_csv_rows(
        &dir.join(RequestRow::FILE),
        |r: &RequestRow| r.format_version,
        RequestRow::VERSION,
    )?;
    // What was sent, as trace requests cut to what the replay sent (--max-context). A request
    // the traces do not hold means they changed since the run: a bound on them would be wrong.
    let mut sent: Vec<(f64, &Session, TraceRequest)> = Vec::new();
    for row in &rows {
        let original = sessions
            .get(row.session.as_str())
            .and_then(|s| Some((*s, s.requests.get(row.request_index as usize)?)));
        let Some((session, original)) = original else {
            bail!(
                "{}: request {} of session `{}` is not in the traces at {}",
                dir.join(RequestRow::FILE).display(),
                row.request_index,
                row.session,
                traces.display()
            );
        };
        let mut r = original.clone();
        if row.trace_input_tokens < r.input_tokens {
            r.input_tokens = row.trace_input_tokens;
            r.hash_ids
                .truncate((row.trace_input_tokens / session.block_size.max(1)) as usize);
        }
        sent.push((row.sent_s, session, r));
    }
    sent.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Answers are named by what each session sent after them.
    let mut by_session: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, (_, s, _)) in sent.iter().enumerate() {
        by_session.entry(s.id.as_str()).or_default().push(i);
    }
    let mut paths: Vec<&[u64]> = vec![&[]; sent.len()];
    for (_, indices) in by_session {
        let requests: Vec<&TraceRequest> = indices.iter().map(|&i| &sent[i].2).collect();
        let named = stream::written_paths(&requests, sent[indices[0]].1.block_size);
        for (i, path) in indices.into_iter().zip(named) {
            paths[i] = path;
        }
    }
    let mut ids: HashMap<&str, u32> = HashMap::new();
    let entries: Vec<stream::Entry> = sent
        .iter()
        .zip(paths)
        .map(|((t, s, r), path)| {
            let next = ids.len() as u32;
            stream::Entry {
                time_s: *t,
                session: *ids.entry(s.id.as_str()).or_insert(next),
                seed: crate::base::rng::mix(s.scope),
                block_size: s.block_size,
                request: r,
                path,
            }
        })
        .collect();
    let reuse = stream::reuse(&entries, true);
    let block = f64::from(reuse.block_size.max(1));
    let h = bounds::hits(&reuse, &[(capacity / block) as u64])[0];
    let rate = |b: u64| reuse.hit_rate(b);
    Ok(Some(CellBound {
        capacity_tokens: capacity,
        content: rate(h.content),
        strict_prefix: rate(h.strict_prefix),
        lru: rate(h.lru),
    }))
}
