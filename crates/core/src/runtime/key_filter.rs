//! Which keys under a prefix may be in state: a [`Bloom`] filter per
//! partition, so that looking up a key that is mostly absent (the link of a
//! visitor never linked, the open alert of a customer never alerted) skips
//! RocksDB, where a read of an absent key probes every level.
//!
//! A partition's filter is built from the keys in state when the partition is
//! first used after its assignment, and told of every key written since. Keys
//! removed stay in the filter: a needless read, never a missed key.

use std::collections::{hash_map, HashMap};

use crate::bloom::{Bloom, KeyHash};
use crate::runtime::Context;
use crate::state::StateError;

/// Keys read per chunk when a partition's filter is built.
const SCAN_CHUNK: usize = 20_000;

/// Keys under one prefix that may be in state, per partition.
pub struct KeyFilter {
    /// The state key prefix; the filter holds what follows it.
    prefix: &'static [u8],
    by_partition: HashMap<i32, Bloom>,
}

impl KeyFilter {
    /// A filter of the keys `prefix` + id.
    pub fn new(prefix: &'static [u8]) -> Self {
        KeyFilter {
            prefix,
            by_partition: HashMap::new(),
        }
    }

    /// False if the key of `id` is certainly not in the context's partition's state.
    pub fn may_hold(&mut self, ctx: &mut Context<'_>, id: &[u8]) -> Result<bool, StateError> {
        Ok(self.filter(ctx)?.may_contain(KeyHash::of(id)))
    }

    /// Records that the key of `id` is now in the context's partition's state.
    pub fn insert(&mut self, ctx: &mut Context<'_>, id: &[u8]) -> Result<(), StateError> {
        self.filter(ctx)?.insert(KeyHash::of(id));
        Ok(())
    }

    /// Forgets `partition`'s filter: its state may change before this
    /// instance uses it again (restored, or handled by another instance).
    pub fn forget(&mut self, partition: i32) {
        self.by_partition.remove(&partition);
    }

    /// Memory held by the filters.
    pub fn bytes(&self) -> usize {
        self.by_partition.values().map(Bloom::bytes).sum()
    }

    fn filter(&mut self, ctx: &mut Context<'_>) -> Result<&mut Bloom, StateError> {
        Ok(match self.by_partition.entry(ctx.partition()) {
            hash_map::Entry::Occupied(built) => built.into_mut(),
            hash_map::Entry::Vacant(entry) => entry.insert(build(ctx, self.prefix)?),
        })
    }
}

/// The filter of the context's partition, from the keys in state.
fn build(ctx: &mut Context<'_>, prefix: &[u8]) -> Result<Bloom, StateError> {
    let mut hashes = Vec::new();
    ctx.state().for_each_key(prefix, SCAN_CHUNK, |key| {
        hashes.push(KeyHash::of(&key[prefix.len()..]));
    })?;
    Ok(Bloom::of(hashes))
}

#[cfg(test)]
mod tests {
    use crate::runtime::fixture::Fixture;

    use super::*;

    const PREFIX: &[u8] = b"l/";

    #[test]
    fn keys_in_state_and_keys_written_since_may_be_held() {
        let mut fixture = Fixture::new(16 << 20);
        let mut ctx = fixture.ctx(0);
        ctx.state().put(b"l/a-1", &"c-1");
        let mut filter = KeyFilter::new(PREFIX);
        assert!(filter.may_hold(&mut ctx, b"a-1").unwrap(), "from state");
        assert!(!filter.may_hold(&mut ctx, b"a-2").unwrap());
        filter.insert(&mut ctx, b"a-2").unwrap();
        assert!(filter.may_hold(&mut ctx, b"a-2").unwrap());

        // Written behind the filter's back, as a restore does: seen once the
        // partition is forgotten and its filter rebuilt.
        ctx.state().put(b"l/a-3", &"c-1");
        filter.forget(0);
        assert!(filter.may_hold(&mut ctx, b"a-3").unwrap());
        assert!(filter.bytes() > 0);
    }

    #[test]
    fn partitions_have_their_own_filters() {
        let mut fixture = Fixture::new(16 << 20);
        let mut filter = KeyFilter::new(PREFIX);
        filter.insert(&mut fixture.ctx(0), b"a-1").unwrap();
        assert!(!filter.may_hold(&mut fixture.ctx(1), b"a-1").unwrap());
    }
}
