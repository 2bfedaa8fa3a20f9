//! Restoring a partition's state from its changelog topic.
//!
//! The changelog holds every committed change of the state, input offsets and
//! stream time included. Local state that is missing, behind, or ahead of the
//! changelog (a recreated topic) is brought to the changelog's end, less a
//! commit a crash tore (see [`CommitFrames`]); the input then resumes from
//! the offsets the restored state reflects. Records appended after the end
//! the restore read to are another writer's (see [`super::foreign_writes`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use prometheus::{IntCounter, IntGauge};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::commit_frames::CommitFrames;
use super::now_millis;
use crate::config::KafkaConfig;
use crate::state::{Change, Restorer};

/// Records written to RocksDB per restore batch.
const BATCH: usize = 10_000;
/// A read of the changelog that makes no progress for this long fails.
pub(crate) const STALL: Duration = Duration::from_secs(60);
/// Local state last in step with its changelog longer ago than this is
/// restored in full: by then the broker may have compacted away tombstones
/// another instance wrote (after `delete.retention.ms`, 24 h by default), and
/// replaying from the local position would bring deleted keys back.
const STALE_AFTER_MS: i64 = 12 * 3600 * 1000;

/// Where a restore continues from: the local changelog `position`, if the
/// changelog's offsets `low..=high` still hold it and the local state was in
/// step with the changelog (`synced_at`) within [`STALE_AFTER_MS`] of `now`;
/// `None` for a full restore. State written before `synced_at` was recorded
/// is trusted.
fn resume_from(
    position: Option<i64>,
    synced_at: Option<i64>,
    (low, high): (i64, i64),
    now: i64,
) -> Option<i64> {
    let fresh = synced_at.is_none_or(|at| now.saturating_sub(at) <= STALE_AFTER_MS);
    position.filter(|p| (low..=high).contains(p) && fresh)
}

/// Gauges and counters a restore reports to.
#[derive(Clone)]
pub(crate) struct RestoreProgress {
    pub(crate) remaining: IntGauge,
    pub(crate) restored: IntCounter,
}

/// The restores in flight, at most one per partition. A partition revoked
/// during its restore has it cancelled; assigned again before the cancelled
/// restore has stopped, it waits for it to stop before a new one starts, so
/// two restores never write one partition's state at once.
#[derive(Default)]
pub(crate) struct Restores {
    running: HashMap<i32, Arc<AtomicBool>>,
}

impl Restores {
    /// Whether a restore of `partition` is running (cancelled or not).
    pub(crate) fn is_running(&self, partition: i32) -> bool {
        self.running.contains_key(&partition)
    }

    /// Records a restore of `partition` starting; it stops early once the
    /// returned flag is set.
    pub(crate) fn start(&mut self, partition: i32) -> Arc<AtomicBool> {
        let cancel = Arc::new(AtomicBool::new(false));
        self.running.insert(partition, Arc::clone(&cancel));
        cancel
    }

    /// Asks the restore of `partition`, if one is running, to stop.
    pub(crate) fn cancel(&mut self, partition: i32) {
        if let Some(cancel) = self.running.get(&partition) {
            cancel.store(true, Ordering::Relaxed);
        }
    }

    /// Records that the restore of `partition` has stopped; returns whether
    /// it had been cancelled (its outcome is then no one's).
    pub(crate) fn finish(&mut self, partition: i32) -> bool {
        self.running
            .remove(&partition)
            .is_some_and(|cancel| cancel.load(Ordering::Relaxed))
    }
}

/// What a restore leaves for the loop.
#[derive(Debug, Default)]
pub(crate) struct Restored {
    /// Keys a torn commit changed (see [`CommitFrames`]): the next commit
    /// writes their restored values over them.
    pub(crate) torn: Vec<Vec<u8>>,
    /// The changelog offset the restore read up to (exclusive): records
    /// from there on are not in the restored state.
    pub(crate) end: i64,
}

/// A consumer that reads changelog partitions it is assigned, outside any group.
pub(crate) fn changelog_reader(kafka: &KafkaConfig) -> anyhow::Result<BaseConsumer> {
    crate::kafka::client_config(kafka)
        .set("group.id", "journey-restore")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .context("creating changelog consumer")
}

/// Brings `partition` of the store up to the end of `changelog`, or as far as
/// it got when `cancel` is set. Each batch lands with the changelog position
/// it reaches, so a cancelled restore leaves state a later one continues from.
pub(crate) fn restore_partition(
    kafka: &KafkaConfig,
    changelog: &str,
    partition: i32,
    restorer: &Restorer,
    progress: &RestoreProgress,
    cancel: &AtomicBool,
) -> anyhow::Result<Restored> {
    let consumer = changelog_reader(kafka)?;
    let (low, high) = consumer
        .fetch_watermarks(changelog, partition, Duration::from_secs(30))
        .with_context(|| format!("reading watermarks of {changelog}/{partition}"))?;
    let local = restorer.changelog_position(partition)?;
    let synced_at = restorer.synced_at(partition)?;
    let from = match resume_from(local, synced_at, (low, high), now_millis()) {
        Some(position) => position,
        None => {
            if local.is_some() {
                tracing::warn!(
                    changelog,
                    partition,
                    position = local,
                    low,
                    high,
                    synced_at,
                    "local state is ahead of its changelog, or too old to catch up: restoring in full"
                );
            }
            restorer.wipe(partition)?;
            low
        }
    };
    if from >= high {
        return Ok(Restored {
            torn: Vec::new(),
            end: from,
        });
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
    let mut frames = CommitFrames::new(from);
    let mut next = from;
    let mut applied = 0u64;
    let mut last_progress = Instant::now();
    progress.remaining.set(high - from);
    while next < high {
        if cancel.load(Ordering::Relaxed) {
            tracing::info!(
                changelog,
                partition,
                next,
                "restore cancelled: partition revoked"
            );
            return Ok(Restored::default());
        }
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
                let change = Change {
                    partition,
                    key: message.key().unwrap_or_default().to_vec(),
                    value: message.payload().map(<[u8]>::to_vec),
                };
                frames.push(message.offset(), change);
                if frames.complete_len() >= BATCH {
                    let (batch, to) = frames.take_complete();
                    restorer.restore(partition, &batch, to, now_millis())?;
                    applied += batch.len() as u64;
                    progress.restored.inc_by(batch.len() as u64);
                    progress.remaining.set((high - next).max(0));
                }
            }
        }
    }
    let end = next.max(high);
    let (batch, to, torn) = frames.finish(end);
    restorer.restore(partition, &batch, to, now_millis())?;
    applied += batch.len() as u64;
    progress.restored.inc_by(batch.len() as u64);
    progress.remaining.set(0);
    if !torn.is_empty() {
        tracing::warn!(
            changelog,
            partition,
            keys = torn.len(),
            from = to,
            "left out a commit torn by a crash; the next commit writes its keys' restored values"
        );
    }
    tracing::info!(changelog, partition, records = applied, "state restored");
    Ok(Restored { torn, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_continues_from_local_state_only_if_the_changelog_can_still_bring_it_up_to_date() {
        const HOUR: i64 = 3600 * 1000;
        let now = 100 * HOUR;
        let cases = [
            // (position, synced_at, low..=high, expected start)
            (Some(5), Some(now - HOUR), (0, 10), Some(5)),
            (Some(5), None, (0, 10), Some(5)),
            (Some(5), Some(now - STALE_AFTER_MS), (0, 10), Some(5)),
            (Some(5), Some(now - STALE_AFTER_MS - 1), (0, 10), None),
            (Some(11), Some(now), (0, 10), None),
            (Some(5), Some(now), (6, 10), None),
            (None, Some(now), (0, 10), None),
        ];
        for (position, synced_at, range, expected) in cases {
            assert_eq!(
                resume_from(position, synced_at, range, now),
                expected,
                "{position:?} synced at {synced_at:?} in {range:?}"
            );
        }
    }

    #[test]
    fn only_a_restore_cancelled_by_a_revoke_finishes_as_cancelled() {
        let mut restores = Restores::default();
        let cancel = restores.start(1);
        restores.start(2);
        restores.cancel(1);
        restores.cancel(3); // not running: nothing to cancel
        assert!(cancel.load(Ordering::Relaxed), "the restore sees its flag");
        assert!(restores.is_running(1), "running until it has stopped");
        assert!(restores.finish(1));
        assert!(!restores.finish(2));
        assert!(!restores.is_running(1) && !restores.is_running(2));
    }
}
