//! The write-back record cache in front of RocksDB (Kafka Streams' record
//! cache): recently used values, as encoded bytes, serve reads without a trip
//! through the memtable's skip list and the block cache; writes stay here,
//! marked dirty, until the commit writes them to RocksDB in one batch.
//!
//! Its size counts against the process's state memory budget: every cache of
//! the process adds its bytes to one shared total, and a cache over the
//! shared capacity evicts its own clean entries (CLOCK, an approximation of
//! least recently used). Dirty entries are never evicted: the commit interval
//! and batch bound them. An entry only ever written, never read, leaves at the
//! commit: a key written once (an event id remembered for deduplication)
//! would only push out values that are read.
//!
//! An entry may also hold its value decoded, for updates in place
//! ([`RecordCache::decoded`]): a hot aggregate updated by event after event
//! is then decoded once and encoded once per commit rather than per event.
//! Such an entry is dirty until the commit encodes it again, and counts
//! against the budget at the size of its last encoding.
//!
//! Keys stay on the heap: held inline in the entry (up to 22 or 46 bytes),
//! they spared the lookup's read of the key's block but made the
//! sessionizer bench slower (about 0.9x, alternated), the entries larger.

use std::any::Any;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};

use foldhash::fast::RandomState;
use indexmap::IndexMap;

/// What one entry costs beyond its key and value allocations: its bucket in
/// the map (hash, key and slot headers, 72 bytes) and its index, with the
/// slack of vectors that double as they grow.
const ENTRY_OVERHEAD: usize = 128;

/// The bytes the allocator hands out for a request of `n`: jemalloc's size
/// class, 8, then multiples of 16 up to 128, then four classes per doubling
/// (160, 192, 224, 256, 320, ...) up to 32 KiB; beyond, whole pages.
fn allocated(n: usize) -> usize {
    const PAGE: usize = 4096;
    if n <= 8 {
        return 8;
    }
    if n <= 128 {
        return (n + 15) & !15;
    }
    if n > 8 * PAGE {
        return (n + PAGE - 1) & !(PAGE - 1);
    }
    // A quarter of the power of two below `n`.
    let spacing = 1usize << (usize::BITS - (n - 1).leading_zeros() - 3);
    (n + spacing - 1) & !(spacing - 1)
}

/// The bytes held by every record cache of the process, against one capacity.
#[derive(Debug)]
pub struct CacheBudget {
    capacity: usize,
    used: AtomicUsize,
}

impl CacheBudget {
    /// A budget of `capacity` bytes, none used.
    pub fn new(capacity: usize) -> Self {
        CacheBudget {
            capacity,
            used: AtomicUsize::new(0),
        }
    }

    /// Bytes held by all record caches of the process.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn over(&self) -> bool {
        self.used() > self.capacity
    }
}

/// A value held decoded in the cache: the state store's typed values.
pub trait Decoded: Send {
    /// The value's encoding, in `buffer` (empty), or `None` if it is absent.
    fn encode(&self, buffer: Vec<u8>) -> Option<Vec<u8>>;
    /// Whether the value is present.
    fn is_present(&self) -> bool;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// A cached value: `None` records that the key is absent (or deleted).
struct Slot {
    /// The value's encoding; stale while `decoded` holds the value.
    value: Option<Vec<u8>>,
    /// The value, decoded for updates in place; only ever in a dirty entry.
    decoded: Option<Box<dyn Decoded>>,
    /// Changed since the last commit: where the entry's index is in
    /// [`RecordCache::dirty`].
    dirty: Option<u32>,
    /// Read since the CLOCK hand last passed.
    referenced: Cell<bool>,
    /// Ever read (or written right after a read that missed): an entry only
    /// ever written leaves at the commit.
    read: Cell<bool>,
}

/// The record cache of one state store.
pub struct RecordCache {
    entries: IndexMap<Vec<u8>, Slot, RandomState>,
    /// Indices of the dirty entries, each once.
    dirty: Vec<usize>,
    /// The CLOCK hand: the next entry considered for eviction.
    hand: usize,
    /// Set when a sweep found nothing to evict (every entry dirty): no
    /// sweep until the next commit makes entries clean.
    only_dirty: bool,
    /// Whether values stay after their commit; if not, the cache holds only
    /// the writes pending.
    retain: bool,
    /// The key of the last read that missed: writing it next (read, modify,
    /// write) counts as a read.
    last_miss: RefCell<Vec<u8>>,
    /// Set when a value is held decoded, cleared when they are all encoded.
    may_hold_decoded: bool,
    /// Bytes of this cache, also counted in `budget`.
    bytes: usize,
    budget: &'static CacheBudget,
}

impl Slot {
    /// The value's encoding (encoded now if it is held decoded).
    fn encoded(&self) -> Option<Cow<'_, [u8]>> {
        match &self.decoded {
            Some(decoded) => decoded.encode(Vec::new()).map(Cow::Owned),
            None => self.value.as_deref().map(Cow::Borrowed),
        }
    }

    /// Encodes a value held decoded into the entry's buffer; returns the
    /// entry's cost before and after.
    fn seal(&mut self, key: &[u8]) -> (usize, usize) {
        let before = cost(key, &self.value);
        if let Some(decoded) = self.decoded.take() {
            let mut buffer = self.value.take().unwrap_or_default();
            buffer.clear();
            self.value = decoded.encode(buffer);
        }
        (before, cost(key, &self.value))
    }
}

fn cost(key: &[u8], value: &Option<Vec<u8>>) -> usize {
    let value = value.as_ref().map_or(0, |v| allocated(v.capacity()));
    allocated(key.len()) + value + ENTRY_OVERHEAD
}

impl RecordCache {
    /// A cache counted in `budget`; `retain` keeps values after their commit.
    pub fn new(budget: &'static CacheBudget, retain: bool) -> Self {
        RecordCache {
            retain,
            entries: IndexMap::default(),
            dirty: Vec::new(),
            hand: 0,
            only_dirty: false,
            last_miss: RefCell::new(Vec::new()),
            may_hold_decoded: false,
            bytes: 0,
            budget,
        }
    }

    /// The cached value of `key`, encoded: `Some(None)` if it is known to be
    /// absent, `None` if the cache does not know.
    pub fn get(&self, key: &[u8]) -> Option<Option<Cow<'_, [u8]>>> {
        let Some(slot) = self.entries.get(key) else {
            let mut last_miss = self.last_miss.borrow_mut();
            last_miss.clear();
            last_miss.extend_from_slice(key);
            return None;
        };
        slot.referenced.set(true);
        slot.read.set(true);
        Some(slot.encoded())
    }

    /// The value of `key` held decoded, for an update in place; the entry is
    /// dirty until the next commit. If the entry does not hold it decoded
    /// yet, or holds another type (`fits` says no), `decode` makes it from
    /// the cached encoding (`Some`, `None` inside if absent), or from below
    /// when the cache does not know the key (`None`).
    pub fn decoded<E>(
        &mut self,
        key: &[u8],
        fits: impl Fn(&dyn Decoded) -> bool,
        decode: impl FnOnce(Option<Option<&[u8]>>) -> Result<Box<dyn Decoded>, E>,
    ) -> Result<&mut dyn Decoded, E> {
        let (mut index, grown) = match self.entries.get_index_of(key) {
            Some(index) => {
                let slot = &mut self.entries[index];
                slot.referenced.set(true);
                slot.read.set(true);
                if slot.decoded.as_deref().is_some_and(&fits) {
                    (index, false)
                } else {
                    let (before, after) = slot.seal(key);
                    let decoded = decode(Some(slot.value.as_deref()));
                    self.shrink(before);
                    self.grow(after);
                    self.entries[index].decoded = Some(decoded?);
                    (index, after > before)
                }
            }
            None => {
                let slot = Slot {
                    value: None,
                    decoded: Some(decode(None)?),
                    dirty: None,
                    referenced: Cell::new(true),
                    read: Cell::new(true),
                };
                self.grow(cost(key, &None));
                (self.entries.insert_full(key.to_vec(), slot).0, true)
            }
        };
        self.mark_dirty(index);
        self.may_hold_decoded = true;
        if grown {
            // Eviction may move the entry (never remove it: it is dirty).
            self.evict();
            index = self.entries.get_index_of(key).expect("dirty entries stay");
        }
        Ok(self.entries[index]
            .decoded
            .as_deref_mut()
            .expect("just decoded"))
    }

    fn mark_dirty(&mut self, index: usize) {
        let slot = &mut self.entries[index];
        if slot.dirty.is_none() {
            slot.dirty = Some(self.dirty.len() as u32);
            self.dirty.push(index);
        }
    }

    /// Sets `key` to the value `write` leaves in the buffer it is given (the
    /// entry's own buffer when it has one, cleared), or deletes it if `write`
    /// is `None`; the entry is dirty until the next commit.
    pub fn put(&mut self, key: &[u8], write: Option<impl FnOnce(Vec<u8>) -> Vec<u8>>) {
        let (index, before) = match self.entries.get_index_of(key) {
            Some(index) => (index, cost(key, &self.entries[index].value)),
            None => {
                let slot = Slot {
                    value: None,
                    decoded: None,
                    dirty: None,
                    referenced: Cell::new(false),
                    read: Cell::new(*self.last_miss.borrow() == key),
                };
                (self.entries.insert_full(key.to_vec(), slot).0, 0)
            }
        };
        let slot = &mut self.entries[index];
        slot.decoded = None;
        let buffer = slot.value.take().map(|mut b| {
            b.clear();
            b
        });
        slot.value = write.map(|write| write(buffer.unwrap_or_default()));
        let after = cost(key, &slot.value);
        self.mark_dirty(index);
        self.shrink(before);
        self.grow(after);
        self.evict();
    }

    /// The dirty entries, in no particular order, with their encoding
    /// (values held decoded are encoded on the way: [`RecordCache::seal`]
    /// first to encode them once).
    pub fn dirty(&self) -> impl Iterator<Item = (&[u8], Option<Cow<'_, [u8]>>)> {
        self.dirty.iter().map(|&index| {
            let (key, slot) = self.entries.get_index(index).expect("dirty entries stay");
            (key.as_slice(), slot.encoded())
        })
    }

    /// The keys of the dirty entries, in no particular order, each with
    /// whether it has a value (`false`: deleted).
    pub fn dirty_keys(&self) -> impl Iterator<Item = (&[u8], bool)> {
        self.dirty.iter().map(|&index| {
            let (key, slot) = self.entries.get_index(index).expect("dirty entries stay");
            let present = match &slot.decoded {
                Some(decoded) => decoded.is_present(),
                None => slot.value.is_some(),
            };
            (key.as_slice(), present)
        })
    }

    /// Encodes the values held decoded.
    pub fn seal(&mut self) {
        if !std::mem::take(&mut self.may_hold_decoded) {
            // No pass over the dirty entries of a cache never updated in place (ingest's).
            return;
        }
        for i in 0..self.dirty.len() {
            let (key, slot) = self
                .entries
                .get_index_mut(self.dirty[i])
                .expect("dirty entries stay");
            if slot.decoded.is_some() {
                let (before, after) = slot.seal(key);
                self.shrink(before);
                self.grow(after);
            }
        }
    }

    /// Whether the caches are over capacity and this one has nothing left
    /// to evict: only a commit, making its entries clean, frees room.
    pub fn is_full_of_dirty(&self) -> bool {
        self.only_dirty
    }

    /// Whether nothing is dirty.
    pub fn is_clean(&self) -> bool {
        self.dirty.is_empty()
    }

    /// Hands each dirty entry to `write`, in key order, and marks it clean;
    /// those never read leave the cache.
    pub fn drain_dirty(&mut self, mut write: impl FnMut(&[u8], Option<&[u8]>)) {
        self.seal();
        let mut dirty = std::mem::take(&mut self.dirty);
        // Sorted as (key, index) pairs: a comparison reads the two keys, not
        // first the two entries they hang from.
        let mut order: Vec<(&[u8], usize)> = dirty
            .iter()
            .map(|&index| (self.key_at(index), index))
            .collect();
        order.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (slot, (_, index)) in dirty.iter_mut().zip(order) {
            *slot = index;
        }
        let mut unread = Vec::new();
        for index in dirty.drain(..) {
            let (key, slot) = self
                .entries
                .get_index_mut(index)
                .expect("dirty entries stay");
            slot.dirty = None;
            write(key, slot.value.as_deref());
            if self.retain && !slot.read.get() {
                unread.push(index);
            }
        }
        // The vector's capacity serves the next commit.
        self.dirty = dirty;
        self.only_dirty = false;
        if !self.retain {
            self.shrink(self.bytes);
            self.entries.clear();
            self.hand = 0;
            return;
        }
        // Highest first: each removal moves the last entry, never one still to remove.
        unread.sort_unstable_by(|a, b| b.cmp(a));
        for index in unread {
            let (key, slot) = self
                .entries
                .swap_remove_index(index)
                .expect("dirty entries stay");
            self.shrink(cost(&key, &slot.value));
        }
    }

    fn key_at(&self, index: usize) -> &[u8] {
        self.entries
            .get_index(index)
            .map(|(key, _)| key.as_slice())
            .expect("dirty entries stay")
    }

    /// Forgets every entry, clean or dirty, whose key `matches`.
    pub fn forget(&mut self, matches: impl Fn(&[u8]) -> bool) {
        let mut freed = 0;
        self.entries.retain(|key, slot| {
            let keep = !matches(key);
            if !keep {
                freed += cost(key, &slot.value);
            }
            keep
        });
        // Entries moved: index the dirty ones again.
        self.dirty.clear();
        for (index, (_, slot)) in self.entries.iter_mut().enumerate() {
            if slot.dirty.is_some() {
                slot.dirty = Some(self.dirty.len() as u32);
                self.dirty.push(index);
            }
        }
        self.shrink(freed);
        self.hand = 0;
    }

    fn grow(&mut self, bytes: usize) {
        self.bytes += bytes;
        self.budget.used.fetch_add(bytes, Ordering::Relaxed);
    }

    fn shrink(&mut self, bytes: usize) {
        self.bytes -= bytes;
        self.budget.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Evicts clean entries while the process's caches are over capacity,
    /// sparing (once) those used since the hand last passed them.
    fn evict(&mut self) {
        // Two turns of the hand clear every reference bit; past that, only
        // dirty entries are left.
        let mut steps = 2 * self.entries.len();
        while self.budget.over() && !self.only_dirty && !self.entries.is_empty() {
            if steps == 0 {
                self.only_dirty = true;
                break;
            }
            steps -= 1;
            if self.hand >= self.entries.len() {
                self.hand = 0;
            }
            let (_, slot) = self
                .entries
                .get_index(self.hand)
                .expect("the hand points into the map");
            if slot.dirty.is_some() || slot.referenced.replace(false) {
                self.hand += 1;
                continue;
            }
            let (key, slot) = self
                .entries
                .swap_remove_index(self.hand)
                .expect("the hand points into the map");
            self.shrink(cost(&key, &slot.value));
            // The last entry moved under the hand (it is considered next).
            if let Some(moved) = self
                .entries
                .get_index(self.hand)
                .and_then(|(_, slot)| slot.dirty)
            {
                self.dirty[moved as usize] = self.hand;
            }
        }
    }
}

impl Drop for RecordCache {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cost of an entry with a key and a value of up to 8 bytes.
    const ENTRY: usize = ENTRY_OVERHEAD + 16;

    #[cfg(feature = "jemalloc")]
    #[test]
    fn sizes_are_those_the_allocator_hands_out() {
        for n in (1..=40_000).chain([65_537, 1 << 20, (3 << 20) + 1]) {
            let block = Vec::<u8>::with_capacity(n);
            // SAFETY: the pointer is a live allocation of the process's allocator.
            let usable = unsafe { tikv_jemallocator::usable_size(block.as_ptr()) };
            assert_eq!(allocated(n), usable, "a request of {n} bytes");
        }
    }

    fn budget(capacity: usize) -> &'static CacheBudget {
        Box::leak(Box::new(CacheBudget::new(capacity)))
    }

    fn put(cache: &mut RecordCache, key: &[u8], value: &[u8]) {
        cache.put(
            key,
            Some(|mut b: Vec<u8>| {
                b.extend_from_slice(value);
                b
            }),
        );
    }

    /// The dirty entries as a commit writes them, in order.
    fn commit(cache: &mut RecordCache) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut written = Vec::new();
        cache.drain_dirty(|k, v| written.push((k.to_vec(), v.map(<[u8]>::to_vec))));
        written
    }

    /// Reads `key` (a miss: from RocksDB), then writes it.
    fn read_then_put(cache: &mut RecordCache, key: &[u8], value: &[u8]) {
        assert_eq!(cache.get(key), None);
        put(cache, key, value);
    }

    #[test]
    fn reads_see_clean_dirty_and_absent_entries() {
        let mut cache = RecordCache::new(budget(1 << 20), true);
        read_then_put(&mut cache, b"a", b"1");
        assert_eq!(cache.get(b"gone"), None);
        cache.put(b"gone", None::<fn(Vec<u8>) -> Vec<u8>>);
        cache.drain_dirty(|_, _| {});
        put(&mut cache, b"b", b"2");
        assert_eq!(cache.get(b"a"), Some(Some(Cow::Borrowed(&b"1"[..]))));
        assert_eq!(cache.get(b"gone"), Some(None));
        assert_eq!(cache.get(b"b"), Some(Some(Cow::Borrowed(&b"2"[..]))));
        cache.put(b"a", None::<fn(Vec<u8>) -> Vec<u8>>);
        assert_eq!(cache.get(b"a"), Some(None));
    }

    #[test]
    fn only_changes_since_the_last_commit_are_dirty() {
        let mut cache = RecordCache::new(budget(1 << 20), true);
        read_then_put(&mut cache, b"clean", b"0");
        cache.drain_dirty(|_, _| {});
        read_then_put(&mut cache, b"z", b"1");
        put(&mut cache, b"a", b"2");
        put(&mut cache, b"z", b"3");
        let mut dirty: Vec<_> = cache
            .dirty()
            .map(|(k, v)| (k.to_vec(), v.map(Cow::into_owned)))
            .collect();
        dirty.sort();
        assert_eq!(
            dirty,
            vec![
                (b"a".to_vec(), Some(b"2".to_vec())),
                (b"z".to_vec(), Some(b"3".to_vec()))
            ]
        );
        let written = commit(&mut cache);
        assert_eq!(
            written,
            vec![
                (b"a".to_vec(), Some(b"2".to_vec())),
                (b"z".to_vec(), Some(b"3".to_vec()))
            ]
        );
        assert!(cache.is_clean());
        assert_eq!(cache.get(b"z"), Some(Some(Cow::Borrowed(&b"3"[..]))));
    }

    #[test]
    fn eviction_keeps_the_shared_budget_and_spares_dirty_entries() {
        let shared = budget(20 * ENTRY);
        let mut first = RecordCache::new(shared, true);
        let mut second = RecordCache::new(shared, true);
        for i in 0..10u64 {
            put(&mut first, &i.to_be_bytes(), &[0; 8]);
        }
        for i in 0..1000u64 {
            read_then_put(&mut second, &i.to_be_bytes(), &[0; 8]);
            second.drain_dirty(|_, _| {});
            assert!(shared.used() <= shared.capacity + ENTRY);
        }
        // The dirty entries of the first cache all stayed; the second made room.
        assert_eq!(first.dirty().count(), 10);
        assert!(second.entries.len() <= 10);
        assert_eq!(shared.used(), first.bytes + second.bytes);
        drop(second);
        assert_eq!(shared.used(), first.bytes);
    }

    #[test]
    fn evicting_clean_entries_keeps_every_dirty_one_with_its_value() {
        let shared = budget(30 * ENTRY);
        let mut cache = RecordCache::new(shared, true);
        for i in 0..20u64 {
            read_then_put(&mut cache, &i.to_be_bytes(), &[0; 8]);
        }
        cache.drain_dirty(|_, _| {});
        // Dirty entries land last; each eviction moves the last one forward.
        for i in 100..125u64 {
            put(&mut cache, &i.to_be_bytes(), &i.to_be_bytes());
        }
        let written = commit(&mut cache);
        let expected: Vec<_> = (100..125u64)
            .map(|i| (i.to_be_bytes().to_vec(), Some(i.to_be_bytes().to_vec())))
            .collect();
        assert_eq!(written, expected);
    }

    #[test]
    fn dirty_entries_may_overfill_the_cache_until_the_commit() {
        let shared = budget(10 * ENTRY);
        let mut cache = RecordCache::new(shared, true);
        for i in 0..100u64 {
            read_then_put(&mut cache, &i.to_be_bytes(), &[0; 8]);
        }
        assert_eq!(cache.dirty().count(), 100);
        assert!(cache.is_full_of_dirty());
        cache.drain_dirty(|_, _| {});
        assert!(!cache.is_full_of_dirty());
        read_then_put(&mut cache, b"next", &[0; 8]);
        assert!(shared.used() <= shared.capacity);
        assert!(!cache.is_full_of_dirty());
    }

    #[test]
    fn without_retention_only_pending_writes_are_held() {
        let shared = budget(1 << 20);
        let mut cache = RecordCache::new(shared, false);
        read_then_put(&mut cache, b"k", b"1");
        assert_eq!(cache.get(b"k"), Some(Some(Cow::Borrowed(&b"1"[..]))));
        cache.drain_dirty(|_, _| {});
        assert_eq!(cache.get(b"k"), None);
        assert_eq!(shared.used(), 0);
    }

    #[test]
    fn entries_only_written_leave_at_the_commit() {
        let shared = budget(1 << 20);
        let mut cache = RecordCache::new(shared, true);
        put(&mut cache, b"once", b"1");
        read_then_put(&mut cache, b"read", b"2");
        assert_eq!(cache.get(b"once"), Some(Some(Cow::Borrowed(&b"1"[..]))));
        let mut written = Vec::new();
        cache.drain_dirty(|k, _| written.push(k.to_vec()));
        assert_eq!(written, vec![b"once".to_vec(), b"read".to_vec()]);
        // Read before the commit, "once" stays; a key never read does not.
        put(&mut cache, b"never read", b"3");
        cache.drain_dirty(|_, _| {});
        assert_eq!(cache.get(b"never read"), None);
        assert_eq!(cache.get(b"read"), Some(Some(Cow::Borrowed(&b"2"[..]))));
        assert_eq!(cache.get(b"once"), Some(Some(Cow::Borrowed(&b"1"[..]))));
        assert_eq!(shared.used(), cache.bytes);
    }

    #[test]
    fn recently_read_entries_outlive_the_others() {
        let shared = budget(4 * ENTRY);
        let mut cache = RecordCache::new(shared, true);
        read_then_put(&mut cache, b"hot", b"h");
        for i in 0..100u64 {
            assert!(cache.get(b"hot").is_some(), "evicted at {i}");
            read_then_put(&mut cache, &i.to_be_bytes(), b"c");
            cache.drain_dirty(|_, _| {});
        }
    }

    /// Adds `n` to the `u64` under `key`, held decoded (absent below: 0).
    fn add_decoded(cache: &mut RecordCache, key: &[u8], n: u64) {
        let held = cache
            .decoded(
                key,
                |held| held.as_any().is::<Option<u64>>(),
                |cached| {
                    let value = cached.flatten().map(|v| postcard::from_bytes(v).unwrap());
                    Ok::<_, ()>(Box::new(value.or(Some(0u64))))
                },
            )
            .unwrap();
        let value = held.as_any_mut().downcast_mut::<Option<u64>>().unwrap();
        *value = value.map(|v| v + n);
    }

    #[test]
    fn values_held_decoded_survive_eviction_and_are_encoded_at_the_commit() {
        let shared = budget(8 * ENTRY);
        let mut cache = RecordCache::new(shared, true);
        for i in 0..8u64 {
            read_then_put(&mut cache, &i.to_be_bytes(), &[0; 8]);
        }
        cache.drain_dirty(|_, _| {});
        // Each new entry evicts a clean one, moving others under the hand.
        for round in 1..=3 {
            for i in 100..110u64 {
                add_decoded(&mut cache, &i.to_be_bytes(), i);
                let encoded = cache.get(&i.to_be_bytes()).unwrap().unwrap();
                assert_eq!(postcard::from_bytes::<u64>(&encoded).unwrap(), round * i);
            }
        }
        assert!(cache.dirty_keys().all(|(_, present)| present));
        let written = commit(&mut cache);
        let expected: Vec<_> = (100..110u64)
            .map(|i| {
                (
                    i.to_be_bytes().to_vec(),
                    Some(postcard::to_stdvec(&(3 * i)).unwrap()),
                )
            })
            .collect();
        assert_eq!(written, expected);
        assert_eq!(shared.used(), cache.bytes);
    }

    #[test]
    fn forgetting_frees_clean_and_dirty_entries() {
        let shared = budget(1 << 20);
        let mut cache = RecordCache::new(shared, true);
        read_then_put(&mut cache, b"p1/a", b"1");
        cache.drain_dirty(|_, _| {});
        put(&mut cache, b"p1/b", b"2");
        put(&mut cache, b"p2/c", b"3");
        cache.forget(|k| k.starts_with(b"p1/"));
        assert_eq!(cache.get(b"p1/a"), None);
        assert_eq!(cache.dirty().count(), 1);
        assert_eq!(shared.used(), cache.bytes);
    }
}
