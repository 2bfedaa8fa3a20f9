//! End to end through all four services on a real broker: a scripted scenario
//! in, the exact sessions, stage changes, alerts and dead letters out.

use std::collections::BTreeMap;
use std::time::Duration;

use journey_core::contract::{
    Alert, Channel, CustomerEvent, DeadLetter, ErrorKind, EventType, Feedback, FunnelStep, Order,
    Product, SessionSummary, Stage, StageChange,
};
use journey_core::runtime::now_millis;
use journey_tests::web_event as event;
use journey_tests::{collect, http_get, keyed_by_customer, produce, Broker, Pipeline};

const SECOND: i64 = 1_000;

fn product(mut e: CustomerEvent, sku: &str) -> CustomerEvent {
    e.product = Some(Product {
        product_id: sku.into(),
        price: Some(50.0),
        ..Product::default()
    });
    e
}

fn nps(mut e: CustomerEvent, score: i32, comment: &str) -> CustomerEvent {
    e.channel = Channel::Survey;
    e.feedback = Some(Feedback {
        nps: Some(score),
        comment: Some(comment.into()),
        ..Feedback::default()
    });
    e
}

/// Alice abandons a cart, Bob buys, Carol complains; one record is not Avro
/// and one has an impossible NPS.
fn scenario(t: i64) -> Vec<CustomerEvent> {
    let mut purchase = event("b5", "bob", EventType::Purchase, t + 4 * SECOND);
    purchase.order = Some(Order {
        order_id: "o-1".into(),
        revenue: 99.5,
        currency: "EUR".into(),
        item_count: Some(1),
    });
    vec![
        event("a1", "alice", EventType::PageView, t),
        product(
            event("a2", "alice", EventType::ProductView, t + SECOND),
            "sku-1",
        ),
        product(
            event("a3", "alice", EventType::AddToCart, t + 2 * SECOND),
            "sku-1",
        ),
        event("b1", "bob", EventType::AdClick, t),
        product(
            event("b2", "bob", EventType::ProductView, t + SECOND),
            "sku-2",
        ),
        product(
            event("b3", "bob", EventType::AddToCart, t + 2 * SECOND),
            "sku-2",
        ),
        event("b4", "bob", EventType::CheckoutStarted, t + 3 * SECOND),
        purchase,
        event("c1", "carol", EventType::PageView, t),
        nps(
            event("c2", "carol", EventType::Feedback, t + SECOND),
            2,
            "Delivery was late",
        ),
        nps(
            event("x1", "mallory", EventType::Feedback, t),
            11,
            "impossible score",
        ),
    ]
}

fn by_customer<T, K: Ord>(mut records: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    records.sort_by_key(|r| key(r));
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scripted_journeys_produce_exact_sessions_stages_alerts_and_dead_letters() {
    let broker = Broker::start();
    let pipeline = Pipeline::start(&broker, "e2e", "").await.unwrap();
    let kafka = broker.kafka();

    let t = now_millis() - 10 * 60 * SECOND;
    let mut records = keyed_by_customer(&scenario(t));
    records.push(("eve".into(), b"{\"event\":\"not avro\"}".to_vec(), t));
    produce(&kafka, "journey.events.raw", &records)
        .await
        .unwrap();

    let wait = Duration::from_secs(60);
    let settle = Duration::from_secs(2);

    let sessions = collect::<SessionSummary>(&kafka, "journey.sessions", 3, wait, settle)
        .await
        .unwrap();
    let sessions = by_customer(sessions, |s| s.customer_id.clone());
    let summary: Vec<_> = sessions
        .iter()
        .map(|s| {
            (
                s.customer_id.as_str(),
                s.event_count,
                s.duration_ms,
                s.furthest_step,
                s.revenue,
                s.engaged,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("alice", 3, 2 * SECOND, FunnelStep::Cart, 0.0, false),
            ("bob", 5, 4 * SECOND, FunnelStep::Purchase, 99.5, true),
            ("carol", 2, SECOND, FunnelStep::Visit, 0.0, false),
        ]
    );
    assert_eq!(sessions[1].order_ids, vec!["o-1".to_string()]);
    assert_eq!(sessions[1].currency.as_deref(), Some("EUR"));
    assert_eq!(sessions[2].nps_scores, vec![2]);
    assert_eq!(
        sessions[2].channels,
        vec!["WEB".to_string(), "SURVEY".to_string()]
    );
    assert_eq!(sessions[0].start, t);

    let changes = collect::<StageChange>(&kafka, "journey.stage-changes", 6, wait, settle)
        .await
        .unwrap();
    let mut transitions: Vec<_> = changes
        .iter()
        .map(|c| {
            (
                c.customer_id.as_str(),
                c.from_stage,
                c.to_stage,
                c.evidence_id.as_str(),
            )
        })
        .collect();
    transitions.sort();
    assert_eq!(
        transitions,
        vec![
            ("alice", None, Stage::Awareness, "a1"),
            ("alice", Some(Stage::Awareness), Stage::Consideration, "a2"),
            ("bob", None, Stage::Awareness, "b1"),
            ("bob", Some(Stage::Awareness), Stage::Consideration, "b2"),
            ("bob", Some(Stage::Consideration), Stage::Purchase, "b5"),
            ("carol", None, Stage::Awareness, "c1"),
        ]
    );

    // Alice's cart is not due for an hour (the default `after`); tests/alerting.rs
    // covers cart abandonment.
    let alerts = collect::<Alert>(&kafka, "journey.alerts", 1, wait, settle)
        .await
        .unwrap();
    let fired: Vec<_> = alerts
        .iter()
        .map(|a| {
            (
                a.customer_id.as_deref().unwrap(),
                a.rule.as_str(),
                a.evidence_id.as_str(),
            )
        })
        .collect();
    assert_eq!(fired, vec![("carol", "detractor_feedback", "c2")]);
    assert_eq!(
        alerts[0].context.get("feedback_text").map(String::as_str),
        Some("Delivery was late")
    );
    assert!(alerts[0].action_plan.is_some());

    let dead = collect::<DeadLetter>(&kafka, "journey.dead-letters", 2, wait, settle)
        .await
        .unwrap();
    let reasons: BTreeMap<ErrorKind, (Option<String>, String)> = dead
        .iter()
        .map(|d| (d.error_kind, (d.field_path.clone(), d.source_topic.clone())))
        .collect();
    assert_eq!(
        reasons,
        BTreeMap::from([
            (ErrorKind::NotAvro, (None, "journey.events.raw".to_string())),
            (
                ErrorKind::SemanticViolation,
                (
                    Some("feedback.nps".to_string()),
                    "journey.events.raw".to_string()
                )
            ),
        ])
    );
    let not_avro = dead
        .iter()
        .find(|d| d.error_kind == ErrorKind::NotAvro)
        .unwrap();
    assert_eq!(
        not_avro.original_value.as_deref(),
        Some(&b"{\"event\":\"not avro\"}"[..])
    );

    let (status, metrics) = http_get(pipeline.http("alerting"), "/metrics")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains(
            "journey_alerting_alerts_total{rule=\"detractor_feedback\",severity=\"CRITICAL\",status=\"FIRING\"} 1"
        ),
        "{metrics}"
    );
    let (status, _) = http_get(pipeline.http("ingest"), "/readyz").await.unwrap();
    assert_eq!(status, 200);
    let (_, ingest_metrics) = http_get(pipeline.http("ingest"), "/metrics").await.unwrap();
    assert!(
        ingest_metrics.contains("journey_ingest_dead_letters_total{kind=\"NOT_AVRO\"} 1"),
        "{ingest_metrics}"
    );

    pipeline.shutdown().await.unwrap();
}
