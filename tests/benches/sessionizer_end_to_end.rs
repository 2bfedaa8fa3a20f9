//! The sessionizer end to end on the local broker: the real processor in the
//! full runtime (offsets, commits, changelog, timers, summaries produced)
//! against a bare rdkafka consumer that only counts, over the same topic of
//! Avro events in one run. Prints both rates and their ratio.
//!
//! Run: `cargo bench -p journey-tests --bench sessionizer_end_to_end`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use journey_core::codec::Codec;
use journey_core::config::RuntimeConfig;
use journey_core::contract::{Channel, CustomerEvent, EventType};
use journey_core::http::Readiness;
use journey_core::kafka::TopicSpec;
use journey_core::metrics::RuntimeMetrics;
use journey_core::runtime::{Context, InputRecord, LoopSettings, ProcessError, Processor};
use journey_core::state::{Clock, StateStore};
use journey_sessionizer::{Sessionizer, SessionizerConfig, SessionizerTopics};
use journey_tests::Broker;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio_util::sync::CancellationToken;

const RECORDS: u64 = 400_000;
const CUSTOMERS: u64 = 100_000;
const TOPIC: &str = "bench-events";

/// First and last record seen, for a rate over the run.
#[derive(Default)]
struct Span {
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Span {
    fn record(&mut self, seen: u64) {
        let now = Instant::now();
        self.first.get_or_insert(now);
        if seen == RECORDS {
            self.last = Some(now);
        }
    }

    fn rate(&self) -> f64 {
        let (first, last) = (
            self.first.expect("records seen"),
            self.last.expect("all seen"),
        );
        (RECORDS - 1) as f64 / (last - first).as_secs_f64()
    }
}

/// The sessionizer, counting what it has processed.
struct Counted {
    inner: Sessionizer,
    seen: Arc<AtomicU64>,
    span: Arc<Mutex<Span>>,
}

impl Processor for Counted {
    fn process(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        self.inner.process(record, ctx)?;
        let seen = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        self.span.lock().expect("span lock").record(seen);
        Ok(())
    }

    fn on_timer(
        &mut self,
        clock: Clock,
        at: i64,
        key: &[u8],
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        self.inner.on_timer(clock, at, key, ctx)
    }
}

/// Fills the topic with events of `CUSTOMERS` customers over two hours of event time.
async fn fill(broker: &Broker) {
    let kafka = broker.kafka();
    journey_core::kafka::ensure_topics(&kafka, &[TopicSpec::new(TOPIC, 3)])
        .await
        .expect("topic");
    let codec = Codec::builtin();
    let producer: FutureProducer = journey_core::kafka::producer(&kafka).expect("producer");
    let start = 1_700_000_000_000i64;
    let mut in_flight = Vec::new();
    for i in 0..RECORDS {
        let at = start + (i as i64 * 7_200_000) / RECORDS as i64;
        let customer = format!("cust-{:06}", (i * 7_919) % CUSTOMERS);
        let event = CustomerEvent {
            event_id: format!("evt-{i:08}"),
            event_type: EventType::PageView,
            occurred_at: at,
            customer_id: Some(customer.clone()),
            channel: Channel::Web,
            ..CustomerEvent::default()
        };
        let payload = codec.encode(&event).expect("encodes");
        loop {
            let record = FutureRecord::to(TOPIC)
                .key(&customer)
                .payload(&payload)
                .timestamp(at);
            match producer.send_result(record) {
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
    let mut span = Span::default();
    for seen in 1..=RECORDS {
        consumer.recv().await.expect("record");
        span.record(seen);
    }
    span.rate()
}

async fn sessionizer(broker: &Broker) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let registry = prometheus::Registry::new();
    let seen = Arc::new(AtomicU64::new(0));
    let span = Arc::new(Mutex::new(Span::default()));
    let config = SessionizerConfig::default();
    let topics = SessionizerTopics {
        events: TOPIC.into(),
        identities: "bench-identities".into(),
        folds: "bench-sessionizer-merge-repartition".into(),
        sessions: "bench-sessions".into(),
        late_events: "bench-late".into(),
    };
    let processor = Counted {
        inner: Sessionizer::new(config.windows().expect("valid"), None, topics, &registry),
        seen: seen.clone(),
        span: span.clone(),
    };
    let settings = LoopSettings {
        service: "bench".into(),
        kafka: broker.kafka(),
        runtime: RuntimeConfig {
            state_dir: dir.path().into(),
            ..RuntimeConfig::default()
        },
        group_id: "bench-sessionizer".into(),
        inputs: vec![TOPIC.into()],
        internal_inputs: Vec::new(),
        dead_letter_topic: "bench-dead-letters".into(),
        changelog_topic: "bench-sessionizer-sessions-changelog".into(),
    };
    let store = StateStore::open(dir.path(), 256 << 20).expect("store");
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
    let rate = span.lock().expect("span lock").rate();
    rate
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let broker = Broker::start();
    fill(&broker).await;
    let bare_rate = bare(&broker).await;
    let sessionizer_rate = sessionizer(&broker).await;
    println!(
        "sessionizer end to end over {RECORDS} Avro events of {CUSTOMERS} customers, 3 partitions"
    );
    println!("bare rdkafka consumer  {bare_rate:>12.0} records/s");
    println!(
        "sessionizer runtime    {sessionizer_rate:>12.0} records/s  ratio {:.2}",
        sessionizer_rate / bare_rate
    );
}
