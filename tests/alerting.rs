//! Alerting end to end on a real broker: events in, alerts on the topic, on
//! `/metrics`, at a webhook receiver in Alertmanager's format, and firing in
//! a real Prometheus evaluating `deploy/prometheus/rules/cx.yml`, which sends
//! it through a real Alertmanager to the same receiver.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use journey_core::codec::Codec;
use journey_core::contract::{
    Alert, AlertStatus, CustomerEvent, EventType, Feedback, IdentityMerge, Order, Product,
};
use journey_core::runtime::now_millis;
use journey_tests::web_event as event;
use journey_tests::{
    collect, free_port, http_get, keyed_by_customer, metric, produce, repo_root, Broker,
    InProcessService,
};

/// A webhook receiver answering 200 to every POST; sends each body on.
fn receiver() -> (String, mpsc::Receiver<serde_json::Value>) {
    receiver_on(0)
}

/// [`receiver`] on `port` (any free one if 0).
fn receiver_on(port: u16) -> (String, mpsc::Receiver<serde_json::Value>) {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let (bodies, received) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" || line.is_empty() {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            if bodies.send(serde_json::from_slice(&body).unwrap()).is_err() {
                return;
            }
        }
    });
    (url, received)
}

/// A process killed when dropped, with its scratch directory.
struct Daemon {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts `binary` with `config` written to `config_file` in a scratch
    /// directory; `args` may use `{dir}` and `{addr}`.
    fn start(binary: &str, config_file: &str, config: &str, args: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(config_file), config).unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new(binary)
            .args(args.iter().map(|a| {
                a.replace("{dir}", &dir.path().display().to_string())
                    .replace("{addr}", &addr.to_string())
            }))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting {binary} (Debian's prometheus packages: scripts/setup.sh): {e}")
            });
        Daemon {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The alerting service on the broker, with `rules` (TOML) over the built-in
/// rules, short runtime cadences, and `extra` in its config file.
async fn start_alerting(
    broker: &Broker,
    group: &str,
    rules: &str,
    extra: &str,
) -> InProcessService {
    let config = |state: &Path, http| {
        let rules_file = state.join("rules.toml");
        std::fs::write(&rules_file, rules).unwrap();
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\npartitions = 3\n\n\
             [runtime]\nstate_dir = \"{}\"\ncommit_interval = \"200ms\"\ntick_interval = \"100ms\"\nidle_timeout = \"1s\"\n\n\
             [alerting]\nhttp_listen = \"{http}\"\ngroup_id = \"{group}\"\nrules_file = \"{}\"\n\n{extra}",
            broker.bootstrap,
            state.display(),
            rules_file.display()
        )
    };
    InProcessService::start(broker, config, journey_alerting::run).await
}

/// An Alertmanager sending every alert to the webhook at `url` at once.
fn alertmanager(url: &str) -> Daemon {
    let config = format!(
        "route:\n  receiver: alertmanager\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n\
         receivers:\n  - name: alertmanager\n    webhook_configs:\n      - url: {url}\n"
    );
    Daemon::start(
        "prometheus-alertmanager",
        "alertmanager.yml",
        &config,
        &[
            "--config.file={dir}/alertmanager.yml",
            "--storage.path={dir}/data",
            "--web.listen-address={addr}",
            "--cluster.listen-address=",
        ],
    )
}

/// A Prometheus scraping `target` every second, evaluating the
/// repository's CX alerting rules and sending alerts to `alertmanager`.
fn prometheus(target: SocketAddr, alertmanager: SocketAddr) -> Daemon {
    let rules = repo_root().join("deploy/prometheus/rules/cx.yml");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {}\n\
         alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"{alertmanager}\"]\n\
         scrape_configs:\n  - job_name: journey\n    static_configs:\n      - targets: [\"{target}\"]\n        labels:\n          service: alerting\n",
        rules.display()
    );
    Daemon::start(
        "prometheus",
        "prometheus.yml",
        &config,
        &[
            "--config.file={dir}/prometheus.yml",
            "--storage.tsdb.path={dir}/data",
            "--web.listen-address={addr}",
        ],
    )
}

/// The names of the alerts firing in the Prometheus at `addr`.
async fn firing(addr: SocketAddr) -> Vec<String> {
    let Ok((200, body)) = http_get(addr, "/api/v1/alerts").await else {
        return Vec::new();
    };
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    answer["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["state"] == "firing")
        .filter_map(|a| a["labels"]["alertname"].as_str().map(String::from))
        .collect()
}

async fn send(kafka: &journey_core::config::KafkaConfig, events: &[CustomerEvent]) {
    produce(kafka, "journey.events", &keyed_by_customer(events))
        .await
        .unwrap();
}

/// Polls `check` every 100 ms until it holds; fails after `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the series `name` on `http`'s `/metrics` reads `value`;
/// fails after `limit`.
async fn metric_reaches(what: &str, limit: Duration, http: SocketAddr, name: &str, value: f64) {
    eventually(what, limit, || async move {
        metric(http, name).await == Some(value)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_become_alerts_on_the_topic_metrics_webhook_and_prometheus() {
    let broker = Broker::start();
    let kafka = broker.kafka();
    let (webhook, notifications) = receiver();
    let rules =
        "[cart_abandonment]\nafter = \"2s\"\n\n[complaint_surge]\nwindow = \"10s\"\nthreshold = 2\n";
    let webhooks = format!("[[alerting.webhooks]]\nname = \"cx\"\nurl = \"{webhook}\"\n");
    let service = start_alerting(&broker, "alerting-e2e", rules, &webhooks).await;
    let http = service.http;
    let alertmanager = alertmanager(&webhook);
    let prometheus = prometheus(http, alertmanager.addr);
    let prometheus_at = prometheus.addr;

    let t = now_millis();
    let mut cart = event("a1", "alice", EventType::AddToCart, t);
    cart.product = Some(Product {
        product_id: "sku-1".into(),
        ..Product::default()
    });
    let mut detractor = event("c1", "carol", EventType::Feedback, t);
    detractor.feedback = Some(Feedback {
        nps: Some(2),
        comment: Some("Delivery was late".into()),
        ..Feedback::default()
    });
    // Dave's contacts share a partition: a surge there.
    let contacts: Vec<CustomerEvent> = (0..3)
        .map(|i| event(&format!("d{i}"), "dave", EventType::SupportContact, t + i))
        .collect();
    send(&kafka, &[cart, detractor]).await;
    send(&kafka, &contacts).await;

    let cart_fired = "journey_alerting_alerts_total{rule=\"cart_abandonment\",severity=\"WARNING\",status=\"FIRING\"}";
    metric_reaches(
        "the cart alert",
        Duration::from_secs(60),
        http,
        cart_fired,
        1.0,
    )
    .await;
    let mut purchase = event("a2", "alice", EventType::Purchase, now_millis());
    purchase.order = Some(Order {
        order_id: "o-1".into(),
        revenue: 40.0,
        currency: "EUR".into(),
        item_count: Some(1),
    });
    send(&kafka, &[purchase]).await;

    eventually(
        "JourneyComplaintSurge firing in Prometheus",
        Duration::from_secs(60),
        || async move {
            firing(prometheus_at)
                .await
                .contains(&"JourneyComplaintSurge".to_string())
        },
    )
    .await;

    let wait = Duration::from_secs(60);
    let alerts = collect::<Alert>(&kafka, "journey.alerts", 5, wait, Duration::from_secs(3))
        .await
        .unwrap();
    let mut seen: Vec<(&str, AlertStatus, Option<&str>)> = alerts
        .iter()
        .map(|a| (a.rule.as_str(), a.status, a.customer_id.as_deref()))
        .collect();
    seen.sort_by_key(|(rule, status, _)| (*rule, *status == AlertStatus::Resolved));
    assert_eq!(
        seen,
        [
            ("cart_abandonment", AlertStatus::Firing, Some("alice")),
            ("cart_abandonment", AlertStatus::Resolved, Some("alice")),
            ("complaint_surge", AlertStatus::Firing, None),
            ("complaint_surge", AlertStatus::Resolved, None),
            ("detractor_feedback", AlertStatus::Firing, Some("carol")),
        ]
    );
    let carol = alerts
        .iter()
        .find(|a| a.rule == "detractor_feedback")
        .unwrap();
    assert_eq!(carol.context["feedback_text"], "Delivery was late");
    assert!(carol.action_plan.is_some());

    let delivered =
        "journey_alerting_webhook_notifications_total{outcome=\"delivered\",receiver=\"cx\"}";
    metric_reaches(
        "five webhook deliveries",
        Duration::from_secs(10),
        http,
        delivered,
        5.0,
    )
    .await;
    let (status, metrics) = http_get(http, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    for line in [
        "journey_alerting_alerts_total{rule=\"detractor_feedback\",severity=\"CRITICAL\",status=\"FIRING\"} 1",
        "journey_alerting_alerts_total{rule=\"cart_abandonment\",severity=\"WARNING\",status=\"RESOLVED\"} 1",
        "journey_alerting_alerts_firing{rule=\"detractor_feedback\",severity=\"CRITICAL\"} 1",
        "journey_alerting_alerts_firing{rule=\"cart_abandonment\",severity=\"WARNING\"} 0",
    ] {
        assert!(metrics.contains(line), "no `{line}` in\n{metrics}");
    }
    assert!(
        !metrics.contains("alice") && !metrics.contains("carol"),
        "a customer id in a label"
    );

    let mut received: Vec<serde_json::Value> = notifications.try_iter().collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !received.iter().any(|n| n["receiver"] == "alertmanager") {
        assert!(
            Instant::now() < deadline,
            "Alertmanager sent nothing: {received:?}"
        );
        received.extend(notifications.recv_timeout(Duration::from_millis(200)));
    }
    // Prometheus, through Alertmanager, in the same format as the service.
    let surge = received
        .iter()
        .find(|n| n["receiver"] == "alertmanager")
        .unwrap();
    assert_eq!(surge["version"], "4");
    assert_eq!(surge["groupLabels"]["alertname"], "JourneyComplaintSurge");
    assert_eq!(
        surge["alerts"][0]["annotations"]["runbook_url"],
        "deploy/runbooks/complaint-surge.md"
    );
    received.retain(|n| n["receiver"] == "cx");
    assert_eq!(received.len(), 5);
    let detractor = received
        .iter()
        .find(|n| n["groupLabels"]["alertname"] == "detractor_feedback")
        .expect("the detractor notification");
    assert_eq!(detractor["version"], "4");
    assert_eq!(detractor["status"], "firing");
    assert_eq!(detractor["receiver"], "cx");
    assert_eq!(detractor["alerts"][0]["labels"]["customer_id"], "carol");
    assert_eq!(
        detractor["alerts"][0]["annotations"]["feedback_text"],
        "Delivery was late"
    );

    service.shutdown().await;
}

/// Two visitors fill carts and log in; one buys. The carts move through
/// alerting's own repartition topic to the customers' partitions, where the
/// buyer's purchase cancels theirs and the other's comes due under the
/// customer's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_visitors_cart_follows_them_to_the_customer_they_log_in_as() {
    let broker = Broker::start();
    let kafka = broker.kafka();
    let rules = "[cart_abandonment]\nafter = \"3s\"\n";
    let service = start_alerting(&broker, "alerting-fold", rules, "").await;
    let http = service.http;

    let t = now_millis();
    let visitor = |id: &str, anonymous: &str| CustomerEvent {
        customer_id: None,
        anonymous_id: Some(anonymous.into()),
        ..event(id, "", EventType::AddToCart, t)
    };
    send(&kafka, &[visitor("v1", "anon-v"), visitor("w1", "anon-w")]).await;
    let codec = Codec::builtin();
    let merges: Vec<(String, Vec<u8>, i64)> = [("anon-v", "vic"), ("anon-w", "wes")]
        .into_iter()
        .map(|(anonymous, customer)| {
            let merge = IdentityMerge {
                merge_id: format!("m-{customer}"),
                anonymous_id: anonymous.into(),
                customer_id: customer.into(),
                previous_customer_id: None,
                evidence_event_id: format!("login-{customer}"),
                merged_at: t + 1,
            };
            (anonymous.to_string(), codec.encode(&merge).unwrap(), t + 1)
        })
        .collect();
    produce(&kafka, "journey.identities", &merges)
        .await
        .unwrap();
    let mut purchase = event("v2", "vic", EventType::Purchase, t + 2);
    purchase.order = Some(Order {
        order_id: "o-vic".into(),
        revenue: 25.0,
        currency: "EUR".into(),
        item_count: Some(1),
    });
    send(&kafka, &[purchase]).await;

    let wait = Duration::from_secs(60);
    let alerts = collect::<Alert>(&kafka, "journey.alerts", 1, wait, Duration::from_secs(3))
        .await
        .unwrap();
    let seen: Vec<_> = alerts
        .iter()
        .map(|a| {
            (
                a.rule.as_str(),
                a.customer_id.as_deref(),
                a.evidence_id.as_str(),
            )
        })
        .collect();
    assert_eq!(seen, [("cart_abandonment", Some("wes"), "w1")]);
    let applied = "journey_alerting_identity_folds_applied_total";
    metric_reaches("both folds applied", wait, http, applied, 2.0).await;

    service.shutdown().await;
}

/// Detractor feedback (NPS 2) of `customer` as event `id`, now.
fn detractor(id: &str, customer: &str) -> CustomerEvent {
    let mut feedback = event(id, customer, EventType::Feedback, now_millis());
    feedback.feedback = Some(Feedback {
        nps: Some(2),
        ..Feedback::default()
    });
    feedback
}

/// The notifications `received`, as (alertname, customer id): the first
/// within 30 s, then those that follow until 3 s pass without one.
fn notified(received: &mpsc::Receiver<serde_json::Value>) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    let mut wait = Duration::from_secs(30);
    while let Ok(body) = received.recv_timeout(wait) {
        wait = Duration::from_secs(3);
        let labels = &body["alerts"][0]["labels"];
        seen.push((
            labels["alertname"].as_str().unwrap().to_string(),
            labels["customer_id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ));
    }
    seen
}

/// A port nothing listens on yet, and the config of webhook receiver `cx`
/// there, retrying first after `initial_backoff`.
fn receiver_down(initial_backoff: &str) -> (u16, String) {
    let port = free_port();
    let webhooks = format!(
        "[[alerting.webhooks]]\nname = \"cx\"\nurl = \"http://127.0.0.1:{port}/alerts\"\ninitial_backoff = \"{initial_backoff}\"\n"
    );
    (port, webhooks)
}

/// Failed delivery attempts to receiver `cx`.
const CX_FAILURES: &str = "journey_alerting_webhook_failures_total{receiver=\"cx\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_notification_not_delivered_when_alerting_stops_is_sent_after_its_restart() {
    let broker = Broker::start();
    let kafka = broker.kafka();
    // The receiver is down at first: nothing listens on its port.
    let (port, webhooks) = receiver_down("60s");
    let service = start_alerting(&broker, "alerting-relay", "", &webhooks).await;
    let http = service.http;
    send(&kafka, &[detractor("c1", "carol")]).await;
    metric_reaches(
        "a failed delivery attempt",
        Duration::from_secs(60),
        http,
        CX_FAILURES,
        1.0,
    )
    .await;
    // Stopped while it waits to try again.
    service.shutdown().await;

    let (_, received) = receiver_on(port);
    let service = start_alerting(&broker, "alerting-relay", "", &webhooks).await;
    let http = service.http;
    let seen = tokio::task::spawn_blocking(move || notified(&received))
        .await
        .unwrap();
    assert_eq!(
        seen,
        [("detractor_feedback".to_string(), "carol".to_string())]
    );
    let delivered =
        "journey_alerting_webhook_notifications_total{outcome=\"delivered\",receiver=\"cx\"}";
    assert_eq!(metric(http, delivered).await, Some(1.0));
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receivers_backlog_counts_the_alerts_it_has_yet_to_deliver() {
    let broker = Broker::start();
    let kafka = broker.kafka();
    // The receiver is down at first: nothing listens on its port.
    let (port, webhooks) = receiver_down("5s");
    let service = start_alerting(&broker, "alerting-backlog", "", &webhooks).await;
    let http = service.http;
    let backlog = "journey_alerting_webhook_backlog_alerts{receiver=\"cx\"}";
    metric_reaches("no backlog", Duration::from_secs(60), http, backlog, 0.0).await;
    send(&kafka, &[detractor("c1", "carol")]).await;
    metric_reaches(
        "a failed attempt",
        Duration::from_secs(60),
        http,
        CX_FAILURES,
        1.0,
    )
    .await;
    // While the relay waits to try carol's again, three more come, on
    // partitions it has read nothing from as well as on carol's.
    let more: Vec<CustomerEvent> = [("d1", "dan"), ("e1", "erin"), ("f1", "frank")]
        .iter()
        .map(|(id, customer)| detractor(id, customer))
        .collect();
    send(&kafka, &more).await;
    metric_reaches("four behind", Duration::from_secs(30), http, backlog, 4.0).await;

    let (_, received) = receiver_on(port);
    let delivered =
        "journey_alerting_webhook_notifications_total{outcome=\"delivered\",receiver=\"cx\"}";
    metric_reaches(
        "all four delivered",
        Duration::from_secs(60),
        http,
        delivered,
        4.0,
    )
    .await;
    metric_reaches("none behind", Duration::from_secs(10), http, backlog, 0.0).await;
    assert_eq!(received.try_iter().count(), 4);
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_added_later_hears_of_new_alerts_not_of_the_topics_history() {
    let broker = Broker::start();
    let kafka = broker.kafka();
    let service = start_alerting(&broker, "alerting-added", "", "").await;
    let http = service.http;
    send(&kafka, &[detractor("c1", "carol")]).await;
    let fired = "journey_alerting_alerts_total{rule=\"detractor_feedback\",severity=\"CRITICAL\",status=\"FIRING\"}";
    metric_reaches(
        "carol's alert on the topic",
        Duration::from_secs(60),
        http,
        fired,
        1.0,
    )
    .await;
    service.shutdown().await;

    let (url, received) = receiver();
    let webhooks = format!("[[alerting.webhooks]]\nname = \"cx\"\nurl = \"{url}\"\n");
    let service = start_alerting(&broker, "alerting-added", "", &webhooks).await;
    send(&kafka, &[detractor("d1", "dan")]).await;
    let seen = tokio::task::spawn_blocking(move || notified(&received))
        .await
        .unwrap();
    assert_eq!(
        seen,
        [("detractor_feedback".to_string(), "dan".to_string())]
    );
    service.shutdown().await;
}
