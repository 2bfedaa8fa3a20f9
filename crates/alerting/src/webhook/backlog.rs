//! How far behind each webhook receiver is: the alerts on the topic its
//! relay has not yet delivered or abandoned.
//!
//! A relay notes, per assigned partition, the offset of the next alert it
//! has to deal with: the one under delivery, or the one after the last it
//! finished. A partition newly assigned starts at its group's committed
//! offset. Each scrape subtracts these from the partitions' high watermarks
//! as the relay's consumer last heard them (librdkafka's own copy, updated
//! by its fetcher threads: no request), so the figure keeps growing while a
//! relay waits on a dead receiver.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGaugeVec, Opts};
use rdkafka::bindings::rd_kafka_get_watermark_offsets;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// A relay's consumer.
pub(crate) type RelayConsumer = BaseConsumer<RelayContext>;

/// Where a relay stands in each partition it is assigned.
#[derive(Default)]
pub(crate) struct Positions {
    /// Partition to the offset of the next alert to deal with.
    next: Mutex<HashMap<i32, i64>>,
    /// Partitions were assigned since positions were last learnt.
    assigned: AtomicBool,
}

impl Positions {
    fn lock(&self) -> MutexGuard<'_, HashMap<i32, i64>> {
        self.next.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Everything before `offset` in `partition` is dealt with.
    pub(crate) fn advance(&self, partition: i32, offset: i64) {
        self.lock().insert(partition, offset);
    }
}

/// A relay's consumer context: keeps its positions through rebalances.
#[derive(Default)]
pub(crate) struct RelayContext {
    positions: Positions,
}

impl RelayContext {
    /// The relay's positions.
    pub(crate) fn positions(&self) -> &Positions {
        &self.positions
    }
}

impl ClientContext for RelayContext {}

impl ConsumerContext for RelayContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            // Learnt by `learn_positions` on the relay's loop, outside the callback.
            Rebalance::Assign(_) => self.positions.assigned.store(true, Ordering::SeqCst),
            Rebalance::Revoke(partitions) => {
                let mut next = self.positions.lock();
                for p in partitions.elements() {
                    next.remove(&p.partition());
                }
            }
            Rebalance::Error(_) => {}
        }
    }
}

/// After an assignment, sets the position of each assigned partition the
/// relay has none for to its group's committed offset. A partition without
/// one has no position until its first alert is read. On an error the
/// positions are asked for again on the next call.
pub(crate) fn learn_positions(consumer: &RelayConsumer, timeout: Duration) -> KafkaResult<()> {
    let positions = consumer.context().positions();
    if !positions.assigned.swap(false, Ordering::SeqCst) {
        return Ok(());
    }
    let committed = committed_offsets_unknown(consumer, timeout)
        .inspect_err(|_| positions.assigned.store(true, Ordering::SeqCst))?;
    let mut next = positions.lock();
    for p in committed.elements() {
        if let Offset::Offset(offset) = p.offset() {
            next.insert(p.partition(), offset);
        }
    }
    Ok(())
}

/// The group's committed offsets of the assigned partitions that have no position.
fn committed_offsets_unknown(
    consumer: &RelayConsumer,
    timeout: Duration,
) -> KafkaResult<TopicPartitionList> {
    let assignment = consumer.assignment()?;
    let mut unknown = TopicPartitionList::new();
    {
        let next = consumer.context().positions().lock();
        for p in assignment.elements() {
            if !next.contains_key(&p.partition()) {
                unknown.add_partition(p.topic(), p.partition());
            }
        }
    }
    if unknown.count() == 0 {
        return Ok(unknown);
    }
    consumer.committed_offsets(unknown, timeout)
}

/// The `webhook_backlog_alerts` gauge by receiver, worked out at each scrape
/// from the running relays' consumers.
#[derive(Clone)]
pub struct Backlog {
    gauge: IntGaugeVec,
    relays: Arc<Mutex<Vec<Tracked>>>,
}

/// A running relay, as the backlog gauge reads it.
struct Tracked {
    receiver: String,
    /// The alerts topic.
    topic: CString,
    consumer: Arc<RelayConsumer>,
}

impl Backlog {
    pub(crate) fn new() -> Self {
        let opts = Opts::new(
            "webhook_backlog_alerts",
            "Alerts on the alerts topic a webhook receiver's relay has not yet delivered or abandoned, in the partitions this instance relays.",
        );
        Backlog {
            gauge: IntGaugeVec::new(opts, &["receiver"]).expect("a valid metric"),
            relays: Arc::default(),
        }
    }

    fn relays(&self) -> MutexGuard<'_, Vec<Tracked>> {
        self.relays.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reports `receiver`'s relay, reading `topic` with `consumer`.
    pub(crate) fn track(&self, receiver: &str, topic: &str, consumer: Arc<RelayConsumer>) {
        // Topic names are checked at start-up, and have no NUL.
        let topic = CString::new(topic).unwrap_or_default();
        self.relays().push(Tracked {
            receiver: receiver.to_string(),
            topic,
            consumer,
        });
    }

    /// No longer reports the relays, which have stopped.
    pub(crate) fn forget(&self) {
        self.relays().clear();
        self.gauge.reset();
    }
}

/// Alerts from each partition's `next` up to its high watermark in
/// `consumer`'s copy; a partition whose watermark is not known yet counts
/// none.
fn behind(consumer: &RelayConsumer, topic: &CStr) -> i64 {
    consumer
        .context()
        .positions()
        .lock()
        .iter()
        .filter_map(|(&partition, &next)| {
            let high = heard_high_watermark(consumer, topic, partition)?;
            Some((high - next).max(0))
        })
        .sum()
}

/// The high watermark of `topic`'s `partition` as `consumer` last heard it
/// in a fetch: librdkafka's `rd_kafka_get_watermark_offsets`, which asks no
/// broker (rdkafka's `fetch_watermarks` does); `None` if not heard yet.
fn heard_high_watermark(consumer: &RelayConsumer, topic: &CStr, partition: i32) -> Option<i64> {
    let (mut low, mut high) = (-1, -1);
    // SAFETY: the client handle lives as long as `consumer`, `topic` is
    // NUL-terminated, and librdkafka only writes the two offsets.
    let error = unsafe {
        rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (error == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
}

impl Collector for Backlog {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        for r in self.relays().iter() {
            self.gauge
                .with_label_values(&[r.receiver.as_str()])
                .set(behind(&r.consumer, &r.topic));
        }
        self.gauge.collect()
    }
}
