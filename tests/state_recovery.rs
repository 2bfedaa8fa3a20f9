//! The stateful runtime under failure, with the sessionizer as the stateful
//! service: a crash (SIGKILL), a lost state directory, a second instance
//! taking over from a crashed one, and partitions handed over cleanly when a
//! second instance joins and the first one stops. Each run is compared with a clean run over the same input:
//! the same distinct sessions, no lost session, nothing applied twice, and in
//! the end the same state, key for key. Then the changelog itself: a commit
//! torn by a crash, and a commit a stalled former owner appends after the
//! partition moved.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};

use journey_core::codec::Codec;
use journey_core::config::KafkaConfig;
use journey_core::contract::{Channel, CustomerEvent, EventType, SessionSummary};
use journey_core::runtime::now_millis;
use journey_core::state::CommitMarker;
use journey_tests::{free_port, produce, read_table, Broker, ServiceProcess};

const MINUTE: i64 = 60_000;
const CUSTOMERS: usize = 60;
/// Changelog records a service found another writer had appended.
const FOREIGN_RECORDS: &str = "journey_sessionizer_changelog_foreign_records_total";

/// Burst `burst` of traffic: four events per customer a minute apart, starting
/// `burst` hours after `base`, so bursts are separate sessions.
fn events(base: i64, burst: usize) -> Vec<(String, Vec<u8>, i64)> {
    let mut records = Vec::new();
    for step in 0..4 {
        for c in 0..CUSTOMERS {
            let at = base + burst as i64 * 60 * MINUTE + step * MINUTE + c as i64;
            let event_type = if step == 2 {
                EventType::AddToCart
            } else {
                EventType::PageView
            };
            records.push(event(c, format!("e-{c}-{burst}-{step}"), event_type, at));
        }
    }
    records
}

/// Customer `c`'s event `id`, keyed by the customer.
fn event(c: usize, id: String, event_type: EventType, at: i64) -> (String, Vec<u8>, i64) {
    let event = CustomerEvent {
        event_id: id,
        event_type,
        occurred_at: at,
        customer_id: Some(format!("customer-{c}")),
        channel: Channel::Web,
        ..CustomerEvent::default()
    };
    let payload = Codec::builtin().encode(&event).unwrap();
    (format!("customer-{c}"), payload, at)
}

/// Commit intervals of [`config`]: committing every 100 ms, reading the
/// changelog partitions' ends every 200 ms.
const OFTEN: [&str; 2] = ["100ms", "200ms"];

/// Writes a sessionizer config file `file`.toml: group and output topic named
/// after `run`, its own state directory and HTTP port, committing every
/// `commit_interval` and reading its changelog partitions' ends every
/// `check_interval`. Idle partitions never advance by the wall clock here,
/// so every run ends in the same state.
fn config(
    dir: &Path,
    broker: &Broker,
    file: &str,
    run: &str,
    [commit_interval, check_interval]: [&str; 2],
) -> PathBuf {
    let path = dir.join(format!("{file}.toml"));
    std::fs::write(
        &path,
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\npartitions = 3\n\n\
             [topics]\nsessions = \"sessions-{run}\"\n\n\
             [runtime]\nstate_dir = \"{}\"\ncommit_interval = \"{commit_interval}\"\nchangelog_check_interval = \"{check_interval}\"\ntick_interval = \"50ms\"\nidle_timeout = \"1h\"\n\n\
             [sessionizer]\nhttp_listen = \"127.0.0.1:{}\"\ngroup_id = \"sessionizer-{run}\"\ngap = \"30m\"\ngrace = \"0s\"\n",
            broker.bootstrap,
            dir.join(file).display(),
            free_port(),
        ),
    )
    .unwrap();
    path
}

async fn setup(broker: &Broker) -> KafkaConfig {
    let kafka = broker.kafka();
    let topics = journey_core::config::TopicsConfig::default();
    let mut specs = journey_core::kafka::pipeline_topics(&topics, 3);
    for name in [
        "clean", "crash", "wiped", "pair", "handover", "torn", "stalled", "quiet",
    ] {
        specs.push(journey_core::kafka::TopicSpec::new(
            format!("sessions-{name}"),
            3,
        ));
    }
    journey_core::kafka::ensure_topics(&kafka, &specs)
        .await
        .unwrap();
    kafka
}

/// Distinct session ids, and how many records carried them in all.
async fn sessions(kafka: &KafkaConfig, name: &str, at_least: usize) -> (BTreeSet<String>, usize) {
    let topic = format!("sessions-{name}");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let records = journey_tests::read_all::<SessionSummary>(kafka, &topic)
            .await
            .unwrap();
        let ids: BTreeSet<String> = records.iter().map(|s| s.session_id.clone()).collect();
        if ids.len() >= at_least || Instant::now() > deadline {
            return (ids, records.len());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The final state of run `name`, as its changelog holds it: waits until it
/// equals `expected` (or, with none, until two reads agree).
async fn settled_state(
    kafka: &KafkaConfig,
    name: &str,
    expected: Option<&BTreeMap<Vec<u8>, Vec<u8>>>,
) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let topic = format!("sessionizer-{name}-sessions-changelog");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = read_table(kafka, &topic).await.unwrap();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let table = read_table(kafka, &topic).await.unwrap();
        let settled = match expected {
            Some(expected) => &table == expected,
            None => table == last,
        };
        if settled || Instant::now() > deadline {
            return table;
        }
        last = table;
    }
}

/// Keys only in `a`, only in `b`, and with different values.
fn differences(a: &BTreeMap<Vec<u8>, Vec<u8>>, b: &BTreeMap<Vec<u8>, Vec<u8>>) -> [usize; 3] {
    [
        a.keys().filter(|k| !b.contains_key(*k)).count(),
        b.keys().filter(|k| !a.contains_key(*k)).count(),
        a.iter()
            .filter(|(k, v)| b.get(*k).is_some_and(|w| w != *v))
            .count(),
    ]
}

/// A metric of the service configured in `config`.
async fn metric(config: &Path, name: &str) -> Option<f64> {
    let text = std::fs::read_to_string(config).ok()?;
    let addr = text
        .lines()
        .find_map(|l| l.strip_prefix("http_listen = \""))?
        .trim_end_matches('"');
    journey_tests::metric(addr.parse().ok()?, name).await
}

/// The second burst, which closes the first burst's sessions, and a last
/// event per customer three hours on, which closes the second burst's.
async fn close_every_session(kafka: &KafkaConfig, base: i64) {
    produce(kafka, "journey.events", &events(base, 1))
        .await
        .unwrap();
    produce(kafka, "journey.events", &events(base, 3)[..CUSTOMERS])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_lost_state_and_takeover_lose_nothing_and_apply_nothing_twice() {
    let broker = Broker::start();
    let kafka = setup(&broker).await;
    let dir = tempfile::tempdir().unwrap();
    let base = now_millis() - 5 * 60 * MINUTE;
    let expected = 2 * CUSTOMERS;

    // The first burst; the second comes while the runs below are disturbed.
    produce(&kafka, "journey.events", &events(base, 0))
        .await
        .unwrap();

    let clean_cfg = config(dir.path(), &broker, "clean", "clean", OFTEN);
    let crash_cfg = config(dir.path(), &broker, "crash", "crash", OFTEN);
    let wiped_cfg = config(dir.path(), &broker, "wiped", "wiped", OFTEN);
    let pair_a = config(dir.path(), &broker, "pair-a", "pair", OFTEN);
    let pair_b = config(dir.path(), &broker, "pair-b", "pair", OFTEN);
    // Commits rarely, so only the hand-over's own commit keeps the second
    // member from re-processing, and re-sending, the first one's work.
    let handover_a = config(
        dir.path(),
        &broker,
        "handover-a",
        "handover",
        ["15s", "200ms"],
    );
    let handover_b = config(
        dir.path(),
        &broker,
        "handover-b",
        "handover",
        ["15s", "200ms"],
    );

    let clean = ServiceProcess::start("journey-sessionizer", &clean_cfg);
    let crash = ServiceProcess::start("journey-sessionizer", &crash_cfg);
    let wiped = ServiceProcess::start("journey-sessionizer", &wiped_cfg);
    let a = ServiceProcess::start("journey-sessionizer", &pair_a);
    let b = ServiceProcess::start("journey-sessionizer", &pair_b);

    // Let every run process the first burst: its sessions stay open in state.
    tokio::time::sleep(Duration::from_secs(6)).await;

    // Disturb each run while its state holds open sessions.
    crash.kill();
    wiped.kill();
    std::fs::remove_dir_all(dir.path().join("wiped")).unwrap();
    a.kill();

    close_every_session(&kafka, base).await;
    let crash = ServiceProcess::start("journey-sessionizer", &crash_cfg);
    let wiped = ServiceProcess::start("journey-sessionizer", &wiped_cfg);

    // The hand-over pair starts on the whole input: the first member closes
    // sessions, a second joins and takes some partitions, then the first leaves.
    let leaving = ServiceProcess::start("journey-sessionizer", &handover_a);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let staying = ServiceProcess::start("journey-sessionizer", &handover_b);
    tokio::time::sleep(Duration::from_secs(4)).await;
    leaving.stop();

    let (clean_ids, clean_records) = sessions(&kafka, "clean", expected).await;
    assert_eq!(clean_ids.len(), expected, "clean run");
    assert_eq!(
        clean_records, expected,
        "a clean run emits each session once"
    );
    for name in ["crash", "wiped", "pair", "handover"] {
        let (ids, records) = sessions(&kafka, name, expected).await;
        assert_eq!(
            ids, clean_ids,
            "{name}: the same distinct sessions as the clean run"
        );
        if name == "handover" {
            assert_eq!(
                records, expected,
                "partitions handed over cleanly re-send nothing"
            );
        }
    }
    let clean_state = settled_state(&kafka, "clean", None).await;
    assert!(
        clean_state.len() > CUSTOMERS,
        "the clean run ends with open sessions in state"
    );
    for name in ["crash", "wiped", "pair", "handover"] {
        let state = settled_state(&kafka, name, Some(&clean_state)).await;
        assert_eq!(
            differences(&clean_state, &state),
            [0, 0, 0],
            "{name}: the same final state as the clean run (keys only in clean, only in {name}, different)"
        );
    }
    let restored = metric(&wiped_cfg, "journey_sessionizer_restored_records_total")
        .await
        .unwrap_or(0.0);
    assert!(
        restored > 0.0,
        "the wiped instance restored its state from the changelog"
    );
    for cfg in [&clean_cfg, &crash_cfg, &wiped_cfg, &pair_b, &handover_b] {
        assert_eq!(
            metric(cfg, FOREIGN_RECORDS).await,
            Some(0.0),
            "{}: a restart, a takeover or a hand-over leaves no record another writer appended",
            cfg.display()
        );
    }
    drop((clean, crash, wiped, b, staying));
}

/// Another writer's commit in `changelog`, in the partition of `key`: its
/// begin marker, `key` rewritten and a key of its own added (both with the
/// value `writer`), and its end marker if `ended`. Returns the added key.
async fn write_commit(
    kafka: &KafkaConfig,
    changelog: &str,
    key: &[u8],
    writer: &str,
    ended: bool,
) -> Vec<u8> {
    let partition = i32::from_be_bytes(key[1..5].try_into().unwrap());
    let added = [key, b"/", writer.as_bytes()].concat();
    let marker = |marker: CommitMarker| {
        let record = marker.record(partition);
        (record.key, record.value.unwrap())
    };
    let mut records = vec![
        marker(CommitMarker::Begin),
        (key.to_vec(), writer.as_bytes().to_vec()),
        (added.clone(), writer.as_bytes().to_vec()),
    ];
    if ended {
        records.push(marker(CommitMarker::End));
    }
    let producer: FutureProducer = journey_core::kafka::producer(kafka).unwrap();
    for (key, value) in &records {
        let record = FutureRecord::to(changelog)
            .partition(partition)
            .key(key)
            .payload(value);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    added
}

/// A sessionizer of run `run` over the first burst, on `intervals` (see
/// [`config`]), started once it holds the burst's open sessions in state:
/// its config, the service, the burst's base time and the state its
/// changelog holds.
async fn started_with_open_sessions(
    broker: &Broker,
    kafka: &KafkaConfig,
    dir: &Path,
    run: &str,
    intervals: [&str; 2],
) -> (PathBuf, ServiceProcess, i64, BTreeMap<Vec<u8>, Vec<u8>>) {
    let base = now_millis() - 5 * 60 * MINUTE;
    produce(kafka, "journey.events", &events(base, 0))
        .await
        .unwrap();
    let cfg = config(dir, broker, run, run, intervals);
    let service = ServiceProcess::start("journey-sessionizer", &cfg);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = settled_state(kafka, run, None).await;
        if state.len() > CUSTOMERS {
            return (cfg, service, base, state);
        }
        assert!(
            Instant::now() < deadline,
            "the first burst's sessions never reached state"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_torn_by_a_crash_is_left_out_of_the_restore_and_written_over() {
    let broker = Broker::start();
    let kafka = setup(&broker).await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, service, base, _) =
        started_with_open_sessions(&broker, &kafka, dir.path(), "torn", OFTEN).await;
    service.stop();
    let committed = settled_state(&kafka, "torn", None).await;
    let (key, _) = open_session(&committed);

    // A crash in the middle of a commit leaves its begin marker and first
    // changes acknowledged, and nothing more.
    // Torn after the last commit, the local state intact: the restore
    // catches up past it; then torn again, the local state lost: the restore
    // reads the whole changelog. Each time, the torn changes are left out and
    // overwritten, so the changelog ends as the last whole commit left it.
    let changelog = "sessionizer-torn-sessions-changelog";
    for wipe in [false, true] {
        write_commit(&kafka, changelog, &key, "torn", false).await;
        if wipe {
            std::fs::remove_dir_all(dir.path().join("torn")).unwrap();
        }
        let service = ServiceProcess::start("journey-sessionizer", &cfg);
        let state = settled_state(&kafka, "torn", Some(&committed)).await;
        assert_eq!(
            differences(&committed, &state),
            [0, 0, 0],
            "wiped {wipe}: the state of the last whole commit (keys only before, only after, different)"
        );
        service.stop();
    }

    // The restored state goes on: the next bursts close every session.
    let service = ServiceProcess::start("journey-sessionizer", &cfg);
    close_every_session(&kafka, base).await;
    let (ids, _) = sessions(&kafka, "torn", 2 * CUSTOMERS).await;
    assert_eq!(
        ids.len(),
        2 * CUSTOMERS,
        "every session of both bursts closed"
    );
    drop(service);
}

/// An open session's key in `committed` state (user key `s<customer>`), and its customer.
fn open_session(committed: &BTreeMap<Vec<u8>, Vec<u8>>) -> (Vec<u8>, String) {
    let key = committed
        .keys()
        .find(|k| k[0] == b'u' && k[5] == b's')
        .expect("an open session in state")
        .clone();
    let customer = String::from_utf8(key[6..].to_vec()).unwrap();
    (key, customer)
}

/// Waits until `changelog` holds `key` at its `committed` value again and no
/// longer holds `added`, the stale commit's own key, then checks that the
/// service configured in `cfg` counted the stale commit's four records.
async fn written_over_and_counted(
    kafka: &KafkaConfig,
    cfg: &Path,
    changelog: &str,
    key: &[u8],
    committed: Option<&Vec<u8>>,
    added: &[u8],
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = read_table(kafka, changelog).await.unwrap();
        if state.get(key) == committed && !state.contains_key(added) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stale commit still holds {} and {}: {:?}, {:?}",
            String::from_utf8_lossy(key),
            String::from_utf8_lossy(added),
            state
                .get(key)
                .map(|v| String::from_utf8_lossy(v).into_owned()),
            state
                .get(added)
                .map(|v| String::from_utf8_lossy(v).into_owned()),
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        metric(cfg, FOREIGN_RECORDS).await,
        Some(4.0),
        "the stale commit's records, markers included, were counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_former_owners_commit_is_written_over_by_the_owner() {
    let broker = Broker::start();
    let kafka = setup(&broker).await;
    let dir = tempfile::tempdir().unwrap();
    // The changelog's ends are never read here: the owner's own records show the gap.
    let (cfg, service, base, committed) =
        started_with_open_sessions(&broker, &kafka, dir.path(), "stalled", ["100ms", "1h"]).await;
    let (key, customer) = open_session(&committed);

    let changelog = "sessionizer-stalled-sessions-changelog";
    // What a stalled former owner's last commit leaves after the partition
    // moved: a whole commit, from its begin marker to its end.
    let added = write_commit(&kafka, changelog, &key, "stale", true).await;
    // Every other customer's next page view, within the first burst's
    // sessions: the owner commits each partition's changelog again, that of
    // the stale commit included, and leaves the customer of `key` alone.
    let more: Vec<_> = (0..CUSTOMERS)
        .map(|c| {
            let at = base + 4 * MINUTE + c as i64;
            event(c, format!("e-{c}-0-4"), EventType::PageView, at)
        })
        .filter(|(k, _, _)| *k != customer)
        .collect();
    produce(&kafka, "journey.events", &more).await.unwrap();

    written_over_and_counted(&kafka, &cfg, changelog, &key, committed.get(&key), &added).await;
    drop(service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_former_owners_commit_to_a_quiet_partition_is_found_at_its_end() {
    let broker = Broker::start();
    let kafka = setup(&broker).await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, service, _, committed) =
        started_with_open_sessions(&broker, &kafka, dir.path(), "quiet", OFTEN).await;
    let (key, _) = open_session(&committed);

    // No input follows: the owner writes nothing more to the changelog, so
    // only reading the partition's end shows the stale commit.
    let changelog = "sessionizer-quiet-sessions-changelog";
    let added = write_commit(&kafka, changelog, &key, "stale", true).await;

    written_over_and_counted(&kafka, &cfg, changelog, &key, committed.get(&key), &added).await;
    drop(service);
}
