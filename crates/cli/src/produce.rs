//! `journey produce`: synthetic journeys, Confluent-framed Avro, at a set rate.

use std::time::Duration;

use anyhow::Context as _;
use journey_core::codec::Codec;
use journey_core::config::KafkaConfig;
use journey_core::runtime::now_millis;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio_util::sync::CancellationToken;

use crate::synth::Journeys;

/// What to produce.
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    pub topic: String,
    /// Events per second.
    pub rate: u32,
    /// Stop after this many events; `None` runs until cancelled.
    pub count: Option<u64>,
    /// Visitors in flight at once.
    pub concurrent: usize,
    pub seed: u64,
    /// Every n-th record is deliberately malformed (exercises dead letters); 0 never.
    pub malformed_every: u64,
}

/// Produces synthetic events until `count` is reached or `stop` is cancelled;
/// returns how many records were sent.
pub async fn produce(
    kafka: &KafkaConfig,
    codec: &Codec,
    options: &ProduceOptions,
    stop: CancellationToken,
) -> anyhow::Result<u64> {
    let producer: FutureProducer = journey_core::kafka::producer(kafka)?;
    journey_core::kafka::learn_leaders(&producer, &options.topic).await?;
    let mut journeys = Journeys::new(options.seed, options.concurrent);
    let tick = Duration::from_millis(100);
    let per_tick = (options.rate as f64 / 10.0).max(0.1);
    let mut budget = 0.0;
    let mut sent = 0u64;
    let mut interval = tokio::time::interval(tick);
    let mut in_flight = Vec::new();
    'outer: loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = interval.tick() => {}
        }
        budget += per_tick;
        while budget >= 1.0 {
            budget -= 1.0;
            if options.count.is_some_and(|c| sent >= c) {
                break 'outer;
            }
            sent += 1;
            let event = journeys.next_event(now_millis());
            // Keyed by visitor, so ingest need not re-route it to stitch identities.
            let key = journey_ingest::visitor_key(&event)
                .unwrap_or_default()
                .to_string();
            let payload = if options.malformed_every > 0 && sent % options.malformed_every == 0 {
                format!("{{\"not\":\"avro\",\"seq\":{sent}}}").into_bytes()
            } else {
                codec.encode(&event)?
            };
            let record = FutureRecord::to(&options.topic)
                .key(&key)
                .payload(&payload)
                .timestamp(event.occurred_at);
            in_flight.push(
                producer
                    .send_result(record)
                    .map_err(|(e, _)| e)
                    .with_context(|| format!("producing to {}", options.topic))?,
            );
        }
        for delivery in in_flight.drain(..) {
            if let Ok(Err((e, _))) = delivery.await {
                return Err(e).context("delivering a synthetic event");
            }
        }
    }
    producer
        .flush(Duration::from_secs(10))
        .context("flushing producer")?;
    Ok(sent)
}
