//! The processing loop every service runs: poll, process, produce, commit.
//!
//! A [`Processor`] holds the service's logic. The loop feeds it records and
//! stream-time advances, sends what it emits, routes what it rejects to the
//! dead-letter topic, and commits in this order: outputs acknowledged by the
//! broker, then state (one RocksDB write batch), then input offsets. A crash
//! at any point re-processes from the last committed offsets, and every output
//! carries a deterministic id, so downstream sees at worst a repeat of an id.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::codec::{AvroRecord, Codec, DecodeError, EncodeError};
use crate::config::{KafkaConfig, RuntimeConfig};
use crate::contract::{DeadLetter, ErrorKind};
use crate::http::Readiness;
use crate::metrics::RuntimeMetrics;
use crate::state::{PartitionState, StateError, StateStore};

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

/// A processor's failure: a bad record (dead-lettered, processing goes on)
/// or a fatal error (the service stops and restarts from its last commit).
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("rejected: {}", .0.message)]
    Rejected(Rejection),
    #[error(transparent)]
    Fatal(#[from] anyhow::Error),
}

impl From<Rejection> for ProcessError {
    fn from(r: Rejection) -> Self {
        ProcessError::Rejected(r)
    }
}

impl From<DecodeError> for ProcessError {
    fn from(e: DecodeError) -> Self {
        ProcessError::Rejected(e.into())
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
}

/// What a processor may touch while handling a record or a time advance.
pub struct Context<'a> {
    store: &'a mut StateStore,
    codec: &'a Codec,
    outputs: &'a mut Vec<Output>,
    partition: i32,
    stream_time: i64,
}

impl<'a> Context<'a> {
    /// A context over `store` for `partition` at `stream_time`; outputs are collected in `outputs`.
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
            stream_time,
        }
    }

    /// The state of the current partition.
    pub fn state(&mut self) -> PartitionState<'_> {
        self.store.partition(self.partition)
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

    /// Queues `record`, Avro-encoded, for `topic` under `key` with event time `timestamp`.
    pub fn emit<T: AvroRecord>(
        &mut self,
        topic: &str,
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

    /// Called when a partition's stream time has advanced; fires event-time timers.
    fn on_stream_time(&mut self, _ctx: &mut Context<'_>) -> Result<(), ProcessError> {
        Ok(())
    }
}

/// Where and how a service's loop runs.
#[derive(Debug, Clone)]
pub struct LoopSettings {
    /// Service name, recorded in dead letters.
    pub service: String,
    pub kafka: KafkaConfig,
    pub runtime: RuntimeConfig,
    pub group_id: String,
    pub inputs: Vec<String>,
    pub dead_letter_topic: String,
}

/// Per-partition stream time.
#[derive(Debug, Clone, Copy)]
struct PartitionClock {
    /// Largest timestamp seen, or reached by idle advance.
    stream_time: i64,
    /// Stream time when the last record arrived, and when that was.
    at_last_record: i64,
    last_record: Instant,
    /// Stream time the processor was last told about.
    notified: i64,
}

impl PartitionClock {
    fn new(stream_time: i64, now: Instant) -> Self {
        PartitionClock {
            stream_time,
            at_last_record: stream_time,
            last_record: now,
            notified: stream_time,
        }
    }

    fn observe(&mut self, timestamp: i64, now: Instant) {
        self.stream_time = self.stream_time.max(timestamp);
        self.at_last_record = self.stream_time;
        self.last_record = now;
    }

    /// After `idle_timeout` without records, stream time follows the wall clock.
    fn advance_if_idle(&mut self, now: Instant, idle_timeout: Duration) -> bool {
        let idle = now.saturating_duration_since(self.last_record);
        if idle <= idle_timeout {
            return false;
        }
        let by_wall_clock = self.at_last_record + (idle - idle_timeout).as_millis() as i64;
        let advanced = by_wall_clock > self.stream_time;
        self.stream_time = self.stream_time.max(by_wall_clock);
        advanced
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs `processor` until `shutdown` is cancelled, then commits and returns.
pub async fn run<P: Processor>(
    settings: LoopSettings,
    processor: P,
    codec: Codec,
    store: StateStore,
    metrics: RuntimeMetrics,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let consumer = crate::kafka::consumer(&settings.kafka, &settings.group_id)?;
    let producer = crate::kafka::producer(&settings.kafka)?;
    let inputs: Vec<&str> = settings.inputs.iter().map(String::as_str).collect();
    consumer
        .subscribe(&inputs)
        .with_context(|| format!("subscribing to {inputs:?}"))?;
    let mut looper = Loop {
        settings,
        processor,
        codec,
        store,
        metrics,
        consumer,
        producer,
        clocks: HashMap::new(),
        outputs: Vec::new(),
        in_flight: Vec::new(),
        offsets: HashMap::new(),
        processed_since_commit: 0,
    };
    readiness.set(true);
    let result = looper.run(&shutdown).await;
    readiness.set(false);
    // After a failure the pending state may hold half of a record's changes:
    // leave it uncommitted, the restart re-processes from the last commit.
    result?;
    looper.commit().await
}

struct Loop<P> {
    settings: LoopSettings,
    processor: P,
    codec: Codec,
    store: StateStore,
    metrics: RuntimeMetrics,
    consumer: StreamConsumer,
    producer: FutureProducer,
    clocks: HashMap<i32, PartitionClock>,
    outputs: Vec<Output>,
    in_flight: Vec<DeliveryFuture>,
    offsets: HashMap<(String, i32), i64>,
    processed_since_commit: usize,
}

impl<P: Processor> Loop<P> {
    async fn run(&mut self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let tick = self.settings.runtime.tick_interval;
        let commit_interval = self.settings.runtime.commit_interval;
        let mut next_tick = Instant::now() + tick;
        let mut next_commit = Instant::now() + commit_interval;
        loop {
            let wait = next_tick
                .min(next_commit)
                .saturating_duration_since(Instant::now());
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                polled = tokio::time::timeout(wait, self.consumer.recv()) => match polled {
                    Ok(Ok(message)) => {
                        let record = InputRecord {
                            topic: message.topic(),
                            partition: message.partition(),
                            offset: message.offset(),
                            timestamp: message.timestamp().to_millis().unwrap_or_else(now_millis),
                            key: message.key(),
                            payload: message.payload(),
                        };
                        let (topic, partition, offset) = (record.topic.to_string(), record.partition, record.offset);
                        Self::handle(
                            &mut self.processor,
                            &mut self.store,
                            &self.codec,
                            &mut self.outputs,
                            &mut self.clocks,
                            &self.metrics,
                            &self.settings,
                            &record,
                        )?;
                        drop(message);
                        self.offsets.insert((topic, partition), offset + 1);
                        self.processed_since_commit += 1;
                        self.send_outputs().await?;
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "Kafka consumer error"),
                    Err(_) => {}
                },
            }
            let now = Instant::now();
            if now >= next_tick {
                self.tick(now).await?;
                next_tick = now + tick;
            }
            if now >= next_commit || self.processed_since_commit >= self.settings.runtime.max_batch
            {
                self.commit().await?;
                next_commit = Instant::now() + commit_interval;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn handle(
        processor: &mut P,
        store: &mut StateStore,
        codec: &Codec,
        outputs: &mut Vec<Output>,
        clocks: &mut HashMap<i32, PartitionClock>,
        metrics: &RuntimeMetrics,
        settings: &LoopSettings,
        record: &InputRecord<'_>,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let clock = match clocks.get_mut(&record.partition) {
            Some(clock) => clock,
            None => {
                let stored = store.stream_time(record.partition)?.unwrap_or(i64::MIN);
                clocks
                    .entry(record.partition)
                    .or_insert(PartitionClock::new(stored, started))
            }
        };
        clock.observe(record.timestamp, started);
        let mut ctx = Context::new(store, codec, outputs, record.partition, clock.stream_time);
        match processor.process(record, &mut ctx) {
            Ok(()) => {}
            Err(ProcessError::Rejected(rejection)) => {
                metrics
                    .dead_letters
                    .with_label_values(&[rejection.kind.as_str()])
                    .inc();
                tracing::debug!(
                    topic = record.topic,
                    partition = record.partition,
                    offset = record.offset,
                    kind = rejection.kind.as_str(),
                    reason = %rejection.message,
                    "record dead-lettered"
                );
                let dead = DeadLetter {
                    service: settings.service.clone(),
                    source_topic: record.topic.to_string(),
                    source_partition: record.partition,
                    source_offset: record.offset,
                    error_kind: rejection.kind,
                    message: rejection.message,
                    field_path: rejection.field_path,
                    original_key: record.key.map(<[u8]>::to_vec),
                    original_value: record.payload.map(<[u8]>::to_vec),
                    failed_at: now_millis(),
                };
                outputs.push(Output {
                    topic: settings.dead_letter_topic.clone(),
                    key: record.key.map(<[u8]>::to_vec).unwrap_or_default(),
                    payload: codec.encode(&dead)?,
                    timestamp: record.timestamp,
                });
            }
            Err(ProcessError::Fatal(e)) => {
                return Err(e.context(format!(
                    "processing {}/{} offset {}",
                    record.topic, record.partition, record.offset
                )))
            }
        }
        metrics
            .records_processed
            .with_label_values(&[record.topic])
            .inc();
        metrics
            .process_latency
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Advances stream time of the assigned partitions and lets the processor fire timers.
    async fn tick(&mut self, now: Instant) -> anyhow::Result<()> {
        let assignment = self.consumer.assignment().context("reading assignment")?;
        let mut partitions: Vec<i32> = assignment
            .elements()
            .iter()
            .map(|e| e.partition())
            .collect();
        partitions.sort_unstable();
        partitions.dedup();
        for partition in partitions {
            let clock = match self.clocks.get_mut(&partition) {
                Some(clock) => clock,
                None => match self.store.stream_time(partition)? {
                    Some(stored) => self
                        .clocks
                        .entry(partition)
                        .or_insert(PartitionClock::new(stored, now)),
                    None => continue,
                },
            };
            if clock.advance_if_idle(now, self.settings.runtime.idle_timeout) {
                self.metrics.idle_advances.inc();
            }
            if clock.stream_time <= clock.notified {
                continue;
            }
            clock.notified = clock.stream_time;
            let mut ctx = Context::new(
                &mut self.store,
                &self.codec,
                &mut self.outputs,
                partition,
                clock.stream_time,
            );
            match self.processor.on_stream_time(&mut ctx) {
                Ok(()) => {}
                Err(ProcessError::Rejected(r)) => {
                    anyhow::bail!(
                        "timer of partition {partition} rejected its own state: {}",
                        r.message
                    )
                }
                Err(ProcessError::Fatal(e)) => return Err(e),
            }
        }
        self.send_outputs().await
    }

    /// Hands queued outputs to the producer; delivery is awaited at commit.
    async fn send_outputs(&mut self) -> anyhow::Result<()> {
        for output in std::mem::take(&mut self.outputs) {
            loop {
                let record = FutureRecord::to(&output.topic)
                    .key(&output.key)
                    .payload(&output.payload)
                    .timestamp(output.timestamp);
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        self.in_flight.push(delivery);
                        self.metrics
                            .records_produced
                            .with_label_values(&[output.topic.as_str()])
                            .inc();
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        self.await_deliveries().await?;
                    }
                    Err((e, _)) => return Err(e).context(format!("producing to {}", output.topic)),
                }
            }
        }
        Ok(())
    }

    async fn await_deliveries(&mut self) -> anyhow::Result<()> {
        for delivery in self.in_flight.drain(..) {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, message))) => {
                    return Err(e).context(format!("delivering to {}", message.topic()))
                }
                Err(_) => anyhow::bail!("producer dropped a delivery"),
            }
        }
        Ok(())
    }

    /// Outputs acknowledged, then state and stream times written, then offsets committed.
    async fn commit(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        self.send_outputs().await?;
        self.await_deliveries().await?;
        for (partition, clock) in &self.clocks {
            if clock.stream_time > i64::MIN {
                self.store.set_stream_time(*partition, clock.stream_time);
            }
        }
        self.store.commit()?;
        if !self.offsets.is_empty() {
            let mut offsets = TopicPartitionList::new();
            for ((topic, partition), offset) in self.offsets.drain() {
                offsets.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
            }
            self.consumer
                .commit(&offsets, CommitMode::Sync)
                .context("committing offsets")?;
        }
        self.processed_since_commit = 0;
        self.metrics
            .state_keys
            .set(self.store.estimated_keys() as i64);
        self.metrics
            .commit_latency
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_time_is_the_largest_timestamp_seen() {
        let now = Instant::now();
        let mut clock = PartitionClock::new(i64::MIN, now);
        clock.observe(100, now);
        clock.observe(50, now);
        assert_eq!(clock.stream_time, 100);
    }

    #[test]
    fn an_idle_partition_follows_the_wall_clock_after_the_timeout() {
        let start = Instant::now();
        let mut clock = PartitionClock::new(i64::MIN, start);
        clock.observe(1_000, start);
        let timeout = Duration::from_secs(10);
        assert!(!clock.advance_if_idle(start + Duration::from_secs(5), timeout));
        assert_eq!(clock.stream_time, 1_000);
        assert!(clock.advance_if_idle(start + Duration::from_secs(13), timeout));
        assert_eq!(clock.stream_time, 4_000);
    }

    #[test]
    fn a_record_resets_idleness_but_never_moves_time_back() {
        let start = Instant::now();
        let mut clock = PartitionClock::new(i64::MIN, start);
        clock.observe(1_000, start);
        clock.advance_if_idle(start + Duration::from_secs(20), Duration::from_secs(10));
        assert_eq!(clock.stream_time, 11_000);
        clock.observe(2_000, start + Duration::from_secs(20));
        assert_eq!(clock.stream_time, 11_000);
        assert!(!clock.advance_if_idle(start + Duration::from_secs(25), Duration::from_secs(10)));
    }
}
