//! Ingest with a schema registry (the embedded one) on a real broker:
//! Confluent's Python serializer registers and produces with the current, an
//! older and a newer version of the contract, and every event arrives on
//! `journey.events` unchanged; a registry outage holds records back instead
//! of dead-lettering them.

use std::time::{Duration, Instant};

use journey_core::codec::split_frame;
use journey_core::contract::CustomerEvent;
use journey_core::schema_registry::RegistryClient;
use journey_tests::{
    collect_raw, free_port, python_event, registry_codec, repo_root, run_python, Broker,
    EmbeddedRegistry, InProcessService,
};

const PER_RUN: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_events_of_old_current_and_new_schemas_pass_through_ingest() {
    let broker = Broker::start();
    let kafka = broker.kafka();
    let registry =
        EmbeddedRegistry::start(&kafka, ([127, 0, 0, 1], 0).into(), "_schemas-evolution").await;
    let ingest = InProcessService::ingest(
        &broker,
        "ingest-registry",
        &format!("schema_registry_url = \"{}\"", registry.url),
    )
    .await;

    let fixtures = repo_root().join("crates/core/tests/fixtures");
    let runs = [
        (
            "current",
            repo_root().join("schemas/customer_event.avsc"),
            true,
        ),
        ("older", fixtures.join("customer_event_v0.avsc"), false),
        ("newer", fixtures.join("customer_event_v2.avsc"), true),
    ];
    for (prefix, schema, _) in &runs {
        run_python(
            "avro_producer.py",
            vec![
                "--bootstrap".into(),
                broker.bootstrap.clone(),
                "--registry".into(),
                registry.url.clone(),
                "--topic".into(),
                "journey.events.raw".into(),
                "--count".into(),
                PER_RUN.to_string(),
                "--schema".into(),
                schema.display().to_string(),
                "--prefix".into(),
                prefix.to_string(),
            ],
        )
        .await;
    }

    let client = RegistryClient::new(&registry.url).unwrap();
    let raw_versions = tokio::task::spawn_blocking({
        let url = registry.url.clone();
        move || {
            RegistryClient::new(&url)
                .unwrap()
                .latest("journey.events.raw-value")
                .unwrap()
                .version
        }
    })
    .await
    .unwrap();
    assert_eq!(raw_versions, 3, "three versions registered by the producer");

    let records = collect_raw(
        &kafka,
        "journey.events",
        3 * PER_RUN,
        Duration::from_secs(60),
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    let output_id = tokio::task::spawn_blocking(move || client.latest("journey.events-value"))
        .await
        .unwrap()
        .unwrap()
        .id;
    let codec = registry_codec(&registry.url);
    let mut events: Vec<CustomerEvent> = records
        .iter()
        .map(|(key, value)| {
            let (id, _) = split_frame(value).unwrap();
            assert_eq!(id, output_id, "written with the id of journey.events-value");
            let event: CustomerEvent = codec.decode(value).unwrap();
            assert_eq!(key, event.customer_id.as_deref().unwrap().as_bytes());
            assert!(event.received_at.is_some());
            CustomerEvent {
                received_at: None,
                ..event
            }
        })
        .collect();
    events.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    let mut wanted: Vec<CustomerEvent> = runs
        .iter()
        .flat_map(|(prefix, _, properties)| {
            (0..PER_RUN).map(move |i| python_event(prefix, i, *properties))
        })
        .collect();
    wanted.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    assert_eq!(events, wanted);
    assert_eq!(
        ingest.metric("journey_ingest_dead_letters_total").await,
        None
    );

    ingest.shutdown().await;
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_holds_records_back_instead_of_dead_lettering_them() {
    let broker = Broker::start();
    let kafka = broker.kafka();
    let listen = ([127, 0, 0, 1], free_port()).into();
    let registry = EmbeddedRegistry::start(&kafka, listen, "_schemas-outage").await;
    let url = registry.url.clone();
    let ingest = InProcessService::ingest(
        &broker,
        "ingest-outage",
        &format!("schema_registry_url = \"{url}\""),
    )
    .await;
    // Ingest is up once it has registered its schemas and consumes.
    let deadline = Instant::now() + Duration::from_secs(60);
    while ingest.metric("journey_ingest_assigned_partitions").await != Some(3.0) {
        assert!(Instant::now() < deadline, "ingest did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A producer registers the newer schema; ingest has not seen its id yet.
    let newer = std::fs::read_to_string(
        repo_root().join("crates/core/tests/fixtures/customer_event_v2.avsc"),
    )
    .unwrap();
    let (writer, id) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            let client = RegistryClient::new(&url).unwrap();
            let id = client.register("journey.events.raw-value", &newer).unwrap();
            (client.schema_by_id(id).unwrap(), id)
        }
    })
    .await
    .unwrap();
    registry.stop().await;

    let event = python_event("outage", 1, true);
    let value = apache_avro::to_value(&event)
        .and_then(|v| v.resolve(&writer))
        .unwrap();
    let mut framed = vec![0];
    framed.extend_from_slice(&id.to_be_bytes());
    framed.extend_from_slice(&apache_avro::to_avro_datum(&writer, value).unwrap());
    journey_tests::produce(
        &kafka,
        "journey.events.raw",
        &[("customer-1".to_string(), framed, event.occurred_at)],
    )
    .await
    .unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    while ingest
        .metric("journey_ingest_retries_total{kind=\"REGISTRY_UNAVAILABLE\"}")
        .await
        .unwrap_or(0.0)
        < 2.0
    {
        assert!(Instant::now() < deadline, "ingest never retried");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        ingest.metric("journey_ingest_dead_letters_total").await,
        None
    );

    // The registry comes back on the same address, from the same topic.
    let registry = EmbeddedRegistry::start(&kafka, listen, "_schemas-outage").await;
    let records = collect_raw(
        &kafka,
        "journey.events",
        1,
        Duration::from_secs(60),
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    let decoded: CustomerEvent = registry_codec(&url).decode(&records[0].1).unwrap();
    assert_eq!(decoded.event_id, "outage-1");
    assert_eq!(
        ingest.metric("journey_ingest_dead_letters_total").await,
        None
    );
    ingest.shutdown().await;
    registry.stop().await;
}
