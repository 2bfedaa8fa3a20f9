//! `journey erase`: publishes a customer's erasure request and waits for its
//! confirmation.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use journey_core::codec::Codec;
use journey_core::config::{KafkaConfig, TopicsConfig};
use journey_core::contract::{ErasureConfirmation, ErasureRequest};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use tokio_util::sync::CancellationToken;

/// Sends `request` keyed by its customer id. With `wait`, then waits that
/// long for its confirmation and returns it; `None` when not waiting.
pub async fn erase(
    kafka: &KafkaConfig,
    topics: &TopicsConfig,
    codec: &Codec,
    request: &ErasureRequest,
    wait: Option<Duration>,
    stop: CancellationToken,
) -> anyhow::Result<Option<ErasureConfirmation>> {
    // Subscribed before sending, so a quick confirmation is not missed.
    let confirmations = match wait {
        Some(_) => Some(confirmations(kafka, &topics.erasure_confirmations)?),
        None => None,
    };
    let payload = codec.encode(request)?;
    let producer = journey_core::kafka::producer(kafka)?;
    journey_core::kafka::learn_leaders(&producer, &topics.erasure_requests).await?;
    producer
        .send(
            FutureRecord::to(&topics.erasure_requests)
                .key(&request.customer_id)
                .payload(&payload)
                .timestamp(request.requested_at),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .with_context(|| format!("sending the request to {}", topics.erasure_requests))?;
    let (Some(consumer), Some(wait)) = (confirmations, wait) else {
        return Ok(None);
    };
    let deadline = Instant::now() + wait;
    loop {
        let message = tokio::select! {
            _ = stop.cancelled() => anyhow::bail!("stopped before the confirmation came"),
            polled = tokio::time::timeout_at(deadline.into(), consumer.recv()) => match polled {
                Err(_) => anyhow::bail!(
                    "no confirmation of request {} within {wait:?}; it may still come on {} \
                     (`journey_ingest_erasures_stalled_total` counts requests that never do)",
                    request.request_id,
                    topics.erasure_confirmations
                ),
                Ok(result) => result.context("reading confirmations")?,
            },
        };
        let Some(payload) = message.payload() else {
            continue;
        };
        let confirmation: ErasureConfirmation = codec
            .decode(payload)
            .context("decoding an erasure confirmation")?;
        if confirmation.request_id == request.request_id {
            return Ok(Some(confirmation));
        }
    }
}

/// A consumer of new confirmations only, ready once it has its partitions.
fn confirmations(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<StreamConsumer> {
    let consumer: StreamConsumer = journey_core::kafka::client_config(kafka)
        .set("group.id", format!("journey-erase-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("creating consumer")?;
    // Start at the current end of every partition: earlier confirmations are not this request's.
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("reading metadata of {topic}"))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len() as i32)
        .with_context(|| {
            format!("topic {topic} does not exist: create it first (`journey topics`)")
        })?;
    let mut assignment = rdkafka::TopicPartitionList::new();
    for partition in 0..partitions {
        let (_, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
        assignment.add_partition_offset(topic, partition, rdkafka::Offset::Offset(high))?;
    }
    consumer
        .assign(&assignment)
        .context("assigning partitions")?;
    Ok(consumer)
}
