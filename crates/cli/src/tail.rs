//! `journey tail`: any pipeline topic, decoded from Avro to JSON lines.

use std::time::Duration;

use anyhow::Context as _;
use journey_core::codec::Codec;
use journey_core::config::KafkaConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use tokio_util::sync::CancellationToken;

/// Prints records of `topic` as JSON lines until `max` records, `idle` without
/// records, or cancellation.
pub async fn tail(
    kafka: &KafkaConfig,
    codec: &Codec,
    topic: &str,
    from_beginning: bool,
    max: Option<u64>,
    idle: Option<Duration>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let consumer: StreamConsumer = journey_core::kafka::client_config(kafka)
        .set("group.id", format!("journey-tail-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set(
            "auto.offset.reset",
            if from_beginning { "earliest" } else { "latest" },
        )
        .create()
        .context("creating consumer")?;
    consumer
        .subscribe(&[topic])
        .with_context(|| format!("subscribing to {topic}"))?;
    let mut printed = 0u64;
    let wait = idle.unwrap_or(Duration::from_secs(u64::MAX / 4));
    loop {
        let message = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            polled = tokio::time::timeout(wait, consumer.recv()) => match polled {
                Err(_) => return Ok(()),
                Ok(result) => result.context("consuming")?,
            },
        };
        let value = match message.payload().map(|p| codec.decode_json(p)) {
            Some(Ok(json)) => json,
            Some(Err(e)) => serde_json::json!({ "undecodable": e.to_string() }),
            None => serde_json::Value::Null,
        };
        let line = serde_json::json!({
            "partition": message.partition(),
            "offset": message.offset(),
            "key": message.key().map(String::from_utf8_lossy),
            "value": value,
        });
        println!("{line}");
        printed += 1;
        if max.is_some_and(|m| printed >= m) {
            return Ok(());
        }
    }
}
