//! No personal data where it does not belong: the four services, run as
//! their own processes on a scenario full of personal data (emails as ids,
//! an anonymous id, a feedback comment, a bad value in a rejected record),
//! write none of it to their logs (info, and the runtime's debug lines) nor
//! to their metrics; a customer is traced by the tag `journey customer-tag`
//! computes with the same `log.customer_id_key`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use journey_core::contract::{
    Alert, Channel, CustomerEvent, DeadLetter, EventType, Feedback, Order,
};
use journey_core::runtime::now_millis;
use journey_tests::{
    collect, free_port, http_get, keyed_by_customer, produce, service_bin, web_event, Broker,
    ServiceProcess,
};

const KEY: &str = "privacy-test-key";
const DETRACTOR: &str = "alice@example.com";
const VISITOR: &str = "anon-visitor-7f3a9c";
const COMMENT: &str = "call me on 555-0199";
const REJECTED: &str = "bob@example.com";
const BAD_CURRENCY: &str = "LEAKY-CURRENCY";

/// Everything personal the scenario holds.
const PERSONAL: [&str; 5] = [DETRACTOR, VISITOR, COMMENT, REJECTED, BAD_CURRENCY];

fn scenario(t: i64) -> Vec<CustomerEvent> {
    let mut visit = web_event("p1", DETRACTOR, EventType::Login, t);
    visit.anonymous_id = Some(VISITOR.into());
    let mut feedback = web_event("p2", DETRACTOR, EventType::Feedback, t + 1_000);
    feedback.channel = Channel::Survey;
    feedback.feedback = Some(Feedback {
        nps: Some(1),
        comment: Some(COMMENT.into()),
        ..Feedback::default()
    });
    let mut purchase = web_event("p3", REJECTED, EventType::Purchase, t);
    purchase.order = Some(Order {
        order_id: "o-1".into(),
        revenue: 10.0,
        currency: BAD_CURRENCY.into(),
        item_count: None,
    });
    vec![visit, feedback, purchase]
}

fn config(dir: &Path, broker: &Broker, http: &[(&str, SocketAddr)]) -> std::path::PathBuf {
    let mut toml = format!(
        "{}\n[log]\nformat = \"json\"\nfilter = \"info,journey_core=debug\"\ncustomer_id_key = \"{KEY}\"\n\n\
         [runtime]\nstate_dir = \"{}\"\ncommit_interval = \"200ms\"\ntick_interval = \"100ms\"\nidle_timeout = \"1s\"\n\n",
        broker.kafka_toml(""),
        dir.join("state").display()
    );
    for (name, addr) in http {
        let extra = if *name == "sessionizer" {
            "gap = \"5s\"\ngrace = \"0s\"\n"
        } else {
            ""
        };
        toml.push_str(&format!(
            "[{name}]\nhttp_listen = \"{addr}\"\ngroup_id = \"privacy-{name}\"\n{extra}\n"
        ));
    }
    let path = dir.join("journey.toml");
    std::fs::write(&path, toml).expect("writing the config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_metrics_hold_no_personal_data_and_tags_find_a_customer() {
    let broker = Broker::start();
    let kafka = broker.kafka();
    let dir = tempfile::tempdir().unwrap();
    let services = ["ingest", "sessionizer", "classifier", "alerting"];
    let http: Vec<(&str, SocketAddr)> = services
        .iter()
        .map(|name| (*name, SocketAddr::from(([127, 0, 0, 1], free_port()))))
        .collect();
    let path = config(dir.path(), &broker, &http);
    let topics = journey_core::kafka::pipeline_topics(&Default::default(), 3);
    journey_core::kafka::ensure_topics(&kafka, &topics)
        .await
        .unwrap();
    let processes: Vec<ServiceProcess> = services
        .iter()
        .map(|name| {
            ServiceProcess::start_logging_to(
                &format!("journey-{name}"),
                &path,
                &dir.path().join(format!("{name}.log")),
            )
        })
        .collect();

    let records = keyed_by_customer(&scenario(now_millis() - 10 * 60 * 1_000));
    produce(&kafka, "journey.events.raw", &records)
        .await
        .unwrap();
    let wait = Duration::from_secs(90);
    let settle = Duration::from_secs(1);
    // The alert carries the comment (it is meant for CX staff); the dead
    // letter keeps the original bytes (to replay them).
    let alerts = collect::<Alert>(&kafka, "journey.alerts", 1, wait, settle)
        .await
        .unwrap();
    assert_eq!(alerts[0].customer_id.as_deref(), Some(DETRACTOR));
    let dead = collect::<DeadLetter>(&kafka, "journey.dead-letters", 1, wait, settle)
        .await
        .unwrap();
    assert_eq!(dead[0].field_path.as_deref(), Some("order.currency"));
    assert!(
        !dead[0].message.contains(BAD_CURRENCY),
        "{}",
        dead[0].message
    );

    for (name, addr) in &http {
        let (status, metrics) = http_get(*addr, "/metrics").await.unwrap();
        assert_eq!(status, 200, "{name}");
        for personal in PERSONAL {
            assert!(
                !metrics.contains(personal),
                "{name} metrics hold {personal}"
            );
        }
    }
    for process in processes {
        process.stop();
    }

    let tag = Command::new(service_bin("journey"))
        .args(["--config", path.to_str().unwrap(), "customer-tag", REJECTED])
        .output()
        .expect("running journey customer-tag");
    assert!(
        tag.status.success(),
        "{}",
        String::from_utf8_lossy(&tag.stderr)
    );
    let tag = String::from_utf8(tag.stdout).unwrap().trim().to_string();
    assert_eq!(tag.len(), 16, "{tag}");

    let mut all = String::new();
    for name in services {
        let log = std::fs::read_to_string(dir.path().join(format!("{name}.log"))).unwrap();
        assert!(
            log.contains("service started"),
            "{name} logged nothing: {log}"
        );
        for personal in PERSONAL {
            assert!(!log.contains(personal), "{name} logged {personal}: {log}");
        }
        all.push_str(&log);
    }
    let dead_lettered = all
        .lines()
        .find(|line| line.contains("record dead-lettered"))
        .unwrap_or_else(|| panic!("no dead-letter line: {all}"));
    assert!(
        dead_lettered.contains(&format!("\"customer\":\"{tag}\"")),
        "{dead_lettered}"
    );
}
