//! A growable Bloom filter of byte strings: it answers "certainly absent"
//! or "maybe present", never a false "absent". Services keep them in memory
//! in front of state, so that looking up a key certainly not there (a new
//! event id, a visitor with no link, a customer with no open alert) skips
//! RocksDB, and the answer stays exact.
//!
//! Blocked, as RocksDB's own filters are: all of a key's bits lie in one
//! 64-byte block, one cache miss per layer and lookup. Growable: once a
//! layer holds its capacity, a new layer twice as large takes the next keys.
//! Each full layer adds about 1% false positives (a needless state read,
//! never a wrong answer), and a key costs about 1.25 bytes (2.5 at worst,
//! just after a layer is added); a filter built for a known count of keys
//! starts with a layer that holds them all.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};

/// Filter bits per key: with [`PROBES`] bits set per key, about 1% false positives.
const BITS_PER_KEY: usize = 10;

/// Bits set per key, all in the key's block.
const PROBES: usize = 6;

/// Keys the first layer holds (20 KiB): every layer is checked for a key
/// never inserted, so each one saved is a cache miss less per lookup.
const FIRST_CAPACITY: usize = 16_384;

/// One 512-bit block.
type Block = [u64; 8];

/// A key's hash, computed once for every filter it is checked against.
#[derive(Debug, Clone, Copy)]
pub struct KeyHash(u64);

impl KeyHash {
    /// The hash of `key` (SipHash with fixed keys: the same in every process).
    pub fn of(key: &[u8]) -> Self {
        KeyHash(BuildHasherDefault::<DefaultHasher>::default().hash_one(key))
    }

    /// The key's block among `blocks`, and its bits within the block.
    fn locate(self, blocks: usize) -> (usize, Block) {
        // The low half picks the block, the high half the bits (as RocksDB's
        // FastLocalBloom does): no bit of the hash serves both.
        let block = ((self.0 & 0xffff_ffff) * blocks as u64) >> 32;
        let mut h = (self.0 >> 32) as u32;
        let mut bits = [0u64; 8];
        for _ in 0..PROBES {
            let bit = (h >> 23) as usize;
            bits[bit / 64] |= 1 << (bit % 64);
            h = h.wrapping_mul(0x9e37_79b9);
        }
        (block as usize, bits)
    }
}

/// Keys that may be present; see the module doc.
#[derive(Debug, Default)]
pub struct Bloom {
    layers: Vec<Layer>,
}

#[derive(Debug)]
struct Layer {
    blocks: Box<[Block]>,
    capacity: usize,
    len: usize,
}

impl Layer {
    fn with_capacity(capacity: usize) -> Self {
        let blocks = (capacity * BITS_PER_KEY).div_ceil(512);
        Layer {
            blocks: vec![[0; 8]; blocks].into_boxed_slice(),
            capacity,
            len: 0,
        }
    }

    fn may_contain(&self, hash: KeyHash) -> bool {
        let (block, bits) = hash.locate(self.blocks.len());
        let block = &self.blocks[block];
        (0..8).all(|i| block[i] & bits[i] == bits[i])
    }
}

impl Bloom {
    /// An empty filter whose first layer holds `keys` keys (at least a few thousand).
    pub fn with_capacity(keys: usize) -> Self {
        Bloom {
            layers: vec![Layer::with_capacity(keys.max(FIRST_CAPACITY))],
        }
    }

    /// A filter of the keys of `hashes`, with room for as many again before
    /// it grows a layer.
    pub fn of(hashes: Vec<KeyHash>) -> Self {
        let mut filter = Bloom::with_capacity(2 * hashes.len());
        for hash in hashes {
            filter.insert(hash);
        }
        filter
    }

    /// Adds the key of `hash`.
    pub fn insert(&mut self, hash: KeyHash) {
        let layer = match self.layers.last_mut() {
            Some(last) if last.len < last.capacity => last,
            last => {
                let capacity = last.map_or(FIRST_CAPACITY, |l| l.capacity * 2);
                self.layers.push(Layer::with_capacity(capacity));
                self.layers.last_mut().expect("just pushed")
            }
        };
        let (block, bits) = hash.locate(layer.blocks.len());
        for (word, bits) in layer.blocks[block].iter_mut().zip(bits) {
            *word |= bits;
        }
        layer.len += 1;
    }

    /// False only if the key of `hash` was never inserted.
    pub fn may_contain(&self, hash: KeyHash) -> bool {
        self.layers.iter().any(|layer| layer.may_contain(hash))
    }

    /// How many keys were inserted.
    pub fn inserted(&self) -> usize {
        self.layers.iter().map(|l| l.len).sum()
    }

    /// Memory held by the filter's bits.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| std::mem::size_of_val(&*l.blocks))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> Vec<u8> {
        format!("evt-{i:08}").into_bytes()
    }

    #[test]
    fn every_inserted_key_may_be_present_across_layers() {
        let mut bloom = Bloom::default();
        let keys = FIRST_CAPACITY * 7;
        for i in 0..keys {
            bloom.insert(KeyHash::of(&key(i)));
        }
        assert_eq!(bloom.layers.len(), 3, "16k, 32k and 64k keys");
        assert_eq!(bloom.inserted(), keys);
        assert!((0..keys).all(|i| bloom.may_contain(KeyHash::of(&key(i)))));
    }

    #[test]
    fn absent_keys_are_mostly_reported_absent() {
        let mut bloom = Bloom::default();
        let keys = 100_000;
        for i in 0..keys {
            bloom.insert(KeyHash::of(&key(i)));
        }
        let false_positives = (keys..2 * keys)
            .filter(|&i| bloom.may_contain(KeyHash::of(&key(i))))
            .count();
        // About 1% per layer, and a lookup checks every layer.
        assert!(
            false_positives < keys / 20,
            "{false_positives} false positives"
        );
        assert!(bloom.bytes() < keys * 3);
    }

    #[test]
    fn an_empty_filter_holds_nothing() {
        let bloom = Bloom::default();
        assert!(!bloom.may_contain(KeyHash::of(b"e")));
        assert_eq!(bloom.bytes(), 0);
    }
}
