//! Per-service state in RocksDB, with a write-back cache in front.
//!
//! Writes go to an in-memory overlay and reach RocksDB in one atomic write
//! batch at [`StateStore::commit`], together with the metadata the runtime
//! keeps beside the state (stream time per partition). Keys are scoped by
//! partition so each input partition's state can be handled on its own.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::path::Path;

use rocksdb::{Direction, IteratorMode, Options, WriteBatch, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

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
/// Key namespace of runtime metadata.
const META: u8 = b'm';

/// The RocksDB-backed state of one service instance.
pub struct StateStore {
    db: DB,
    overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl StateStore {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        let db = DB::open(&options, dir)?;
        Ok(StateStore {
            db,
            overlay: BTreeMap::new(),
        })
    }

    /// A view of the store scoped to one input partition.
    pub fn partition(&mut self, partition: i32) -> PartitionState<'_> {
        PartitionState {
            store: self,
            prefix: scoped(USER, partition, &[]),
        }
    }

    /// The stream time stored for `partition` at the last commit.
    pub fn stream_time(&self, partition: i32) -> Result<Option<i64>, StateError> {
        let key = scoped(META, partition, b"stream_time");
        self.raw_get(&key)?.map(|v| decode(&key, &v)).transpose()
    }

    /// Records the stream time of `partition`, written at the next commit.
    pub fn set_stream_time(&mut self, partition: i32, time: i64) {
        let key = scoped(META, partition, b"stream_time");
        self.overlay.insert(key, Some(encode(&time)));
    }

    /// Number of keys written since the last commit.
    pub fn pending(&self) -> usize {
        self.overlay.len()
    }

    /// Writes every pending change to RocksDB in one atomic batch.
    pub fn commit(&mut self) -> Result<(), StateError> {
        if self.overlay.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for (key, value) in std::mem::take(&mut self.overlay) {
            match value {
                Some(v) => batch.put(key, v),
                None => batch.delete(key),
            }
        }
        self.db.write(batch)?;
        Ok(())
    }

    /// The estimated number of keys in RocksDB (committed state only).
    pub fn estimated_keys(&self) -> u64 {
        self.db
            .property_int_value("rocksdb.estimate-num-keys")
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    fn raw_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match self.overlay.get(key) {
            Some(pending) => Ok(pending.clone()),
            None => Ok(self.db.get(key)?),
        }
    }

    /// Committed and pending keys with `from <= key < to`, in key order.
    fn raw_keys(&self, from: &[u8], to: &[u8]) -> Result<Vec<Vec<u8>>, StateError> {
        let mut merged: BTreeSet<Vec<u8>> = BTreeSet::new();
        for item in self
            .db
            .iterator(IteratorMode::From(from, Direction::Forward))
        {
            let (k, _) = item?;
            if k.as_ref() >= to {
                break;
            }
            merged.insert(k.to_vec());
        }
        let pending = self
            .overlay
            .range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)));
        for (k, v) in pending {
            match v {
                Some(_) => merged.insert(k.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged.into_iter().collect())
    }
}

/// The state of one input partition; keys are relative to the partition.
pub struct PartitionState<'a> {
    store: &'a mut StateStore,
    prefix: Vec<u8>,
}

impl PartitionState<'_> {
    fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.prefix.len() + key.len());
        full.extend_from_slice(&self.prefix);
        full.extend_from_slice(key);
        full
    }

    /// The value under `key`, if any.
    pub fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StateError> {
        let full = self.key(key);
        self.store
            .raw_get(&full)?
            .map(|v| decode(&full, &v))
            .transpose()
    }

    /// Sets `key` to `value`.
    pub fn put<T: Serialize>(&mut self, key: &[u8], value: &T) {
        let full = self.key(key);
        self.store.overlay.insert(full, Some(encode(value)));
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: &[u8]) {
        let full = self.key(key);
        self.store.overlay.insert(full, None);
    }

    /// Keys (relative to the partition) with `from <= key < to`, in order.
    pub fn keys_in(&self, from: &[u8], to: &[u8]) -> Result<Vec<Vec<u8>>, StateError> {
        let prefix_len = self.prefix.len();
        Ok(self
            .store
            .raw_keys(&self.key(from), &self.key(to))?
            .into_iter()
            .map(|k| k[prefix_len..].to_vec())
            .collect())
    }
}

fn scoped(namespace: u8, partition: i32, key: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(5 + key.len());
    full.push(namespace);
    full.extend_from_slice(&partition.to_be_bytes());
    full.extend_from_slice(key);
    full
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // postcard only fails on types serde cannot describe (e.g. maps with unknown length), a bug.
    postcard::to_stdvec(value).expect("state values are plain serde structs")
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

    fn open() -> (tempfile::TempDir, StateStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
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
    fn committed_state_survives_reopen_and_uncommitted_does_not() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = StateStore::open(dir.path()).unwrap();
            store.partition(3).put(b"a", &"kept".to_string());
            store.set_stream_time(3, 42);
            store.commit().unwrap();
            store.partition(3).put(b"b", &"lost".to_string());
        }
        let mut store = StateStore::open(dir.path()).unwrap();
        assert_eq!(
            store.partition(3).get::<String>(b"a").unwrap().as_deref(),
            Some("kept")
        );
        assert_eq!(store.partition(3).get::<String>(b"b").unwrap(), None);
        assert_eq!(store.stream_time(3).unwrap(), Some(42));
    }

    #[test]
    fn ranges_merge_committed_and_pending_changes() {
        let (_dir, mut store) = open();
        let mut p = store.partition(0);
        p.put(b"t1", &());
        p.put(b"t2", &());
        p.put(b"t3", &());
        store.commit().unwrap();
        let mut p = store.partition(0);
        p.delete(b"t2");
        p.put(b"t4", &());
        p.put(b"u1", &());
        let keys = store.partition(0).keys_in(b"t", b"u").unwrap();
        assert_eq!(keys, vec![b"t1".to_vec(), b"t3".to_vec(), b"t4".to_vec()]);
    }

    #[test]
    fn a_deleted_key_stays_deleted_after_commit() {
        let (_dir, mut store) = open();
        store.partition(0).put(b"k", &1u8);
        store.commit().unwrap();
        store.partition(0).delete(b"k");
        store.commit().unwrap();
        assert_eq!(store.partition(0).get::<u8>(b"k").unwrap(), None);
    }
}
