//! What the end-to-end benches share: filling a topic fast, a bare consumer
//! as the baseline, and a processor run in the full runtime, all timed over
//! the same steady-state window.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use journey_core::codec::Codec;
use journey_core::config::{KafkaConfig, RuntimeConfig};
use journey_core::http::Readiness;
use journey_core::kafka::TopicSpec;
use journey_core::metrics::RuntimeMetrics;
use journey_core::runtime::{Context, InputRecord, LoopSettings, ProcessError, Processor};
use journey_core::state::{Clock, StateStore};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio_util::sync::CancellationToken;

use crate::Broker;

/// Keeps each record's payload in state under its key: state that grows
/// with every new key, for the benches and tests of commits and restores.
pub struct KeepPayloads;

impl Processor for KeepPayloads {
    fn process(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let payload = record.payload.unwrap_or_default();
        ctx.state().put(record.key.unwrap_or_default(), &payload);
        Ok(())
    }
}

/// The histogram `name` of `registry` (its first series), if registered.
pub fn histogram(
    registry: &prometheus::Registry,
    name: &str,
) -> Option<prometheus::proto::Histogram> {
    registry
        .gather()
        .iter()
        .find(|family| family.name() == name)
        .map(|family| family.get_metric()[0].get_histogram().clone())
}

/// The steady-state window of a run over `total` records on `partitions`
/// partitions: it opens when the last partition delivers its first record
/// (partitions start at different times, restores and the first commit
/// included) and closes at the last record.
#[derive(Clone)]
pub struct Window {
    partitions: usize,
    total: u64,
    started: HashSet<i32>,
    opened: Option<(Instant, u64)>,
    closed: Option<Instant>,
}

impl Window {
    pub fn new(partitions: usize, total: u64) -> Self {
        Window {
            partitions,
            total,
            started: HashSet::new(),
            opened: None,
            closed: None,
        }
    }

    /// Notes that the `seen`-th record came from `partition`.
    pub fn record(&mut self, partition: i32, seen: u64) {
        if self.started.insert(partition) && self.started.len() == self.partitions {
            self.opened = Some((Instant::now(), seen));
        }
        if seen == self.total {
            self.closed = Some(Instant::now());
        }
    }

    /// How long the window stayed open, if it opened and closed.
    pub fn elapsed(&self) -> Option<Duration> {
        Some(self.closed? - self.opened?.0)
    }

    /// Records per second within the window.
    pub fn rate(&self) -> f64 {
        let (opened, seen_then) = self.opened.expect("every partition delivered");
        let closed = self.closed.expect("all records seen");
        (self.total - seen_then) as f64 / (closed - opened).as_secs_f64()
    }
}

/// The input topic of a bench and how many records it holds.
#[derive(Debug, Clone, Copy)]
pub struct BenchTopic {
    pub name: &'static str,
    pub partitions: usize,
    pub records: u64,
}

/// Creates the topic and produces `records` (key, payload, timestamp) to it
/// as fast as the producer's queue takes them.
pub async fn fill(
    kafka: &KafkaConfig,
    bench: BenchTopic,
    records: impl Iterator<Item = (String, Vec<u8>, i64)>,
) {
    let topic = bench.name;
    let spec = TopicSpec::new(topic, bench.partitions as i32);
    journey_core::kafka::ensure_topics(kafka, &[spec])
        .await
        .expect("topic");
    let producer: FutureProducer = journey_core::kafka::producer(kafka).expect("producer");
    let mut in_flight = Vec::new();
    for (key, payload, timestamp) in records {
        loop {
            let record = FutureRecord::to(topic)
                .key(&key)
                .payload(&payload)
                .timestamp(timestamp);
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

/// The baseline: a bare rdkafka consumer in consumer group `group`,
/// configured as the runtime's, that only counts the topic's records.
pub async fn bare_rate(broker: &Broker, bench: BenchTopic, group: &str) -> f64 {
    let consumer: StreamConsumer = journey_core::kafka::consumer_config(&broker.kafka(), group)
        .create()
        .expect("consumer");
    consumer.subscribe(&[bench.name]).expect("subscribe");
    let mut window = Window::new(bench.partitions, bench.records);
    for seen in 1..=bench.records {
        let message = consumer.recv().await.expect("record");
        window.record(message.partition(), seen);
    }
    window.rate()
}

/// `P`, counting the records it processed into a [`Window`] of its own,
/// as the bare consumer does, and handing the window over once it closed.
struct Metered<P> {
    inner: P,
    seen: u64,
    window: Window,
    done: Arc<Mutex<Option<Window>>>,
}

impl<P: Processor> Processor for Metered<P> {
    fn process(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        self.inner.process(record, ctx)?;
        self.seen += 1;
        self.window.record(record.partition, self.seen);
        if self.window.closed.is_some() {
            *self.done.lock().expect("window lock") = Some(self.window.clone());
        }
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

    fn on_assigned(&mut self, partition: i32, ctx: &mut Context<'_>) -> Result<(), ProcessError> {
        self.inner.on_assigned(partition, ctx)
    }

    fn on_revoked(&mut self, partition: i32) {
        self.inner.on_revoked(partition);
    }
}

/// An instance of the full runtime (offsets, commits, changelog, state in
/// RocksDB) in group `group` over a bench topic, with its state in a
/// temporary directory of its own; its changelog is `<group>-changelog`.
pub struct Instance {
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    stop: CancellationToken,
    _state: tempfile::TempDir,
}

impl Instance {
    /// Starts `processor` with the `runtime` settings (their state directory
    /// replaced), reporting to `metrics` and `readiness`.
    pub fn start<P: Processor>(
        broker: &Broker,
        bench: BenchTopic,
        group: &str,
        processor: P,
        runtime: RuntimeConfig,
        metrics: RuntimeMetrics,
        readiness: Readiness,
    ) -> Instance {
        let state = tempfile::tempdir().expect("temp dir");
        let settings = LoopSettings {
            service: "bench".into(),
            kafka: broker.kafka(),
            runtime: RuntimeConfig {
                state_dir: state.path().into(),
                ..runtime
            },
            group_id: group.into(),
            inputs: vec![bench.name.into()],
            internal_inputs: Vec::new(),
            control_inputs: Vec::new(),
            dead_letter_topic: "bench-dead-letters".into(),
            changelog_topic: format!("{group}-changelog"),
        };
        let store =
            StateStore::open(state.path(), settings.runtime.state_memory_bytes).expect("store");
        let stop = CancellationToken::new();
        let task = tokio::spawn(journey_core::runtime::run(
            settings,
            processor,
            Codec::builtin(),
            store,
            metrics,
            readiness,
            stop.clone(),
        ));
        Instance {
            task,
            stop,
            _state: state,
        }
    }

    /// Shuts the instance down (it commits first) and waits for it.
    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("join").expect("runtime");
    }
}

/// Runs `processor` in an [`Instance`] with the `runtime` settings until it
/// has processed every record of the bench topic; runtime metrics go to
/// `registry`. Returns the run's window.
pub async fn run_in_runtime<P: Processor>(
    broker: &Broker,
    bench: BenchTopic,
    group: &str,
    processor: P,
    runtime: RuntimeConfig,
    registry: &prometheus::Registry,
) -> Window {
    let done = Arc::new(Mutex::new(None));
    let metered = Metered {
        inner: processor,
        seen: 0,
        window: Window::new(bench.partitions, bench.records),
        done: done.clone(),
    };
    let instance = Instance::start(
        broker,
        bench,
        group,
        metered,
        runtime,
        RuntimeMetrics::new(registry),
        Readiness::default(),
    );
    let window = loop {
        if let Some(window) = done.lock().expect("window lock").take() {
            break window;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    instance.stop().await;
    window
}
