//! Prometheus metrics of the processing runtime, common to every service.
//!
//! Each service has its own registry whose names start `journey_<service>_`.
//! No label ever holds a customer id.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// A registry whose metric names start with `journey_<service>_`.
pub fn registry(service: &str) -> Registry {
    // Only fails for an invalid prefix; service names are fixed identifiers.
    Registry::new_custom(Some(format!("journey_{service}")), None)
        .expect("service names are valid metric prefixes")
}

/// Registers `metric` and returns it; names are fixed, so a failure is a bug.
pub fn register<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique within a service");
    metric
}

/// What the processing loop measures.
#[derive(Clone)]
pub struct RuntimeMetrics {
    /// Input records handled, by input topic.
    pub records_processed: IntCounterVec,
    /// Input records sent to the dead-letter topic, by error kind.
    pub dead_letters: IntCounterVec,
    /// Records whose processing hit a transient failure and will be retried
    /// after a backoff, by error kind.
    pub retries: IntCounterVec,
    /// Output records produced, by output topic.
    pub records_produced: IntCounterVec,
    /// Time to process one input record.
    pub process_latency: Histogram,
    /// Time to commit: wait for outputs, write state, commit offsets.
    pub commit_latency: Histogram,
    /// Estimated keys in the state store.
    pub state_keys: IntGauge,
    /// Timer passes that advanced stream time by the wall clock on an idle partition.
    pub idle_advances: IntCounter,
    /// Input records skipped because the state already reflects them (replays after a crash).
    pub records_skipped: IntCounter,
    /// Records behind the end of each assigned input partition.
    pub consumer_lag: IntGaugeVec,
    /// Input partitions assigned to this instance.
    pub assigned_partitions: IntGauge,
    /// Changelog records still to restore, per partition.
    pub restore_remaining: IntGaugeVec,
    /// Changelog records restored into local state.
    pub restored_records: IntCounter,
    /// State changes written to the changelog.
    pub changelog_records: IntCounter,
    /// Changelog records another writer appended to an owned partition.
    pub changelog_foreign_records: IntCounter,
    /// Timers fired.
    pub timers_fired: IntCounter,
    /// Kafka offset commits the broker refused (during rebalances).
    pub offset_commit_failures: IntCounter,
    /// Bytes in the process's RocksDB block cache (memtables included).
    pub block_cache_bytes: IntGauge,
    /// Bytes in RocksDB memtables.
    pub memtable_bytes: IntGauge,
    /// Bytes in the state stores' record caches.
    pub record_cache_bytes: IntGauge,
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(registry, IntCounter::new(name, help).expect("valid metric"))
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(registry, IntGauge::new(name, help).expect("valid metric"))
}

fn gauges(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        registry,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

impl RuntimeMetrics {
    /// Creates and registers the runtime metrics.
    pub fn new(registry: &Registry) -> Self {
        let buckets = vec![
            0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
        ];
        RuntimeMetrics {
            records_processed: register(
                registry,
                IntCounterVec::new(
                    Opts::new("records_processed_total", "Input records processed."),
                    &["topic"],
                )
                .expect("valid metric"),
            ),
            dead_letters: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "dead_letters_total",
                        "Input records sent to the dead-letter topic.",
                    ),
                    &["kind"],
                )
                .expect("valid metric"),
            ),
            retries: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "retries_total",
                        "Records held back by a transient failure (the schema registry is down), retried after a backoff.",
                    ),
                    &["kind"],
                )
                .expect("valid metric"),
            ),
            records_produced: register(
                registry,
                IntCounterVec::new(
                    Opts::new("records_produced_total", "Output records produced."),
                    &["topic"],
                )
                .expect("valid metric"),
            ),
            process_latency: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "process_latency_seconds",
                        "Time to process one record (one record in 16 is timed).",
                    )
                    .buckets(buckets.clone()),
                )
                .expect("valid metric"),
            ),
            commit_latency: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "commit_latency_seconds",
                        "Time to commit outputs, state and offsets.",
                    )
                    .buckets(buckets),
                )
                .expect("valid metric"),
            ),
            state_keys: gauge(registry, "state_keys", "Estimated keys in the state store."),
            idle_advances: counter(
                registry,
                "idle_advances_total",
                "Timer passes where an idle partition's stream time followed the wall clock.",
            ),
            records_skipped: counter(
                registry,
                "records_skipped_total",
                "Input records skipped because the state already reflects them.",
            ),
            consumer_lag: gauges(
                registry,
                "consumer_lag_records",
                "Records behind the end of each assigned input partition.",
                &["topic", "partition"],
            ),
            assigned_partitions: gauge(
                registry,
                "assigned_partitions",
                "Input partitions assigned to this instance.",
            ),
            restore_remaining: gauges(
                registry,
                "restore_remaining_records",
                "Changelog records still to restore.",
                &["partition"],
            ),
            restored_records: counter(
                registry,
                "restored_records_total",
                "Changelog records restored into local state.",
            ),
            changelog_records: counter(
                registry,
                "changelog_records_total",
                "State changes written to the changelog.",
            ),
            changelog_foreign_records: counter(
                registry,
                "changelog_foreign_records_total",
                "Changelog records another writer (a stalled former owner) appended to a partition this instance owns; its values were written over their keys.",
            ),
            timers_fired: counter(registry, "timers_fired_total", "Timers fired."),
            offset_commit_failures: counter(
                registry,
                "offset_commit_failures_total",
                "Kafka offset commits the broker refused.",
            ),
            block_cache_bytes: gauge(
                registry,
                "block_cache_bytes",
                "Bytes in the process's RocksDB block cache, memtables included.",
            ),
            memtable_bytes: gauge(registry, "memtable_bytes", "Bytes in RocksDB memtables."),
            record_cache_bytes: gauge(
                registry,
                "record_cache_bytes",
                "Bytes in the process's state record caches (recent values and pending writes).",
            ),
        }
    }
}
