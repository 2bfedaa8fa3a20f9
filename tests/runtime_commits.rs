//! The runtime commits early whenever the record cache is full of
//! uncommitted writes, so state memory stays near its budget whatever the
//! commit interval and `max_batch` allow.

use std::time::Duration;

use journey_core::config::RuntimeConfig;
use journey_core::runtime::now_millis;
use journey_tests::bench::{fill, histogram, run_in_runtime, BenchTopic, KeepPayloads};
use journey_tests::Broker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_full_of_uncommitted_writes_is_committed_before_the_interval() {
    let broker = Broker::start();
    let topic = BenchTopic {
        name: "wide-writes",
        partitions: 1,
        records: 20_000,
    };
    // 20 000 new keys of 1 KiB: 20 MiB of writes against a 1 MiB record cache
    // (a quarter of the 4 MiB budget).
    let now = now_millis();
    let records = (0..topic.records).map(|i| (format!("key-{i}"), vec![7u8; 1024], now));
    fill(&broker.kafka(), topic, records).await;
    let registry = prometheus::Registry::new();
    let runtime = RuntimeConfig {
        commit_interval: Duration::from_secs(3600),
        max_batch: usize::MAX,
        state_memory_bytes: 4 << 20,
        ..RuntimeConfig::default()
    };
    run_in_runtime(
        &broker,
        topic,
        "wide-writes",
        KeepPayloads,
        runtime,
        &registry,
    )
    .await;
    // Without early commits there would be one, at the stop.
    let made = histogram(&registry, "commit_latency_seconds").map_or(0, |h| h.get_sample_count());
    assert!(
        made >= 10,
        "{made} commits: the cache was not committed as it filled"
    );
}
