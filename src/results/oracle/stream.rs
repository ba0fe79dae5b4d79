//! The request stream an offline cache sees, and where every block it reads was last touched.
//!
//! Definitions (shared by every bound in this module):
//! - A *block* is `block_size` tokens of a prompt; only whole blocks are cached (a partial last
//!   block never is, as in vLLM and SGLang). A block's identity is its *path*: the hash ids of
//!   every block before it and its own (prefix-trie semantics), so equal ids after different
//!   prefixes are different blocks.
//! - *Scope* `global`: paths are shared by every session of one hash scope (a kv-cache-tester
//!   file, a Mooncake file). `session`: each session has its own paths, so sessions never share.
//! - *Output KV* (`include_output_kvcache`): a request also writes the whole blocks its answer
//!   completes. They are blocks like any other, named by their path: the first later prompt of
//!   the session that extends the whole prompt carries the answer at those positions, so its hash
//!   ids there name them, and any later request of the scope whose prompt has those hash ids at
//!   those positions (the session's next turn, a turn after a side request, another session)
//!   reads them. Answer blocks no later prompt of the session carries are written under names
//!   of their own that nothing reads; they still take room.
//! - Requests are served one after another in time order (sessions' own offsets from a common
//!   start); the blocks of the request being served occupy the cache while it runs.
//!
//! One pass over the stream records, for every request, *runs*: maximal groups of blocks it reads
//! that an earlier request touched last, with that request and the LRU stack depth of the group.
//! Every bound is then computed from runs alone, for any number of capacities.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::base::hash::HashedMap;
use crate::base::rng::mix;
use crate::data::trace::{Session, TraceRequest, TraceSet};

/// Which requests may share cached blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Each session has its own cache namespace.
    Session,
    /// Sessions of one hash scope share blocks with equal paths.
    #[default]
    Global,
}

/// One request, placed in the stream.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub(crate) time_s: f64,
    /// Index of its session in the stream (subagents are sessions of their own).
    pub session: u32,
    /// Seed of the key space its paths live in.
    pub seed: u64,
    pub block_size: u32,
    pub request: &'a TraceRequest,
    /// Hash ids of the blocks it writes that have a path: its prompt's whole blocks, then those
    /// of its answer's whole blocks that a later prompt of its session carries (see
    /// [`written_paths`]).
    pub path: &'a [u64],
}

impl Entry<'_> {
    /// Whole blocks of the prompt that have a hash id: the blocks a cache can hold.
    pub fn blocks(&self) -> usize {
        prompt_blocks(self.request, self.block_size)
    }

    /// Whole blocks the answer completes after the prompt (0 without output KV).
    pub fn output_blocks(&self, include_output: bool) -> usize {
        if include_output {
            answer_blocks(self.request, self.block_size)
        } else {
            0
        }
    }

    /// Hash ids of the blocks it writes that have a path: the prompt's, then (with output KV)
    /// the named part of the answer's.
    pub fn named(&self, include_output: bool) -> &[u64] {
        if include_output {
            self.path
        } else {
            &self.path[..self.blocks()]
        }
    }
}

/// Whole blocks of `request`'s prompt that have a hash id.
fn prompt_blocks(request: &TraceRequest, block_size: u32) -> usize {
    request
        .hash_ids
        .len()
        .min((request.input_tokens / block_size) as usize)
}

/// Whole blocks `request`'s answer completes after its prompt.
fn answer_blocks(request: &TraceRequest, block_size: u32) -> usize {
    let (input, output) = (request.input_tokens, request.output_tokens);
    ((input + output) / block_size - input / block_size) as usize
}

/// For each request of one session (in its order), [`Entry::path`]: the hash ids of its
/// prompt's whole blocks, then of its answer's whole blocks as far as the first later request
/// of the session whose prompt extends the whole prompt (and is longer) carries them. That
/// prompt holds the answer at those positions, so its hash ids there are the answer blocks'
/// names; a side request in between does not extend the prompt and is passed over. A prompt
/// with fewer hash ids than whole blocks leaves its answer unnamed: where the answer starts
/// has no path.
///
/// A request without such a successor scans the rest of its session; one that has it (most
/// turns of a conversation: the next one) stops there, after a prefix comparison.
pub fn written_paths<'a>(requests: &[&'a TraceRequest], block_size: u32) -> Vec<&'a [u64]> {
    requests
        .iter()
        .enumerate()
        .map(|(i, request)| {
            let blocks = prompt_blocks(request, block_size);
            let prompt = &request.hash_ids[..blocks];
            let answer = answer_blocks(request, block_size);
            if answer == 0 || blocks < (request.input_tokens / block_size) as usize {
                return prompt;
            }
            requests[i + 1..]
                .iter()
                .find_map(|later| {
                    let ids = &later.hash_ids[..prompt_blocks(later, block_size)];
                    (ids.len() > blocks && ids.starts_with(prompt))
                        .then(|| &ids[..ids.len().min(blocks + answer)])
                })
                .unwrap_or(prompt)
        })
        .collect()
}

/// The requests of `set` that `keep` accepts, in time order (ties in file order).
pub fn order<'a>(
    set: &'a TraceSet,
    scope: Scope,
    keep: &dyn Fn(&TraceRequest) -> bool,
) -> Vec<Entry<'a>> {
    fn visit<'a>(
        session: &'a Session,
        base_s: f64,
        scope: Scope,
        keep: &dyn Fn(&TraceRequest) -> bool,
        next: &mut u32,
        out: &mut Vec<Entry<'a>>,
    ) {
        let index = *next;
        *next += 1;
        let start = base_s + session.start_s;
        let seed = match scope {
            Scope::Global => mix(session.scope),
            Scope::Session => mix(session.scope ^ mix(u64::from(index) + 1)),
        };
        // Answers are named from the whole session, whatever `keep` leaves out.
        let requests: Vec<&TraceRequest> = session.requests.iter().collect();
        let paths = written_paths(&requests, session.block_size);
        out.extend(
            requests
                .into_iter()
                .zip(paths)
                .filter(|(r, _)| keep(r))
                .map(|(request, path)| Entry {
                    time_s: start + request.offset_s,
                    session: index,
                    seed,
                    block_size: session.block_size,
                    request,
                    path,
                }),
        );
        for child in &session.children {
            visit(child, start, scope, keep, next, out);
        }
    }
    let mut out = Vec::new();
    let mut next = 0;
    for session in &set.sessions {
        visit(session, 0.0, scope, keep, &mut next, &mut out);
    }
    out.sort_by(|a, b| a.time_s.total_cmp(&b.time_s));
    out
}

/// The key of the block with hash id `id` after the block keyed `parent`.
pub(crate) fn child_key(parent: u64, id: u64) -> u64 {
    mix(parent ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// The key of the next answer block request `writer` (its stream index) writes after the block
/// keyed `parent` where no later prompt names it: a block nothing reads, even after an equal
/// prompt.
pub(crate) fn output_key(parent: u64, writer: usize) -> u64 {
    mix(parent ^ mix(writer as u64 ^ 0x6F75_7470_7574_4B56))
}

/// A group of blocks a request reads that one earlier request touched last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// The stream index of the request that touched them last.
    pub from: u32,
    pub blocks: u32,
    /// Distinct blocks touched more recently than the group's first block, when the request
    /// starts: under LRU with capacity `C` the first `C - lru_depth` blocks of the group are
    /// still cached.
    pub(crate) lru_depth: u64,
}

/// One request's figures.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    pub input_tokens: u64,
    /// Blocks it holds while it runs: its prompt and, with output KV, its answer.
    pub working: u32,
    /// Its runs in [`Reuse::runs`], shallowest (most recently touched) first.
    pub runs: Range<usize>,
}

/// Every request's reuse of earlier blocks: what the bounds are computed from.
#[derive(Debug, Clone, Default)]
pub struct Reuse {
    pub block_size: u32,
    pub(crate) accesses: Vec<Access>,
    pub runs: Vec<Run>,
}

impl Reuse {
    /// Prompt tokens of every request.
    pub fn input_tokens(&self) -> u64 {
        self.accesses.iter().map(|a| a.input_tokens).sum()
    }

    /// `blocks` hit blocks as a share of the prompt tokens (0 without requests).
    pub fn hit_rate(&self, blocks: u64) -> f64 {
        match self.input_tokens() {
            0 => 0.0,
            input => (blocks * u64::from(self.block_size)) as f64 / input as f64,
        }
    }
}

/// Who touched a block last: a request, or "the latest request of this session", which saves
/// rewriting every block of a growing conversation at every turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Request(u32),
    Session(u32),
}

const SESSION_TAG: u32 = 1 << 31;

impl Owner {
    fn pack(self) -> u32 {
        match self {
            Owner::Request(r) => r,
            Owner::Session(s) => s | SESSION_TAG,
        }
    }

    fn unpack(v: u32) -> Self {
        if v & SESSION_TAG != 0 {
            Owner::Session(v & !SESSION_TAG)
        } else {
            Owner::Request(v)
        }
    }
}

/// A session's latest request: the hash ids of its named blocks and the keys of every block it
/// touched (the named ones first).
#[derive(Default)]
struct Latest<'a> {
    request: Option<u32>,
    path: &'a [u64],
    keys: Vec<u64>,
}

/// Fenwick tree over stream positions: blocks whose last touch is each request.
struct Fenwick(Vec<i64>);

impl Fenwick {
    fn add(&mut self, at: usize, delta: i64) {
        let mut i = at + 1;
        while i < self.0.len() {
            self.0[i] += delta;
            i += i & i.wrapping_neg();
        }
    }

    /// Sum over positions `0..end`.
    fn prefix(&self, end: usize) -> i64 {
        let (mut i, mut sum) = (end, 0);
        while i > 0 {
            sum += self.0[i];
            i -= i & i.wrapping_neg();
        }
        sum
    }
}

/// The keys of `entry`'s blocks: its named ones (`path`: prompt, then the answer a later prompt
/// carries), then the rest of its answer; the first `shared` are its session's previous
/// request's.
fn keys_of(
    entry: &Entry,
    writer: usize,
    path: &[u64],
    previous: &[u64],
    shared: usize,
    include_output: bool,
) -> Vec<u64> {
    let answer = entry.output_blocks(include_output);
    let mut keys = Vec::with_capacity(entry.blocks() + answer);
    keys.extend_from_slice(&previous[..shared]);
    let mut parent = keys.last().copied().unwrap_or(entry.seed);
    for &id in &path[shared..] {
        parent = child_key(parent, id);
        keys.push(parent);
    }
    for _ in path.len() - entry.blocks()..answer {
        parent = output_key(parent, writer);
        keys.push(parent);
    }
    keys
}

/// One pass over the stream: every request's runs.
///
/// A request touches its named blocks (its prompt's, then its answer's that a later prompt
/// carries) as one path, so the blocks of any request's path touched again later are a prefix
/// of it, whether a later prompt reads them or a later answer writes them; its unnamed answer
/// blocks are touched once and never again.
///
/// Hand-written rather than a generic LRU or trie crate: the per-session shortcut (a turn that
/// extends the previous one reuses its keys and owners without a map lookup per block) is what
/// makes a 450 MB corpus take seconds, and the runs it yields serve every bound and capacity.
pub fn reuse(entries: &[Entry], include_output: bool) -> Reuse {
    let block_size = entries.first().map_or(0, |e| e.block_size);
    let sessions = entries
        .iter()
        .map(|e| e.session as usize + 1)
        .max()
        .unwrap_or(0);
    let mut latest: Vec<Latest> = (0..sessions).map(|_| Latest::default()).collect();
    let mut owners: HashedMap<u32> = HashedMap::default();
    // Blocks of each request's path touched again later: always a prefix of the path.
    let mut retouched = vec![0usize; entries.len()];
    let mut last_touch = Fenwick(vec![0; entries.len() + 1]);
    let mut accesses = Vec::with_capacity(entries.len());
    let mut runs: Vec<Run> = Vec::new();
    let mut froms: Vec<Option<u32>> = Vec::new();
    // Groups of this request's path an earlier request touched last: (that request, blocks).
    let mut groups: Vec<(u32, usize)> = Vec::new();
    for (e, entry) in entries.iter().enumerate() {
        let session = entry.session as usize;
        let me = Owner::Session(entry.session).pack();
        let path = entry.named(include_output);
        let shared = path
            .iter()
            .zip(latest[session].path)
            .take_while(|(a, b)| a == b)
            .count();
        let keys = keys_of(
            entry,
            e,
            path,
            &latest[session].keys,
            shared,
            include_output,
        );
        let blocks = entry.blocks();
        let previous = latest[session].request;
        let unchanged = previous.map_or(0, |r| retouched[r as usize].min(shared));
        let resolve = |v: u32, latest: &[Latest]| match Owner::unpack(v) {
            Owner::Request(r) => r,
            Owner::Session(s) => latest[s as usize]
                .request
                .expect("a session owns blocks only after its first request"),
        };
        froms.clear();
        // Blocks other sessions touched since this session's previous turn, and blocks beyond
        // what that turn had: where they were touched last is in the map. Unnamed answer
        // blocks are never read, so the map does not keep them.
        for (j, &key) in keys[..path.len()].iter().enumerate() {
            if (unchanged..shared).contains(&j) {
                froms.push(previous);
                continue;
            }
            let old = owners.insert(key, me);
            froms.push(old.map(|v| resolve(v, &latest)));
        }
        // Blocks of the previous turn this one dropped: they stay touched last by that turn.
        if let Some(r) = previous {
            for key in &latest[session].keys[shared..] {
                if let Some(v) = owners.get_mut(key)
                    && *v == me
                {
                    *v = Owner::Request(r).pack();
                }
            }
        }
        let first_run = runs.len();
        let at_start = last_touch.prefix(e);
        groups.clear();
        let mut j = 0;
        while j < froms.len() {
            let Some(from) = froms[j] else {
                j += 1;
                continue;
            };
            let end = (j..froms.len())
                .find(|&k| froms[k] != Some(from))
                .unwrap_or(froms.len());
            debug_assert_eq!(
                retouched[from as usize], j,
                "a group starts where its path was last touched"
            );
            // The prompt's part of the group is read; the answer's is only written over.
            if j < blocks {
                runs.push(Run {
                    from,
                    blocks: (end.min(blocks) - j) as u32,
                    lru_depth: (at_start - last_touch.prefix(from as usize + 1)) as u64,
                });
            }
            groups.push((from, end - j));
            j = end;
        }
        for &(from, touched) in &groups {
            retouched[from as usize] += touched;
            last_touch.add(from as usize, -(touched as i64));
        }
        last_touch.add(e, keys.len() as i64);
        accesses.push(Access {
            input_tokens: u64::from(entry.request.input_tokens),
            working: keys.len() as u32,
            runs: first_run..runs.len(),
        });
        latest[session] = Latest {
            request: Some(e as u32),
            path,
            keys,
        };
    }
    Reuse {
        block_size,
        accesses,
        runs,
    }
}
