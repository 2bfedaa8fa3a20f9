//! The `_schemas` topic: created compacted with one partition if missing,
//! read from the beginning on start, appended to on every change.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use journey_core::config::KafkaConfig;
use journey_core::kafka::{client_config, ensure_topics, learn_leaders, TopicSpec};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::api::error::ApiError;
use crate::catalog::Catalog;
use crate::record::StoreRecord;

/// How long a write may wait for the broker before the REST call fails.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long reading the topic on start may take.
const LOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// Timeout of one metadata or watermark request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Appends records to the topic and waits until the brokers have them.
pub struct Store {
    producer: FutureProducer,
    topic: String,
    kafka: KafkaConfig,
    /// A write failed: it may still have landed, so the catalog may be behind the topic.
    in_doubt: bool,
}

impl Store {
    /// Opens the writer, creates the topic if missing and reads it into a catalog.
    pub async fn open(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<(Store, Catalog)> {
        // Created first and told the topic's leader, so that it has its
        // producer id by the time the first schema is registered (see
        // `learn_leaders`).
        let producer = client_config(kafka)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("message.timeout.ms", WRITE_TIMEOUT.as_millis().to_string())
            .create()
            .context("creating the schemas topic producer")?;
        ensure_topics(kafka, &[TopicSpec::compacted(topic, 1)])
            .await
            .with_context(|| format!("creating the schemas topic {topic}"))?;
        learn_leaders(&producer, topic).await?;
        let catalog = load_in_background(kafka, topic).await?;
        Ok((
            Store {
                producer,
                topic: topic.to_string(),
                kafka: kafka.clone(),
                in_doubt: false,
            },
            catalog,
        ))
    }

    /// After a failed write, the catalog as the topic has it now; `None` when
    /// every write so far succeeded. Call before deciding a write: a write
    /// that timed out may have landed, and its id or version must not be
    /// handed out again.
    pub async fn resync(&mut self) -> Result<Option<Catalog>, ApiError> {
        if !self.in_doubt {
            return Ok(None);
        }
        let catalog = load_in_background(&self.kafka, &self.topic)
            .await
            .map_err(|e| ApiError::Store(format!("re-reading {}: {e:#}", self.topic)))?;
        self.in_doubt = false;
        Ok(Some(catalog))
    }

    /// Appends `record`, returning once every in-sync replica has it.
    pub async fn append(&mut self, record: &StoreRecord) -> Result<(), ApiError> {
        let (key, value) = record.encode();
        let mut message = FutureRecord::<Vec<u8>, Vec<u8>>::to(&self.topic)
            .key(&key)
            .partition(0);
        if let Some(value) = &value {
            message = message.payload(value);
        }
        let sent = self.producer.send(message, WRITE_TIMEOUT).await;
        sent.map(|_| ()).map_err(|(e, _)| {
            self.in_doubt = true;
            ApiError::Store(format!("writing to {}: {e}", self.topic))
        })
    }
}

async fn load_in_background(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<Catalog> {
    let (kafka, topic) = (kafka.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || load(&kafka, &topic)).await?
}

/// Reads partition 0 of `topic` up to its high watermark into a catalog.
fn load(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<Catalog> {
    let consumer: BaseConsumer = client_config(kafka)
        // librdkafka will not assign partitions without a group; it never joins
        // nor commits: the topic is always read from the beginning.
        .set("group.id", format!("journey-registry-{topic}"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .context("creating the schemas topic reader")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .with_context(|| format!("reading metadata of {topic}"))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    anyhow::ensure!(
        partitions == 1,
        "the schemas topic {topic} must have exactly one partition, it has {partitions}"
    );
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, REQUEST_TIMEOUT)
        .with_context(|| format!("reading the end offset of {topic}"))?;
    let mut catalog = Catalog::default();
    if high <= low {
        return Ok(catalog);
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + LOAD_TIMEOUT;
    let mut records = 0u64;
    loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "reading {topic} to offset {high} took longer than {LOAD_TIMEOUT:?}"
        );
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.with_context(|| format!("reading {topic}"))?;
        match StoreRecord::decode(message.key(), message.payload()) {
            Ok(Some(record)) => catalog.apply(record),
            Ok(None) => {}
            // One foreign or damaged record must not stop the registry: skip it, loudly.
            Err(e) => {
                tracing::warn!(topic, offset = message.offset(), error = %e, "skipping a record")
            }
        }
        records += 1;
        if message.offset() + 1 >= high {
            break;
        }
    }
    tracing::info!(topic, records, "schema registry state loaded");
    Ok(catalog)
}
