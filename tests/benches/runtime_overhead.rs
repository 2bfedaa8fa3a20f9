//! Runtime overhead: a no-op processor on the full runtime (offsets, commits,
//! changelog), once without and once with a get-modify-put per record, against
//! a bare rdkafka consumer that only counts, over the same topic on the same
//! local broker, in one run. Prints the rates and their ratios.
//!
//! Run: `cargo bench -p journey-tests --bench runtime_overhead`

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use journey_core::codec::Codec;
use journey_core::config::RuntimeConfig;
use journey_core::http::Readiness;
use journey_core::kafka::TopicSpec;
use journey_core::metrics::RuntimeMetrics;
use journey_core::runtime::{Context, InputRecord, LoopSettings, ProcessError, Processor};
use journey_core::state::StateStore;
use journey_tests::Broker;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio_util::sync::CancellationToken;

const RECORDS: u64 = 600_000;
const TOPIC: &str = "bench-input";
const PARTITIONS: usize = 3;

/// The steady-state window of a run: it opens when the last partition
/// delivers its first record (partitions start at different times) and closes
/// at the last record.
#[derive(Default)]
struct Window {
    started: HashMap<i32, ()>,
    opened: Option<(Instant, u64)>,
    closed: Option<Instant>,
}

impl Window {
    fn record(&mut self, partition: i32, seen: u64) {
        if self.started.insert(partition, ()).is_none() && self.started.len() == PARTITIONS {
            self.opened = Some((Instant::now(), seen));
        }
        if seen == RECORDS {
            self.closed = Some(Instant::now());
        }
    }

    fn rate(&self) -> f64 {
        let (opened, seen_then) = self.opened.expect("every partition delivered");
        let closed = self.closed.expect("all records seen");
        (RECORDS - seen_then) as f64 / (closed - opened).as_secs_f64()
    }
}

/// Counts records per key in state (if `stateful`), and tracks the steady-state window.
struct Counting {
    stateful: bool,
    seen: Arc<AtomicU64>,
    window: Arc<Mutex<Window>>,
}

impl Processor for Counting {
    fn process(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        if self.stateful {
            let key = record.key.unwrap_or_default();
            let count: u64 = ctx.state().get(key)?.unwrap_or(0);
            ctx.state().put(key, &(count + 1));
        }
        let seen = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        self.window
            .lock()
            .expect("window lock")
            .record(record.partition, seen);
        Ok(())
    }
}

async fn fill(broker: &Broker) {
    let kafka = broker.kafka();
    journey_core::kafka::ensure_topics(&kafka, &[TopicSpec::new(TOPIC, 3)])
        .await
        .expect("topic");
    let producer: FutureProducer = journey_core::kafka::producer(&kafka).expect("producer");
    let payload = vec![7u8; 100];
    let mut in_flight = Vec::new();
    for i in 0..RECORDS {
        let key = format!("customer-{}", i % 10_000);
        loop {
            match producer.send_result(FutureRecord::to(TOPIC).key(&key).payload(&payload)) {
                Ok(delivery) => {
                    in_flight.push(delivery);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        if in_flight.len() >= 10_000 {
            for d in in_flight.drain(..) {
                d.await.expect("delivery").expect("delivered");
            }
        }
    }
    for d in in_flight {
        d.await.expect("delivery").expect("delivered");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

async fn bare(broker: &Broker) -> f64 {
    let consumer: StreamConsumer =
        journey_core::kafka::consumer_config(&broker.kafka(), "bench-bare")
            .create()
            .expect("consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let mut window = Window::default();
    for seen in 1..=RECORDS {
        let message = consumer.recv().await.expect("record");
        window.record(message.partition(), seen);
    }
    window.rate()
}

/// The runtime's rate over the steady-state window, with or without state writes.
async fn runtime(broker: &Broker, stateful: bool) -> f64 {
    let name = if stateful { "stateful" } else { "stateless" };
    let dir = tempfile::tempdir().expect("temp dir");
    let registry = prometheus::Registry::new();
    let seen = Arc::new(AtomicU64::new(0));
    let window = Arc::new(Mutex::new(Window::default()));
    let processor = Counting {
        stateful,
        seen: seen.clone(),
        window: window.clone(),
    };
    let settings = LoopSettings {
        service: "bench".into(),
        kafka: broker.kafka(),
        runtime: RuntimeConfig {
            state_dir: dir.path().into(),
            ..RuntimeConfig::default()
        },
        group_id: format!("bench-{name}"),
        inputs: vec![TOPIC.into()],
        internal_inputs: Vec::new(),
        dead_letter_topic: "bench-dead-letters".into(),
        changelog_topic: format!("bench-{name}-counts-changelog"),
    };
    let store = StateStore::open(dir.path(), 64 << 20).expect("store");
    let stop = CancellationToken::new();
    let task = tokio::spawn(journey_core::runtime::run(
        settings,
        processor,
        Codec::builtin(),
        store,
        RuntimeMetrics::new(&registry),
        Readiness::default(),
        stop.clone(),
    ));
    while seen.load(Ordering::Relaxed) < RECORDS {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    task.await.expect("join").expect("runtime");
    let window = window.lock().expect("window lock");
    let elapsed = match (window.opened, window.closed) {
        (Some((opened, _)), Some(closed)) => (closed - opened).as_secs_f64(),
        _ => 0.0,
    };
    let seconds = |name: &str| {
        registry
            .gather()
            .iter()
            .find(|family| family.name() == name)
            .map_or(0.0, |family| {
                family.get_metric()[0].get_histogram().get_sample_sum()
            })
    };
    println!(
        "{name} runtime: {:.3} s steady-state window; over the whole run ~{:.3} s processing records (sampled), {:.3} s committing",
        elapsed,
        seconds("process_latency_seconds") * journey_core::runtime::LATENCY_SAMPLE as f64,
        seconds("commit_latency_seconds")
    );
    window.rate()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let broker = Broker::start();
    fill(&broker).await;
    let bare_rate = bare(&broker).await;
    let stateless_rate = runtime(&broker, false).await;
    let stateful_rate = runtime(&broker, true).await;
    println!("runtime overhead over {RECORDS} records (100-byte values, 10k keys, 3 partitions)");
    println!("bare rdkafka consumer     {bare_rate:>12.0} records/s");
    println!(
        "runtime, no state writes  {stateless_rate:>12.0} records/s  ratio {:.2}",
        stateless_rate / bare_rate
    );
    println!(
        "runtime, get-modify-put   {stateful_rate:>12.0} records/s  ratio {:.2}",
        stateful_rate / bare_rate
    );
}
