//! Reference solvers, written for obviousness rather than speed: `audit-buckets` and the tests
//! check the fast ones ([`super::stream`], [`super::bounds`]) against them.

use std::collections::{HashMap, HashSet};

use super::stream::{Entry, child_key, output_key};
use crate::base::rng::mix;
use crate::data::trace::{Session, TraceRequest, TraceSet};

/// What one request reads and writes, as plain keys.
#[derive(Debug, Clone)]
pub struct Step {
    /// Its prompt's whole blocks, from the first.
    pub read: Vec<u64>,
    /// Every block it touches: the prompt's, then the answer's.
    pub(crate) touched: Vec<u64>,
}

/// Each request's keys, every path hashed from its root: its prompt's, then its answer's (named
/// by the later prompt that carries them, or of its own where none does).
pub fn steps(entries: &[Entry], include_output: bool) -> Vec<Step> {
    entries
        .iter()
        .enumerate()
        .map(|(e, entry)| {
            let path = entry.named(include_output);
            let mut parent = entry.seed;
            let mut touched: Vec<u64> = path
                .iter()
                .map(|&id| {
                    parent = child_key(parent, id);
                    parent
                })
                .collect();
            for _ in path.len() - entry.blocks()..entry.output_blocks(include_output) {
                parent = output_key(parent, e);
                touched.push(parent);
            }
            Step {
                read: touched[..entry.blocks()].to_vec(),
                touched,
            }
        })
        .collect()
}

/// Blocks read that were touched before: the infinite-cache hits.
pub fn content(steps: &[Step]) -> u64 {
    let mut seen = HashSet::new();
    let mut hits = 0;
    for step in steps {
        hits += step.read.iter().filter(|k| seen.contains(*k)).count() as u64;
        seen.extend(step.touched.iter().copied());
    }
    hits
}

/// An LRU cache (the `lru` crate) fed block by block, strict-prefix hits.
pub fn lru(steps: &[Step], capacity: u64) -> u64 {
    let Some(cap) = std::num::NonZeroUsize::new(capacity as usize) else {
        return 0;
    };
    let mut cache = lru::LruCache::new(cap);
    let mut hits = 0;
    for step in steps {
        hits += step.read.iter().take_while(|k| cache.contains(*k)).count() as u64;
        // Deepest first, so the shallowest ends up most recent.
        for key in step.touched.iter().rev() {
            cache.put(*key, ());
        }
    }
    hits
}

/// Every reuse interval: (request that touched the block last, reading request, position).
fn intervals(steps: &[Step]) -> Vec<(usize, usize, usize)> {
    let mut last: HashMap<u64, usize> = HashMap::new();
    let mut out = Vec::new();
    for (e, step) in steps.iter().enumerate() {
        for (j, key) in step.read.iter().enumerate() {
            if let Some(&s) = last.get(key) {
                out.push((s, e, j));
            }
        }
        for key in &step.touched {
            last.insert(*key, e);
        }
    }
    out
}

/// Room left in each slot (2p: request p running, 2p+1: the gap after it).
fn rooms(steps: &[Step], capacity: u64, running_holds_room: bool) -> Vec<i64> {
    (0..2 * steps.len())
        .map(|slot| {
            let cap = capacity as i64;
            if slot % 2 == 0 && running_holds_room {
                (cap - steps[slot / 2].touched.len() as i64).max(0)
            } else {
                cap
            }
        })
        .collect()
}

/// The greedy, one block at a time, checking every slot.
pub fn greedy(steps: &[Step], capacity: u64, running_holds_room: bool) -> u64 {
    let mut room = rooms(steps, capacity, running_holds_room);
    let mut hits = 0;
    for (s, e, _) in intervals(steps) {
        let slots = 2 * s + 1..2 * e;
        if room[slots.clone()].iter().all(|&r| r > 0) {
            room[slots].iter_mut().for_each(|r| *r -= 1);
            hits += 1;
        }
    }
    hits
}

/// The strict-prefix optimum by trying every set of intervals (`None` past 14 intervals):
/// each request counts only the prefix of its blocks whose intervals are all kept.
pub(crate) fn brute_force(steps: &[Step], capacity: u64) -> Option<u64> {
    let all = intervals(steps);
    if all.len() > 14 {
        return None;
    }
    let base = rooms(steps, capacity, true);
    let mut best = 0;
    for mask in 0u32..(1 << all.len()) {
        let mut room = base.clone();
        let kept = |i: usize| mask & (1 << i) != 0;
        let fits = all
            .iter()
            .enumerate()
            .filter(|&(i, _)| kept(i))
            .all(|(_, &(s, e, _))| {
                room[2 * s + 1..2 * e].iter_mut().all(|r| {
                    *r -= 1;
                    *r >= 0
                })
            });
        if !fits {
            continue;
        }
        let hits: u64 = (0..steps.len())
            .map(|e| {
                let kept_at = |j: usize| {
                    all.iter()
                        .enumerate()
                        .any(|(i, &(_, ee, jj))| ee == e && jj == j && kept(i))
                };
                (0..steps[e].read.len()).take_while(|&j| kept_at(j)).count() as u64
            })
            .sum();
        best = best.max(hits);
    }
    Some(best)
}

/// A request of `ids` whole blocks of `block` tokens plus `extra` tokens, answering `out`.
pub fn request(t: f64, ids: &[u64], block: u32, extra: u32, out: u32) -> TraceRequest {
    TraceRequest {
        offset_s: t,
        input_tokens: ids.len() as u32 * block + extra,
        output_tokens: out,
        hash_ids: ids.to_vec(),
        think_time_s: 0.0,
        api_time_s: 0.0,
    }
}

/// A session of block size 4 in hash scope `scope`.
pub fn session(id: &str, scope: u64, requests: Vec<TraceRequest>) -> Session {
    Session {
        id: id.into(),
        scope,
        block_size: 4,
        start_s: 0.0,
        end_s: None,
        requests,
        children: vec![],
    }
}

/// A tiny trace set (block size 4) whose conversations grow, replace their tail, drop back and
/// share a system prefix: small enough for [`brute_force`].
pub(crate) fn micro_trace(seed: u64) -> TraceSet {
    let mut state = seed;
    let mut next = move |n: u64| {
        state = mix(state);
        state % n
    };
    let sessions = 1 + next(4) as usize;
    let system: Vec<u64> = (0..next(4)).map(|i| 1000 + i).collect();
    let mut out = Vec::new();
    let mut fresh = 1u64;
    for s in 0..sessions {
        let mut ids = system.clone();
        let mut requests = Vec::new();
        let mut t = next(5) as f64;
        for _ in 0..1 + next(5) {
            match next(6) {
                0 if ids.len() > 1 => ids.truncate(1 + next(ids.len() as u64) as usize),
                1 if !ids.is_empty() => {
                    let keep = next(ids.len() as u64) as usize;
                    ids.truncate(keep);
                }
                _ => {}
            }
            for _ in 0..1 + next(3) {
                ids.push(fresh + 100 * s as u64);
                fresh += 1;
            }
            requests.push(request(t, &ids, 4, next(4) as u32, next(12) as u32));
            t += 0.5 + next(3) as f64;
        }
        out.push(session(&format!("s{s}"), 7, requests));
    }
    TraceSet {
        sessions: out,
        ..TraceSet::default()
    }
}
