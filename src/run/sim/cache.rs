//! The simulated prefix cache: vLLM's automatic prefix caching, block for block.
//!
//! HBM holds a fixed number of blocks of `block_size` tokens. A full block is identified by a hash
//! chained over its tokens and its predecessor's hash, so equal hashes mean equal prefixes. Blocks
//! a running request uses are referenced; unreferenced blocks that still hold a hash stay cached and
//! are evicted least-recently-used first. With an offload tier, an evicted block's hash moves to host
//! memory (its own LRU, its own capacity), from where a later request can load it back at the cost
//! of a host→GPU copy. Memory is bounded by the two capacities, never by the number of requests.

use std::hash::BuildHasherDefault;

use crate::base::hash::PassThrough;

use lru::LruCache;

pub(crate) type BlockId = u32;

type HashIndex<V> = crate::base::hash::HashedMap<V>;

const NIL: BlockId = BlockId::MAX;

/// Hashes of a token sequence's full blocks, chained (block i depends on blocks 0..i).
pub fn block_hashes(tokens: &[u32], block_size: usize) -> Vec<u64> {
    let mut hashes = Vec::with_capacity(tokens.len() / block_size);
    let mut prev = 0u64;
    let mut buf = Vec::with_capacity(8 + block_size * 4);
    for chunk in tokens.chunks_exact(block_size) {
        buf.clear();
        buf.extend_from_slice(&prev.to_le_bytes());
        for t in chunk {
            buf.extend_from_slice(&t.to_le_bytes());
        }
        prev = xxhash_rust::xxh3::xxh3_64(&buf);
        hashes.push(prev);
    }
    hashes
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    pub(crate) hbm_blocks: usize,
    /// 0 when there is no offload tier.
    pub(crate) offload_blocks: usize,
    pub block_size: usize,
    pub(crate) prefix_caching: bool,
}

/// Where a new request's prompt tokens come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocation {
    pub blocks: Vec<BlockId>,
    /// Prompt tokens found in HBM.
    pub(crate) hbm_hit_tokens: usize,
    /// Prompt tokens loaded from the offload tier.
    pub(crate) offload_hit_tokens: usize,
}

/// Block movements since the last [`PrefixCache::take_transfers`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Transfers {
    pub(crate) stored_blocks: u64,
    pub(crate) loaded_blocks: u64,
}

#[derive(Debug, Clone, Copy)]
struct Block {
    hash: Option<u64>,
    refs: u32,
    /// Neighbours in the evictable queue, while the block is in it.
    prev: BlockId,
    next: BlockId,
}

const EMPTY: Block = Block {
    hash: None,
    refs: 0,
    prev: NIL,
    next: NIL,
};

/// Unreferenced cached blocks, least recently used at the head: a doubly-linked list threaded
/// through the blocks themselves (as vLLM's free-block queue is), so that touching, evicting and
/// releasing a block are O(1) without allocating. Hand-written because a general LRU map
/// allocates a node and hashes a key for every block a request releases.
#[derive(Debug, Default)]
struct EvictQueue {
    head: BlockId,
    tail: BlockId,
    len: usize,
}

impl EvictQueue {
    fn new() -> Self {
        Self {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }

    fn push_back(&mut self, blocks: &mut [Block], b: BlockId) {
        blocks[b as usize].prev = self.tail;
        blocks[b as usize].next = NIL;
        match self.tail {
            NIL => self.head = b,
            t => blocks[t as usize].next = b,
        }
        self.tail = b;
        self.len += 1;
    }

    fn remove(&mut self, blocks: &mut [Block], b: BlockId) {
        let Block { prev, next, .. } = blocks[b as usize];
        match prev {
            NIL => self.head = next,
            p => blocks[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => blocks[n as usize].prev = prev,
        }
        blocks[b as usize].prev = NIL;
        blocks[b as usize].next = NIL;
        self.len -= 1;
    }

    fn pop_front(&mut self, blocks: &mut [Block]) -> Option<BlockId> {
        let b = self.head;
        (b != NIL).then(|| {
            self.remove(blocks, b);
            b
        })
    }
}

pub struct PrefixCache {
    config: CacheConfig,
    blocks: Vec<Block>,
    /// Blocks holding nothing.
    free: Vec<BlockId>,
    /// Unreferenced blocks that still hold a cached hash.
    evictable: EvictQueue,
    by_hash: HashIndex<BlockId>,
    offload: Option<LruCache<u64, (), BuildHasherDefault<PassThrough>>>,
    transfers: Transfers,
}

impl PrefixCache {
    pub fn new(config: CacheConfig) -> Self {
        let n = config.hbm_blocks;
        Self {
            config,
            blocks: vec![EMPTY; n],
            free: (0..n as BlockId).rev().collect(),
            evictable: EvictQueue::new(),
            by_hash: HashIndex::default(),
            offload: std::num::NonZeroUsize::new(config.offload_blocks)
                .map(|cap| LruCache::with_hasher(cap, BuildHasherDefault::default())),
            transfers: Transfers::default(),
        }
    }

    pub fn config(&self) -> CacheConfig {
        self.config
    }

    /// Blocks a new allocation could take now: free ones and evictable ones.
    pub fn available(&self) -> usize {
        self.free.len() + self.evictable.len
    }

    /// Share of HBM blocks referenced by running requests (vLLM's `kv_cache_usage_perc`).
    pub fn usage(&self) -> f64 {
        let used = self.config.hbm_blocks - self.available();
        used as f64 / self.config.hbm_blocks.max(1) as f64
    }

    /// Blocks needed to hold `tokens` tokens.
    pub(crate) fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.config.block_size)
    }

    /// Finds the cached prefix of a prompt and allocates its blocks, or returns `None` (and changes
    /// nothing) when HBM cannot hold it now. As in vLLM, the last prompt token is always computed,
    /// so at most `(len - 1) / block_size` blocks can hit.
    pub(crate) fn allocate_prompt(
        &mut self,
        hashes: &[u64],
        prompt_len: usize,
    ) -> Option<Allocation> {
        let needed = self.blocks_for(prompt_len);
        let max_hits = if self.config.prefix_caching {
            (prompt_len.saturating_sub(1) / self.config.block_size).min(hashes.len())
        } else {
            0
        };
        let hbm_hits: Vec<BlockId> = hashes[..max_hits]
            .iter()
            .map_while(|h| self.by_hash.get(h).copied())
            .collect();
        let offload_hits = match &self.offload {
            Some(tier) => hashes[hbm_hits.len()..max_hits]
                .iter()
                .take_while(|h| tier.contains(h))
                .count(),
            None => 0,
        };
        let reused_evictable = hbm_hits
            .iter()
            .filter(|b| self.blocks[**b as usize].refs == 0)
            .count();
        let fresh = needed - hbm_hits.len();
        if fresh > self.available() - reused_evictable {
            return None;
        }

        let mut blocks = Vec::with_capacity(needed);
        for &b in &hbm_hits {
            self.take_ref(b);
            blocks.push(b);
        }
        for i in hbm_hits.len()..needed {
            let b = self.take_fresh();
            if let Some(&h) = hashes.get(i).filter(|_| self.config.prefix_caching) {
                self.register(b, h);
            }
            blocks.push(b);
        }
        if offload_hits > 0 {
            self.transfers.loaded_blocks += offload_hits as u64;
            if let Some(tier) = &mut self.offload {
                for h in &hashes[hbm_hits.len()..hbm_hits.len() + offload_hits] {
                    tier.promote(h);
                }
            }
        }
        let bs = self.config.block_size;
        Some(Allocation {
            blocks,
            hbm_hit_tokens: hbm_hits.len() * bs,
            offload_hit_tokens: offload_hits * bs,
        })
    }

    /// One more block for a growing sequence, or `None` when HBM is full.
    pub(crate) fn allocate_one(&mut self) -> Option<BlockId> {
        (self.available() > 0).then(|| self.take_fresh())
    }

    /// Records that a block now holds the full block with hash `hash` (a decoded block filled up).
    pub(crate) fn register(&mut self, block: BlockId, hash: u64) {
        if !self.config.prefix_caching {
            return;
        }
        if let std::collections::hash_map::Entry::Vacant(e) = self.by_hash.entry(hash) {
            e.insert(block);
            self.blocks[block as usize].hash = Some(hash);
        }
    }

    /// Drops a finished or preempted sequence's references. The tail is released first, so its
    /// blocks are evicted before the shared prefix (as vLLM frees them in reverse).
    pub fn release(&mut self, blocks: &[BlockId]) {
        for &b in blocks.iter().rev() {
            let block = &mut self.blocks[b as usize];
            block.refs -= 1;
            if block.refs == 0 {
                if block.hash.is_some() {
                    self.evictable.push_back(&mut self.blocks, b);
                } else {
                    self.free.push(b);
                }
            }
        }
    }

    /// Forgets every cached block that no request uses, in HBM and in the offload tier.
    pub fn reset(&mut self) {
        while let Some(b) = self.evictable.pop_front(&mut self.blocks) {
            if let Some(h) = self.blocks[b as usize].hash.take() {
                self.by_hash.remove(&h);
            }
            self.free.push(b);
        }
        if let Some(tier) = &mut self.offload {
            tier.clear();
        }
    }

    pub(crate) fn take_transfers(&mut self) -> Transfers {
        std::mem::take(&mut self.transfers)
    }

    fn take_ref(&mut self, b: BlockId) {
        if self.blocks[b as usize].refs == 0 {
            self.evictable.remove(&mut self.blocks, b);
        }
        self.blocks[b as usize].refs += 1;
    }

    /// A block with no content and one reference: a free one, else the LRU evictable one, whose
    /// hash moves to the offload tier when there is one.
    fn take_fresh(&mut self) -> BlockId {
        let b = match self.free.pop() {
            Some(b) => b,
            None => {
                let b = self
                    .evictable
                    .pop_front(&mut self.blocks)
                    .expect("caller checked availability");
                if let Some(h) = self.blocks[b as usize].hash.take() {
                    self.by_hash.remove(&h);
                    if let Some(tier) = &mut self.offload
                        && tier.put(h, ()).is_none()
                    {
                        self.transfers.stored_blocks += 1;
                    }
                }
                b
            }
        };
        self.blocks[b as usize] = Block { refs: 1, ..EMPTY };
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BS: usize = 4;

    fn cache(hbm: usize, offload: usize) -> PrefixCache {
        PrefixCache::new(CacheConfig {
            hbm_blocks: hbm,
            offload_blocks: offload,
            block_size: BS,
            prefix_caching: true,
        })
    }

    fn prompt(seed: u32, len: usize) -> Vec<u32> {
        (0..len as u32).map(|i| seed * 1000 + i).collect()
    }

    fn run(c: &mut PrefixCache, tokens: &[u32]) -> Allocation {
        let a = c
            .allocate_prompt(&block_hashes(tokens, BS), tokens.len())
            .expect("fits");
        c.release(&a.blocks);
        a
    }

    #[test]
    fn chained_hashes_differ_when_an_earlier_block_differs() {
        let a = block_hashes(&[1, 2, 3, 4, 5, 6, 7, 8], BS);
        let b = block_hashes(&[9, 2, 3, 4, 5, 6, 7, 8], BS);
        assert_eq!(a.len(), 2);
        assert_ne!(a[1], b[1], "same second block, different prefix");
        assert_eq!(block_hashes(&[1, 2, 3], BS), Vec::<u64>::new());
    }

    #[test]
    fn a_repeated_prompt_hits_its_full_blocks_but_never_the_last_token() {
        let mut c = cache(16, 0);
        let p = prompt(1, 10);
        assert_eq!(run(&mut c, &p).hbm_hit_tokens, 0);
        assert_eq!(run(&mut c, &p).hbm_hit_tokens, 8);
        // A 12-token prompt is 3 full blocks, but the last token is computed: 2 blocks hit.
        let p = prompt(2, 12);
        run(&mut c, &p);
        assert_eq!(run(&mut c, &p).hbm_hit_tokens, 8);
        // An extension of a cached prompt hits the shared prefix.
        let mut longer = prompt(2, 12);
        longer.extend([7, 7, 7, 7, 7]);
        assert_eq!(run(&mut c, &longer).hbm_hit_tokens, 12);
    }

    #[test]
    fn eviction_takes_the_least_recently_used_block() {
        let mut c = cache(4, 0);
        let (a, b, d) = (prompt(1, 5), prompt(2, 5), prompt(3, 9));
        run(&mut c, &a); // 2 blocks: [a0, a-partial]; a0 cached
        run(&mut c, &b); // b0 cached
        assert_eq!(run(&mut c, &a).hbm_hit_tokens, 4); // touches a0: b0 is now LRU
        run(&mut c, &d); // needs 3 blocks: the 2 free ones, then the LRU cached one (b0)
        assert_eq!(run(&mut c, &a).hbm_hit_tokens, 4, "a0 survives");
        assert_eq!(run(&mut c, &b).hbm_hit_tokens, 0, "b0 was evicted");
    }

    #[test]
    fn referenced_blocks_are_never_evicted() {
        let mut c = cache(4, 0);
        let a = prompt(1, 8);
        let held = c
            .allocate_prompt(&block_hashes(&a, BS), a.len())
            .expect("fits");
        assert_eq!(c.available(), 2);
        assert!(
            c.allocate_prompt(&block_hashes(&prompt(2, 12), BS), 12)
                .is_none()
        );
        assert_eq!(c.available(), 2, "a failed allocation changes nothing");
        c.release(&held.blocks);
        assert!((c.usage() - 0.0).abs() < f64::EPSILON);
    }

    #[test]
    fn evicted_blocks_are_served_from_the_offload_tier() {
        let mut c = cache(3, 8);
        let a = prompt(1, 9); // 3 blocks, 2 of them hittable
        run(&mut c, &a);
        run(&mut c, &prompt(2, 12)); // evicts a's blocks into the tier
        assert!(c.take_transfers().stored_blocks >= 2);
        let again = run(&mut c, &a);
        assert_eq!(again.hbm_hit_tokens, 0);
        assert_eq!(again.offload_hit_tokens, 8);
        assert_eq!(c.take_transfers().loaded_blocks, 2);
    }

    #[test]
    fn prefix_caching_off_never_hits() {
        let mut c = PrefixCache::new(CacheConfig {
            hbm_blocks: 16,
            offload_blocks: 16,
            block_size: BS,
            prefix_caching: false,
        });
        let p = prompt(1, 12);
        run(&mut c, &p);
        let again = run(&mut c, &p);
        assert_eq!(again.hbm_hit_tokens + again.offload_hit_tokens, 0);
    }

    #[test]
    fn reset_forgets_everything_unreferenced() {
        let mut c = cache(8, 8);
        let p = prompt(1, 9);
        run(&mut c, &p);
        c.reset();
        assert_eq!(run(&mut c, &p).hbm_hit_tokens, 0);
        assert_eq!(c.available(), 8);
    }
}
