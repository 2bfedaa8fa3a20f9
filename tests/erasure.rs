//! End to end through the four services: a customer with sessions, a
//! profile, open timers, identity links and alerts is erased. The request is
//! confirmed once, the query API forgets the customer, every changelog ends
//! each of the customer's keys with a tombstone, a restart that restores
//! from the changelogs brings nothing back, and later events start afresh.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use journey_core::codec::Codec;
use journey_core::contract::{
    Alert, AlertStatus, CustomerEvent, ErasureConfirmation, ErasureRequest, EventType, Feedback,
    Product,
};
use journey_core::runtime::now_millis;
use journey_tests::{
    collect, collect_keyed, http_get, metric, produce, read_log, service_bin, web_event, Broker,
    Pipeline,
};

const CUSTOMER: &str = "cust-erase-1";
const ANONYMOUS: &str = "anon-erase-1";
const OTHER: &str = "cust-kept-1";
const SECOND: i64 = 1_000;

/// Changelog topics of the pipeline's services, for test `test`.
fn changelogs(test: &str) -> [String; 4] {
    [
        format!("{test}-ingest-state-changelog"),
        format!("{test}-sessionizer-sessions-changelog"),
        format!("{test}-classifier-profiles-changelog"),
        format!("{test}-alerting-alerts-changelog"),
    ]
}

fn mentions(bytes: &[u8], id: &str) -> bool {
    bytes.windows(id.len()).any(|w| w == id.as_bytes())
}

/// Raw-topic records keyed as producers should (visitor first).
fn keyed(codec: &Codec, events: &[CustomerEvent]) -> Vec<(String, Vec<u8>, i64)> {
    events
        .iter()
        .map(|e| {
            let key = e.anonymous_id.clone().or(e.customer_id.clone()).unwrap();
            (key, codec.encode(e).unwrap(), e.occurred_at)
        })
        .collect()
}

/// A session that closed (ten minutes ago), an identity link, a detractor
/// alert, an open cart (its timer an hour away) and a session still open
/// (its events a minute ahead, within the allowed clock skew).
fn journey(now: i64) -> Vec<CustomerEvent> {
    let past = now - 10 * 60 * SECOND;
    let ahead = now + 60 * SECOND;
    let anonymous = CustomerEvent {
        customer_id: None,
        anonymous_id: Some(ANONYMOUS.into()),
        ..web_event("ev-1", "-", EventType::PageView, past)
    };
    let login = CustomerEvent {
        anonymous_id: Some(ANONYMOUS.into()),
        ..web_event("ev-2", CUSTOMER, EventType::Login, past + SECOND)
    };
    let detractor = CustomerEvent {
        feedback: Some(Feedback {
            nps: Some(2),
            comment: Some("parcel never came".into()),
            ..Feedback::default()
        }),
        ..web_event("ev-3", CUSTOMER, EventType::Feedback, past + 2 * SECOND)
    };
    vec![
        anonymous,
        login,
        detractor,
        CustomerEvent {
            product: Some(Product {
                product_id: "sku-1".into(),
                ..Product::default()
            }),
            ..web_event("ev-4", CUSTOMER, EventType::AddToCart, ahead)
        },
        web_event("ev-5", OTHER, EventType::PageView, past),
        web_event("ev-6", OTHER, EventType::PageView, ahead),
    ]
}

/// Polls `GET path` of `addr` until it answers `status`; returns the body.
async fn wait_for_status(addr: std::net::SocketAddr, path: &str, status: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = http_get(addr, path).await;
        match &answer {
            Ok((got, body)) if *got == status => return body.clone(),
            _ => assert!(Instant::now() < deadline, "{path} still answers {answer:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What each changelog holds of the erased ids: the keys that name them,
/// with whether each one's latest record is a tombstone, and the other keys
/// whose latest value names them.
struct Traces {
    named_keys: BTreeMap<Vec<u8>, bool>,
    named_in_values: Vec<Vec<u8>>,
}

async fn traces(kafka: &journey_core::config::KafkaConfig, topic: &str) -> Traces {
    let names_them = |bytes: &[u8]| [CUSTOMER, ANONYMOUS].iter().any(|id| mentions(bytes, id));
    let mut latest: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    for (key, value) in read_log(kafka, topic).await.unwrap() {
        latest.insert(key, value);
    }
    Traces {
        named_keys: latest
            .iter()
            .filter(|(key, _)| names_them(key))
            .map(|(key, value)| (key.clone(), value.is_none()))
            .collect(),
        named_in_values: latest
            .into_iter()
            .filter(|(key, value)| !names_them(key) && value.as_deref().is_some_and(names_them))
            .map(|(key, _)| key)
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_erased_customer_is_gone_from_every_service_and_stays_gone_after_a_restore() {
    let test = "erasure";
    let broker = Broker::start();
    let kafka = broker.kafka();
    let codec = Codec::builtin();
    // Sessions close on event time only: with the usual 1 s idle timeout the
    // open session would close by the wall clock some 6 s after its events,
    // racing the erasure, and its summary could reach the classifier after
    // the classifier's own erasure step.
    let pipeline = Pipeline::start_with_idle_timeout(&broker, test, "", "1h")
        .await
        .unwrap();
    let classifier = pipeline.http("classifier");

    let now = now_millis();
    produce(&kafka, "journey.events.raw", &keyed(&codec, &journey(now)))
        .await
        .unwrap();
    // The closed session reached the profile, the detractor alert fired.
    let wait = Duration::from_secs(60);
    let deadline = Instant::now() + wait;
    loop {
        let body = wait_for_status(classifier, &format!("/customers/{CUSTOMER}"), 200).await;
        let profile: serde_json::Value = serde_json::from_str(&body).unwrap();
        // The anonymous profile is folded in or kept apart, depending on
        // whether the merge or the visitor's event reached the classifier
        // first; either way both ids are erased.
        if profile["sessions"].as_u64() >= Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "no closed session in {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let alerts = collect::<Alert>(&kafka, "journey.alerts", 1, wait, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        (alerts[0].rule.as_str(), alerts[0].status),
        ("detractor_feedback", AlertStatus::Firing)
    );
    // Let every service commit what it holds of the customer.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for topic in changelogs(test) {
        let before = traces(&kafka, &topic).await;
        assert!(
            before.named_keys.values().any(|tombstone| !tombstone),
            "{topic} holds nothing of the customer before the erasure: the test proves nothing"
        );
    }

    // Operators ask with `journey erase`, which waits for the confirmation.
    let erase = std::process::Command::new(service_bin("journey"))
        .arg("--config")
        .arg(pipeline.config_path())
        .args([
            "erase",
            CUSTOMER,
            "--request-id",
            "req-1",
            "--wait-secs",
            "60",
        ])
        .env("JOURNEY_LOG__FILTER", "warn")
        .output()
        .unwrap();
    assert!(
        erase.status.success(),
        "journey erase failed: {}",
        String::from_utf8_lossy(&erase.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&erase.stdout).unwrap();
    assert_eq!(printed["request_id"], "req-1");
    assert_eq!(
        printed["subjects"],
        serde_json::json!([ANONYMOUS, CUSTOMER])
    );

    let confirmations = collect_keyed::<ErasureConfirmation>(
        &kafka,
        "journey.erasure.confirmations",
        1,
        wait,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    let (key, confirmation) = &confirmations[0];
    assert_eq!(key, CUSTOMER);
    assert_eq!(confirmation.request_id, "req-1");
    assert_eq!(confirmation.subjects, vec![ANONYMOUS, CUSTOMER]);
    assert_eq!(
        confirmation.services,
        vec!["ingest", "sessionizer", "classifier", "alerting"]
    );
    assert!(confirmation.confirmed_at >= confirmation.requested_at);
    assert_eq!(
        metric(
            pipeline.http("ingest"),
            "journey_ingest_erasure_confirmation_seconds_count"
        )
        .await,
        Some(1.0)
    );

    // The firing alert was resolved, so receivers clear it.
    let alerts = collect::<Alert>(&kafka, "journey.alerts", 2, wait, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(alerts[1].status, AlertStatus::Resolved);
    assert_eq!(
        alerts[1].context["resolution"],
        "the customer's data was erased"
    );
    for id in [CUSTOMER, ANONYMOUS] {
        wait_for_status(classifier, &format!("/customers/{id}"), 404).await;
    }
    wait_for_status(classifier, &format!("/customers/{OTHER}"), 200).await;

    // Every key that named the customer ends with a tombstone; no value names them.
    for topic in changelogs(test) {
        let after = traces(&kafka, &topic).await;
        let live: Vec<String> = after
            .named_keys
            .iter()
            .filter(|(_, tombstone)| !**tombstone)
            .map(|(key, _)| String::from_utf8_lossy(key).into_owned())
            .collect();
        assert!(live.is_empty(), "{topic} still holds {live:?}");
        assert!(
            after.named_in_values.is_empty(),
            "{topic} still names the customer under {:?}",
            after.named_in_values
        );
    }

    // A restore from the changelogs brings nothing back; the repeat of the
    // request is confirmed no second time.
    let pipeline = pipeline.restart(true).await.unwrap();
    let repeat = ErasureRequest {
        request_id: "req-1".into(),
        customer_id: CUSTOMER.into(),
        anonymous_ids: Vec::new(),
        requested_at: now_millis(),
    };
    let record = (CUSTOMER.to_string(), codec.encode(&repeat).unwrap(), now);
    produce(&kafka, "journey.erasure.requests", &[record])
        .await
        .unwrap();
    wait_for_status(classifier, &format!("/customers/{OTHER}"), 200).await;
    for id in [CUSTOMER, ANONYMOUS] {
        wait_for_status(classifier, &format!("/customers/{id}"), 404).await;
    }

    // Later events start a fresh profile.
    let later = web_event("ev-7", CUSTOMER, EventType::PageView, now + 2 * SECOND);
    produce(&kafka, "journey.events.raw", &keyed(&codec, &[later]))
        .await
        .unwrap();
    let body = wait_for_status(classifier, &format!("/customers/{CUSTOMER}"), 200).await;
    let profile: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(profile["first_seen"], now + 2 * SECOND);
    assert_eq!(profile["sessions"], 0);
    assert_eq!(profile["merged_anonymous_ids"], serde_json::json!([]));
    collect::<ErasureConfirmation>(
        &kafka,
        "journey.erasure.confirmations",
        1,
        wait,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    pipeline.shutdown().await.unwrap();
}
