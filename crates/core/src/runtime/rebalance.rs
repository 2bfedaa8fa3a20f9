//! The consumer's context: hears rebalances and librdkafka statistics.
//!
//! Newly assigned partitions are paused inside the rebalance callback, before
//! any record of theirs is fetched; the loop resumes each one once its state
//! is restored. Revocations are queued for the loop, which drops the
//! partition's uncommitted state.

use std::sync::Mutex;

use prometheus::IntGaugeVec;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Statistics, TopicPartitionList};
use tokio::sync::Notify;

/// A change of the consumer's assignment, by partition number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AssignmentChange {
    Assigned(Vec<(String, i32)>),
    Revoked(Vec<(String, i32)>),
}

/// The runtime's consumer context.
pub(crate) struct LoopContext {
    changes: Mutex<Vec<AssignmentChange>>,
    /// Wakes the loop when a change is queued: a paused partition yields no record to wake it.
    changed: Notify,
    lag: IntGaugeVec,
}

impl LoopContext {
    pub(crate) fn new(lag: IntGaugeVec) -> Self {
        LoopContext {
            changes: Mutex::new(Vec::new()),
            changed: Notify::new(),
            lag,
        }
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
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let revoked = partitions(tpl);
            for (topic, partition) in &revoked {
                let _ = self
                    .lag
                    .remove_label_values(&[topic.as_str(), &partition.to_string()]);
            }
            self.push(AssignmentChange::Revoked(revoked));
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            if tpl.count() == 0 {
                return;
            }
            if let Err(e) = consumer.pause(tpl) {
                tracing::error!(error = %e, "cannot pause newly assigned partitions");
            }
            self.push(AssignmentChange::Assigned(partitions(tpl)));
        }
    }
}
