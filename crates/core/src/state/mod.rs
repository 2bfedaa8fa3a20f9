//! Per-service state in RocksDB, with a write-back record cache in front.
//!
//! Writes go to the record cache (see the `cache` module) and reach RocksDB
//! in one atomic write batch at [`StateStore::commit`], together with the
//! runtime's metadata for the same partitions: the input offsets the state
//! reflects, stream time, timers and the changelog position. Because state
//! and offsets land in one batch, a restart resumes exactly where the state
//! left off. The cache keeps recently used values after the commit, so the
//! hot keys of a stream are read without touching RocksDB. RocksDB's
//! write-ahead log is off, as in Kafka Streams: the changelog is the log. A
//! crash loses the memtables, which takes the state back to its last flush as
//! a whole (a batch never spans two memtables), offsets included; the restore
//! then replays the changelog from the position that flushed state records,
//! and the input resumes from where that brings it. Keys start with a
//! namespace byte and the input partition (4 bytes, big-endian), so each
//! partition's state can be committed, discarded, changelogged and restored
//! on its own.

mod cache;
mod timer_key;

use std::any::Any;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, Options, ReadOptions, WriteBatch,
    WriteBufferManager, WriteOptions, DB,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use cache::{CacheBudget, Decoded, RecordCache};
use timer_key::TimerKey;

/// A state failure: storage or a value that does not deserialize.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("state value under key {key:?} does not deserialize: {source}")]
    Corrupt {
        key: String,
        source: postcard::Error,
    },
}

/// Key namespace of user state.
const USER: u8 = b'u';
/// Key namespace of runtime metadata (offsets, stream time).
const META: u8 = b'm';
/// Key namespace of timers.
const TIMER: u8 = b't';
/// Key namespace of the local changelog position; never itself changelogged.
const LOCAL: u8 = b'l';
/// Key (under [`LOCAL`]) of when a partition's state last matched its changelog.
const SYNCED_AT: &[u8] = b"synced_at";
/// Key (under [`META`]) of a partition's [`CommitMarker`]s in the changelog.
const COMMIT: &[u8] = b"commit";

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The partition's stream time (record timestamps, idle advance).
    Event,
    /// The wall clock.
    Wall,
}

impl Clock {
    fn tag(self) -> u8 {
        match self {
            Clock::Event => b'e',
            Clock::Wall => b'w',
        }
    }
}

/// The process-wide memory budget of every state store: a quarter for the
/// record caches, the rest for one block cache that also carries the
/// memtables (write buffers), so total state memory stays within the
/// configured bytes however many stores the process opens. (Half for the
/// record caches, alternated with a quarter: rule evaluation with 1M
/// customers 1.06-1.11x, ingest 0.93-0.98x, the sessionizer unchanged.)
pub struct StateMemory {
    cache: Cache,
    write_buffers: WriteBufferManager,
    records: CacheBudget,
}

static MEMORY: OnceLock<StateMemory> = OnceLock::new();

impl StateMemory {
    /// The process's budget, created with `bytes` on first use.
    pub fn global(bytes: usize) -> &'static StateMemory {
        MEMORY.get_or_init(|| {
            let records = bytes / 4;
            let cache = Cache::new_lru_cache(bytes - records);
            // Memtables are charged to the block cache; half the budget may
            // be write buffers.
            let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
                bytes / 2,
                false,
                cache.clone(),
            );
            StateMemory {
                cache,
                write_buffers,
                records: CacheBudget::new(records),
            }
        })
    }

    /// Bytes held by the record caches.
    pub fn record_cache_bytes(&self) -> usize {
        self.records.used()
    }

    /// Bytes held by the block cache, memtables included.
    pub fn block_cache_bytes(&self) -> usize {
        self.cache.get_usage()
    }

    /// Bytes held by memtables.
    pub fn memtable_bytes(&self) -> usize {
        self.write_buffers.get_usage()
    }
}

/// How a service uses its state, which decides what is worth caching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Values read and written back on every record of their key (a
    /// customer's sessions, profile, context): the record cache keeps values
    /// after their commit, and a memtable bloom filter answers reads of
    /// absent keys.
    ReadModifyWrite,
    /// Keys mostly written once and seldom read again, whose reads of absent
    /// keys the service rules out with its own filters (ingest's event ids
    /// and identity links): the record cache holds only uncommitted writes
    /// (Kafka Streams' `withCachingDisabled`), and the memtable has no bloom
    /// filter, whose upkeep on every write would buy nothing (ingest's
    /// bench without it: median 1.11x over eight alternated pairs).
    WriteOnce,
}

/// One pending change, as it goes to RocksDB and to the changelog.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub partition: i32,
    pub key: Vec<u8>,
    /// `None` deletes the key (a tombstone in the changelog).
    pub value: Option<Vec<u8>>,
}

/// Where one commit's changes to a partition begin and end in its changelog.
/// A crash while a commit is being produced leaves its first changes in the
/// changelog without its end: a restore leaves those out (they are torn),
/// and the next commit writes their keys' restored values over them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitMarker {
    Begin = 0,
    End = 1,
}

impl CommitMarker {
    /// The changelog record of this marker for `partition`. Every marker of
    /// a partition has the same key, so compaction keeps only the latest.
    pub fn record(self, partition: i32) -> Change {
        Change {
            partition,
            key: scoped(META, partition, COMMIT),
            value: Some(vec![self as u8]),
        }
    }

    /// The marker a changelog record (`key`, `value`) is, if it is one.
    pub fn of(key: &[u8], value: Option<&[u8]>) -> Option<CommitMarker> {
        if key.len() != 5 + COMMIT.len() || key[0] != META || &key[5..] != COMMIT {
            return None;
        }
        match value? {
            [0] => Some(CommitMarker::Begin),
            [1] => Some(CommitMarker::End),
            _ => None,
        }
    }
}

/// The RocksDB-backed state of one service instance.
pub struct StateStore {
    db: Arc<DB>,
    /// Recently used values and the writes pending since the last commit;
    /// timers apart: they are scanned in order.
    cache: RecordCache,
    /// Timers set (`true`) or cancelled (`false`) since the last commit.
    timers: BTreeMap<TimerKey, bool>,
    /// Per partition and clock, a time no live timer is earlier than: timer
    /// scans start there instead of wading through the tombstones of every
    /// timer fired or cancelled before (RocksDB drops them only when
    /// compaction reaches the last level).
    timer_floors: HashMap<(i32, u8), i64>,
    memory: &'static StateMemory,
}

impl StateStore {
    /// Opens (creating if needed) the store in `dir` for the default
    /// [`Workload::ReadModifyWrite`], within the process's memory budget of
    /// `memory_bytes` (fixed by the first store opened).
    pub fn open(dir: &Path, memory_bytes: usize) -> Result<Self, StateError> {
        Self::open_for(dir, memory_bytes, Workload::ReadModifyWrite)
    }

    /// Opens (creating if needed) the store in `dir` for `workload`, within
    /// the process's memory budget of `memory_bytes` (fixed by the first
    /// store opened).
    pub fn open_for(
        dir: &Path,
        memory_bytes: usize,
        workload: Workload,
    ) -> Result<Self, StateError> {
        let memory = StateMemory::global(memory_bytes);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&memory.cache);
        table.set_cache_index_and_filter_blocks(true);
        table.set_cache_index_and_filter_blocks_with_high_priority(true);
        table.set_bloom_filter(10.0, false);
        // Index and filter in 4 KiB partitions under a small top level: a
        // point read loads the partitions it needs, not a file's whole
        // filter (1.2 MiB for 1M keys), which a budget too small to hold
        // every filter evicted and read back on every get. With 1M keys in a
        // 64 MiB budget, gets ran 2.5x faster.
        table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_partition_filters(true);
        table.set_metadata_block_size(4096);
        // Every point read consults the filter and index of each L0 file and
        // the top-level index of each level: pinned, they are neither looked
        // up in the block cache on every read nor evicted by data blocks
        // (and still charged to the budget).
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        table.set_pin_top_level_index_and_filter(true);
        // Tried in rule evaluation over 1M customers, alternated with this
        // and not kept: a hash index in data blocks (0.95-1.01x), a hyper
        // clock block cache (1.00x), no filters on the last level
        // (`optimize_filters_for_hits`: 0.86x: the many reads of absent
        // keys, no open cart or alert, then search its blocks).
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_block_based_table_factory(&table);
        options.set_write_buffer_manager(&memory.write_buffers);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let read_modify_write = workload == Workload::ReadModifyWrite;
        if read_modify_write {
            // Many reads of a streaming state miss (a new customer): a
            // memtable bloom filter answers those without searching the
            // memtable.
            options.set_memtable_prefix_bloom_ratio(0.1);
            options.set_memtable_whole_key_filtering(true);
        }
        let db = DB::open(&options, dir)?;
        Ok(StateStore {
            db: Arc::new(db),
            cache: RecordCache::new(&memory.records, read_modify_write),
            timers: BTreeMap::new(),
            timer_floors: HashMap::new(),
            memory,
        })
    }

    /// The process's state memory, for metrics.
    pub fn memory(&self) -> &'static StateMemory {
        self.memory
    }

    /// A view of the store scoped to one input partition.
    pub fn partition(&mut self, partition: i32) -> PartitionState<'_> {
        PartitionState {
            store: self,
            prefix: partition_prefix(USER, partition),
        }
    }

    /// The stream time of `partition`, as last recorded.
    pub fn stream_time(&self, partition: i32) -> Result<Option<i64>, StateError> {
        self.get_decoded(&scoped(META, partition, b"stream_time"))
    }

    /// Records the stream time of `partition`.
    pub fn set_stream_time(&mut self, partition: i32, time: i64) {
        self.put_encoded(&scoped(META, partition, b"stream_time"), &time);
    }

    /// The next offset of `topic`/`partition` the state has not applied yet.
    pub fn input_offset(&self, topic: &str, partition: i32) -> Result<Option<i64>, StateError> {
        self.get_decoded(&offset_key(topic, partition))
    }

    /// Records that the state reflects `topic`/`partition` up to `next_offset` (exclusive).
    pub fn set_input_offset(&mut self, topic: &str, partition: i32, next_offset: i64) {
        self.put_encoded(&offset_key(topic, partition), &next_offset);
    }

    /// Schedules a timer at `at` for `key` on `partition`.
    pub fn set_timer(&mut self, partition: i32, clock: Clock, at: i64, key: &[u8]) {
        if let Some(floor) = self.timer_floors.get_mut(&(partition, clock.tag())) {
            *floor = (*floor).min(at);
        }
        self.timers
            .insert(TimerKey::new(timer_key(partition, clock, at, key)), true);
    }

    /// Cancels a timer set with the same arguments.
    pub fn cancel_timer(&mut self, partition: i32, clock: Clock, at: i64, key: &[u8]) {
        self.timers
            .insert(TimerKey::new(timer_key(partition, clock, at, key)), false);
    }

    /// Timers of `partition` on `clock` due at `now` (`at <= now`), earliest first.
    pub fn due_timers(
        &mut self,
        partition: i32,
        clock: Clock,
        now: i64,
    ) -> Result<Vec<(i64, Vec<u8>)>, StateError> {
        self.first_due_timers(partition, clock, now, usize::MAX)
    }

    /// The earliest `limit` of the timers [`Self::due_timers`] returns; the
    /// rest stay due for the next call.
    pub fn first_due_timers(
        &mut self,
        partition: i32,
        clock: Clock,
        now: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Vec<u8>)>, StateError> {
        let floor = self
            .timer_floors
            .get(&(partition, clock.tag()))
            .copied()
            .unwrap_or(i64::MIN);
        if now < floor {
            // Nothing is live before the floor; `now` went back (a wall clock
            // stepped back) or a caller asked about the past.
            return Ok(Vec::new());
        }
        let from = timer_key(partition, clock, floor, &[]);
        let to = match now.checked_add(1) {
            Some(next) => timer_key(partition, clock, next, &[]),
            None => scoped(TIMER, partition, &[clock.tag() + 1]),
        };
        let due: Vec<(i64, Vec<u8>)> = self
            .keys_between(&from, &to, limit)?
            .into_iter()
            .map(|k| {
                let at = time_from_bytes(&k[6..14]);
                (at, k[14..].to_vec())
            })
            .collect();
        // Nothing live before the first due timer, nor (with none due) up to `now`.
        let floor = due.first().map_or(now.saturating_add(1), |(at, _)| *at);
        self.timer_floors.insert((partition, clock.tag()), floor);
        Ok(due)
    }

    /// The timers of `partition` under exactly `key`, on either clock, as
    /// (clock, due time). Scans every timer of the partition.
    pub fn timers_under(
        &self,
        partition: i32,
        key: &[u8],
    ) -> Result<Vec<(Clock, i64)>, StateError> {
        let from = scoped(TIMER, partition, &[]);
        let to = scoped(TIMER, partition + 1, &[]);
        Ok(self
            .keys_between(&from, &to, usize::MAX)?
            .into_iter()
            .filter(|k| &k[14..] == key)
            .map(|k| {
                let clock = if k[5] == Clock::Event.tag() {
                    Clock::Event
                } else {
                    Clock::Wall
                };
                (clock, time_from_bytes(&k[6..14]))
            })
            .collect())
    }

    /// Pending changes that belong in the changelog.
    pub fn pending_changes(&mut self) -> Vec<Change> {
        // Values held decoded are encoded once, for the changelog and the commit.
        self.cache.seal();
        let timers = self
            .timers
            .iter()
            .map(|(k, &live)| (k.as_bytes(), live.then_some(Cow::Borrowed(&[][..]))));
        self.cache
            .dirty()
            .chain(timers)
            .filter(|(k, _)| k[0] != LOCAL)
            .map(|(k, v)| Change {
                partition: partition_of(k),
                key: k.to_vec(),
                value: v.map(Cow::into_owned),
            })
            .collect()
    }

    /// The values of `keys` (full state keys of `partition`) as the next
    /// commit leaves them, pending changes over committed state, as
    /// changelog records that assert them: a tombstone for a key absent.
    pub fn current(&self, partition: i32, keys: Vec<Vec<u8>>) -> Result<Vec<Change>, StateError> {
        keys.into_iter()
            .map(|key| {
                let pending = if key.first() == Some(&TIMER) {
                    self.timers
                        .get(&TimerKey::new(key.clone()))
                        .map(|&live| live.then(Vec::new))
                } else {
                    self.cache.get(&key).map(|v| v.map(Cow::into_owned))
                };
                let value = match pending {
                    Some(value) => value,
                    None => self.db.get(&key)?,
                };
                Ok(Change {
                    partition,
                    key,
                    value,
                })
            })
            .collect()
    }

    /// Records the changelog position of `partition`, committed with the state.
    pub fn set_changelog_position(&mut self, partition: i32, next_offset: i64) {
        self.put_encoded(&scoped(LOCAL, partition, b"changelog"), &next_offset);
    }

    /// Records that the state of `partition` is, as of `at` (ms since the
    /// epoch), the changelog up to its position: how stale local state is
    /// when the partition comes back (see [`Restorer::synced_at`]).
    pub fn set_synced_at(&mut self, partition: i32, at: i64) {
        self.put_encoded(&scoped(LOCAL, partition, SYNCED_AT), &at);
    }

    /// Forgets what is cached of `partition` and its uncommitted changes (it
    /// moved to another instance, or is about to be restored).
    pub fn discard(&mut self, partition: i32) {
        self.cache.forget(|k| partition_of(k) == partition);
        self.timers
            .retain(|k, _| partition_of(k.as_bytes()) != partition);
        // A new owner may restore timers of any time.
        self.timer_floors.retain(|(p, _), _| *p != partition);
    }

    /// Writes every pending change to RocksDB in one atomic batch.
    pub fn commit(&mut self) -> Result<(), StateError> {
        if self.cache.is_clean() && self.timers.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        // In key order: consecutive inserts walk neighbouring parts of the
        // memtable's skip list (measured faster than hash order).
        self.cache
            .drain_dirty(|key, value| stage(&mut batch, key, value));
        for (key, live) in std::mem::take(&mut self.timers) {
            stage(&mut batch, key.as_bytes(), live.then_some(&[]));
        }
        write_unlogged(&self.db, batch)
    }

    /// Whether the record cache is over its share of the memory budget with
    /// only uncommitted writes in it: a commit is due, to make room.
    pub fn wants_commit(&self) -> bool {
        self.cache.is_full_of_dirty()
    }

    /// A handle that restores partitions from their changelog while the
    /// store goes on serving the other partitions.
    pub fn restorer(&self) -> Restorer {
        Restorer {
            db: Arc::clone(&self.db),
        }
    }

    /// A handle reading committed user state, for other threads.
    pub fn reader(&self) -> StateReader {
        StateReader {
            db: Arc::clone(&self.db),
        }
    }

    /// The estimated number of keys in RocksDB (committed state only).
    pub fn estimated_keys(&self) -> u64 {
        self.db
            .property_int_value("rocksdb.estimate-num-keys")
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    /// The value under `key`: from the cache, else from RocksDB (not cached:
    /// a value read is nearly always written back, and then cached).
    fn get_decoded<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StateError> {
        match self.cache.get(key) {
            Some(cached) => cached.map(|v| decode(key, &v)).transpose(),
            None => self
                .db
                .get_pinned(key)?
                .map(|v| decode(key, &v))
                .transpose(),
        }
    }

    /// Sets `key` to `value`, re-using the cached entry's buffer: a hot key
    /// costs no allocation.
    fn put_encoded<T: Serialize>(&mut self, key: &[u8], value: &T) {
        self.cache
            .put(key, Some(|buffer| encode_into(value, buffer)));
    }

    fn delete(&mut self, key: &[u8]) {
        self.cache.put(key, None::<fn(Vec<u8>) -> Vec<u8>>);
    }

    /// Calls `f` with the value under `key` held decoded in the cache,
    /// decoding it first if it is not.
    fn update_decoded<T, R>(
        &mut self,
        key: &[u8],
        f: impl FnOnce(&mut Option<T>) -> R,
    ) -> Result<R, StateError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        let db = &self.db;
        let held = self.cache.decoded(
            key,
            |held| held.as_any().is::<Option<T>>(),
            |cached| {
                let value: Option<T> = match cached {
                    Some(encoded) => encoded.map(|v| decode(key, v)).transpose()?,
                    None => db.get_pinned(key)?.map(|v| decode(key, &v)).transpose()?,
                };
                Ok::<_, StateError>(Box::new(value))
            },
        )?;
        let value = held
            .as_any_mut()
            .downcast_mut::<Option<T>>()
            .expect("the entry holds the type asked for");
        Ok(f(value))
    }

    /// Committed and pending keys with `from <= key < to`, in key order, at
    /// most `limit`. RocksDB is read only within the bounds, so tombstones
    /// outside them are never visited.
    fn keys_between(
        &self,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StateError> {
        let in_range = |k: &[u8]| k >= from && k < to;
        let mut pending: Vec<(&[u8], bool)> = if from[0] == TIMER {
            self.timers
                .range(TimerKey::new(from.to_vec())..TimerKey::new(to.to_vec()))
                .map(|(k, &live)| (k.as_bytes(), live))
                .collect()
        } else {
            let mut pending: Vec<(&[u8], bool)> = self
                .cache
                .dirty_keys()
                .filter(|(k, _)| in_range(k))
                .collect();
            pending.sort_unstable();
            pending
        };
        pending.reverse();
        let mut keys = Vec::new();
        let mut options = ReadOptions::default();
        options.set_iterate_lower_bound(from.to_vec());
        options.set_iterate_upper_bound(to.to_vec());
        let mut iter = self.db.raw_iterator_opt(options);
        iter.seek(from);
        while keys.len() < limit {
            let committed = iter.key();
            // The smaller of the next committed and the next pending key; pending wins a tie.
            let next_pending = pending.last().copied();
            match (committed, next_pending) {
                (None, None) => break,
                (Some(c), Some((p, live))) if p <= c => {
                    if p == c {
                        iter.next();
                    }
                    pending.pop();
                    if live {
                        keys.push(p.to_vec());
                    }
                }
                (Some(c), _) => {
                    keys.push(c.to_vec());
                    iter.next();
                }
                (None, Some((p, live))) => {
                    pending.pop();
                    if live {
                        keys.push(p.to_vec());
                    }
                }
            }
        }
        iter.status()?;
        Ok(keys)
    }
}

/// Restores partitions of a [`StateStore`] from changelog records, writing
/// committed state directly; the store must not touch those partitions meanwhile.
#[derive(Clone)]
pub struct Restorer {
    db: Arc<DB>,
}

impl Restorer {
    /// The changelog offset (exclusive) the committed state of `partition` reflects.
    pub fn changelog_position(&self, partition: i32) -> Result<Option<i64>, StateError> {
        self.local(partition, b"changelog")
    }

    /// When the state of `partition` last matched its changelog (written at
    /// every commit while the partition is owned, and by restores).
    pub fn synced_at(&self, partition: i32) -> Result<Option<i64>, StateError> {
        self.local(partition, SYNCED_AT)
    }

    /// The committed value of `partition`'s local key `name`.
    fn local(&self, partition: i32, name: &[u8]) -> Result<Option<i64>, StateError> {
        let key = scoped(LOCAL, partition, name);
        self.db.get(&key)?.map(|v| decode(&key, &v)).transpose()
    }

    /// Applies changelog records of `partition` straight to RocksDB, with the
    /// changelog position they reach, in one batch, as of `now` (ms).
    pub fn restore(
        &self,
        partition: i32,
        records: &[Change],
        next_offset: i64,
        now: i64,
    ) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        for change in records {
            stage(&mut batch, &change.key, change.value.as_deref());
        }
        batch.put(scoped(LOCAL, partition, b"changelog"), encode(&next_offset));
        batch.put(scoped(LOCAL, partition, SYNCED_AT), encode(&now));
        write_unlogged(&self.db, batch)
    }

    /// Deletes every committed key of `partition` (before a full restore).
    pub fn wipe(&self, partition: i32) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        for namespace in [USER, META, TIMER, LOCAL] {
            let from = scoped(namespace, partition, &[]);
            let to = scoped(namespace, partition + 1, &[]);
            batch.delete_range(from, to);
        }
        write_unlogged(&self.db, batch)
    }
}

/// Reads committed user state from any thread (interactive queries): what the
/// last commit wrote, not the changes pending since.
#[derive(Clone)]
pub struct StateReader {
    db: Arc<DB>,
}

impl StateReader {
    /// The committed value under `key` of `partition`, if any.
    pub fn get<T: DeserializeOwned>(
        &self,
        partition: i32,
        key: &[u8],
    ) -> Result<Option<T>, StateError> {
        let full = scoped(USER, partition, key);
        self.db
            .get_pinned(&full)?
            .map(|v| decode(&full, &v))
            .transpose()
    }
}

/// The state of one input partition; keys are relative to the partition.
pub struct PartitionState<'a> {
    store: &'a mut StateStore,
    prefix: [u8; 5],
}

impl PartitionState<'_> {
    fn key(&self, key: &[u8]) -> Vec<u8> {
        [&self.prefix[..], key].concat()
    }

    /// The value under `key`, if any.
    pub fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StateError> {
        with_full_key(self.prefix, key, |full| self.store.get_decoded(full))
    }

    /// Sets `key` to `value`.
    pub fn put<T: Serialize>(&mut self, key: &[u8], value: &T) {
        with_full_key(self.prefix, key, |full| self.store.put_encoded(full, value));
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: &[u8]) {
        with_full_key(self.prefix, key, |full| self.store.delete(full));
    }

    /// Lets `f` change the value under `key` in place (`None`: absent; left
    /// `None`, the key is deleted) and returns what `f` returns. The value
    /// stays decoded in the record cache until the commit encodes it, so a
    /// key updated again and again between commits is decoded and encoded
    /// once: for a hot per-key aggregate. The key is written at the commit
    /// whether or not `f` changed it. `get` and `put` of the key still work
    /// meanwhile (a `get` encodes it again to decode a copy).
    pub fn update<T, R>(
        &mut self,
        key: &[u8],
        f: impl FnOnce(&mut Option<T>) -> R,
    ) -> Result<R, StateError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        with_full_key(self.prefix, key, |full| self.store.update_decoded(full, f))
    }

    /// Keys starting with `prefix` and sorting after `after` (from the first,
    /// if `None`), committed and pending alike, in order; at most `limit`.
    pub fn keys(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StateError> {
        let first = self.key(prefix);
        let Some(to) = successor(&first) else {
            return Ok(Vec::new());
        };
        let from = match after {
            // The least key after `after`.
            Some(after) => [&self.prefix[..], after, &[0]].concat().max(first),
            None => first,
        };
        if from >= to {
            return Ok(Vec::new());
        }
        let keys = self.store.keys_between(&from, &to, limit)?;
        Ok(keys
            .into_iter()
            .map(|mut k| {
                k.drain(..self.prefix.len());
                k
            })
            .collect())
    }

    /// Calls `f` with every key starting with `prefix`, committed and pending
    /// alike, in order, reading `chunk` keys at a time.
    pub fn for_each_key(
        &self,
        prefix: &[u8],
        chunk: usize,
        mut f: impl FnMut(&[u8]),
    ) -> Result<(), StateError> {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let keys = self.keys(prefix, after.as_deref(), chunk)?;
            keys.iter().for_each(|key| f(key));
            if keys.len() < chunk {
                return Ok(());
            }
            after = keys.into_iter().next_back();
        }
    }
}

/// The least key greater than every key starting with `prefix`, if any.
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut next = prefix.to_vec();
    while let Some(last) = next.pop() {
        if last < u8::MAX {
            next.push(last + 1);
            return Some(next);
        }
    }
    None
}

/// Adds to `batch` the write of `value` under `key`, or its deletion if `None`.
fn stage(batch: &mut WriteBatch, key: &[u8], value: Option<&[u8]>) {
    match value {
        Some(v) => batch.put(key, v),
        None => batch.delete(key),
    }
}

/// Writes `batch` atomically, without the write-ahead log (see the module doc).
fn write_unlogged(db: &DB, batch: WriteBatch) -> Result<(), StateError> {
    let mut options = WriteOptions::default();
    options.disable_wal(true);
    db.write_opt(batch, &options)?;
    Ok(())
}

/// Longest full key (prefix included) built on the stack rather than the heap.
const STACK_KEY: usize = 128;

/// Calls `f` with `prefix` followed by `key`, built on the stack when it is
/// short, as it is for each state access.
fn with_full_key<R>(prefix: [u8; 5], key: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    let len = prefix.len() + key.len();
    if len <= STACK_KEY {
        let mut full = [0u8; STACK_KEY];
        full[..prefix.len()].copy_from_slice(&prefix);
        full[prefix.len()..len].copy_from_slice(key);
        f(&full[..len])
    } else {
        f(&[&prefix[..], key].concat())
    }
}

/// Namespace byte and partition, the start of every key; on the stack, as it is
/// built for each state access.
fn partition_prefix(namespace: u8, partition: i32) -> [u8; 5] {
    let [a, b, c, d] = partition.to_be_bytes();
    [namespace, a, b, c, d]
}

fn scoped(namespace: u8, partition: i32, key: &[u8]) -> Vec<u8> {
    [&partition_prefix(namespace, partition)[..], key].concat()
}

fn partition_of(key: &[u8]) -> i32 {
    i32::from_be_bytes([key[1], key[2], key[3], key[4]])
}

fn offset_key(topic: &str, partition: i32) -> Vec<u8> {
    scoped(META, partition, &[b"offset/", topic.as_bytes()].concat())
}

fn timer_key(partition: i32, clock: Clock, at: i64, key: &[u8]) -> Vec<u8> {
    scoped(
        TIMER,
        partition,
        &[&[clock.tag()][..], &time_bytes(at), key].concat(),
    )
}

/// Order-preserving bytes of a time: the sign bit flipped, big-endian.
fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

fn time_from_bytes(bytes: &[u8]) -> i64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(bytes);
    (u64::from_be_bytes(raw) ^ (1 << 63)) as i64
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    encode_into(value, Vec::new())
}

/// Appends `value` to `buffer`.
fn encode_into<T: Serialize>(value: &T, buffer: Vec<u8>) -> Vec<u8> {
    // postcard only fails on types serde cannot describe (e.g. maps with unknown length), a bug.
    postcard::to_extend(value, buffer).expect("state values are plain serde structs")
}

/// A typed state value held decoded in the record cache; `None` is absent.
impl<T: Serialize + Send + 'static> Decoded for Option<T> {
    fn encode(&self, buffer: Vec<u8>) -> Option<Vec<u8>> {
        self.as_ref().map(|value| encode_into(value, buffer))
    }

    fn is_present(&self) -> bool {
        self.is_some()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StateError> {
    postcard::from_bytes(bytes).map_err(|source| StateError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMORY: usize = 64 << 20;

    fn open() -> (tempfile::TempDir, StateStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path(), MEMORY).unwrap();
        (dir, store)
    }

    #[test]
    fn pending_writes_are_readable_before_commit() {
        let (_dir, mut store) = open();
        store.partition(0).put(b"k", &7u32);
        assert_eq!(store.partition(0).get::<u32>(b"k").unwrap(), Some(7));
        assert_eq!(store.partition(1).get::<u32>(b"k").unwrap(), None);
    }

    #[test]
    fn committed_state_and_offsets_survive_reopen_and_uncommitted_do_not() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = StateStore::open(dir.path(), MEMORY).unwrap();
            store.partition(3).put(b"a", &"kept".to_string());
            store.set_stream_time(3, 42);
            store.set_input_offset("events", 3, 17);
            store.commit().unwrap();
            store.partition(3).put(b"b", &"lost".to_string());
            store.set_input_offset("events", 3, 18);
        }
        let mut store = StateStore::open(dir.path(), MEMORY).unwrap();
        assert_eq!(
            store.partition(3).get::<String>(b"a").unwrap().as_deref(),
            Some("kept")
        );
        assert_eq!(store.partition(3).get::<String>(b"b").unwrap(), None);
        assert_eq!(store.stream_time(3).unwrap(), Some(42));
        assert_eq!(store.input_offset("events", 3).unwrap(), Some(17));
        assert_eq!(store.input_offset("events", 4).unwrap(), None);
    }

    #[test]
    fn due_timers_merge_committed_and_pending_changes() {
        let (_dir, mut store) = open();
        for at in [1, 2, 3] {
            store.set_timer(0, Clock::Wall, at, b"k");
        }
        store.commit().unwrap();
        store.cancel_timer(0, Clock::Wall, 2, b"k");
        store.set_timer(0, Clock::Wall, 4, b"k");
        store.set_timer(0, Clock::Wall, 9, b"k");
        let due: Vec<i64> = store
            .due_timers(0, Clock::Wall, 5)
            .unwrap()
            .into_iter()
            .map(|(at, _)| at)
            .collect();
        assert_eq!(due, vec![1, 3, 4]);
    }

    #[test]
    fn a_backlog_of_due_timers_comes_a_chunk_at_a_time_in_time_order() {
        let (_dir, mut store) = open();
        for at in (0..10).rev() {
            store.set_timer(0, Clock::Wall, at, b"k");
        }
        store.commit().unwrap();
        let mut fired = Vec::new();
        for round in 0..4 {
            let due = store.first_due_timers(0, Clock::Wall, 100, 4).unwrap();
            assert!(due.len() <= 4);
            for (at, key) in due {
                store.cancel_timer(0, Clock::Wall, at, &key);
                fired.push(at);
            }
            if round == 1 {
                store.commit().unwrap();
            }
        }
        assert_eq!(fired, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn timers_come_due_in_time_order_per_clock_and_partition() {
        let (_dir, mut store) = open();
        store.set_timer(0, Clock::Event, 30, b"c");
        store.set_timer(0, Clock::Event, -5, b"a");
        store.set_timer(0, Clock::Event, 10, b"b");
        store.set_timer(0, Clock::Wall, 1, b"w");
        store.set_timer(1, Clock::Event, 1, b"other");
        store.commit().unwrap();
        store.cancel_timer(0, Clock::Event, 10, b"b");
        let due = store.due_timers(0, Clock::Event, 30).unwrap();
        assert_eq!(due, vec![(-5, b"a".to_vec()), (30, b"c".to_vec())]);
        assert_eq!(store.due_timers(0, Clock::Event, 29).unwrap().len(), 1);
        assert_eq!(
            store.due_timers(0, Clock::Wall, i64::MAX).unwrap(),
            vec![(1, b"w".to_vec())]
        );
    }

    #[test]
    fn timers_under_a_key_span_both_clocks_and_pending_changes() {
        let (_dir, mut store) = open();
        store.set_timer(0, Clock::Event, 5, b"k");
        store.set_timer(0, Clock::Wall, 7, b"k");
        store.set_timer(0, Clock::Wall, 7, b"kk");
        store.set_timer(1, Clock::Wall, 7, b"k");
        store.commit().unwrap();
        store.set_timer(0, Clock::Event, -3, b"k");
        store.cancel_timer(0, Clock::Event, 5, b"k");
        let mut under = store.timers_under(0, b"k").unwrap();
        under.sort_by_key(|(_, at)| *at);
        assert_eq!(under, vec![(Clock::Event, -3), (Clock::Wall, 7)]);
    }

    #[test]
    fn a_timer_set_before_the_last_scan_still_comes_due() {
        let (_dir, mut store) = open();
        store.set_timer(0, Clock::Event, 10, b"a");
        store.commit().unwrap();
        assert_eq!(store.due_timers(0, Clock::Event, 20).unwrap().len(), 1);
        store.cancel_timer(0, Clock::Event, 10, b"a");
        store.commit().unwrap();
        assert!(store.due_timers(0, Clock::Event, 30).unwrap().is_empty());
        store.set_timer(0, Clock::Event, 5, b"b");
        assert_eq!(
            store.due_timers(0, Clock::Event, 30).unwrap(),
            vec![(5, b"b".to_vec())]
        );
        store.commit().unwrap();
        store.discard(0);
        assert_eq!(store.due_timers(0, Clock::Event, 30).unwrap().len(), 1);
    }

    #[test]
    fn a_clock_stepping_back_finds_nothing_due_until_it_catches_up() {
        let (_dir, mut store) = open();
        store.set_timer(0, Clock::Wall, 1_000, b"a");
        assert!(store.due_timers(0, Clock::Wall, 900).unwrap().is_empty());
        assert!(store.due_timers(0, Clock::Wall, 500).unwrap().is_empty());
        assert_eq!(
            store.due_timers(0, Clock::Wall, 1_000).unwrap(),
            vec![(1_000, b"a".to_vec())]
        );
        assert!(store.due_timers(0, Clock::Wall, 999).unwrap().is_empty());
    }

    #[test]
    fn every_key_with_a_prefix_is_visited_once_across_chunks() {
        let (_dir, mut store) = open();
        let mut state = store.partition(0);
        for i in 0..7u8 {
            state.put(&[b'p', i], &i);
        }
        state.put(b"q", &0u8);
        store.commit().unwrap();
        store.partition(0).put(&[b'p', 7], &7u8);
        for chunk in [1, 3, 8, 100] {
            let mut seen = Vec::new();
            store
                .partition(0)
                .for_each_key(b"p", chunk, |k| seen.push(k[1]))
                .unwrap();
            assert_eq!(seen, (0..8).collect::<Vec<u8>>(), "chunks of {chunk}");
        }
    }

    #[test]
    fn keys_merge_committed_and_pending_in_order_within_the_prefix() {
        let (_dir, mut store) = open();
        let mut state = store.partition(1);
        for key in [&b"p/b"[..], b"p/d", b"p/e", b"q/a", b"p"] {
            state.put(key, &1u8);
        }
        store.commit().unwrap();
        store.partition(0).put(b"p/a", &1u8);
        let mut state = store.partition(1);
        state.put(b"p/c", &1u8);
        state.delete(b"p/d");
        state.put(b"p/f", &1u8);
        let mut keys =
            |after: Option<&[u8]>, limit| store.partition(1).keys(b"p/", after, limit).unwrap();
        let all: Vec<Vec<u8>> = [&b"p/b"[..], b"p/c", b"p/e", b"p/f"]
            .map(<[u8]>::to_vec)
            .to_vec();
        assert_eq!(keys(None, usize::MAX), all);
        assert_eq!(keys(None, 2), all[..2]);
        assert_eq!(keys(Some(b"p/c"), 10), all[2..]);
        assert_eq!(keys(Some(b"p/cc"), 1), all[2..3]);
        assert!(keys(Some(b"p/f"), 10).is_empty());
        assert_eq!(keys(Some(b"a"), 1), all[..1]);
    }

    fn push(store: &mut StateStore, key: &[u8], n: u32) {
        store
            .partition(2)
            .update(key, |v: &mut Option<Vec<u32>>| {
                v.get_or_insert_with(Vec::new).push(n)
            })
            .unwrap();
    }

    #[test]
    fn updates_in_place_are_read_changelogged_and_committed_like_puts() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = StateStore::open(dir.path(), MEMORY).unwrap();
            store.partition(2).put(b"k", &vec![1u32]);
            store.commit().unwrap();
            // From the committed encoding (a cache miss after reopening is
            // covered below), then again in place.
            push(&mut store, b"k", 2);
            push(&mut store, b"k", 3);
            push(&mut store, b"new", 9);
            assert_eq!(
                store.partition(2).get::<Vec<u32>>(b"k").unwrap(),
                Some(vec![1, 2, 3])
            );
            assert_eq!(
                store.partition(2).keys(b"", None, 10).unwrap(),
                [b"k".to_vec(), b"new".to_vec()]
            );
            let changes = store.pending_changes();
            let value = |key: &[u8]| {
                let change = changes.iter().find(|c| c.key.ends_with(key)).unwrap();
                postcard::from_bytes::<Vec<u32>>(change.value.as_deref().unwrap()).unwrap()
            };
            assert_eq!(value(b"k"), [1, 2, 3]);
            assert_eq!(value(b"new"), [9]);
            // An update after the changes were taken is in the commit too.
            push(&mut store, b"k", 4);
            store.commit().unwrap();
        }
        let mut store = StateStore::open(dir.path(), MEMORY).unwrap();
        push(&mut store, b"k", 5);
        assert_eq!(
            store.partition(2).get::<Vec<u32>>(b"k").unwrap(),
            Some(vec![1, 2, 3, 4, 5])
        );
        assert_eq!(
            store.partition(2).get::<Vec<u32>>(b"new").unwrap(),
            Some(vec![9])
        );
    }

    #[test]
    fn an_update_leaving_none_deletes_and_a_put_replaces_the_value_held() {
        let (_dir, mut store) = open();
        push(&mut store, b"gone", 1);
        store.commit().unwrap();
        let removed = store
            .partition(2)
            .update(b"gone", |v: &mut Option<Vec<u32>>| v.take())
            .unwrap();
        assert_eq!(removed, Some(vec![1]));
        assert!(store.partition(2).keys(b"", None, 10).unwrap().is_empty());
        let changes = store.pending_changes();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].value, None);
        store.commit().unwrap();
        assert_eq!(store.partition(2).get::<Vec<u32>>(b"gone").unwrap(), None);

        push(&mut store, b"k", 1);
        store.partition(2).put(b"k", &vec![7u32]);
        push(&mut store, b"k", 8);
        // Held as another type: re-read from its encoding.
        let as_bytes = store
            .partition(2)
            .update(b"k", |v: &mut Option<Vec<u8>>| v.clone())
            .unwrap();
        assert_eq!(as_bytes, Some(vec![7, 8]));
        store.commit().unwrap();
        assert_eq!(
            store.partition(2).get::<Vec<u32>>(b"k").unwrap(),
            Some(vec![7, 8])
        );
    }

    #[test]
    fn a_reader_sees_committed_state_only() {
        let (_dir, mut store) = open();
        let reader = store.reader();
        store.partition(1).put(b"k", &1u8);
        assert_eq!(reader.get::<u8>(1, b"k").unwrap(), None);
        store.commit().unwrap();
        assert_eq!(reader.get::<u8>(1, b"k").unwrap(), Some(1));
        assert_eq!(reader.get::<u8>(0, b"k").unwrap(), None);
    }

    #[test]
    fn discarding_a_partition_keeps_the_others_pending() {
        let (_dir, mut store) = open();
        store.partition(0).put(b"k", &1u8);
        store.partition(1).put(b"k", &1u8);
        store.discard(0);
        store.commit().unwrap();
        assert_eq!(store.partition(0).get::<u8>(b"k").unwrap(), None);
        assert_eq!(store.partition(1).get::<u8>(b"k").unwrap(), Some(1));
    }

    #[test]
    fn pending_changes_restore_into_an_empty_store_identically() {
        let (_dir, mut source) = open();
        source.partition(2).put(b"k", &5u64);
        source.set_input_offset("events", 2, 9);
        source.set_timer(2, Clock::Event, 7, b"k");
        let changes = source.pending_changes();
        assert_eq!(changes.len(), 3);
        assert!(changes.iter().all(|c| c.partition == 2));

        let (_dir2, mut target) = open();
        let restorer = target.restorer();
        restorer.restore(2, &changes, 3, 0).unwrap();
        assert_eq!(target.partition(2).get::<u64>(b"k").unwrap(), Some(5));
        assert_eq!(target.input_offset("events", 2).unwrap(), Some(9));
        assert_eq!(target.due_timers(2, Clock::Event, 7).unwrap().len(), 1);
        assert_eq!(restorer.changelog_position(2).unwrap(), Some(3));

        restorer.wipe(2).unwrap();
        assert_eq!(target.partition(2).get::<u64>(b"k").unwrap(), None);
        assert_eq!(restorer.changelog_position(2).unwrap(), None);
    }

    #[test]
    fn current_values_assert_pending_over_committed_and_tombstone_what_is_absent() {
        let (_dir, mut store) = open();
        store.partition(1).put(b"kept", &5u64);
        store.partition(1).put(b"changed", &1u64);
        store.partition(1).put(b"deleted", &1u64);
        store.set_timer(1, Clock::Wall, 9, b"kept");
        store.set_timer(1, Clock::Wall, 8, b"cancelled");
        store.commit().unwrap();
        store.partition(1).put(b"changed", &2u64);
        store.partition(1).delete(b"deleted");
        store
            .partition(1)
            .update(b"held", |v: &mut Option<u64>| *v = Some(3))
            .unwrap();
        store.set_timer(1, Clock::Wall, 7, b"set");
        store.cancel_timer(1, Clock::Wall, 8, b"cancelled");
        store.pending_changes(); // seals the value held decoded, as a commit does
        let keys = vec![
            scoped(USER, 1, b"kept"),
            scoped(USER, 1, b"changed"),
            scoped(USER, 1, b"deleted"),
            scoped(USER, 1, b"held"),
            scoped(USER, 1, b"never"),
            timer_key(1, Clock::Wall, 9, b"kept"),
            timer_key(1, Clock::Wall, 7, b"set"),
            timer_key(1, Clock::Wall, 8, b"cancelled"),
        ];
        let current = store.current(1, keys.clone()).unwrap();
        let values: Vec<_> = current.iter().map(|c| c.value.clone()).collect();
        let (five, two, three) = (encode(&5u64), encode(&2u64), encode(&3u64));
        assert_eq!(
            values,
            [
                Some(five),
                Some(two),
                None,
                Some(three),
                None,
                Some(vec![]),
                Some(vec![]),
                None
            ]
        );
        assert!(current
            .iter()
            .zip(&keys)
            .all(|(c, k)| c.partition == 1 && &c.key == k));
    }

    #[test]
    fn only_the_commit_markers_read_as_markers() {
        for marker in [CommitMarker::Begin, CommitMarker::End] {
            let record = marker.record(3);
            assert_eq!(
                CommitMarker::of(&record.key, record.value.as_deref()),
                Some(marker)
            );
        }
        let begin = CommitMarker::Begin.record(3);
        assert_eq!(CommitMarker::of(&begin.key, None), None, "a tombstone");
        assert_eq!(CommitMarker::of(&begin.key, Some(&[7])), None);
        let user = scoped(USER, 3, COMMIT);
        assert_eq!(CommitMarker::of(&user, Some(&[0])), None, "a user key");
        let longer = scoped(META, 3, b"commits");
        assert_eq!(CommitMarker::of(&longer, Some(&[0])), None);
    }

    #[test]
    fn a_write_once_store_caches_values_only_until_their_commit() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open_for(dir.path(), MEMORY, Workload::WriteOnce).unwrap();
        let full = scoped(USER, 0, b"k");
        assert_eq!(store.partition(0).get::<u32>(b"k").unwrap(), None);
        store.partition(0).put(b"k", &1u32);
        assert!(store.cache.get(&full).is_some());
        store.commit().unwrap();
        assert!(store.cache.get(&full).is_none());
        assert_eq!(store.partition(0).get::<u32>(b"k").unwrap(), Some(1));

        // Read, then written: a read-modify-write store keeps the value.
        let (_dir, mut store) = open();
        assert_eq!(store.partition(0).get::<u32>(b"k").unwrap(), None);
        store.partition(0).put(b"k", &1u32);
        store.commit().unwrap();
        assert!(store.cache.get(&full).is_some());
    }
}
