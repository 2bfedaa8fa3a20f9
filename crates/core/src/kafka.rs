//! Kafka clients: consumer and producer set-up, and topic creation.

use std::time::Duration;

use anyhow::Context as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, FutureProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;

use crate::config::{KafkaConfig, TopicsConfig};

/// A client config with the bootstrap servers and the pass-through
/// properties (`kafka.properties`: security, tuning). Every Kafka client of
/// Journey starts from this one, so TLS and SASL settings reach them all.
pub fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.bootstrap_servers);
    for (key, value) in &kafka.properties {
        config.set(key, value);
    }
    config
}

/// Checks `kafka.properties` with librdkafka itself, as start-up does before
/// any client exists: each property alone (unknown names, bad values, a
/// feature not built in), then all together in a client that connects
/// nowhere (files such as `ssl.ca.location`, settings that conflict). The
/// error names the field, `kafka.properties.<name>`, never a value.
pub fn check_properties(kafka: &KafkaConfig) -> anyhow::Result<()> {
    if kafka.properties.is_empty() {
        return Ok(());
    }
    for (key, value) in &kafka.properties {
        if let Err(e) = ClientConfig::new().set(key, value).create_native_config() {
            let reason = match e {
                KafkaError::ClientConfig(_, description, _, _) => description,
                other => other.to_string(),
            };
            anyhow::bail!("invalid configuration: field `kafka.properties.{key}`: {reason}");
        }
    }
    let mut config = ClientConfig::new();
    for (key, value) in &kafka.properties {
        config.set(key, value);
    }
    // No bootstrap servers: the client is created and dropped without connecting.
    config.remove("bootstrap.servers");
    let created: Result<BaseProducer, KafkaError> = config.create();
    match created {
        Ok(_) => Ok(()),
        Err(e) => {
            let reason = match e {
                KafkaError::ClientCreation(message) => message,
                other => other.to_string(),
            };
            let field = kafka
                .properties
                .keys()
                .filter(|key| reason.contains(key.as_str()))
                .max_by_key(|key| key.len())
                .map_or_else(
                    || "kafka.properties".to_string(),
                    |key| format!("kafka.properties.{key}"),
                );
            anyhow::bail!("invalid configuration: field `{field}`: {reason}")
        }
    }
}

/// Sets `key` to `value` unless `kafka.properties` sets it: a default the
/// user may tune, unlike the settings correctness depends on.
fn tunable(config: &mut ClientConfig, kafka: &KafkaConfig, key: &str, value: &str) {
    if !kafka.properties.contains_key(key) {
        config.set(key, value);
    }
}

/// Settings of an idempotent producer: retries never duplicate or reorder a
/// partition's records.
pub fn producer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = client_config(kafka);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // Java clients' partitioner, so keys land where Kafka Streams and Java producers put them.
        .set("partitioner", "murmur2_random");
    tunable(&mut config, kafka, "linger.ms", "5");
    config
}

/// librdkafka's default `message.max.bytes`.
const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_000_000;

/// The largest record the producers send (`message.max.bytes`, as set in
/// `kafka.properties` or librdkafka's default).
pub fn max_message_bytes(kafka: &KafkaConfig) -> usize {
    kafka
        .properties
        .get("message.max.bytes")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES)
}

/// An idempotent producer ([`producer_config`]).
pub fn producer(kafka: &KafkaConfig) -> anyhow::Result<FutureProducer> {
    producer_config(kafka)
        .create()
        .context("creating Kafka producer")
}

/// Reads the leaders of `topic`'s partitions into `producer`, so that it
/// has its producer id before its first record.
///
/// An idempotent producer sends nothing before the broker gives it a
/// producer id. librdkafka asks for one when a metadata answer comes in or
/// on a 500 ms timer, and only while a partition leader is connected, which
/// a producer with sparse connections (the default) connects to once it has
/// a record for it. Measured on the local broker: a record sent 300 ms after
/// the producer's creation waited 700 ms, a runtime's first commit after a
/// quick group join about 500 ms. The first read learns the leaders from the
/// bootstrap server; the second is answered over a leader's connection, and
/// the id follows at once: a record sent right after took 5-6 ms (about
/// 50 ms for both reads).
pub async fn learn_leaders(producer: &FutureProducer, topic: &str) -> anyhow::Result<()> {
    let producer = producer.clone();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        for _ in 0..2 {
            producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(30))
                .with_context(|| format!("reading metadata of {topic}"))?;
        }
        Ok(())
    })
    .await?
}

/// The partition the producer (`murmur2_random`, as Java clients) puts a
/// non-empty `key` in: murmur2 of the key, sign bit cleared, modulo the
/// partition count. Lets a service find which partition, and so which
/// instance, holds a key's state.
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions.max(1) as u32) as i32
}

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`).
fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// Settings of a consumer in `group_id` that never commits on its own: the
/// runtime commits after outputs are delivered and state is written.
pub fn consumer_config(kafka: &KafkaConfig, group_id: &str) -> ClientConfig {
    let mut config = client_config(kafka);
    config
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
    for (key, value) in CONSUMER_DEFAULTS {
        tunable(&mut config, kafka, key, value);
    }
    config
}

/// The services' consumer settings that `kafka.properties` may override.
const CONSUMER_DEFAULTS: [(&str, &str); 4] = [
    ("session.timeout.ms", "10000"),
    ("heartbeat.interval.ms", "1000"),
    // librdkafka pauses fetching a partition for this long once its local queue
    // is full (1 s by default), which stalls a consumer that fell behind its prefetch.
    ("fetch.queue.backoff.ms", "20"),
    // How long a fetch may wait for records (librdkafka's default is 500 ms).
    // Apache Kafka answers as soon as there is one; a broker that holds the
    // fetch until this runs out adds it to every hop of the pipeline.
    ("fetch.wait.max.ms", "100"),
];

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
    /// `retention.ms` of the topic; `None` keeps the broker's default.
    pub retention: Option<Duration>,
}

impl TopicSpec {
    /// A topic whose old records are deleted after the broker's default retention.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        TopicSpec {
            name: name.into(),
            partitions,
            compacted: false,
            retention: None,
        }
    }

    /// A compacted topic: the latest record of each key is kept (changelogs, registries).
    pub fn compacted(name: impl Into<String>, partitions: i32) -> Self {
        TopicSpec {
            compacted: true,
            ..TopicSpec::new(name, partitions)
        }
    }
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
        &topics.erasure_requests,
        &topics.erasure_tasks,
        &topics.erasure_progress,
        &topics.erasure_confirmations,
    ]
    .into_iter()
    .map(|name| TopicSpec {
        retention: Some(if *name == topics.dead_letters {
            topics.dead_letters_retention
        } else {
            topics.retention
        }),
        ..TopicSpec::new(name.as_str(), partitions)
    })
    .collect()
}

/// The topic-level settings of `spec`.
fn topic_settings(spec: &TopicSpec) -> Vec<(&'static str, String)> {
    let mut settings = Vec::new();
    if spec.compacted {
        settings.push(("cleanup.policy", "compact".to_string()));
    }
    if let Some(retention) = spec.retention {
        settings.push(("retention.ms", retention.as_millis().to_string()));
    }
    settings
}

/// Creates the topics that do not exist yet.
pub async fn ensure_topics(kafka: &KafkaConfig, specs: &[TopicSpec]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(kafka)
        .create()
        .context("creating Kafka admin client")?;
    // `NewTopic` borrows its settings' values: they are made first.
    let settings: Vec<Vec<(&str, String)>> = specs.iter().map(topic_settings).collect();
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .zip(&settings)
        .map(|(spec, settings)| {
            let replication = TopicReplication::Fixed(kafka.replication_factor);
            settings.iter().fold(
                NewTopic::new(&spec.name, spec.partitions, replication),
                |topic, (key, value)| topic.set(key, value),
            )
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn with_properties(pairs: &[(&str, &str)]) -> KafkaConfig {
        KafkaConfig {
            properties: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            ..KafkaConfig::default()
        }
    }

    #[test]
    fn properties_tune_the_defaults_but_not_what_correctness_needs() {
        let kafka = with_properties(&[
            ("fetch.wait.max.ms", "20"),
            ("linger.ms", "50"),
            ("enable.auto.commit", "true"),
            ("acks", "1"),
        ]);
        let consumer = consumer_config(&kafka, "g");
        assert_eq!(consumer.get("fetch.wait.max.ms"), Some("20"));
        assert_eq!(consumer.get("session.timeout.ms"), Some("10000"));
        assert_eq!(consumer.get("enable.auto.commit"), Some("false"));
        let producer = producer_config(&kafka);
        assert_eq!(producer.get("linger.ms"), Some("50"));
        assert_eq!(producer.get("acks"), Some("all"));
        let plain = consumer_config(&KafkaConfig::default(), "g");
        assert_eq!(plain.get("fetch.wait.max.ms"), Some("100"));
    }

    const SASL_SSL: [(&str, &str); 4] = [
        ("security.protocol", "SASL_SSL"),
        ("sasl.mechanisms", "SCRAM-SHA-512"),
        ("sasl.username", "journey"),
        ("sasl.password", "s3cret"),
    ];

    #[test]
    fn properties_reach_every_kind_of_client_config() {
        let kafka = with_properties(&SASL_SSL);
        for (kind, config) in [
            ("plain", client_config(&kafka)),
            ("consumer", consumer_config(&kafka, "g")),
            ("producer", producer_config(&kafka)),
        ] {
            for (key, value) in SASL_SSL {
                assert_eq!(config.get(key), Some(value), "{kind}: {key}");
            }
            assert_eq!(config.get("bootstrap.servers"), Some("127.0.0.1:9092"));
        }
    }

    #[test]
    fn tls_and_sasl_configs_are_accepted_by_librdkafka() {
        // Fails with "OpenSSL not available at build time" without the `ssl` feature.
        for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
            let mut kafka = with_properties(&SASL_SSL);
            kafka
                .properties
                .insert("sasl.mechanisms".into(), mechanism.into());
            check_properties(&kafka).unwrap_or_else(|e| panic!("{mechanism}: {e:#}"));
        }
        check_properties(&with_properties(&[
            ("security.protocol", "SSL"),
            ("ssl.endpoint.identification.algorithm", "https"),
        ]))
        .unwrap();
        // Created for real (it connects lazily), as every service's clients are.
        let producer: Result<FutureProducer, _> =
            producer_config(&with_properties(&SASL_SSL)).create();
        assert!(producer.is_ok(), "{:?}", producer.err());
    }

    #[test]
    fn a_property_librdkafka_refuses_names_the_field() {
        let missing = std::env::temp_dir().join("journey-no-such-ca.pem");
        let missing = missing.to_str().unwrap();
        let cases = [
            (
                ("sasl.mechanism.typo", "PLAIN"),
                "kafka.properties.sasl.mechanism.typo",
            ),
            (
                ("security.protocol", "TLS"),
                "kafka.properties.security.protocol",
            ),
            (
                ("socket.timeout.ms", "soon"),
                "kafka.properties.socket.timeout.ms",
            ),
            (
                ("ssl.ca.location", missing),
                "kafka.properties.ssl.ca.location",
            ),
        ];
        for ((key, value), field) in cases {
            // A later pair overrides an earlier one of the same name.
            let properties = [("security.protocol", "SSL"), (key, value)];
            let err = check_properties(&with_properties(&properties))
                .expect_err(key)
                .to_string();
            assert!(err.contains(&format!("field `{field}`")), "{err}");
        }
    }

    #[test]
    fn a_refused_secret_is_not_echoed() {
        let err = check_properties(&with_properties(&[("sasl.pasword", "hunter2-secret")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("kafka.properties.sasl.pasword"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn pipeline_topics_carry_their_retention_dead_letters_their_own() {
        let topics = TopicsConfig {
            retention: Duration::from_secs(3 * 24 * 3600),
            dead_letters_retention: Duration::from_secs(3600),
            ..TopicsConfig::default()
        };
        let specs = pipeline_topics(&topics, 6);
        let settings = |name: &str| {
            let spec = specs.iter().find(|s| s.name == name).expect("topic");
            topic_settings(spec)
        };
        assert_eq!(
            settings("journey.events"),
            [("retention.ms", "259200000".to_string())]
        );
        assert_eq!(
            settings("journey.dead-letters"),
            [("retention.ms", "3600000".to_string())]
        );
        let changelog = TopicSpec::compacted("x-changelog", 6);
        assert_eq!(
            topic_settings(&changelog),
            [("cleanup.policy", "compact".to_string())]
        );
    }

    #[test]
    fn murmur2_matches_the_java_client() {
        // Vectors of Kafka's UtilsTest.testMurmur2.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(
                murmur2(key) as i32,
                expected,
                "{}",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn partitions_stay_in_range() {
        for key in ["a", "customer-42", "21"] {
            let p = partition_for(key.as_bytes(), 6);
            assert!((0..6).contains(&p), "{key}: {p}");
        }
        assert_eq!(partition_for(b"21", 1), 0);
    }
}
