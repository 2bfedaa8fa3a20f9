//! The sessionizer on a real broker, as its own process: late events on the
//! late-events topic, a quiet partition closing its session by the wall
//! clock, an identity merge folding an anonymous session into the
//! customer's, and a kill -9 mid-session that loses and doubles no session.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use journey_core::codec::Codec;
use journey_core::config::{KafkaConfig, TopicsConfig};
use journey_core::contract::{Channel, CustomerEvent, EventType, IdentityMerge, SessionSummary};
use journey_core::runtime::now_millis;
use journey_sessionizer::{session_id, LATE_CLOSE_TIME_HEADER, LATE_STREAM_TIME_HEADER};
use journey_tests::{collect, free_port, produce, Broker, ServiceProcess};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};

const MINUTE: i64 = 60_000;

fn event(id: &str, customer: Option<&str>, anonymous: Option<&str>, at: i64) -> CustomerEvent {
    CustomerEvent {
        event_id: id.into(),
        event_type: EventType::PageView,
        occurred_at: at,
        customer_id: customer.map(Into::into),
        anonymous_id: anonymous.map(Into::into),
        channel: Channel::Web,
        ..CustomerEvent::default()
    }
}

/// A record of the events topic: keyed by customer key, stamped with event time.
fn record(e: &CustomerEvent) -> (String, Vec<u8>, i64) {
    let key = e
        .customer_key()
        .expect("test events have a key")
        .to_string();
    (key, Codec::builtin().encode(e).unwrap(), e.occurred_at)
}

/// A record of the identities topic, keyed by the anonymous id as ingest writes it.
fn merge(anonymous: &str, customer: &str, at: i64) -> (String, Vec<u8>, i64) {
    let merge = IdentityMerge {
        merge_id: format!("merge-{anonymous}-{customer}"),
        anonymous_id: anonymous.into(),
        customer_id: customer.into(),
        evidence_event_id: format!("login-{customer}"),
        merged_at: at,
        ..IdentityMerge::default()
    };
    (
        anonymous.into(),
        Codec::builtin().encode(&merge).unwrap(),
        at,
    )
}

/// Creates the pipeline topics (3 partitions) and returns the broker's settings.
async fn setup(broker: &Broker, runs: &[&str]) -> KafkaConfig {
    let kafka = broker.kafka();
    let mut specs = journey_core::kafka::pipeline_topics(&TopicsConfig::default(), 3);
    for run in runs {
        for topic in ["sessions", "late"] {
            specs.push(journey_core::kafka::TopicSpec::new(
                format!("{topic}-{run}"),
                3,
            ));
        }
    }
    journey_core::kafka::ensure_topics(&kafka, &specs)
        .await
        .unwrap();
    kafka
}

/// Writes the config of run `run` to `dir/<file>.toml`: its own group,
/// output topics, state directory and HTTP port; `sessionizer` holds the
/// window settings and `idle_timeout` the runtime's.
fn config(
    dir: &Path,
    broker: &Broker,
    file: &str,
    run: &str,
    sessionizer: &str,
    idle_timeout: &str,
) -> PathBuf {
    let path = dir.join(format!("{file}.toml"));
    std::fs::write(
        &path,
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\npartitions = 3\n\n\
             [topics]\nsessions = \"sessions-{run}\"\nlate_events = \"late-{run}\"\n\n\
             [runtime]\nstate_dir = \"{}\"\ncommit_interval = \"100ms\"\ntick_interval = \"50ms\"\nidle_timeout = \"{idle_timeout}\"\n\n\
             [sessionizer]\nhttp_listen = \"127.0.0.1:{}\"\ngroup_id = \"sessionizer-{run}\"\n{sessionizer}\n",
            broker.bootstrap,
            dir.join(file).display(),
            free_port(),
        ),
    )
    .unwrap();
    path
}

async fn sessions(kafka: &KafkaConfig, run: &str, expected: usize) -> Vec<SessionSummary> {
    collect(
        kafka,
        &format!("sessions-{run}"),
        expected,
        Duration::from_secs(90),
        Duration::from_secs(3),
    )
    .await
    .unwrap()
}

/// Reads `expected` records of `topic`: key, payload and headers.
async fn read_with_headers(
    kafka: &KafkaConfig,
    topic: &str,
    expected: usize,
) -> Vec<(Vec<u8>, Vec<u8>, BTreeMap<String, String>)> {
    let consumer: StreamConsumer = journey_core::kafka::client_config(kafka)
        .set("group.id", format!("reader-{topic}-{}", free_port()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut records = Vec::new();
    while records.len() < expected && Instant::now() < deadline {
        let Ok(message) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await
        else {
            continue;
        };
        let message = message.unwrap();
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        let value = h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                        (h.key.to_string(), value.unwrap_or_default())
                    })
                    .collect()
            })
            .unwrap_or_default();
        records.push((
            message.key().unwrap_or_default().to_vec(),
            message.payload().unwrap_or_default().to_vec(),
            headers,
        ));
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_event_after_grace_lands_on_the_late_topic_as_it_came() {
    let broker = Broker::start();
    let kafka = setup(&broker, &["late"]).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &broker,
        "late",
        "late",
        "gap = \"30m\"\ngrace = \"5m\"",
        "1h",
    );
    let service = ServiceProcess::start("journey-sessionizer", &cfg);

    let base = now_millis() - 5 * 60 * MINUTE;
    let late = event("late", Some("carol"), None, base + 10 * MINUTE);
    let records = [
        record(&event("first", Some("carol"), None, base)),
        record(&event(
            "much-later",
            Some("carol"),
            None,
            base + 100 * MINUTE,
        )),
        record(&late),
    ];
    produce(&kafka, "journey.events", &records).await.unwrap();

    let got = read_with_headers(&kafka, "late-late", 1).await;
    assert_eq!(got.len(), 1, "one late record");
    let (key, payload, headers) = &got[0];
    assert_eq!(key.as_slice(), b"carol");
    assert_eq!(payload, &records[2].1, "the event's bytes as they came");
    assert_eq!(
        headers.get(LATE_CLOSE_TIME_HEADER),
        Some(&(base + 45 * MINUTE).to_string()),
        "closed at end + gap + grace"
    );
    assert_eq!(
        headers.get(LATE_STREAM_TIME_HEADER),
        Some(&(base + 100 * MINUTE).to_string())
    );
    let closed = sessions(&kafka, "late", 1).await;
    assert_eq!(closed[0].session_id, session_id("carol", base));
    assert_eq!(closed[0].event_count, 1, "the late event joined nothing");
    drop(service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_partition_closes_its_session_by_the_wall_clock() {
    let broker = Broker::start();
    let kafka = setup(&broker, &["quiet"]).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &broker,
        "quiet",
        "quiet",
        "gap = \"3s\"\ngrace = \"1s\"",
        "1s",
    );
    let service = ServiceProcess::start("journey-sessionizer", &cfg);

    // Nothing follows these two events: only the wall clock can close the session.
    let now = now_millis();
    let records = [
        record(&event("q1", Some("dave"), None, now)),
        record(&event("q2", Some("dave"), None, now + 500)),
    ];
    produce(&kafka, "journey.events", &records).await.unwrap();

    let closed = sessions(&kafka, "quiet", 1).await;
    assert_eq!(closed[0].session_id, session_id("dave", now));
    assert_eq!(
        (closed[0].start, closed[0].end, closed[0].event_count),
        (now, now + 500, 2)
    );
    assert!(!closed[0].interim);
    drop(service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_merge_folds_the_anonymous_session_into_the_customers() {
    let broker = Broker::start();
    let kafka = setup(&broker, &["fold"]).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &broker,
        "fold",
        "fold",
        "gap = \"3s\"\ngrace = \"0s\"",
        "2s",
    );
    let service = ServiceProcess::start("journey-sessionizer", &cfg);

    // Browsing anonymously, then logging in: ingest keys the login event by
    // the customer and sends the merge keyed by the anonymous id.
    let now = now_millis();
    produce(
        &kafka,
        "journey.events",
        &[
            record(&event("v1", None, Some("visitor-9"), now)),
            record(&event("v2", None, Some("visitor-9"), now + 1_000)),
            record(&event(
                "login",
                Some("erin"),
                Some("visitor-9"),
                now + 2_000,
            )),
        ],
    )
    .await
    .unwrap();
    produce(
        &kafka,
        "journey.identities",
        &[merge("visitor-9", "erin", now + 2_000)],
    )
    .await
    .unwrap();

    let closed = sessions(&kafka, "fold", 1).await;
    assert_eq!(closed[0].customer_id, "erin");
    assert_eq!(closed[0].session_id, session_id("erin", now));
    assert_eq!(
        (closed[0].start, closed[0].end, closed[0].event_count),
        (now, now + 2_000, 3)
    );
    drop(service);
}

const CUSTOMERS: usize = 30;

/// Records to produce: key, payload, timestamp.
type Records = Vec<(String, Vec<u8>, i64)>;

/// The input of the crash test.
struct CrashInput {
    /// A first burst per customer.
    first: Records,
    /// A second burst an hour on (closing the first), with each customer's
    /// anonymous past (two events) just before it...
    second: Records,
    /// ...and the identity merges that fold that past in.
    merges: Records,
    /// A last event per customer three hours on (closing the second), then
    /// one too late for the first.
    last: Records,
}

fn crash_input(base: i64) -> CrashInput {
    let burst = |start: i64, tag: &str| -> Records {
        (0..3)
            .flat_map(|step| {
                (0..CUSTOMERS).map(move |c| {
                    let at = start + step * MINUTE + c as i64;
                    let customer = format!("customer-{c}");
                    record(&event(
                        &format!("{tag}-{c}-{step}"),
                        Some(&customer),
                        None,
                        at,
                    ))
                })
            })
            .collect()
    };
    let hour = base + 60 * MINUTE;
    let mut second = burst(hour, "b1");
    let mut merges = Vec::new();
    for c in 0..CUSTOMERS {
        let visitor = format!("visitor-{c}");
        for step in [2, 1] {
            let at = hour - step * MINUTE;
            second.push(record(&event(
                &format!("anon-{c}-{step}"),
                None,
                Some(&visitor),
                at,
            )));
        }
        merges.push(merge(&visitor, &format!("customer-{c}"), hour + 3 * MINUTE));
    }
    let mut last = burst(base + 180 * MINUTE, "b3");
    last.truncate(CUSTOMERS);
    last.extend((0..CUSTOMERS).map(|c| {
        let customer = format!("customer-{c}");
        record(&event(
            &format!("late-{c}"),
            Some(&customer),
            None,
            base + 10 * MINUTE,
        ))
    }));
    CrashInput {
        first: burst(base, "b0"),
        second,
        merges,
        last,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_mid_session_loses_and_doubles_no_session() {
    let broker = Broker::start();
    let kafka = setup(&broker, &["clean", "crash"]).await;
    let dir = tempfile::tempdir().unwrap();
    let windows = "gap = \"30m\"\ngrace = \"0s\"";
    let clean_cfg = config(dir.path(), &broker, "clean", "clean", windows, "1h");
    let crash_cfg = config(dir.path(), &broker, "crash", "crash", windows, "1h");
    let input = crash_input(now_millis() - 5 * 60 * MINUTE);

    produce(&kafka, "journey.events", &input.first)
        .await
        .unwrap();
    let clean = ServiceProcess::start("journey-sessionizer", &clean_cfg);
    let crash = ServiceProcess::start("journey-sessionizer", &crash_cfg);
    // Both runs hold the first burst's sessions open in state.
    tokio::time::sleep(Duration::from_secs(6)).await;

    // Kill the crash run while it works through the second part and its folds.
    produce(&kafka, "journey.events", &input.second)
        .await
        .unwrap();
    produce(&kafka, "journey.identities", &input.merges)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    crash.kill();
    let crash = ServiceProcess::start("journey-sessionizer", &crash_cfg);
    // The last part closes what the merges fold into: it must come after
    // them, as a login comes after the browsing it identifies.
    tokio::time::sleep(Duration::from_secs(6)).await;
    produce(&kafka, "journey.events", &input.last)
        .await
        .unwrap();

    let expected = 2 * CUSTOMERS;
    let clean_sessions = sessions(&kafka, "clean", expected).await;
    let by_id = |records: &[SessionSummary]| -> BTreeMap<String, Vec<SessionSummary>> {
        let mut map: BTreeMap<String, Vec<SessionSummary>> = BTreeMap::new();
        for s in records {
            map.entry(s.session_id.clone()).or_default().push(s.clone());
        }
        map
    };
    let clean_by_id = by_id(&clean_sessions);
    assert_eq!(
        clean_by_id.len(),
        expected,
        "each session once in the clean run"
    );
    let folded = clean_sessions.iter().filter(|s| s.event_count == 5).count();
    assert_eq!(
        folded, CUSTOMERS,
        "every anonymous past folded into its customer's second session"
    );

    // A crash may re-send a summary it had sent but not committed: the same
    // id with the same content. Anything else is a lost or doubled session.
    let crash_records = journey_tests::read_all::<SessionSummary>(&kafka, "sessions-crash")
        .await
        .unwrap();
    let crash_by_id = by_id(&crash_records);
    assert_eq!(
        crash_by_id.keys().collect::<BTreeSet<_>>(),
        clean_by_id.keys().collect::<BTreeSet<_>>(),
        "the same sessions as the clean run"
    );
    for (id, sent) in &crash_by_id {
        let clean = &clean_by_id[id][0];
        assert!(
            sent.iter().all(|s| s == clean),
            "session {id}: every copy equals the clean run's"
        );
    }
    let late = |run: &str| {
        let kafka = kafka.clone();
        let topic = format!("late-{run}");
        async move {
            journey_tests::read_all::<CustomerEvent>(&kafka, &topic)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.event_id)
                .collect::<BTreeSet<_>>()
        }
    };
    let clean_late = late("clean").await;
    assert_eq!(
        clean_late.len(),
        CUSTOMERS,
        "every too-late event on the late topic"
    );
    assert_eq!(late("crash").await, clean_late);
    drop((clean, crash));
}
