//! Deduplication of event ids within a window of wall-clock time, with no
//! timer per event.
//!
//! An event id seen at `t` is kept under a key of the time bucket `t` falls in
//! (`d/` + bucket + id, valued `t`); a window spans [`BUCKETS`] buckets. A
//! new id is looked up in the buckets that can hold a sighting within the
//! window, and is a repeat only if that sighting is less than the window
//! old, so the answer is exact whatever the bucketing. One wall-clock
//! timer per bucket deletes the bucket's keys once all of them are out of the
//! window, a chunk at a time (each delete reaches the changelog), so state
//! holds at most a window and a bucket of ids.
//!
//! Against a key and a timer per id (set, then fired, cancelled and deleted:
//! four writes and four changelog records), each id costs one write when
//! first seen and one delete when its bucket expires, and a lookup probes
//! [`BUCKETS`] + 1 keys at most.
//!
//! Most ids are new, and a probe of a key that is not there still costs a
//! RocksDB read. So each bucket of each partition also has a [`Bloom`]
//! filter of its ids in memory, built from state when the partition is
//! first used after its assignment and added to with every id remembered:
//! a bucket whose filter has certainly not seen the id is not probed.
//! Filters have no false negatives, so the answer stays exact.

use std::collections::{hash_map, BTreeMap, HashMap, HashSet};

use journey_core::bloom::{Bloom, KeyHash};
use journey_core::runtime::Context;
use journey_core::state::{Clock, StateError};

/// Buckets per dedup window: more probe more keys per lookup, fewer keep
/// ids longer past the window. With one, a lookup probes two keys and ids
/// are kept one to two windows: no more state on average than a key and a
/// timer per id for one window, and fewer probes measured faster than two.
pub const BUCKETS: i64 = 1;

/// Keys deleted per firing of an expiry timer; it fires again on the next
/// tick while the bucket has keys left.
const EXPIRY_CHUNK: usize = 20_000;

/// State key prefix of remembered event ids.
const SEEN: &[u8] = b"d/";

/// Leads the key of an expiry timer: no event id (UTF-8) holds this byte.
const EXPIRY: u8 = 0xff;

/// Remembered ids read per chunk when a partition's filters are built.
const SCAN_CHUNK: usize = 20_000;

/// Event ids seen within the window, per partition, in state.
pub(crate) struct Dedup {
    window: i64,
    /// Width of a bucket, ms.
    width: i64,
    /// Buckets whose expiry timer this instance has set, by partition.
    armed: HashSet<(i32, i64)>,
    /// The latest wall-clock time seen: a clock stepping back does not move
    /// sightings into buckets already passed.
    latest: i64,
    /// By partition, the ids remembered in each of its buckets (see the module doc).
    filters: HashMap<i32, BTreeMap<i64, Bloom>>,
}

impl Dedup {
    /// Deduplication within `window` ms.
    pub(crate) fn new(window: i64) -> Self {
        let window = window.max(0);
        Dedup {
            window,
            width: (window / BUCKETS).max(1),
            armed: HashSet::new(),
            latest: i64::MIN,
            filters: HashMap::new(),
        }
    }

    /// Whether `event_id` is new at `now`, i.e. not seen less than the window
    /// before; a new id is remembered from `now` on.
    pub(crate) fn first_sighting(
        &mut self,
        ctx: &mut Context<'_>,
        event_id: &[u8],
        now: i64,
    ) -> Result<bool, StateError> {
        if self.window == 0 {
            // Nothing is a repeat within no time: remember nothing.
            return Ok(true);
        }
        self.latest = self.latest.max(now);
        let now = self.latest;
        let current = now.div_euclid(self.width);
        let oldest = now
            .saturating_sub(self.window)
            .saturating_add(1)
            .div_euclid(self.width);
        let hash = KeyHash::of(event_id);
        let partition = ctx.partition();
        let filters = match self.filters.entry(partition) {
            hash_map::Entry::Occupied(built) => built.into_mut(),
            hash_map::Entry::Vacant(entry) => entry.insert(build_filters(ctx)?),
        };
        let mut key = seen_key(current, event_id);
        for bucket in (oldest..=current).rev() {
            if !filters.get(&bucket).is_some_and(|f| f.may_contain(hash)) {
                continue;
            }
            key[SEEN.len()..SEEN.len() + 8].copy_from_slice(&bucket.to_be_bytes());
            if let Some(seen) = ctx.state().get::<i64>(&key)? {
                if now.saturating_sub(seen) < self.window {
                    return Ok(false);
                }
            }
        }
        key[SEEN.len()..SEEN.len() + 8].copy_from_slice(&current.to_be_bytes());
        ctx.state().put(&key, &now);
        if !filters.contains_key(&current) {
            // Buckets see about as many ids as the one before: one layer
            // sized for that many keeps lookups to a cache miss per bucket.
            let before = filters.range(..current).next_back();
            let capacity = before.map_or(0, |(_, f)| f.inserted() + f.inserted() / 4);
            filters.insert(current, Bloom::with_capacity(capacity));
        }
        filters
            .get_mut(&current)
            .expect("the current bucket's filter, inserted above")
            .insert(hash);
        if self.armed.insert((partition, current)) {
            // Buckets out of the window are never probed again.
            filters.retain(|bucket, _| *bucket >= oldest);
            // Once per bucket and instance: a repeat after a restart rewrites the same timer.
            let expires = current
                .saturating_add(1)
                .saturating_mul(self.width)
                .saturating_add(self.window);
            ctx.set_timer(Clock::Wall, expires, &expiry_key(current, None));
            self.armed
                .retain(|(_, bucket)| *bucket >= current - BUCKETS);
        }
        Ok(true)
    }

    /// Handles a timer if it is an expiry timer (returns whether it was):
    /// deletes the next chunk of its bucket's ids, and fires again on the
    /// next tick, from where it stopped, while ids are left.
    pub(crate) fn on_timer(
        &mut self,
        ctx: &mut Context<'_>,
        at: i64,
        key: &[u8],
    ) -> Result<bool, StateError> {
        let Some((bucket, after)) = parse_expiry_key(key) else {
            return Ok(false);
        };
        let prefix = seen_key(bucket, &[]);
        let after = after.map(|id| [&prefix[..], id].concat());
        let keys = ctx.state().keys(&prefix, after.as_deref(), EXPIRY_CHUNK)?;
        for key in &keys {
            ctx.state().delete(key);
        }
        if keys.len() == EXPIRY_CHUNK {
            let last = &keys[keys.len() - 1][prefix.len()..];
            ctx.set_timer(Clock::Wall, at, &expiry_key(bucket, Some(last)));
        }
        Ok(true)
    }

    /// Forgets `partition`'s filters and which of its buckets have their
    /// timer set: its state may change before this instance uses it again
    /// (restored, or handled by another instance meanwhile).
    pub(crate) fn forget(&mut self, partition: i32) {
        self.armed.retain(|(p, _)| *p != partition);
        self.filters.remove(&partition);
    }

    /// Handles the timer of an event id remembered before ids were bucketed
    /// (a key and a timer per id): forgets the id.
    pub(crate) fn on_unbucketed_timer(&self, ctx: &mut Context<'_>, event_id: &[u8]) {
        ctx.state().delete(&[SEEN, event_id].concat());
    }

    /// Memory held by the filters.
    pub(crate) fn filter_bytes(&self) -> usize {
        self.filters
            .values()
            .flat_map(BTreeMap::values)
            .map(Bloom::bytes)
            .sum()
    }
}

/// The filters of every bucket of the context's partition, from the ids in state.
fn build_filters(ctx: &mut Context<'_>) -> Result<BTreeMap<i64, Bloom>, StateError> {
    let mut hashes: BTreeMap<i64, Vec<KeyHash>> = BTreeMap::new();
    ctx.state().for_each_key(SEEN, SCAN_CHUNK, |key| {
        if let Some((bucket, id)) = parse_seen_key(key) {
            hashes.entry(bucket).or_default().push(KeyHash::of(id));
        }
    })?;
    Ok(hashes
        .into_iter()
        .map(|(bucket, hashes)| (bucket, Bloom::of(hashes)))
        .collect())
}

/// State key of `event_id` seen in `bucket`.
fn seen_key(bucket: i64, event_id: &[u8]) -> Vec<u8> {
    [SEEN, &bucket.to_be_bytes(), event_id].concat()
}

/// The bucket and event id of a state key of a remembered id.
fn parse_seen_key(key: &[u8]) -> Option<(i64, &[u8])> {
    let rest = key.strip_prefix(SEEN)?;
    let bucket = i64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    Some((bucket, &rest[8..]))
}

/// Timer key of the expiry of `bucket`, resuming after the id `after`.
fn expiry_key(bucket: i64, after: Option<&[u8]>) -> Vec<u8> {
    [
        &[EXPIRY][..],
        &bucket.to_be_bytes(),
        after.unwrap_or_default(),
    ]
    .concat()
}

/// The bucket and the id to resume after, of an expiry timer key.
fn parse_expiry_key(key: &[u8]) -> Option<(i64, Option<&[u8]>)> {
    let rest = key.strip_prefix(&[EXPIRY])?;
    let bucket = i64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let after = &rest[8..];
    Some((bucket, (!after.is_empty()).then_some(after)))
}

#[cfg(test)]
mod tests {
    use journey_core::codec::Codec;
    use journey_core::state::StateStore;

    use super::*;

    const WINDOW: i64 = 1_000;
    const WIDTH: i64 = WINDOW / BUCKETS;

    struct Harness {
        _dir: tempfile::TempDir,
        store: StateStore,
        codec: Codec,
        dedup: Dedup,
    }

    impl Harness {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let store = StateStore::open(dir.path(), 16 << 20).unwrap();
            Harness {
                _dir: dir,
                store,
                codec: Codec::builtin(),
                dedup: Dedup::new(WINDOW),
            }
        }

        fn first(&mut self, id: &str, now: i64) -> bool {
            let mut outputs = Vec::new();
            let mut ctx = Context::new(&mut self.store, &self.codec, &mut outputs, 0, 0);
            self.dedup
                .first_sighting(&mut ctx, id.as_bytes(), now)
                .unwrap()
        }

        /// Fires the wall-clock timers due at `now`, as the runtime does.
        fn tick(&mut self, now: i64) {
            for (at, key) in self.store.due_timers(0, Clock::Wall, now).unwrap() {
                self.store.cancel_timer(0, Clock::Wall, at, &key);
                let mut outputs = Vec::new();
                let mut ctx = Context::new(&mut self.store, &self.codec, &mut outputs, 0, 0);
                assert!(self.dedup.on_timer(&mut ctx, at, &key).unwrap());
            }
        }

        /// Whether no timer is pending, however late.
        fn no_timers_left(&mut self) -> bool {
            self.store
                .due_timers(0, Clock::Wall, i64::MAX)
                .unwrap()
                .is_empty()
        }

        fn remembered(&mut self) -> usize {
            self.store
                .partition(0)
                .keys(SEEN, None, usize::MAX)
                .unwrap()
                .len()
        }
    }

    #[test]
    fn a_repeat_is_dropped_exactly_within_the_window() {
        for first in [0, 1, 499, 500, 999, 12_345] {
            let mut h = Harness::new();
            assert!(h.first("e", first));
            assert!(!h.first("e", first), "at once");
            assert!(!h.first("e", first + WINDOW - 1), "a ms inside the window");
            assert!(h.first("e", first + WINDOW), "at the window's end");
            assert!(
                !h.first("e", first + WINDOW + 1),
                "seen again from there on"
            );
        }
    }

    #[test]
    fn a_repeat_is_caught_across_expiries_and_commits() {
        let mut h = Harness::new();
        assert!(h.first("e", 900));
        h.store.commit().unwrap();
        h.tick(1_800);
        h.store.commit().unwrap();
        assert!(!h.first("e", 1_899), "the bucket of 900 is not expired yet");
        h.tick(2_000);
        assert_eq!(h.remembered(), 0);
        assert!(h.first("e", 2_000));
    }

    #[test]
    fn expired_buckets_are_deleted_in_chunks_and_state_stays_bounded() {
        let mut h = Harness::new();
        let ids = EXPIRY_CHUNK + 5;
        for i in 0..ids {
            assert!(h.first(&format!("e{i}"), 10));
        }
        h.store.commit().unwrap();
        assert!(h.first("later", WIDTH + 10));
        assert_eq!(h.remembered(), ids + 1);
        // The first bucket expires a window after its end: one chunk, then the rest a tick later.
        h.tick(WIDTH + WINDOW - 1);
        assert_eq!(h.remembered(), ids + 1);
        h.tick(WIDTH + WINDOW);
        h.store.commit().unwrap();
        assert_eq!(h.remembered(), 6);
        h.tick(WIDTH + WINDOW + 200);
        assert_eq!(h.remembered(), 1);
        h.store.commit().unwrap();
        h.tick(2 * WIDTH + WINDOW);
        assert_eq!(h.remembered(), 0);
        assert!(h.no_timers_left());
    }

    #[test]
    fn no_window_remembers_nothing() {
        let mut h = Harness::new();
        h.dedup = Dedup::new(0);
        assert!(h.first("e", 10));
        assert!(h.first("e", 10));
        assert_eq!(h.remembered(), 0);
        assert!(h.no_timers_left());
    }

    #[test]
    fn a_repeat_is_caught_after_a_restart_from_committed_state() {
        let mut h = Harness::new();
        assert!(h.first("e", 10));
        h.store.commit().unwrap();
        h.dedup = Dedup::new(WINDOW);
        assert!(
            !h.first("e", 20),
            "the new instance's filters come from state"
        );
        assert!(h.first("f", 20));
    }

    #[test]
    fn ids_another_instance_remembered_are_caught_once_the_partition_is_assigned_again() {
        let mut h = Harness::new();
        assert!(h.first("e", 10), "this instance's filters are built");
        // Meanwhile the partition's state gains ids this instance never saw
        // (another instance handled it, and its changelog was restored).
        let mut other = Dedup::new(WINDOW);
        let mut outputs = Vec::new();
        let mut ctx = Context::new(&mut h.store, &h.codec, &mut outputs, 0, 0);
        assert!(other.first_sighting(&mut ctx, b"f", 20).unwrap());
        h.dedup.forget(0);
        assert!(!h.first("f", 30));
        assert!(!h.first("e", 30));
    }

    #[test]
    fn every_repeat_of_many_ids_is_caught_past_the_filters() {
        let mut h = Harness::new();
        let ids: Vec<String> = (0..10_000).map(|i| format!("evt-{i}")).collect();
        for (i, id) in ids.iter().enumerate() {
            assert!(h.first(id, i as i64 / 20));
            if i % 3_000 == 0 {
                h.store.commit().unwrap();
            }
        }
        assert!(ids.iter().all(|id| !h.first(id, WINDOW - 1)));
        assert!(h.first("evt-new", WINDOW - 1));
    }

    #[test]
    fn a_clock_stepping_back_still_finds_the_sighting() {
        let mut h = Harness::new();
        assert!(h.first("e", 510));
        assert!(!h.first("e", 490));
    }

    #[test]
    fn a_key_of_another_timer_is_not_an_expiry() {
        let mut h = Harness::new();
        let mut outputs = Vec::new();
        let mut ctx = Context::new(&mut h.store, &h.codec, &mut outputs, 0, 0);
        assert!(!h.dedup.on_timer(&mut ctx, 0, b"evt-1").unwrap());
    }
}
