//! Ingest alone on a real broker: duplicates dropped, visitors stitched to
//! customers with one merge record, placeholder ids ignored, events under a
//! foreign key re-routed by visitor, and ids that identify nobody dead-lettered,
//! as is a record too large for ingest, without the bytes that would make its
//! dead letter too large for the producer.

use std::time::Duration;

use journey_core::codec::Codec;
use journey_core::contract::{
    Channel, CustomerEvent, DeadLetter, ErrorKind, EventType, IdentityMerge,
};
use journey_core::runtime::now_millis;
use journey_tests::{collect, collect_keyed, http_get, produce, Broker, InProcessService};

fn event(id: &str, customer: Option<&str>, anonymous: Option<&str>, at: i64) -> CustomerEvent {
    CustomerEvent {
        event_id: id.into(),
        event_type: if customer.is_some() && anonymous.is_some() {
            EventType::Login
        } else {
            EventType::PageView
        },
        occurred_at: at,
        customer_id: customer.map(str::to_string),
        anonymous_id: anonymous.map(str::to_string),
        channel: Channel::Web,
        ..CustomerEvent::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_dedups_stitches_reroutes_and_dead_letters() {
    let broker = Broker::start();
    let kafka = broker.kafka();
    let config = |state: &std::path::Path, http| {
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\npartitions = 3\n\
             properties = {{ \"message.max.bytes\" = \"200000\" }}\n\n\
             [runtime]\nstate_dir = \"{}\"\ncommit_interval = \"200ms\"\n\n\
             [ingest]\nhttp_listen = \"{http}\"\ngroup_id = \"ingest-test\"\n\
             max_record_bytes = 100000\n",
            broker.bootstrap,
            state.display()
        )
    };
    let service = InProcessService::start(&broker, config, journey_ingest::run).await;
    let http = service.http;

    let codec = Codec::builtin();
    let t = now_millis() - 60_000;
    let first_visit = event("e1", None, Some("dev-1"), t);
    let records: Vec<(&str, CustomerEvent)> = vec![
        ("dev-1", first_visit.clone()),
        ("dev-1", event("e2", Some("c-1"), Some("dev-1"), t + 1)),
        ("dev-1", event("e3", None, Some("dev-1"), t + 2)),
        ("dev-1", first_visit),
        // A placeholder customer id, under a key that is not the visitor's.
        ("elsewhere", event("e4", Some("null"), Some("dev-2"), t + 3)),
        ("x", event("e5", Some("anonymous"), Some("0"), t + 4)),
        ("c-9", event("e6", Some("c-9"), None, t + 5)),
    ];
    let mut encoded: Vec<(String, Vec<u8>, i64)> = records
        .iter()
        .map(|(key, e)| (key.to_string(), codec.encode(e).unwrap(), e.occurred_at))
        .collect();
    // Over ingest's 100 000 bytes, and its dead letter over its producer's 200 000.
    encoded.push(("big".into(), vec![0; 300_000], t + 6));
    produce(&kafka, "journey.events.raw", &encoded)
        .await
        .unwrap();

    let wait = Duration::from_secs(60);
    let settle = Duration::from_secs(2);
    let mut events = collect_keyed::<CustomerEvent>(&kafka, "journey.events", 5, wait, settle)
        .await
        .unwrap();
    events.sort_by(|a, b| a.1.event_id.cmp(&b.1.event_id));
    let routed: Vec<_> = events
        .iter()
        .map(|(key, e)| {
            (
                key.as_str(),
                e.event_id.as_str(),
                e.customer_id.as_deref(),
                e.anonymous_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        routed,
        vec![
            ("dev-1", "e1", None, Some("dev-1")),
            ("c-1", "e2", Some("c-1"), Some("dev-1")),
            ("c-1", "e3", Some("c-1"), Some("dev-1")),
            ("dev-2", "e4", None, Some("dev-2")),
            ("c-9", "e6", Some("c-9"), None),
        ]
    );
    assert!(events.iter().all(|(_, e)| e.received_at.is_some()));

    let merges = collect_keyed::<IdentityMerge>(&kafka, "journey.identities", 1, wait, settle)
        .await
        .unwrap();
    let (key, merge) = &merges[0];
    assert_eq!(key, "dev-1");
    assert_eq!(
        (
            merge.anonymous_id.as_str(),
            merge.customer_id.as_str(),
            merge.evidence_event_id.as_str(),
            merge.merged_at
        ),
        ("dev-1", "c-1", "e2", t + 1)
    );

    let mut dead = collect::<DeadLetter>(&kafka, "journey.dead-letters", 2, wait, settle)
        .await
        .unwrap();
    dead.sort_by_key(|d| d.original_key.clone());
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].error_kind, ErrorKind::TooLarge);
    assert_eq!(dead[0].original_key.as_deref(), Some(&b"big"[..]));
    assert_eq!(dead[0].original_value, None);
    assert!(
        dead[0]
            .message
            .contains("original value of 300000 bytes left out"),
        "{}",
        dead[0].message
    );
    assert_eq!(dead[1].error_kind, ErrorKind::SemanticViolation);
    assert_eq!(dead[1].field_path.as_deref(), Some("customer_id"));
    assert_eq!(dead[1].original_key.as_deref(), Some(&b"x"[..]));

    let (_, metrics) = http_get(http, "/metrics").await.unwrap();
    for line in [
        "journey_ingest_events_duplicate_total 1",
        "journey_ingest_identity_merges_total 1",
        "journey_ingest_events_rerouted_total 1",
        "journey_ingest_events_valid_total 5",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    service.shutdown().await;
}
