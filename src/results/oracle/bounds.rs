//! The four hit-rate bounds of a request stream at a cache capacity, from its [`Reuse`].
//!
//! - **Content**: an infinite cache; every block read before is a hit.
//! - **Relaxed**: the best any cache of `C` blocks can do with full knowledge of the future,
//!   block by block: a block hits if it was kept since it was last touched, any block may be
//!   kept, and a running request's own blocks take no room. This is Belady's MIN with bypass.
//! - **Exact strict-prefix**: the same, except that a request hits only on a prefix of its
//!   blocks and the blocks of the request being served occupy the cache while it runs.
//! - **LRU**: an LRU cache of `C` blocks with strict-prefix hits, evicting the deepest block
//!   first among those touched by the same request (as vLLM's free-block queue does).
//!
//! Each reuse of a block is an interval, from the request that touched it last to the one that
//! reads it, over *slots*: the gap after each request (room `C`) and each request while it runs
//! (room `C` minus the blocks it holds; `C` for the relaxed bound). Choosing the most intervals
//! that fit is solved exactly by taking them in order of their end and keeping each that fits
//! (an exchange argument: of the chosen intervals covering the first slot that would overflow,
//! any one ends no earlier, so swapping it out never loses). A block's ancestors are touched
//! whenever it is, so a request's intervals are nested, shallowest shortest; taking them
//! shallowest first, the kept ones are always a prefix. The optimum with strict-prefix hits is
//! therefore the same greedy, which is why the strict-prefix figure is exact, not a bound, and
//! why it differs from the relaxed one only by the room running requests take.

use super::stream::Reuse;

/// Hit blocks of every bound at one capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Hits {
    pub(crate) capacity_blocks: u64,
    pub content: u64,
    pub relaxed: u64,
    pub strict_prefix: u64,
    pub lru: u64,
}

/// Every bound at every capacity in `capacities` (blocks).
pub fn hits(reuse: &Reuse, capacities: &[u64]) -> Vec<Hits> {
    let content: u64 = reuse.runs.iter().map(|r| u64::from(r.blocks)).sum();
    capacities
        .iter()
        .map(|&c| Hits {
            capacity_blocks: c,
            content,
            relaxed: greedy(reuse, c, false),
            strict_prefix: greedy(reuse, c, true),
            lru: lru(reuse, c),
        })
        .collect()
}

/// LRU hits: the blocks of each run within the capacity, counted from its shallowest.
pub fn lru(reuse: &Reuse, capacity: u64) -> u64 {
    reuse
        .runs
        .iter()
        .map(|r| u64::from(r.blocks).min(capacity.saturating_sub(r.lru_depth)))
        .sum()
}

/// The interval-packing greedy; `running_holds_room` makes it the strict-prefix optimum.
pub fn greedy(reuse: &Reuse, capacity: u64, running_holds_room: bool) -> u64 {
    let n = reuse.accesses.len();
    if n == 0 {
        return 0;
    }
    let cap = capacity as i64;
    // Slot 2p: request p running; slot 2p+1: the gap after it.
    let room: Vec<i64> = (0..2 * n)
        .map(|slot| {
            if slot % 2 == 0 && running_holds_room {
                (cap - i64::from(reuse.accesses[slot / 2].working)).max(0)
            } else {
                cap
            }
        })
        .collect();
    let mut tree = MinTree::new(&room);
    let mut hits = 0;
    for (e, access) in reuse.accesses.iter().enumerate() {
        for run in &reuse.runs[access.runs.clone()] {
            let slots = 2 * run.from as usize + 1..2 * e;
            let fits = tree.min(slots.clone()).max(0).min(i64::from(run.blocks));
            if fits > 0 {
                tree.add(slots, -fits);
                hits += fits as u64;
            }
        }
    }
    hits
}

/// Range add, range minimum (a lazy segment tree).
struct MinTree {
    len: usize,
    min: Vec<i64>,
    pending: Vec<i64>,
}

impl MinTree {
    fn new(values: &[i64]) -> Self {
        let len = values.len();
        let mut tree = Self {
            len,
            min: vec![0; 4 * len],
            pending: vec![0; 4 * len],
        };
        tree.build(1, 0, len, values);
        tree
    }

    fn build(&mut self, node: usize, lo: usize, hi: usize, values: &[i64]) {
        if hi - lo == 1 {
            self.min[node] = values[lo];
            return;
        }
        let mid = (lo + hi) / 2;
        self.build(2 * node, lo, mid, values);
        self.build(2 * node + 1, mid, hi, values);
        self.min[node] = self.min[2 * node].min(self.min[2 * node + 1]);
    }

    fn min(&self, range: std::ops::Range<usize>) -> i64 {
        self.min_in(1, 0, self.len, &range)
    }

    fn min_in(&self, node: usize, lo: usize, hi: usize, range: &std::ops::Range<usize>) -> i64 {
        if range.end <= lo || hi <= range.start {
            return i64::MAX;
        }
        if range.start <= lo && hi <= range.end {
            return self.min[node];
        }
        let mid = (lo + hi) / 2;
        let below =
            self.min_in(2 * node, lo, mid, range)
                .min(self.min_in(2 * node + 1, mid, hi, range));
        below.saturating_add(self.pending[node])
    }

    fn add(&mut self, range: std::ops::Range<usize>, delta: i64) {
        self.add_in(1, 0, self.len, &range, delta);
    }

    fn add_in(
        &mut self,
        node: usize,
        lo: usize,
        hi: usize,
        range: &std::ops::Range<usize>,
        delta: i64,
    ) {
        if range.end <= lo || hi <= range.start {
            return;
        }
        if range.start <= lo && hi <= range.end {
            self.min[node] += delta;
            self.pending[node] += delta;
            return;
        }
        let mid = (lo + hi) / 2;
        self.add_in(2 * node, lo, mid, range, delta);
        self.add_in(2 * node + 1, mid, hi, range, delta);
        self.min[node] = self.min[2 * node].min(self.min[2 * node + 1]) + self.pending[node];
    }
}
