//! Confluent's Python client against the embedded registry on a real broker:
//! `tests/python/avro_producer.py` registers the CustomerEvent schema and
//! produces with `AvroSerializer`; the records must carry the id the registry
//! assigned and decode to the events it meant. Then `avro_consumer.py` reads
//! them back with `AvroDeserializer`, fetching the schema by id.
//!
//! Needs python3 with `tests/python/requirements.txt` (`scripts/setup.sh`).

use std::time::Duration;

use apache_avro::Schema;
use journey_core::codec::{split_frame, AvroRecord};
use journey_core::contract::CustomerEvent;
use journey_core::kafka::{ensure_topics, TopicSpec};
use journey_registry::RegistryClient;
use journey_tests::{python_event, run_python, Broker, EmbeddedRegistry};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

const COUNT: usize = 12;

/// The raw values of partition 0 of `topic`, from the beginning.
async fn read_values(broker: &Broker, topic: &str, count: usize) -> Vec<Vec<u8>> {
    let consumer: StreamConsumer = journey_core::kafka::client_config(&broker.kafka())
        .set("group.id", format!("rust-reader-{topic}"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut values = Vec::new();
    while values.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("records within 30 s")
            .unwrap();
        values.push(message.payload().unwrap_or_default().to_vec());
    }
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_avro_serializer_and_deserializer_work_against_the_embedded_registry() {
    let broker = Broker::start();
    let kafka = broker.kafka();
    let registry =
        EmbeddedRegistry::start(&kafka, ([127, 0, 0, 1], 0).into(), "_schemas-python").await;
    let topic = "python-customer-events";
    ensure_topics(&kafka, &[TopicSpec::new(topic, 1)])
        .await
        .unwrap();
    let common = vec![
        "--bootstrap".to_string(),
        broker.bootstrap.clone(),
        "--registry".into(),
        registry.url.clone(),
        "--topic".into(),
        topic.into(),
        "--count".into(),
        COUNT.to_string(),
    ];

    let report = run_python("avro_producer.py", common.clone()).await;
    let report: serde_json::Value = serde_json::from_str(report.trim()).expect("a JSON report");
    let client = RegistryClient::new(&registry.url).unwrap();
    let latest = client.latest(&format!("{topic}-value")).unwrap();
    assert_eq!(report["id"], latest.id, "{report}");
    assert_eq!(latest.version, 1);
    let contract = Schema::parse_str(CustomerEvent::SCHEMA).unwrap();
    assert_eq!(
        Schema::parse_str(&latest.schema).unwrap().canonical_form(),
        contract.canonical_form()
    );

    let mut events = Vec::new();
    for value in read_values(&broker, topic, COUNT).await {
        let (id, mut datum) = split_frame(&value).expect("Confluent framing");
        assert_eq!(id, latest.id, "framed with the registry's id");
        let writer = client.schema_by_id(id).unwrap();
        let decoded = apache_avro::from_avro_datum(&writer, &mut datum, None).unwrap();
        assert!(datum.is_empty(), "bytes left after the record");
        let resolved = decoded.resolve(&contract).unwrap();
        events.push(apache_avro::from_value::<CustomerEvent>(&resolved).unwrap());
    }
    let expected: Vec<CustomerEvent> = (0..COUNT).map(|i| python_event("py", i, true)).collect();
    assert_eq!(events, expected);

    let lines = run_python("avro_consumer.py", common).await;
    let read_back: Vec<serde_json::Value> = lines
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let expected: Vec<serde_json::Value> = expected
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect();
    assert_eq!(read_back, expected);
    registry.stop().await;
}
