//! Kafka clients: consumer and producer set-up, and topic creation.

use std::time::Duration;

use anyhow::Context as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::{KafkaConfig, TopicsConfig};

/// A client config with the bootstrap servers and the pass-through properties.
pub fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.bootstrap_servers);
    for (key, value) in &kafka.properties {
        config.set(key, value);
    }
    config
}

/// An idempotent producer: retries never duplicate or reorder a partition's records.
pub fn producer(kafka: &KafkaConfig) -> anyhow::Result<FutureProducer> {
    client_config(kafka)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        // Java clients' partitioner, so keys land where Kafka Streams and Java producers put them.
        .set("partitioner", "murmur2_random")
        .create()
        .context("creating Kafka producer")
}

/// Settings of a consumer in `group_id` that never commits on its own: the
/// runtime commits after outputs are delivered and state is written.
pub fn consumer_config(kafka: &KafkaConfig, group_id: &str) -> ClientConfig {
    let mut config = client_config(kafka);
    config
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        // librdkafka pauses fetching a partition for this long once its local queue
        // is full (1 s by default), which stalls a consumer that fell behind its prefetch.
        .set("fetch.queue.backoff.ms", "20");
    config
}

/// The partition count shared by `topics`; an error if one is missing or
/// they differ (per-partition state needs co-partitioned inputs).
pub async fn input_partitions(kafka: &KafkaConfig, topics: &[String]) -> anyhow::Result<i32> {
    let consumer: BaseConsumer = client_config(kafka)
        .create()
        .context("creating metadata client")?;
    let topics = topics.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut counts = Vec::new();
        for topic in &topics {
            let metadata = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(30))
                .with_context(|| format!("reading metadata of {topic}"))?;
            let count = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .map(|t| t.partitions().len() as i32)
                .filter(|n| *n > 0)
                .with_context(|| {
                    format!(
                        "input topic {topic} does not exist: create it first (`journey topics`)"
                    )
                })?;
            counts.push((topic.clone(), count));
        }
        let first = counts.first().map(|(_, n)| *n).context("no input topics")?;
        anyhow::ensure!(
            counts.iter().all(|(_, n)| *n == first),
            "input topics must have the same number of partitions: {counts:?}"
        );
        Ok(first)
    })
    .await?
}

/// A topic the pipeline needs.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub compacted: bool,
}

/// Every topic of the pipeline, co-partitioned so per-customer state lines up.
pub fn pipeline_topics(topics: &TopicsConfig, partitions: i32) -> Vec<TopicSpec> {
    [
        &topics.raw_events,
        &topics.events,
        &topics.identities,
        &topics.sessions,
        &topics.late_events,
        &topics.stage_changes,
        &topics.alerts,
        &topics.dead_letters,
    ]
    .into_iter()
    .map(|name| TopicSpec {
        name: name.clone(),
        partitions,
        compacted: false,
    })
    .collect()
}

/// Creates the topics that do not exist yet.
pub async fn ensure_topics(kafka: &KafkaConfig, specs: &[TopicSpec]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(kafka)
        .create()
        .context("creating Kafka admin client")?;
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|spec| {
            let replication = TopicReplication::Fixed(kafka.replication_factor);
            let topic = NewTopic::new(&spec.name, spec.partitions, replication);
            if spec.compacted {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .context("creating topics")?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("creating topic {topic}: {code}"),
        }
    }
    Ok(())
}
