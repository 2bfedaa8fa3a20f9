//! How fast a new instance gets a partition's state back: a processor keeps
//! one value per key for 1M keys (the scale of alerting's state for 1M
//! customers), committing them to its changelog; then, in each round, an
//! instance with an empty state directory joins the same group and restores
//! every partition from the changelog (read, commit frames checked, written
//! to RocksDB in batches), against a bare rdkafka consumer that only counts
//! the changelog's records, on the same local broker in the same run.
//! Prints each round's rates, ratio and time to ready, and the median ratio.
//!
//! Run: `cargo bench -p journey-tests --bench restore`

use std::time::{Duration, Instant};

use journey_core::config::RuntimeConfig;
use journey_core::http::Readiness;
use journey_core::metrics::RuntimeMetrics;
use journey_tests::bench::{bare_rate, fill, run_in_runtime, BenchTopic, Instance, KeepPayloads};
use journey_tests::Broker;
use rdkafka::consumer::{BaseConsumer, Consumer};

const INPUT: BenchTopic = BenchTopic {
    name: "bench-keys",
    partitions: 3,
    records: 1_000_000,
};
const GROUP: &str = "bench-restore";
/// The group's changelog, as [`Instance`] names it.
const CHANGELOG: &str = "bench-restore-changelog";
/// Bytes of each key's value, about a customer's context in alerting.
const VALUE_BYTES: usize = 150;
const ROUNDS: usize = 3;

/// A value of [`VALUE_BYTES`] for record `i`: varied, as state values are,
/// so that compression does not flatter the runs.
fn value(i: u64) -> Vec<u8> {
    let mut state = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..VALUE_BYTES)
        .map(|n| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Half the bytes from a small alphabet, as text fields are.
            if n % 2 == 0 {
                b'a' + (state % 16) as u8
            } else {
                state as u8
            }
        })
        .collect()
}

/// Records in the changelog topic, frames included.
fn changelog_records(broker: &Broker) -> u64 {
    let consumer: BaseConsumer = journey_core::kafka::client_config(&broker.kafka())
        .create()
        .expect("consumer");
    (0..INPUT.partitions as i32)
        .map(|partition| {
            let (low, high) = consumer
                .fetch_watermarks(CHANGELOG, partition, Duration::from_secs(10))
                .expect("watermarks");
            (high - low) as u64
        })
        .sum()
}

/// One restore, timed from when the first batch of records landed.
struct Restore {
    /// Records restored after the first batch.
    records: u64,
    /// From the start of the instance to its readiness.
    from_start: Duration,
    /// From the first batch to readiness.
    restoring: Duration,
}

impl Restore {
    fn rate(&self) -> f64 {
        self.records as f64 / self.restoring.as_secs_f64()
    }
}

/// Starts an instance of the group with empty local state and waits until it
/// has restored every partition it was assigned.
async fn restore(broker: &Broker) -> Restore {
    let registry = prometheus::Registry::new();
    let metrics = RuntimeMetrics::new(&registry);
    let (restored, assigned) = (
        metrics.restored_records.clone(),
        metrics.assigned_partitions.clone(),
    );
    let readiness = Readiness::default();
    let started = Instant::now();
    let instance = Instance::start(
        broker,
        INPUT,
        GROUP,
        KeepPayloads,
        RuntimeConfig::default(),
        metrics,
        readiness.clone(),
    );
    let mut first: Option<(Instant, u64)> = None;
    let ready = loop {
        let now = Instant::now();
        let count = restored.get();
        if count > 0 && first.is_none() {
            first = Some((now, count));
        }
        // Restores start after the assignment turned readiness off.
        if first.is_some() && assigned.get() == INPUT.partitions as i64 && readiness.get() {
            break now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "not restored within 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let (first_at, first_count) = first.expect("restore started");
    let total = restored.get();
    instance.stop().await;
    Restore {
        records: total - first_count,
        from_start: ready - started,
        restoring: ready - first_at,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let broker = Broker::start();
    let now = journey_core::runtime::now_millis();
    let records = (0..INPUT.records).map(|i| (format!("customer-{i:07}"), value(i), now));
    fill(&broker.kafka(), INPUT, records).await;
    let registry = prometheus::Registry::new();
    run_in_runtime(
        &broker,
        INPUT,
        GROUP,
        KeepPayloads,
        RuntimeConfig::default(),
        &registry,
    )
    .await;
    let changelog = BenchTopic {
        name: CHANGELOG,
        partitions: INPUT.partitions,
        records: changelog_records(&broker),
    };
    println!(
        "restore of {} keys ({VALUE_BYTES}-byte values, 3 partitions) from {} changelog records, {ROUNDS} rounds",
        INPUT.records, changelog.records
    );
    let mut ratios = Vec::new();
    for round in 0..ROUNDS {
        let bare = bare_rate(&broker, changelog, &format!("bench-bare-changelog-{round}")).await;
        let restored = restore(&broker).await;
        let rate = restored.rate();
        println!(
            "round {round}: bare rdkafka consumer {bare:.0} records/s; restore {rate:.0} records/s (ratio {:.2}), {} records in {:.2} s, ready {:.2} s after start",
            rate / bare,
            restored.records,
            restored.restoring.as_secs_f64(),
            restored.from_start.as_secs_f64(),
        );
        ratios.push(rate / bare);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "median ratio of restore to the bare consumer: {:.2}",
        ratios[ROUNDS / 2]
    );
}
