//! The consumer's context: hears rebalances and librdkafka statistics.
//!
//! Newly assigned partitions are paused inside the rebalance callback, before
//! any record of theirs is fetched; the loop resumes each one once its state
//! is restored.
//!
//! Revoked partitions are not given up inside the callback: the loop first
//! commits their state, outputs and offsets, then releases them with
//! [`release`], so the next owner starts exactly where this one stopped. A
//! lost assignment (this member was thrown out of the group) is dropped
//! without committing, since another member may already own it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use prometheus::{IntCounter, IntGaugeVec};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Statistics, TopicPartitionList};
use tokio::sync::Notify;

/// A change of the consumer's assignment, by partition number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AssignmentChange {
    Assigned(Vec<(String, i32)>),
    /// Still assigned in the consumer until the loop calls [`release`].
    Revoked {
        partitions: Vec<(String, i32)>,
        /// Taken away without a clean hand-over: do not commit.
        lost: bool,
    },
}

/// The runtime's consumer context.
pub(crate) struct LoopContext {
    changes: Mutex<Vec<AssignmentChange>>,
    /// Wakes the loop when a change is queued: a paused partition yields no record to wake it.
    changed: Notify,
    /// Set once the loop has stopped: revocations are then released at once,
    /// since nobody is left to commit them and closing waits for the release.
    closing: AtomicBool,
    lag: IntGaugeVec,
    /// Offset commits the broker refused or that failed in flight.
    commit_failures: IntCounter,
}

impl LoopContext {
    pub(crate) fn new(lag: IntGaugeVec, commit_failures: IntCounter) -> Self {
        LoopContext {
            changes: Mutex::new(Vec::new()),
            changed: Notify::new(),
            closing: AtomicBool::new(false),
            lag,
            commit_failures,
        }
    }

    /// From now on the loop no longer handles revocations.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    /// Completes once a change is queued (immediately if one was queued meanwhile).
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// The assignment changes since the last call.
    pub(crate) fn take_changes(&self) -> Vec<AssignmentChange> {
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn push(&self, change: AssignmentChange) {
        self.changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(change);
        self.changed.notify_one();
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl ClientContext for LoopContext {
    fn stats(&self, statistics: Statistics) {
        for (name, topic) in &statistics.topics {
            for (partition, stats) in &topic.partitions {
                if *partition >= 0 && stats.consumer_lag >= 0 {
                    self.lag
                        .with_label_values(&[name.as_str(), &partition.to_string()])
                        .set(stats.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for LoopContext {
    /// The outcome of an asynchronous offset commit. The state already holds
    /// the offsets; Kafka's copy only tells the next owner where to start
    /// fetching, so a failed commit is made good by the next one.
    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            self.commit_failures.inc();
            tracing::warn!(error = %e, "offset commit failed; the next commit retries");
        }
    }

    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let assigned = match consumer.rebalance_protocol() {
                    RebalanceProtocol::Cooperative => consumer.incremental_assign(tpl),
                    _ => consumer.assign(tpl),
                };
                if let Err(e) = assigned {
                    tracing::error!(error = %e, "cannot take the assigned partitions");
                    return;
                }
                if tpl.count() == 0 {
                    return;
                }
                if let Err(e) = consumer.pause(tpl) {
                    tracing::error!(error = %e, "cannot pause newly assigned partitions");
                }
                self.push(AssignmentChange::Assigned(partitions(tpl)));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let revoked = partitions(tpl);
                for (topic, partition) in &revoked {
                    let _ = self
                        .lag
                        .remove_label_values(&[topic.as_str(), &partition.to_string()]);
                }
                if self.closing.load(Ordering::SeqCst) || revoked.is_empty() {
                    if let Err(e) = release(consumer, &revoked) {
                        tracing::error!(error = %e, "cannot release revoked partitions");
                    }
                    return;
                }
                self.push(AssignmentChange::Revoked {
                    partitions: revoked,
                    lost: consumer.assignment_lost(),
                });
            }
            other => {
                // The loop drops the partitions as lost (their new owners
                // re-process from the last commit) and then releases them.
                tracing::error!(error = ?other, "rebalance failed; dropping the assignment");
                let held = consumer
                    .assignment()
                    .map(|tpl| partitions(&tpl))
                    .unwrap_or_default();
                if self.closing.load(Ordering::SeqCst) || held.is_empty() {
                    if let Err(e) = consumer.unassign() {
                        tracing::error!(error = %e, "cannot drop the assignment");
                    }
                    return;
                }
                self.push(AssignmentChange::Revoked {
                    partitions: held,
                    lost: true,
                });
            }
        }
    }
}

/// Gives revoked partitions back to the group, once their state is committed.
pub(crate) fn release<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    revoked: &[(String, i32)],
) -> KafkaResult<()> {
    match consumer.rebalance_protocol() {
        RebalanceProtocol::Cooperative => {
            let mut tpl = TopicPartitionList::new();
            for (topic, partition) in revoked {
                tpl.add_partition(topic, *partition);
            }
            consumer.incremental_unassign(&tpl)
        }
        _ => consumer.unassign(),
    }
}
