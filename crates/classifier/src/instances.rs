//! Which instance owns which partition, for the query API.
//!
//! Each instance knows the partitions it owns ([`LocalPartitions`], kept by
//! the processor as partitions are assigned and revoked) and publishes them
//! with its advertised URL to a compacted topic, `<group>-instances`, keyed by
//! that URL. Every instance reads the topic from the beginning into a
//! [`Directory`]: the owner of a partition is the instance that claimed it
//! last.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use journey_core::config::KafkaConfig;
use journey_core::kafka::TopicSpec;
use journey_core::state::StateReader;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The partitions this instance owns (restored and processing), and a reader of their state.
#[derive(Clone)]
pub struct LocalPartitions {
    owned: watch::Sender<BTreeSet<i32>>,
    reader: Arc<OnceLock<StateReader>>,
}

impl Default for LocalPartitions {
    fn default() -> Self {
        LocalPartitions {
            owned: watch::Sender::new(BTreeSet::new()),
            reader: Arc::new(OnceLock::new()),
        }
    }
}

impl LocalPartitions {
    /// Records that `partition` is owned, its state readable through `reader`.
    pub fn claim(&self, partition: i32, reader: StateReader) {
        let _ = self.reader.set(reader);
        self.owned.send_modify(|owned| {
            owned.insert(partition);
        });
    }

    /// Records that `partition` moved away.
    pub fn release(&self, partition: i32) {
        self.owned
            .send_if_modified(|owned| owned.remove(&partition));
    }

    /// The state reader, if `partition` is owned.
    pub fn reader_of(&self, partition: i32) -> Option<StateReader> {
        if self.owned.borrow().contains(&partition) {
            self.reader.get().cloned()
        } else {
            None
        }
    }

    /// The owned partitions now.
    pub fn owned(&self) -> BTreeSet<i32> {
        self.owned.borrow().clone()
    }
}

/// One instance's claim, as published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    pub url: String,
    pub partitions: Vec<i32>,
}

/// Partitions an instance claims, and when it published the claim.
type Claimed = (Vec<i32>, i64);

/// Every instance's latest claim, by URL.
#[derive(Clone, Default)]
pub struct Directory {
    claims: Arc<RwLock<HashMap<String, Claimed>>>,
}

impl Directory {
    /// Records `claim`, published at `at`.
    pub fn record(&self, claim: Claim, at: i64) {
        let mut claims = self.claims.write().unwrap_or_else(|e| e.into_inner());
        let newer = claims.get(&claim.url).is_none_or(|(_, seen)| at >= *seen);
        if newer {
            claims.insert(claim.url, (claim.partitions, at));
        }
    }

    /// The URL of the instance that claimed `partition` last, if any.
    pub fn owner(&self, partition: i32) -> Option<String> {
        let claims = self.claims.read().unwrap_or_else(|e| e.into_inner());
        claims
            .iter()
            .filter(|(_, (partitions, _))| partitions.contains(&partition))
            .max_by_key(|(url, (_, at))| (*at, (*url).clone()))
            .map(|(url, _)| url.clone())
    }
}

/// The compacted topic instances publish their claims to.
pub fn topic_spec(group_id: &str) -> TopicSpec {
    TopicSpec::compacted(format!("{group_id}-instances"), 1)
}

/// First and longest wait between attempts to publish a claim.
const CLAIM_RETRY: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));

/// Publishes this instance's claim whenever its partitions change, and an
/// empty one at shutdown, until `shutdown` is cancelled. A claim the broker
/// does not take is retried with backoff (the latest partitions each time):
/// other instances would otherwise route queries by a stale claim for good.
pub async fn publish(
    kafka: KafkaConfig,
    topic: String,
    url: String,
    local: LocalPartitions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let producer = journey_core::kafka::producer(&kafka)?;
    // So that the first claim does not wait for the producer id.
    if let Err(e) = journey_core::kafka::learn_leaders(&producer, &topic).await {
        tracing::warn!(
            error = format!("{e:#}"),
            "reading the instances topic's leader"
        );
    }
    let mut changes = local.owned.subscribe();
    loop {
        let mut wait = CLAIM_RETRY.0;
        loop {
            let partitions: Vec<i32> = changes.borrow_and_update().iter().copied().collect();
            let Err(e) = send_claim(&producer, &topic, &url, partitions).await else {
                break;
            };
            tracing::warn!(
                error = format!("{e:#}"),
                retry_in_ms = wait.as_millis() as u64,
                "cannot publish this instance's partitions; retrying"
            );
            tokio::select! {
                _ = shutdown.cancelled() => return send_claim(&producer, &topic, &url, Vec::new()).await,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(CLAIM_RETRY.1);
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = changes.changed() => changed.context("partition watch closed")?,
        }
    }
    send_claim(&producer, &topic, &url, Vec::new()).await
}

async fn send_claim(
    producer: &FutureProducer,
    topic: &str,
    url: &str,
    partitions: Vec<i32>,
) -> anyhow::Result<()> {
    let payload = serde_json::to_vec(&Claim {
        url: url.to_string(),
        partitions,
    })?;
    producer
        .send(
            FutureRecord::to(topic).key(url).payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .with_context(|| format!("publishing the claim of {url} to {topic}"))?;
    Ok(())
}

/// Reads every claim of `topic` into `directory` until `shutdown` is cancelled.
pub async fn follow(
    kafka: KafkaConfig,
    topic: String,
    directory: Directory,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let consumer: StreamConsumer = journey_core::kafka::client_config(&kafka)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the instance directory consumer")?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&topic, 0, Offset::Beginning)?;
    consumer
        .assign(&assignment)
        .context("assigning the instances topic")?;
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            message = consumer.recv() => message,
        };
        match message {
            Ok(message) => {
                let Some(payload) = message.payload() else {
                    continue;
                };
                match serde_json::from_slice::<Claim>(payload) {
                    Ok(claim) => {
                        let at = message.timestamp().to_millis().unwrap_or(0);
                        directory.record(claim, at);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, topic = %topic, "ignoring an unreadable claim")
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, topic = %topic, "reading the instances topic"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(url: &str, partitions: &[i32]) -> Claim {
        Claim {
            url: url.into(),
            partitions: partitions.to_vec(),
        }
    }

    #[test]
    fn the_latest_claim_of_a_partition_wins() {
        let directory = Directory::default();
        directory.record(claim("http://a", &[0, 1]), 10);
        directory.record(claim("http://b", &[1, 2]), 20);
        assert_eq!(directory.owner(0).as_deref(), Some("http://a"));
        assert_eq!(directory.owner(1).as_deref(), Some("http://b"));
        assert_eq!(directory.owner(3), None);
        // An instance gives a partition up: the other one's claim remains.
        directory.record(claim("http://b", &[2]), 30);
        assert_eq!(directory.owner(1).as_deref(), Some("http://a"));
    }

    #[test]
    fn an_older_claim_does_not_replace_a_newer_one() {
        let directory = Directory::default();
        directory.record(claim("http://a", &[0]), 20);
        directory.record(claim("http://a", &[]), 10);
        assert_eq!(directory.owner(0).as_deref(), Some("http://a"));
    }
}
