//! Restoring a partition's state from its changelog topic.
//!
//! The changelog holds every committed change of the state, input offsets and
//! stream time included. Local state that is missing, behind, or ahead of the
//! changelog (a recreated topic) is brought to the changelog's end; the input
//! then resumes from the offsets the restored state reflects.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use prometheus::{IntCounter, IntGauge};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::state::{Change, Restorer};

/// Records written to RocksDB per restore batch.
const BATCH: usize = 10_000;
/// A restore that makes no progress for this long fails.
const STALL: Duration = Duration::from_secs(60);

/// Gauges and counters a restore reports to.
#[derive(Clone)]
pub(crate) struct RestoreProgress {
    pub(crate) remaining: IntGauge,
    pub(crate) restored: IntCounter,
}

/// Brings `partition` of the store up to the end of `changelog`; returns the
/// number of changelog records applied.
pub(crate) fn restore_partition(
    kafka: &KafkaConfig,
    changelog: &str,
    partition: i32,
    restorer: &Restorer,
    progress: &RestoreProgress,
) -> anyhow::Result<u64> {
    let consumer: BaseConsumer = crate::kafka::client_config(kafka)
        .set("group.id", "journey-restore")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .context("creating changelog consumer")?;
    let (low, high) = consumer
        .fetch_watermarks(changelog, partition, Duration::from_secs(30))
        .with_context(|| format!("reading watermarks of {changelog}/{partition}"))?;
    let local = restorer.changelog_position(partition)?;
    let from = match local {
        Some(position) if position >= low && position <= high => position,
        Some(position) if position > high => {
            tracing::warn!(
                changelog,
                partition,
                position,
                high,
                "local state is ahead of its changelog: restoring in full"
            );
            restorer.wipe(partition)?;
            low
        }
        _ => {
            restorer.wipe(partition)?;
            low
        }
    };
    if from >= high {
        return Ok(0);
    }
    tracing::info!(
        changelog,
        partition,
        from,
        to = high,
        "restoring state from changelog"
    );
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(changelog, partition, Offset::Offset(from))?;
    consumer.assign(&assignment)?;
    let mut batch: Vec<Change> = Vec::with_capacity(BATCH);
    let mut next = from;
    let mut applied = 0u64;
    let mut last_progress = Instant::now();
    progress.remaining.set(high - from);
    while next < high {
        match consumer.poll(Duration::from_millis(500)) {
            None => anyhow::ensure!(
                last_progress.elapsed() < STALL,
                "restoring {changelog}/{partition}: no record for {STALL:?} at offset {next} of {high}"
            ),
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => return Err(e).with_context(|| format!("reading {changelog}/{partition}")),
            Some(Ok(message)) => {
                last_progress = Instant::now();
                next = message.offset() + 1;
                batch.push(Change {
                    partition,
                    key: message.key().unwrap_or_default().to_vec(),
                    value: message.payload().map(<[u8]>::to_vec),
                });
                if batch.len() >= BATCH {
                    restorer.restore(partition, &batch, next)?;
                    applied += batch.len() as u64;
                    progress.restored.inc_by(batch.len() as u64);
                    progress.remaining.set((high - next).max(0));
                    batch.clear();
                }
            }
        }
    }
    restorer.restore(partition, &batch, next.max(high))?;
    applied += batch.len() as u64;
    progress.restored.inc_by(batch.len() as u64);
    progress.remaining.set(0);
    tracing::info!(changelog, partition, records = applied, "state restored");
    Ok(applied)
}
