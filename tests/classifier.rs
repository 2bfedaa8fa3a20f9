//! The classifier service binary against a real broker: stage changes from
//! events, a wall-clock churn risk and its win-back, an identity merge
//! folded across partitions, and the query API on the owning and on a
//! non-owning instance. Needs the binaries: `cargo build --workspace --bins`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use journey_core::codec::Codec;
use journey_core::config::ConfigSource;
use journey_core::contract::{CustomerEvent, EventType, IdentityMerge, Order, Stage, StageChange};
use journey_core::runtime::now_millis;
use journey_tests::{
    collect, free_port, keyed_by_customer, metric, produce, Broker, ServiceProcess,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GROUP: &str = "cls-e2e";
const CHANGES: &str = "journey.stage-changes";

fn event(id: &str, customer: &str, event_type: EventType, at: i64) -> CustomerEvent {
    let mut event = journey_tests::web_event(id, customer, event_type, at);
    if event_type == EventType::Purchase {
        event.order = Some(Order {
            order_id: format!("o-{id}"),
            revenue: 80.0,
            currency: "EUR".into(),
            item_count: Some(1),
        });
    }
    event
}

/// One classifier instance's config: its own state and port, the shared
/// group, and rules whose buyer silence is 4 s instead of 60 days.
fn write_config(dir: &Path, broker: &Broker, http: SocketAddr) -> std::path::PathBuf {
    let rules = journey_classifier::DEFAULT_RULES.replace("after = \"60days\"", "after = \"4s\"");
    assert_ne!(rules, journey_classifier::DEFAULT_RULES);
    let rules_path = dir.join("stage_rules.toml");
    std::fs::write(&rules_path, rules).unwrap();
    let config = dir.join("journey.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\npartitions = 3\n\n\
             [runtime]\nstate_dir = \"{}\"\ncommit_interval = \"200ms\"\ntick_interval = \"100ms\"\nidle_timeout = \"1s\"\n\n\
             [classifier]\nhttp_listen = \"{http}\"\ngroup_id = \"{GROUP}\"\nrules_file = \"{}\"\n",
            broker.bootstrap,
            dir.join("state").display(),
            rules_path.display()
        ),
    )
    .unwrap();
    config
}

/// A GET; returns the status, the `location` header and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap_or_default()
        .to_string();
    (status, location, body.to_string())
}

/// Polls `check` every 200 ms until it gives a value, for at most `timeout`.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A stage change as compared here: from, to, rule.
type Move<R> = (Option<Stage>, Stage, R);

/// Stage changes per customer, in order.
fn per_customer(changes: &[StageChange]) -> BTreeMap<String, Vec<Move<String>>> {
    let mut by: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for c in changes {
        by.entry(c.customer_id.clone()).or_default().push((
            c.from_stage,
            c.to_stage,
            c.rule.clone(),
        ));
    }
    by
}

fn expected(rows: &[(&str, &[Move<&str>])]) -> BTreeMap<String, Vec<Move<String>>> {
    rows.iter()
        .map(|(customer, moves)| {
            (
                customer.to_string(),
                moves
                    .iter()
                    .map(|(f, t, r)| (*f, *t, r.to_string()))
                    .collect(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stages_churn_merges_and_queries_across_two_instances() {
    use Stage::*;
    let broker = Broker::start();
    let kafka = broker.kafka();
    let source = ConfigSource::load(None).unwrap();
    let topics = journey_core::kafka::pipeline_topics(&source.common().unwrap().topics, 3);
    journey_core::kafka::ensure_topics(&kafka, &topics)
        .await
        .unwrap();

    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let http = [free_port(), free_port()].map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
    let first = ServiceProcess::start(
        "journey-classifier",
        &write_config(dirs[0].path(), &broker, http[0]),
    );

    let t = now_millis();
    produce(
        &kafka,
        "journey.events",
        &keyed_by_customer(&[
            event("a1", "alice", EventType::PageView, t),
            event("a2", "alice", EventType::ProductView, t + 1),
            event("b1", "bob", EventType::AdClick, t),
            event("b2", "bob", EventType::Purchase, t + 1),
            event("c1", "carol", EventType::Login, t),
            CustomerEvent {
                customer_id: None,
                anonymous_id: Some("anon-7".into()),
                ..event("v1", "", EventType::ProductView, t)
            },
        ]),
    )
    .await
    .unwrap();
    // Bob falls silent: 4 s later (wall clock) he is a churn risk.
    let wait = Duration::from_secs(60);
    let changes = collect::<StageChange>(&kafka, CHANGES, 7, wait, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        per_customer(&changes),
        expected(&[
            (
                "alice",
                &[
                    (None, Awareness, "first_touch"),
                    (Some(Awareness), Consideration, "consideration_signal")
                ]
            ),
            ("anon-7", &[(None, Consideration, "consideration_signal")]),
            (
                "bob",
                &[
                    (None, Awareness, "first_touch"),
                    (Some(Awareness), Purchase, "order_completed"),
                    (Some(Purchase), ChurnRisk, "buyer_silent")
                ]
            ),
            ("carol", &[(None, Awareness, "first_touch")]),
        ])
    );

    // The visitor is identified as Carol; Bob comes back.
    let merge = IdentityMerge {
        merge_id: "m-1".into(),
        anonymous_id: "anon-7".into(),
        customer_id: "carol".into(),
        previous_customer_id: None,
        evidence_event_id: "c2".into(),
        merged_at: t + 2,
    };
    let codec = Codec::builtin();
    produce(
        &kafka,
        "journey.identities",
        &[("anon-7".into(), codec.encode(&merge).unwrap(), t + 2)],
    )
    .await
    .unwrap();
    produce(
        &kafka,
        "journey.events",
        &keyed_by_customer(&[event("b3", "bob", EventType::PageView, now_millis())]),
    )
    .await
    .unwrap();
    // Won back, then silent again for 4 s: a churn risk once more.
    let changes = collect::<StageChange>(&kafka, CHANGES, 10, wait, Duration::from_secs(2))
        .await
        .unwrap();
    let by = per_customer(&changes);
    assert_eq!(
        by["carol"],
        expected(&[(
            "carol",
            &[
                (None, Awareness, "first_touch"),
                (Some(Awareness), Consideration, "identity_merge")
            ]
        )])["carol"]
    );
    assert_eq!(
        by["bob"][3..],
        expected(&[(
            "bob",
            &[
                (Some(ChurnRisk), WinBack, "win_back"),
                (Some(WinBack), ChurnRisk, "buyer_silent")
            ]
        )])["bob"][..]
    );

    // One instance owns every partition: it answers, from committed state.
    let (status, _, body) = eventually("carol's merged profile", wait, || async {
        let answer = get(http[0], "/customers/carol").await;
        answer.2.contains("anon-7").then_some(answer)
    })
    .await;
    assert_eq!(status, 200, "{body}");
    let carol: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(carol["stage"], "CONSIDERATION");
    assert_eq!(carol["merged_anonymous_ids"], serde_json::json!(["anon-7"]));
    let (status, _, body) = get(http[0], "/customers/nobody").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("unknown customer"), "{body}");
    let customers = |addr| async move {
        let mut total = 0.0;
        for stage in Stage::ALL {
            total += metric(
                addr,
                &format!(
                    "journey_classifier_customers{{stage=\"{}\"}}",
                    stage.as_str()
                ),
            )
            .await
            .unwrap_or(0.0);
        }
        total
    };
    assert_eq!(
        customers(http[0]).await,
        3.0,
        "alice, bob and carol; the visitor folded in"
    );

    // A second instance joins: each customer is answered by its owner, and
    // the other instance redirects there.
    let second = ServiceProcess::start(
        "journey-classifier",
        &write_config(dirs[1].path(), &broker, http[1]),
    );
    eventually("partitions split between the instances", wait, || async {
        let a = metric(http[0], "journey_classifier_assigned_partitions").await?;
        let b = metric(http[1], "journey_classifier_assigned_partitions").await?;
        (a >= 1.0 && b >= 1.0 && a + b == 3.0).then_some(())
    })
    .await;
    let urls = http.map(|addr| format!("http://{addr}"));
    for customer in ["alice", "bob", "carol"] {
        let path = format!("/customers/{customer}");
        let owner = eventually(
            &format!("an owner for {customer} and a redirect to it"),
            wait,
            || async {
                let a = get(http[0], &path).await;
                let b = get(http[1], &path).await;
                match (a.0, b.0) {
                    (200, 307) if b.1 == format!("{}{path}", urls[0]) => Some(0),
                    (307, 200) if a.1 == format!("{}{path}", urls[1]) => Some(1),
                    _ => None,
                }
            },
        )
        .await;
        let (status, _, body) = get(http[owner], &path).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains(&format!("\"customer_id\":\"{customer}\"")),
            "{body}"
        );
    }
    eventually(
        "the stage gauges summed over both instances",
        wait,
        || async { (customers(http[0]).await + customers(http[1]).await == 3.0).then_some(()) },
    )
    .await;

    second.stop();
    first.stop();
}
