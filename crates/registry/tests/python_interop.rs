//! Confluent's Python client against the embedded registry on a real broker:
//! `tests/python/avro_producer.py` registers the CustomerEvent schema and
//! produces with `AvroSerializer`; the records must carry the id the registry
//! assigned and decode to the events it meant. Then `avro_consumer.py` reads
//! them back with `AvroDeserializer`, fetching the schema by id.
//!
//! Needs python3; installs `tests/python/requirements.txt` with pip if the
//! packages are missing.

#[path = "support/running.rs"]
mod running;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use apache_avro::Schema;
use journey_core::codec::{split_frame, AvroRecord};
use journey_core::contract::{Channel, CustomerEvent, EventType, Order, Page};
use journey_core::kafka::{ensure_topics, TopicSpec};
use journey_registry::RegistryClient;
use journey_tests::Broker;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use running::Running;

const COUNT: usize = 12;

fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python")
}

fn python_client_importable() -> bool {
    Command::new("python3")
        .args([
            "-c",
            "import fastavro; from confluent_kafka.schema_registry.avro import AvroSerializer",
        ])
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Makes sure confluent-kafka's Avro serializer can be imported, installing the pinned packages if not.
fn ensure_python_client() {
    if python_client_importable() {
        return;
    }
    let requirements = python_dir().join("requirements.txt");
    let install = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "-r"])
        .arg(&requirements)
        .output()
        .expect("python3 is needed for the Python interop test");
    assert!(
        install.status.success() && python_client_importable(),
        "installing {}: {}",
        requirements.display(),
        String::from_utf8_lossy(&install.stderr)
    );
}

/// Runs a script of `tests/python` and returns its standard output.
async fn run_python(script: &str, args: Vec<String>) -> String {
    let script = python_dir().join(script);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(&script)
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()))
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "python failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The events `event(i)` of avro_producer.py makes.
fn expected_event(i: usize) -> CustomerEvent {
    let purchase = i % 3 == 2;
    CustomerEvent {
        event_id: format!("py-{i}"),
        event_type: if purchase {
            EventType::Purchase
        } else {
            EventType::PageView
        },
        occurred_at: 1_700_000_000_000 + i as i64 * 1_000,
        customer_id: Some(format!("customer-{}", i % 4)),
        channel: if purchase { Channel::App } else { Channel::Web },
        page: (!purchase).then(|| Page {
            url: format!("https://shop.example/p/{i}"),
            title: None,
            referrer: None,
        }),
        order: purchase.then(|| Order {
            order_id: format!("o-{i}"),
            revenue: i as f64 * 10.5,
            currency: "EUR".into(),
            item_count: Some(i as i32),
        }),
        properties: BTreeMap::from([("seq".to_string(), i.to_string())]),
        ..CustomerEvent::default()
    }
}

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
    ensure_python_client();
    let broker = Broker::start();
    let kafka = broker.kafka();
    let registry = Running::start(&kafka, "_schemas-python").await;
    let topic = "python-customer-events";
    ensure_topics(
        &kafka,
        &[TopicSpec {
            name: topic.into(),
            partitions: 1,
            compacted: false,
        }],
    )
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
    let expected: Vec<CustomerEvent> = (0..COUNT).map(expected_event).collect();
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
