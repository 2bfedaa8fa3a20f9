//! The loop itself: assignment, restore, processing, timers and commits.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::FutureExt as _;
use prometheus::IntCounter;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::cadence::{Cadence, CHECK_EVERY, TIMERS_PER_TICK};
use super::commit_frames::frame;
use super::dead_letter::dead_letter;
use super::foreign_writes::read_foreign;
use super::owned::OwnedPartitions;
use super::rebalance::{release, AssignmentChange, LoopContext};
use super::restore::{restore_partition, RestoreProgress, Restored, Restores};
use super::{now_millis, Context, InputRecord, Output, ProcessError, Processor, LATENCY_SAMPLE};
use crate::codec::Codec;
use crate::config::{KafkaConfig, RuntimeConfig};
use crate::contract::ErrorKind;
use crate::http::Readiness;
use crate::kafka::TopicSpec;
use crate::metrics::RuntimeMetrics;
use crate::state::{Change, Clock, StateStore};

/// First and longest wait before a record that met a transient failure is retried.
const RETRY_BACKOFF: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(30));

/// Outputs whose acknowledgements are collected as soon as this many are
/// held, rather than at the commit: a long commit interval at a high output
/// rate would otherwise hold one for every output since the last commit.
const MAX_IN_FLIGHT: usize = 65_536;

/// Longest wait for the end of one changelog partition at a commit.
const END_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how a service's loop runs.
#[derive(Debug, Clone)]
pub struct LoopSettings {
    /// Service name, recorded in dead letters.
    pub service: String,
    pub kafka: KafkaConfig,
    pub runtime: RuntimeConfig,
    pub group_id: String,
    /// Co-partitioned input topics.
    pub inputs: Vec<String>,
    /// Those inputs the service writes itself (repartition topics): created
    /// if missing, with as many partitions as the other inputs.
    pub internal_inputs: Vec<String>,
    /// Those inputs whose record timestamps do not move stream time: control
    /// records (erasure tasks) stamped with the wall clock, which would
    /// otherwise close the event-time windows of a replay or a backfill.
    pub control_inputs: Vec<String>,
    pub dead_letter_topic: String,
    /// Compacted topic holding every change of the state.
    pub changelog_topic: String,
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
    let external: Vec<String> = settings
        .inputs
        .iter()
        .filter(|topic| !settings.internal_inputs.contains(topic))
        .cloned()
        .collect();
    // Created first, so that it has its producer id by the first commit
    // (see `learn_leaders`).
    let producer = crate::kafka::producer(&settings.kafka)?;
    let partitions = crate::kafka::input_partitions(&settings.kafka, &external).await?;
    let mut topics = vec![TopicSpec::compacted(&settings.changelog_topic, partitions)];
    topics.extend(
        settings
            .internal_inputs
            .iter()
            .map(|name| TopicSpec::new(name, partitions)),
    );
    crate::kafka::ensure_topics(&settings.kafka, &topics).await?;
    crate::kafka::learn_leaders(&producer, &settings.changelog_topic).await?;
    if !settings.internal_inputs.is_empty() {
        // An internal topic left over with another partition count breaks co-partitioning.
        crate::kafka::input_partitions(&settings.kafka, &settings.inputs).await?;
    }
    // Several inputs must be assigned partition by partition alike (co-partitioned),
    // which the range assignor guarantees and cooperative-sticky does not.
    let strategy = if settings.inputs.len() == 1 {
        "cooperative-sticky"
    } else {
        "range"
    };
    let consumer: StreamConsumer<LoopContext> =
        crate::kafka::consumer_config(&settings.kafka, &settings.group_id)
            .set("partition.assignment.strategy", strategy)
            .set("statistics.interval.ms", "5000")
            .create_with_context(LoopContext::new(
                metrics.consumer_lag.clone(),
                metrics.offset_commit_failures.clone(),
            ))
            .context("creating Kafka consumer")?;
    let inputs: Vec<&str> = settings.inputs.iter().map(String::as_str).collect();
    consumer
        .subscribe(&inputs)
        .with_context(|| format!("subscribing to {inputs:?}"))?;
    let (restored_tx, restored_rx) = mpsc::unbounded_channel();
    let processed = settings
        .inputs
        .iter()
        .map(|topic| {
            metrics
                .records_processed
                .with_label_values(&[topic.as_str()])
        })
        .collect();
    let control: Vec<bool> = settings
        .inputs
        .iter()
        .map(|topic| settings.control_inputs.contains(topic))
        .collect();
    let mut looper = Loop {
        consumer,
        restored_rx,
        work: Work {
            partitions,
            owned: OwnedPartitions::new(control.len()),
            control,
            producer,
            max_message_bytes: crate::kafka::max_message_bytes(&settings.kafka),
            settings,
            processor,
            codec,
            store,
            metrics,
            readiness,
            restored_tx,
            restores: Restores::default(),
            rewinds: HashMap::new(),
            processed,
            outputs: Vec::new(),
            in_flight: Vec::new(),
            processed_since_commit: 0,
            held: HashMap::new(),
            newly_held: Vec::new(),
            changelog_ends_read: Instant::now(),
        },
    };
    looper.work.readiness.set(true);
    let result = looper.run(&shutdown).await;
    looper.work.readiness.set(false);
    looper.consumer.context().close();
    // After a failure the pending state may hold half of a record's changes:
    // leave it uncommitted, the restart re-processes from the last commit.
    result?;
    looper.commit().await
}

struct Loop<P> {
    consumer: StreamConsumer<LoopContext>,
    restored_rx: mpsc::UnboundedReceiver<(i32, anyhow::Result<Restored>)>,
    work: Work<P>,
}

/// Everything but the consumer, so a borrowed message can be handled while
/// the rest is mutated.
struct Work<P> {
    settings: LoopSettings,
    /// Partitions of each input.
    partitions: i32,
    /// Per input (by index): whether it is a control input.
    control: Vec<bool>,
    processor: P,
    codec: Codec,
    store: StateStore,
    metrics: RuntimeMetrics,
    readiness: Readiness,
    producer: FutureProducer,
    /// The producer's `message.max.bytes`: dead letters stay within it.
    max_message_bytes: usize,
    restored_tx: mpsc::UnboundedSender<(i32, anyhow::Result<Restored>)>,
    restores: Restores,
    /// Assigned partitions: their topics, restore, clock and offsets.
    owned: OwnedPartitions,
    /// First offset of a record that arrived during its partition's restore.
    rewinds: HashMap<(String, i32), i64>,
    /// `records_processed_total` of each input, resolved once.
    processed: Vec<IntCounter>,
    outputs: Vec<Output>,
    in_flight: Vec<InFlight>,
    processed_since_commit: usize,
    /// Partitions held back by a transient failure, by (topic, partition).
    held: HashMap<(String, i32), Held>,
    /// Partitions held since the loop last paused them.
    newly_held: Vec<(String, i32)>,
    /// When a commit last read the ends of the owned changelog partitions.
    changelog_ends_read: Instant,
}

/// A partition waiting out a transient failure.
struct Held {
    /// The record to re-read.
    offset: i64,
    until: Instant,
    /// Failed attempts in a row, for the backoff.
    attempts: u32,
    /// Waiting (paused); `false` once resumed, until a record succeeds.
    waiting: bool,
}

/// A produced record awaiting the broker's acknowledgement.
enum InFlight {
    Output(DeliveryFuture),
    Changelog(DeliveryFuture),
}

impl<P: Processor> Loop<P> {
    async fn run(&mut self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let mut cadence = Cadence::new(&self.work.settings.runtime, Instant::now());
        // One timer for the next deadline, reset only when the deadline moves.
        let deadline = tokio::time::sleep_until(cadence.next_deadline().into());
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                Some((partition, outcome)) = self.restored_rx.recv() => self.finish_restore(partition, outcome)?,
                _ = &mut deadline => {}
                _ = self.consumer.context().changed() => {}
                polled = self.consumer.recv() => {
                    // The batch's arrival time stands for each record's, for idleness.
                    let arrived = Instant::now();
                    let mut polled = Some(polled);
                    // Records already fetched are taken without another trip through
                    // `select!`, up to a batch, so waiting costs once per batch.
                    let mut batch = 0;
                    while let Some(result) = polled.take() {
                        match result {
                            Ok(message) => {
                                let record = InputRecord {
                                    topic: message.topic(),
                                    partition: message.partition(),
                                    offset: message.offset(),
                                    timestamp: message.timestamp().to_millis().unwrap_or_else(now_millis),
                                    key: message.key(),
                                    payload: message.payload(),
                                };
                                self.work.handle(&record, arrived)?;
                            }
                            Err(e) => tracing::warn!(error = %e, "Kafka consumer error"),
                        }
                        if !self.work.outputs.is_empty() {
                            self.work.send_outputs().await?;
                        }
                        batch += 1;
                        if batch < CHECK_EVERY {
                            polled = self.consumer.recv().now_or_never();
                        }
                    }
                }
            }
            let changes = self.consumer.context().take_changes();
            if !changes.is_empty() {
                self.rebalance(changes).await?;
            }
            if !self.work.held.is_empty() {
                self.retry_held()?;
            }
            let now = Instant::now();
            let due = cadence.check(now, self.work.processed_since_commit, &self.work.store);
            if due.tick {
                self.work.tick(now)?;
                self.work.send_outputs().await?;
            }
            if due.commit {
                self.commit().await?;
                cadence.committed(Instant::now());
            }
            if due.tick || due.commit {
                deadline.as_mut().reset(cadence.next_deadline().into());
            }
        }
    }

    /// Applies assignment changes heard by the consumer context: revoked
    /// partitions are committed (unless lost) before they are released, new
    /// ones start restoring.
    async fn rebalance(&mut self, changes: Vec<AssignmentChange>) -> anyhow::Result<()> {
        for change in changes {
            match change {
                AssignmentChange::Revoked { partitions, lost } => {
                    if !lost {
                        self.commit().await?;
                    }
                    for (topic, partition) in &partitions {
                        self.work.revoke(topic, *partition, lost);
                    }
                    release(&self.consumer, &partitions).context("releasing revoked partitions")?;
                }
                AssignmentChange::Assigned(partitions) => self.work.assign(partitions),
            }
        }
        let work = &mut self.work;
        work.metrics
            .assigned_partitions
            .set(work.owned.iter().count() as i64);
        work.readiness.set(work.owned.all_ready());
        Ok(())
    }

    /// Pauses partitions newly held back by a transient failure, and re-reads
    /// those whose wait is over from the record that failed.
    fn retry_held(&mut self) -> anyhow::Result<()> {
        let work = &mut self.work;
        for (topic, partition) in std::mem::take(&mut work.newly_held) {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&topic, partition);
            self.consumer
                .pause(&tpl)
                .context("pausing a partition held back")?;
        }
        let now = Instant::now();
        for ((topic, partition), held) in &mut work.held {
            if !held.waiting || now < held.until {
                continue;
            }
            held.waiting = false;
            self.consumer
                .seek(
                    topic,
                    *partition,
                    Offset::Offset(held.offset),
                    Duration::from_secs(10),
                )
                .with_context(|| format!("seeking {topic}/{partition} back for a retry"))?;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(topic, *partition);
            self.consumer
                .resume(&tpl)
                .context("resuming a partition held back")?;
        }
        Ok(())
    }

    /// Resumes a restored partition from the offsets its state reflects; after
    /// a cancelled restore, starts the partition's restore again if it was
    /// assigned again meanwhile.
    fn finish_restore(
        &mut self,
        partition: i32,
        outcome: anyhow::Result<Restored>,
    ) -> anyhow::Result<()> {
        let work = &mut self.work;
        if work.restores.finish(partition) {
            if let Err(e) = outcome {
                tracing::warn!(partition, error = %format!("{e:#}"), "cancelled restore failed");
            }
            if work
                .owned
                .get(partition)
                .is_some_and(|owned| owned.restoring)
            {
                work.spawn_restore(partition);
            }
            return Ok(());
        }
        let restored = outcome.with_context(|| format!("restoring partition {partition}"))?;
        let Some(owned) = work
            .owned
            .get_mut(partition)
            .filter(|owned| owned.restoring)
        else {
            return Ok(()); // revoked meanwhile
        };
        owned.restoring = false;
        owned.reload();
        owned.torn = restored.torn;
        owned.changelog.restored(restored.end);
        let topics = owned.topics.clone();
        let mut resume = TopicPartitionList::new();
        for topic in &topics {
            let rewind = work.rewinds.remove(&(topic.clone(), partition));
            let target = work.store.input_offset(topic, partition)?.or(rewind);
            if let Some(offset) = target {
                if let Err(e) = self.consumer.seek(
                    topic,
                    partition,
                    Offset::Offset(offset),
                    Duration::from_secs(10),
                ) {
                    // Records the state already reflects are skipped anyway.
                    tracing::warn!(topic, partition, offset, error = %e, "cannot seek to the state's offset");
                }
            }
            resume.add_partition(topic, partition);
        }
        self.consumer
            .resume(&resume)
            .context("resuming a restored partition")?;
        work.assigned(partition)?;
        work.readiness.set(work.owned.all_ready());
        tracing::info!(
            service = work.settings.service,
            partition,
            "partition ready"
        );
        Ok(())
    }

    async fn commit(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let offsets = self.work.write_back().await?;
        if offsets.count() > 0 {
            // The state already holds these offsets; Kafka's copy only tells the
            // next owner where to start fetching. It is sent without waiting
            // (the loop never blocks on the broker here): a commit refused, say
            // during a rebalance, is made good by the next one, or skipped by
            // the new owner, and counted by the consumer context.
            if let Err(e) = self.consumer.commit(&offsets, CommitMode::Async) {
                self.work.metrics.offset_commit_failures.inc();
                tracing::warn!(error = %e, "offset commit refused; the next commit retries");
            }
        }
        self.work
            .metrics
            .commit_latency
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }
}

impl<P: Processor> Work<P> {
    /// Takes newly assigned partitions, restoring their state first.
    fn assign(&mut self, partitions: Vec<(String, i32)>) {
        let mut added = BTreeSet::new();
        for (topic, partition) in partitions {
            let topics = &mut self.owned.own(partition).topics;
            if !topics.contains(&topic) {
                topics.push(topic);
            }
            added.insert(partition);
        }
        for partition in added {
            self.start_restore(partition);
        }
    }

    /// Forgets a partition that moved away. After a clean revocation its
    /// state is committed and nothing is pending; after a lost one, the
    /// uncommitted changes are dropped and the new owner re-processes them
    /// from the last commit.
    fn revoke(&mut self, topic: &str, partition: i32, lost: bool) {
        if let Some(owned) = self.owned.get_mut(partition) {
            owned.topics.retain(|t| t != topic);
            if !owned.topics.is_empty() {
                return;
            }
        }
        match self.owned.remove(partition) {
            Some(owned) if owned.restoring => self.restores.cancel(partition),
            Some(_) => self.processor.on_revoked(partition),
            None => {}
        }
        self.store.discard(partition);
        self.rewinds.retain(|(_, p), _| *p != partition);
        self.held.retain(|(_, p), _| *p != partition);
        let _ = self
            .metrics
            .restore_remaining
            .remove_label_values(&[&partition.to_string()]);
        tracing::info!(
            service = self.settings.service,
            partition,
            lost,
            "partition revoked"
        );
    }

    /// Holds `topic`/`partition` back from `offset` for a growing backoff.
    fn hold(&mut self, topic: &str, partition: i32, offset: i64, kind: ErrorKind, message: &str) {
        let key = (topic.to_string(), partition);
        let attempts = self.held.get(&key).map_or(0, |h| h.attempts) + 1;
        let wait = RETRY_BACKOFF
            .0
            .saturating_mul(1 << (attempts - 1).min(16))
            .min(RETRY_BACKOFF.1);
        self.metrics
            .retries
            .with_label_values(&[kind.as_str()])
            .inc();
        tracing::warn!(
            topic,
            partition,
            offset,
            kind = kind.as_str(),
            reason = message,
            retry_in_ms = wait.as_millis() as u64,
            "transient failure; holding the partition back"
        );
        self.held.insert(
            key.clone(),
            Held {
                offset,
                until: Instant::now() + wait,
                attempts,
                waiting: true,
            },
        );
        self.newly_held.push(key);
    }

    /// Tells the processor that a restored `partition` is its own.
    fn assigned(&mut self, partition: i32) -> anyhow::Result<()> {
        let owned = self
            .owned
            .get_mut(partition)
            .expect("restored partitions are owned");
        let stream_time = owned
            .clock(&self.store, partition, Instant::now())?
            .stream_time;
        let mut ctx = Context::new(
            &mut self.store,
            &self.codec,
            &mut self.outputs,
            partition,
            stream_time,
        )
        .with_partition_count(self.partitions);
        self.processor
            .on_assigned(partition, &mut ctx)
            .map_err(|e| anyhow::anyhow!(e).context(format!("assigning partition {partition}")))
    }

    fn start_restore(&mut self, partition: i32) {
        let owned = self.owned.own(partition);
        if owned.restoring {
            return;
        }
        owned.restoring = true;
        // The restore writes RocksDB directly: nothing of the partition may stay cached.
        self.store.discard(partition);
        if !self.restores.is_running(partition) {
            // Otherwise a cancelled one is still stopping: this starts when it has.
            self.spawn_restore(partition);
        }
    }

    fn spawn_restore(&mut self, partition: i32) {
        let cancel = self.restores.start(partition);
        let kafka = self.settings.kafka.clone();
        let changelog = self.settings.changelog_topic.clone();
        let restorer = self.store.restorer();
        let progress = RestoreProgress {
            remaining: self
                .metrics
                .restore_remaining
                .with_label_values(&[&partition.to_string()]),
            restored: self.metrics.restored_records.clone(),
        };
        let done = self.restored_tx.clone();
        tokio::task::spawn_blocking(move || {
            let outcome =
                restore_partition(&kafka, &changelog, partition, &restorer, &progress, &cancel);
            let _ = done.send((partition, outcome));
        });
    }

    /// The position of `topic` among the inputs.
    fn input_index(&self, topic: &str) -> anyhow::Result<usize> {
        self.settings
            .inputs
            .iter()
            .position(|t| t == topic)
            .with_context(|| format!("record from {topic}, which is not an input"))
    }

    fn handle(&mut self, record: &InputRecord<'_>, arrived: Instant) -> anyhow::Result<()> {
        let started = (self.processed_since_commit % LATENCY_SAMPLE == 0).then(Instant::now);
        let (topic, partition) = (record.topic, record.partition);
        if !self.owned.is_ready(partition) {
            // Fetched before the pause took effect: read it again after the restore.
            let first = self
                .rewinds
                .entry((topic.to_string(), partition))
                .or_insert(record.offset);
            *first = (*first).min(record.offset);
            return Ok(());
        }
        if !self.held.is_empty() {
            let key = (topic.to_string(), partition);
            match self.held.get(&key) {
                // Fetched before the pause took effect: re-read after the wait.
                Some(held) if held.waiting => return Ok(()),
                Some(_) => {
                    self.held.remove(&key);
                }
                None => {}
            }
        }
        let input = self.input_index(topic)?;
        let owned = self.owned.get_mut(partition).expect("checked above");
        if record.offset < owned.applied(&self.store, input, topic, partition)? {
            self.metrics.records_skipped.inc();
            return Ok(());
        }
        let clock = owned.clock(&self.store, partition, arrived)?;
        // Stream time counts the record once it is applied (below), not while
        // it waits for a retry; its processing already sees it.
        let observed = !self.control[input];
        let stream_time = if observed {
            clock.after(record.timestamp)
        } else {
            clock.stream_time
        };
        // A rejected or retried record emits nothing of its own.
        let outputs_before = self.outputs.len();
        let mut ctx = Context::new(
            &mut self.store,
            &self.codec,
            &mut self.outputs,
            partition,
            stream_time,
        )
        .with_partition_count(self.partitions);
        match self.processor.process(record, &mut ctx) {
            Ok(()) => {}
            Err(ProcessError::Rejected(rejection)) => {
                self.outputs.truncate(outputs_before);
                self.metrics
                    .dead_letters
                    .with_label_values(&[rejection.kind.as_str()])
                    .inc();
                tracing::debug!(
                    topic,
                    partition,
                    offset = record.offset,
                    customer = %crate::telemetry::key_tag(record.key.unwrap_or_default()),
                    kind = rejection.kind.as_str(),
                    reason = %rejection.message,
                    "record dead-lettered"
                );
                let dead = dead_letter(
                    &self.codec,
                    &self.settings.service,
                    &self.settings.dead_letter_topic,
                    record,
                    rejection,
                    self.max_message_bytes,
                )?;
                self.outputs.push(dead);
            }
            Err(ProcessError::Unavailable { kind, message }) => {
                self.outputs.truncate(outputs_before);
                self.hold(topic, partition, record.offset, kind, &message);
                return Ok(());
            }
            Err(ProcessError::Fatal(e)) => {
                return Err(e.context(format!(
                    "processing {topic}/{partition} offset {}",
                    record.offset
                )))
            }
        }
        let owned = self
            .owned
            .get_mut(partition)
            .expect("owned while processing");
        if observed {
            owned
                .clock(&self.store, partition, arrived)?
                .observe(record.timestamp, arrived);
        }
        owned.applied_up_to(input, record.offset + 1);
        self.processed_since_commit += 1;
        self.processed[input].inc();
        if let Some(started) = started {
            self.metrics
                .process_latency
                .observe(started.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// Advances stream time of the ready partitions and fires due timers.
    fn tick(&mut self, now: Instant) -> anyhow::Result<()> {
        let ready: Vec<i32> = self.owned.ready().collect();
        let idle_timeout = self.settings.runtime.idle_timeout;
        let wall = now_millis();
        for partition in ready {
            let (advanced, stream_time) = {
                let owned = self
                    .owned
                    .get_mut(partition)
                    .expect("ready partitions are owned");
                let clock = owned.clock(&self.store, partition, now)?;
                (clock.advance_if_idle(now, idle_timeout), clock.stream_time)
            };
            if advanced {
                self.metrics.idle_advances.inc();
            }
            for (clock, time) in [(Clock::Event, stream_time), (Clock::Wall, wall)] {
                for (at, key) in
                    self.store
                        .first_due_timers(partition, clock, time, TIMERS_PER_TICK)?
                {
                    self.store.cancel_timer(partition, clock, at, &key);
                    let mut ctx = Context::new(
                        &mut self.store,
                        &self.codec,
                        &mut self.outputs,
                        partition,
                        stream_time,
                    )
                    .with_partition_count(self.partitions);
                    match self.processor.on_timer(clock, at, &key, &mut ctx) {
                        Ok(()) => self.metrics.timers_fired.inc(),
                        Err(ProcessError::Rejected(r)) => {
                            anyhow::bail!(
                                "timer of partition {partition} rejected its own state: {}",
                                r.message
                            )
                        }
                        Err(ProcessError::Unavailable { message, .. }) => {
                            anyhow::bail!("timer of partition {partition} failed: {message}")
                        }
                        Err(ProcessError::Fatal(e)) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }

    /// Hands queued outputs to the producer; delivery is awaited at commit.
    async fn send_outputs(&mut self) -> anyhow::Result<()> {
        for output in std::mem::take(&mut self.outputs) {
            let mut record = FutureRecord::to(&output.topic)
                .key(&output.key)
                .payload(&output.payload)
                .timestamp(output.timestamp);
            if let Some(partition) = output.partition {
                record = record.partition(partition);
            }
            if !output.headers.is_empty() {
                let headers = output.headers.iter().fold(
                    OwnedHeaders::new_with_capacity(output.headers.len()),
                    |headers, (name, value)| {
                        headers.insert(Header {
                            key: name,
                            value: Some(value),
                        })
                    },
                );
                record = record.headers(headers);
            }
            let delivery = self.send(record).await?;
            self.in_flight.push(InFlight::Output(delivery));
            if self.in_flight.len() >= MAX_IN_FLIGHT {
                // Acknowledged within milliseconds (linger.ms): collected
                // now, they stop holding memory until the commit.
                self.await_deliveries().await?;
            }
            self.metrics
                .records_produced
                .with_label_values(&[output.topic.as_str()])
                .inc();
        }
        Ok(())
    }

    async fn send(
        &mut self,
        mut record: FutureRecord<'_, Vec<u8>, Vec<u8>>,
    ) -> anyhow::Result<DeliveryFuture> {
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.await_deliveries().await?;
                }
                Err((e, back)) => return Err(e).context(format!("producing to {}", back.topic)),
            }
        }
    }

    /// Waits for every produced record, noting where each changelog record landed.
    async fn await_deliveries(&mut self) -> anyhow::Result<()> {
        for in_flight in std::mem::take(&mut self.in_flight) {
            let (delivery, is_changelog) = match in_flight {
                InFlight::Output(d) => (d, false),
                InFlight::Changelog(d) => (d, true),
            };
            match delivery.await {
                Ok(Ok(delivered)) if is_changelog => {
                    if let Some(owned) = self.owned.get_mut(delivered.partition) {
                        owned.changelog.appended(delivered.offset);
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err((e, message))) => {
                    return Err(e).context(format!("delivering to {}", message.topic()))
                }
                Err(_) => anyhow::bail!("producer dropped a delivery"),
            }
        }
        Ok(())
    }

    /// Outputs and changelog acknowledged, then state with offsets, stream
    /// times and changelog positions written in one batch; returns the input
    /// offsets to commit to Kafka.
    async fn write_back(&mut self) -> anyhow::Result<TopicPartitionList> {
        self.send_outputs().await?;
        let mut offsets = TopicPartitionList::new();
        let now = now_millis();
        for (partition, owned) in self.owned.iter_mut() {
            if !owned.restoring {
                self.store.set_synced_at(partition, now);
            }
            for (input, offset) in owned.take_to_commit() {
                let topic = &self.settings.inputs[input];
                self.store.set_input_offset(topic, partition, offset);
                offsets.add_partition_offset(topic, partition, Offset::Offset(offset))?;
            }
            if let Some(time) = owned.stream_time_to_write() {
                self.store.set_stream_time(partition, time);
            }
        }
        let pending = self.store.pending_changes();
        let mut changes = Vec::new();
        for (partition, owned) in self.owned.iter_mut() {
            let torn = std::mem::take(&mut owned.torn);
            if !torn.is_empty() {
                changes.extend(self.store.current(partition, torn)?);
            }
        }
        changes.extend(pending);
        self.append_to_changelog(changes).await?;
        self.note_changelog_positions();
        let ends = self.changelog_ends_if_due().await?;
        let foreign = self.check_changelogs(&ends);
        if !foreign.is_empty() {
            self.write_over_foreign(foreign).await?;
            self.note_changelog_positions();
        }
        self.store.commit()?;
        self.processed_since_commit = 0;
        let memory = self.store.memory();
        self.metrics
            .state_keys
            .set(self.store.estimated_keys() as i64);
        self.metrics
            .block_cache_bytes
            .set(memory.block_cache_bytes() as i64);
        self.metrics
            .memtable_bytes
            .set(memory.memtable_bytes() as i64);
        self.metrics
            .record_cache_bytes
            .set(memory.record_cache_bytes() as i64);
        Ok(offsets)
    }

    /// Produces `changes` to the changelog, framed as one commit, and waits
    /// for the broker to acknowledge them.
    async fn append_to_changelog(&mut self, changes: Vec<Change>) -> anyhow::Result<()> {
        self.metrics.changelog_records.inc_by(changes.len() as u64);
        let changelog = self.settings.changelog_topic.clone();
        for change in frame(changes) {
            let mut record = FutureRecord::<Vec<u8>, Vec<u8>>::to(&changelog)
                .partition(change.partition)
                .key(&change.key);
            if let Some(value) = &change.value {
                record = record.payload(value);
            }
            let delivery = self.send(record).await?;
            self.in_flight.push(InFlight::Changelog(delivery));
        }
        self.await_deliveries().await
    }

    /// Records, with the state, how far each partition's changelog got.
    fn note_changelog_positions(&mut self) {
        for (partition, owned) in self.owned.iter() {
            if let Some(end) = owned.changelog.end() {
                self.store.set_changelog_position(partition, end);
            }
        }
    }

    /// The end of each ready owned partition's changelog, once every
    /// `runtime.changelog_check_interval` (none otherwise); read after this
    /// instance's records are acknowledged. A partition whose end cannot be
    /// read is left to the next time.
    async fn changelog_ends_if_due(&mut self) -> anyhow::Result<HashMap<i32, i64>> {
        if self.changelog_ends_read.elapsed() < self.settings.runtime.changelog_check_interval {
            return Ok(HashMap::new());
        }
        self.changelog_ends_read = Instant::now();
        let partitions: Vec<i32> = self.owned.ready().collect();
        let producer = self.producer.clone();
        let changelog = self.settings.changelog_topic.clone();
        tokio::task::spawn_blocking(move || {
            let mut ends = HashMap::new();
            for partition in partitions {
                match producer
                    .client()
                    .fetch_watermarks(&changelog, partition, END_READ_TIMEOUT)
                {
                    Ok((_, high)) => {
                        ends.insert(partition, high);
                    }
                    Err(e) => {
                        tracing::warn!(
                            changelog,
                            partition,
                            error = %e,
                            "cannot read a changelog partition's end; checking it next time"
                        );
                        break;
                    }
                }
            }
            ends
        })
        .await
        .context("reading the changelog's ends")
    }

    /// The offsets of another writer's records among this instance's own
    /// since the last check, and past them up to the partition's end where
    /// `ends` has it, per partition that has any.
    fn check_changelogs(&mut self, ends: &HashMap<i32, i64>) -> Vec<(i32, Vec<Range<i64>>)> {
        self.owned
            .iter_mut()
            .map(|(partition, owned)| {
                let high = ends.get(&partition).copied();
                (partition, owned.changelog.check(high))
            })
            .filter(|(_, foreign)| !foreign.is_empty())
            .collect()
    }

    /// Reads back another writer's records in the changelog and writes this
    /// instance's values of their keys over them, so no later restore takes
    /// theirs (see [`super::foreign_writes`]).
    async fn write_over_foreign(
        &mut self,
        foreign: Vec<(i32, Vec<Range<i64>>)>,
    ) -> anyhow::Result<()> {
        let kafka = self.settings.kafka.clone();
        let changelog = self.settings.changelog_topic.clone();
        let found = tokio::task::spawn_blocking(move || {
            foreign
                .into_iter()
                .map(|(partition, ranges)| {
                    let found = read_foreign(&kafka, &changelog, partition, &ranges)?;
                    Ok((partition, ranges, found))
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .await
        .context("reading back the changelog")??;
        let mut changes = Vec::new();
        for (partition, ranges, found) in found {
            self.metrics.changelog_foreign_records.inc_by(found.records);
            tracing::warn!(
                service = self.settings.service,
                partition,
                offsets = ?ranges,
                records = found.records,
                keys = found.keys.len(),
                "another writer appended to a changelog partition this instance owns, \
                 likely a stalled former owner: writing this instance's values over its keys"
            );
            changes.extend(self.store.current(partition, found.keys)?);
        }
        self.append_to_changelog(changes).await
    }
}
