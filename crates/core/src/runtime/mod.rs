//! The processing runtime every service runs: poll, process, produce, commit,
//! with state in RocksDB backed by a compacted changelog topic.
//!
//! A [`Processor`] holds a service's logic. The runtime feeds it records and
//! due timers, sends what it emits, routes what it rejects to the dead-letter
//! topic, and commits in this order:
//!
//! 1. outputs and the state's changes (to the changelog, one partition per
//!    input partition, each partition's between commit markers) are
//!    acknowledged by the broker;
//! 2. state, the input offsets it reflects, stream time and timers are written
//!    to RocksDB in one atomic batch;
//! 3. input offsets are committed to Kafka.
//!
//! A crash anywhere re-processes from the last commit: records whose offsets
//! the state already reflects are skipped, so nothing is applied twice, and
//! every output carries a deterministic id, so downstream sees at worst a
//! repeat of an id it already has. Kafka transactions are not used.

mod cadence;
mod clock;
mod commit_frames;
mod dead_letter;
#[cfg(test)]
mod fixture;
mod folded;
mod foreign_writes;
mod key_filter;
mod looper;
mod owned;
mod rebalance;
mod recent;
mod restore;

pub use cadence::{Cadence, Due, CHECK_EVERY, TIMERS_PER_TICK};
pub use folded::{decode_fold, encode_fold, folded_customer, FoldedIds, FoldedInto};
pub use key_filter::KeyFilter;
pub use looper::{run, LoopSettings};
pub use recent::{repeats_counter, RecentIds, REPEAT_MEMORY_MS};

/// One record in this many has its processing time measured
/// (`process_latency_seconds`): reading the clock for every record would cost
/// more than many processors do.
pub const LATENCY_SAMPLE: usize = 16;

use std::time::{SystemTime, UNIX_EPOCH};

use crate::codec::{AvroRecord, Codec, DecodeError, EncodeError};
use crate::contract::{CustomerEvent, ErrorKind};
use crate::state::{Clock, PartitionState, StateError, StateReader, StateStore};

/// One input record as the processor sees it.
#[derive(Debug, Clone, Copy)]
pub struct InputRecord<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Kafka record timestamp in ms (event time: producers and services set it).
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
}

/// Why a record cannot be processed; it goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub kind: ErrorKind,
    pub message: String,
    /// The offending field, dotted (`feedback.nps`), when one is to blame.
    pub field_path: Option<String>,
}

impl Rejection {
    /// A rejection of a semantically invalid field.
    pub fn semantic(field: &str, message: impl Into<String>) -> Self {
        Rejection {
            kind: ErrorKind::SemanticViolation,
            message: message.into(),
            field_path: Some(field.to_string()),
        }
    }

    /// A rejection of a record whose bytes do not decode.
    pub fn undecodable(message: impl Into<String>) -> Self {
        Rejection {
            kind: ErrorKind::SchemaViolation,
            message: message.into(),
            field_path: None,
        }
    }
}

impl From<DecodeError> for Rejection {
    fn from(e: DecodeError) -> Self {
        Rejection {
            kind: e.kind(),
            message: e.to_string(),
            field_path: None,
        }
    }
}

/// A processor's failure: a bad record (dead-lettered, processing goes on),
/// a transient failure (the partition waits and retries the record), or a
/// fatal error (the service stops and restarts from its last commit).
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The record is bad: its dead letter is all it emits.
    #[error("rejected: {}", .0.message)]
    Rejected(Rejection),
    /// Something the record needs is unavailable for now (the schema
    /// registry): its partition pauses with exponential backoff and then
    /// re-reads from this record. The record must not have changed state;
    /// what it emitted is dropped, and stream time does not count it.
    #[error("unavailable ({}): {message}", .kind.as_str())]
    Unavailable { kind: ErrorKind, message: String },
    #[error(transparent)]
    Fatal(#[from] anyhow::Error),
}

impl From<Rejection> for ProcessError {
    fn from(r: Rejection) -> Self {
        ProcessError::Rejected(r)
    }
}

impl From<DecodeError> for ProcessError {
    /// An unreachable registry is worth a retry; anything else is the record's fault.
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::RegistryUnavailable(message) => ProcessError::Unavailable {
                kind: ErrorKind::RegistryUnavailable,
                message,
            },
            e => ProcessError::Rejected(e.into()),
        }
    }
}

impl From<StateError> for ProcessError {
    fn from(e: StateError) -> Self {
        ProcessError::Fatal(e.into())
    }
}

impl From<EncodeError> for ProcessError {
    fn from(e: EncodeError) -> Self {
        ProcessError::Fatal(e.into())
    }
}

/// A record to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub topic: String,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub timestamp: i64,
    /// Record headers, name and value; usually none.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The partition to write to; `None` lets the producer choose by key.
    pub partition: Option<i32>,
}

/// What a processor may touch while handling a record or a timer.
pub struct Context<'a> {
    store: &'a mut StateStore,
    codec: &'a Codec,
    outputs: &'a mut Vec<Output>,
    partition: i32,
    partition_count: i32,
    stream_time: i64,
}

impl<'a> Context<'a> {
    /// A context over `store` for `partition` (of one) at `stream_time`;
    /// outputs are collected in `outputs`.
    pub fn new(
        store: &'a mut StateStore,
        codec: &'a Codec,
        outputs: &'a mut Vec<Output>,
        partition: i32,
        stream_time: i64,
    ) -> Self {
        Context {
            store,
            codec,
            outputs,
            partition,
            partition_count: 1,
            stream_time,
        }
    }

    /// The same context, with the inputs' partition count (the runtime sets it).
    pub fn with_partition_count(mut self, partitions: i32) -> Self {
        self.partition_count = partitions;
        self
    }

    /// How many partitions each input has.
    pub fn partition_count(&self) -> i32 {
        self.partition_count
    }

    /// The state of the current partition.
    pub fn state(&mut self) -> PartitionState<'_> {
        self.store.partition(self.partition)
    }

    /// A handle reading the committed state from other threads (interactive
    /// queries), while this context goes on writing.
    pub fn state_reader(&self) -> StateReader {
        self.store.reader()
    }

    /// The current partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The partition's stream time: the largest record timestamp seen, moved
    /// on by the wall clock when the partition is idle.
    pub fn stream_time(&self) -> i64 {
        self.stream_time
    }

    /// The codec, for decoding input payloads.
    pub fn codec(&self) -> &Codec {
        self.codec
    }

    /// Decodes `record` as a customer event, with the customer key it belongs to.
    pub fn customer_event(
        &self,
        record: &InputRecord<'_>,
    ) -> Result<(CustomerEvent, String), ProcessError> {
        let event: CustomerEvent = self.codec.decode(record.payload.unwrap_or_default())?;
        let customer = event
            .customer_key()
            .ok_or_else(|| Rejection::semantic("customer_id", "event has no customer key"))?
            .to_string();
        Ok((event, customer))
    }

    /// Calls [`Processor::on_timer`] with `key` once `clock` reaches `at`.
    pub fn set_timer(&mut self, clock: Clock, at: i64, key: &[u8]) {
        self.store.set_timer(self.partition, clock, at, key);
    }

    /// Cancels a timer set with the same arguments.
    pub fn cancel_timer(&mut self, clock: Clock, at: i64, key: &[u8]) {
        self.store.cancel_timer(self.partition, clock, at, key);
    }

    /// Cancels every timer of the partition under `key`, on both clocks,
    /// whenever due; returns how many. It scans the partition's timers:
    /// meant for rare deletions (erasure), not for every record.
    pub fn cancel_timers(&mut self, key: &[u8]) -> Result<usize, StateError> {
        let pending = self.store.timers_under(self.partition, key)?;
        for (clock, at) in &pending {
            self.store.cancel_timer(self.partition, *clock, *at, key);
        }
        Ok(pending.len())
    }

    /// Queues `payload` as it is for `topic` under `key` (forwarding a record unchanged).
    pub fn emit_raw(&mut self, topic: &str, key: &[u8], payload: &[u8], timestamp: i64) {
        self.emit_raw_with_headers(topic, key, payload, timestamp, &[]);
    }

    /// Like [`Self::emit_raw`], with record headers (e.g. why a record was diverted).
    pub fn emit_raw_with_headers(
        &mut self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        timestamp: i64,
        headers: &[(&str, &[u8])],
    ) {
        self.outputs.push(Output {
            topic: topic.to_string(),
            key: key.to_vec(),
            payload: payload.to_vec(),
            timestamp,
            headers: headers
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_vec()))
                .collect(),
            partition: None,
        });
    }

    /// Queues `record`, Avro-encoded, for `topic` under `key` with event time `timestamp`.
    pub fn emit<T: AvroRecord>(
        &mut self,
        topic: &str,
        key: &str,
        record: &T,
        timestamp: i64,
    ) -> Result<(), ProcessError> {
        self.emit_to(topic, None, key, record, timestamp)
    }

    /// Like [`Self::emit`], to `partition` of `topic` whatever the key.
    pub fn emit_to_partition<T: AvroRecord>(
        &mut self,
        topic: &str,
        partition: i32,
        key: &str,
        record: &T,
        timestamp: i64,
    ) -> Result<(), ProcessError> {
        self.emit_to(topic, Some(partition), key, record, timestamp)
    }

    fn emit_to<T: AvroRecord>(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: &str,
        record: &T,
        timestamp: i64,
    ) -> Result<(), ProcessError> {
        let payload = self.codec.encode(record)?;
        self.outputs.push(Output {
            topic: topic.to_string(),
            key: key.as_bytes().to_vec(),
            payload,
            timestamp,
            headers: Vec::new(),
            partition,
        });
        Ok(())
    }
}

/// A service's logic over records, state and time.
pub trait Processor: Send + 'static {
    /// Handles one input record.
    fn process(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError>;

    /// Handles a timer set with [`Context::set_timer`] that came due.
    fn on_timer(
        &mut self,
        _clock: Clock,
        _at: i64,
        _key: &[u8],
        _ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        Ok(())
    }

    /// Called once `partition` is assigned and its state restored, before its
    /// first record: a place to load per-partition figures kept in state.
    fn on_assigned(&mut self, _partition: i32, _ctx: &mut Context<'_>) -> Result<(), ProcessError> {
        Ok(())
    }

    /// Called when `partition` has moved to another instance (its state is
    /// committed or, if lost, discarded): drop what is kept of it in memory.
    fn on_revoked(&mut self, _partition: i32) {}
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
