//! Hashing shared by the trace tools: the chain hash that names a prefix path of hash ids, and
//! maps and sets keyed by values that are already well-mixed hashes (chain hashes, xxh3
//! digests), where hashing them again with SipHash, the standard default, only costs time.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A hasher that passes a `u64` key through unchanged.
#[derive(Default)]
pub(crate) struct PassThrough(u64);

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

pub(crate) type HashedMap<V> = HashMap<u64, V, BuildHasherDefault<PassThrough>>;
pub(crate) type HashedSet = HashSet<u64, BuildHasherDefault<PassThrough>>;

/// A chain hash: the id of the prefix path ending in `id` after the path `parent` (0 for none),
/// so equal ids at different places in a prompt name different prefixes.
pub fn chain(parent: u64, id: u64) -> u64 {
    crate::base::rng::mix(parent.rotate_left(17) ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_hash_names_the_whole_path() {
        let ab = chain(chain(0, 1), 2);
        assert_eq!(ab, chain(chain(0, 1), 2));
        assert_ne!(ab, chain(chain(0, 2), 1), "order matters");
        assert_ne!(
            chain(ab, 3),
            chain(chain(0, 2), 3),
            "so does everything before"
        );
    }

    #[test]
    fn a_passed_through_key_is_its_own_hash() {
        let mut h = PassThrough::default();
        h.write_u64(0xDEAD_BEEF);
        assert_eq!(h.finish(), 0xDEAD_BEEF);
        let mut m = HashedMap::default();
        m.insert(7u64, "x");
        assert_eq!(m.get(&7), Some(&"x"));
    }
}
