//! Maps and sets keyed by values that are already well-mixed hashes (chain hashes, xxh3
//! digests): hashing them again with SipHash, the standard default, only costs time.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A hasher that passes a `u64` key through unchanged.
#[derive(Default)]
pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

pub type HashedMap<V> = HashMap<u64, V, BuildHasherDefault<PassThrough>>;
pub type HashedSet = HashSet<u64, BuildHasherDefault<PassThrough>>;
