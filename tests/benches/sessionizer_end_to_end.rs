//! The sessionizer end to end on the local broker: the real processor in the
//! full runtime (offsets, commits, changelog, timers, summaries produced)
//! against a bare rdkafka consumer that only counts, over the same topic of
//! Avro events in one run, both timed over their steady-state window (as
//! `runtime_overhead` is). Prints both rates and their ratio.
//!
//! Run: `cargo bench -p journey-tests --bench sessionizer_end_to_end`

use journey_core::codec::Codec;
use journey_core::config::{RuntimeConfig, TopicsConfig};
use journey_core::contract::{Channel, CustomerEvent, EventType};
use journey_sessionizer::{Sessionizer, SessionizerConfig, SessionizerTopics};
use journey_tests::bench::{bare_rate, fill, run_in_runtime, BenchTopic};
use journey_tests::Broker;

const BENCH: BenchTopic = BenchTopic {
    name: "bench-events",
    partitions: 3,
    records: 400_000,
};
const CUSTOMERS: u64 = 100_000;

/// Events of `CUSTOMERS` customers over two hours of event time.
fn events() -> impl Iterator<Item = (String, Vec<u8>, i64)> {
    let codec = Codec::builtin();
    let start = 1_700_000_000_000i64;
    (0..BENCH.records).map(move |i| {
        let at = start + (i as i64 * 7_200_000) / BENCH.records as i64;
        let customer = format!("cust-{:06}", (i * 7_919) % CUSTOMERS);
        let event = CustomerEvent {
            event_id: format!("evt-{i:08}"),
            event_type: EventType::PageView,
            occurred_at: at,
            customer_id: Some(customer.clone()),
            channel: Channel::Web,
            ..CustomerEvent::default()
        };
        (customer, codec.encode(&event).expect("encodes"), at)
    })
}

async fn sessionizer(broker: &Broker) -> f64 {
    let registry = prometheus::Registry::new();
    let config = SessionizerConfig::default();
    let topics = SessionizerTopics {
        events: BENCH.name.into(),
        ..SessionizerTopics::new(&TopicsConfig::default(), "bench-sessionizer")
    };
    let processor = Sessionizer::new(config.windows().expect("valid"), None, topics, &registry);
    run_in_runtime(
        broker,
        BENCH,
        "bench-sessionizer",
        processor,
        RuntimeConfig::default(),
        &registry,
    )
    .await
    .rate()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let broker = Broker::start();
    fill(&broker.kafka(), BENCH, events()).await;
    let bare_rate = bare_rate(&broker, BENCH, "bench-bare").await;
    let sessionizer_rate = sessionizer(&broker).await;
    println!(
        "sessionizer end to end over {} Avro events of {CUSTOMERS} customers, 3 partitions (steady-state window)",
        BENCH.records
    );
    println!("bare rdkafka consumer  {bare_rate:>12.0} records/s");
    println!(
        "sessionizer runtime    {sessionizer_rate:>12.0} records/s  ratio {:.2}",
        sessionizer_rate / bare_rate
    );
}
