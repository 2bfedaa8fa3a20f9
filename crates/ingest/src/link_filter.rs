//! Which anonymous ids may have a link to a customer in state: a [`Bloom`]
//! filter per partition, so that looking up the link of a visitor never
//! linked (most anonymous traffic) skips RocksDB.
//!
//! A partition's filter is built from the links in state when the partition
//! is first used after its assignment, and told of every link written since.
//! Links removed (erasure) stay in the filter: a needless read, never a
//! missed link.

use std::collections::{hash_map, HashMap};

use journey_core::runtime::Context;
use journey_core::state::StateError;

use crate::bloom::{Bloom, KeyHash};

/// Links read per chunk when a partition's filter is built.
const SCAN_CHUNK: usize = 20_000;

/// Anonymous ids with a link, per partition.
pub(crate) struct LinkFilter {
    /// State key prefix of links, followed by the anonymous id.
    prefix: &'static [u8],
    by_partition: HashMap<i32, Bloom>,
}

impl LinkFilter {
    /// A filter of the links kept under `prefix` + anonymous id.
    pub(crate) fn new(prefix: &'static [u8]) -> Self {
        LinkFilter {
            prefix,
            by_partition: HashMap::new(),
        }
    }

    /// False if `anonymous_id` certainly has no link on the context's partition.
    pub(crate) fn may_be_linked(
        &mut self,
        ctx: &mut Context<'_>,
        anonymous_id: &str,
    ) -> Result<bool, StateError> {
        Ok(self
            .filter(ctx)?
            .may_contain(KeyHash::of(anonymous_id.as_bytes())))
    }

    /// Records that `anonymous_id` now has a link on the context's partition.
    pub(crate) fn linked(
        &mut self,
        ctx: &mut Context<'_>,
        anonymous_id: &str,
    ) -> Result<(), StateError> {
        self.filter(ctx)?
            .insert(KeyHash::of(anonymous_id.as_bytes()));
        Ok(())
    }

    /// Forgets `partition`'s filter: its state may change before this
    /// instance uses it again (restored, or handled by another instance).
    pub(crate) fn forget(&mut self, partition: i32) {
        self.by_partition.remove(&partition);
    }

    /// Memory held by the filters.
    pub(crate) fn bytes(&self) -> usize {
        self.by_partition.values().map(Bloom::bytes).sum()
    }

    fn filter(&mut self, ctx: &mut Context<'_>) -> Result<&mut Bloom, StateError> {
        Ok(match self.by_partition.entry(ctx.partition()) {
            hash_map::Entry::Occupied(built) => built.into_mut(),
            hash_map::Entry::Vacant(entry) => entry.insert(build(ctx, self.prefix)?),
        })
    }
}

/// The filter of the context's partition, from the links in state.
fn build(ctx: &mut Context<'_>, prefix: &[u8]) -> Result<Bloom, StateError> {
    let mut hashes = Vec::new();
    ctx.state().for_each_key(prefix, SCAN_CHUNK, |key| {
        hashes.push(KeyHash::of(&key[prefix.len()..]));
    })?;
    Ok(Bloom::of(hashes))
}

#[cfg(test)]
mod tests {
    use journey_core::codec::Codec;
    use journey_core::state::StateStore;

    use super::*;

    const PREFIX: &[u8] = b"l/";

    #[test]
    fn links_in_state_and_links_written_since_may_be_linked() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(dir.path(), 16 << 20).unwrap();
        let codec = Codec::builtin();
        let mut outputs = Vec::new();
        let mut ctx = Context::new(&mut store, &codec, &mut outputs, 0, 0);
        ctx.state().put(b"l/a-1", &"c-1");
        let mut filter = LinkFilter::new(PREFIX);
        assert!(filter.may_be_linked(&mut ctx, "a-1").unwrap(), "from state");
        assert!(!filter.may_be_linked(&mut ctx, "a-2").unwrap());
        filter.linked(&mut ctx, "a-2").unwrap();
        assert!(filter.may_be_linked(&mut ctx, "a-2").unwrap());

        // Written behind the filter's back, as a restore does: seen once the
        // partition is forgotten and its filter rebuilt.
        ctx.state().put(b"l/a-3", &"c-1");
        filter.forget(0);
        assert!(filter.may_be_linked(&mut ctx, "a-3").unwrap());
        assert!(filter.bytes() > 0);
    }

    #[test]
    fn partitions_have_their_own_filters() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(dir.path(), 16 << 20).unwrap();
        let codec = Codec::builtin();
        let mut outputs = Vec::new();
        let mut filter = LinkFilter::new(PREFIX);
        let mut ctx = Context::new(&mut store, &codec, &mut outputs, 0, 0);
        filter.linked(&mut ctx, "a-1").unwrap();
        let mut ctx = Context::new(&mut store, &codec, &mut outputs, 1, 0);
        assert!(!filter.may_be_linked(&mut ctx, "a-1").unwrap());
    }
}
