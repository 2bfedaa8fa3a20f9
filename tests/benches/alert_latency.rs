//! Alert latency through the local broker: customer events produced at a
//! steady 5 000 events/s to `journey.events` (one in 50 a detractor's
//! feedback), the alerting service on its default settings, and for each
//! detractor alert the time from producing its event to reading the alert
//! from `journey.alerts` (an upper bound of event produced → alert produced:
//! it includes the reader's fetch, kept short). Prints p50, p99 and max.
//!
//! Run: `cargo bench -p journey-tests --bench alert_latency`

use std::time::{Duration, Instant};

use journey_core::codec::Codec;
use journey_core::contract::{Alert, Channel, CustomerEvent, EventType, Feedback};
use journey_core::runtime::now_millis;
use journey_tests::{metric, Broker, InProcessService};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

const RATE: u64 = 5_000;
const SECONDS: u64 = 30;
/// Alerts of the first seconds (connections, caches warming) are not counted.
const WARM_UP_MS: i64 = 3_000;
const CUSTOMERS: u64 = 1_000_000;

fn event(i: u64, at: i64) -> CustomerEvent {
    let customer = format!("customer-{}", (i * 7_919) % CUSTOMERS);
    let detractor = i % 50 == 0;
    CustomerEvent {
        event_id: format!("e{i}"),
        event_type: if detractor {
            EventType::Feedback
        } else {
            EventType::PageView
        },
        occurred_at: at,
        customer_id: Some(customer),
        channel: if detractor {
            Channel::Survey
        } else {
            Channel::Web
        },
        feedback: detractor.then(|| Feedback {
            nps: Some(2),
            comment: Some("Too slow".into()),
            ..Feedback::default()
        }),
        ..CustomerEvent::default()
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let broker = Broker::start();
    let kafka = broker.kafka();
    let config = |state: &std::path::Path, http| {
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\npartitions = 3\n\n[runtime]\nstate_dir = \"{}\"\n\n\
             [alerting]\nhttp_listen = \"{http}\"\ngroup_id = \"bench-alerting\"\n",
            broker.bootstrap,
            state.display()
        )
    };
    let service = InProcessService::start(&broker, config, journey_alerting::run).await;
    let http = service.http;
    let assigned = "journey_alerting_assigned_partitions";
    while metric(http, assigned).await.unwrap_or(0.0) < 3.0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let reader: StreamConsumer = journey_core::kafka::client_config(&kafka)
        .set("group.id", "bench-alert-reader")
        // The reader's own fetch wait would count in every latency.
        .set("fetch.wait.max.ms", "10")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("a reader");
    reader.subscribe(&["journey.alerts"]).expect("subscribe");
    let expected = RATE * SECONDS / 50;
    let reading = tokio::spawn(async move {
        let codec = Codec::builtin();
        let mut latencies = Vec::new();
        let mut seen = 0;
        while seen < expected {
            let Ok(Ok(message)) =
                tokio::time::timeout(Duration::from_secs(30), reader.recv()).await
            else {
                break;
            };
            let alert: Alert = codec
                .decode(message.payload().unwrap_or_default())
                .expect("an alert");
            seen += 1;
            latencies.push((alert.fired_at, now_millis() - alert.fired_at));
        }
        latencies
    });

    let producer: FutureProducer = journey_core::kafka::producer(&kafka).expect("a producer");
    let codec = Codec::builtin();
    let started = Instant::now();
    let start_ms = now_millis();
    let mut in_flight = Vec::new();
    for i in 0..RATE * SECONDS {
        // Pace to RATE: sleep whenever ahead of schedule.
        let due = Duration::from_micros(i * 1_000_000 / RATE);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let e = event(i, now_millis());
        let payload = codec.encode(&e).expect("encodes");
        let key = e.customer_id.clone().unwrap_or_default();
        let record = FutureRecord::to("journey.events")
            .key(&key)
            .payload(&payload)
            .timestamp(e.occurred_at);
        in_flight.push(producer.send_result(record).expect("queued"));
        if in_flight.len() >= 1_000 {
            for d in in_flight.drain(..) {
                d.await.expect("delivery").expect("delivered");
            }
        }
    }
    for d in in_flight {
        d.await.expect("delivery").expect("delivered");
    }
    let produced_in = started.elapsed().as_secs_f64();

    let mut latencies: Vec<i64> = reading
        .await
        .expect("reader")
        .into_iter()
        .filter(|(fired_at, _)| fired_at - start_ms >= WARM_UP_MS)
        .map(|(_, latency)| latency)
        .collect();
    service.shutdown().await;
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "alert latency at {:.0} events/s ({} detractor alerts after the warm-up): p50 {} ms, p99 {} ms, max {} ms",
        (RATE * SECONDS) as f64 / produced_in,
        latencies.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
}
