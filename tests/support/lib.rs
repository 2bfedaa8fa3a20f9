//! Test support: a local nisshi broker per test, the pipeline run in-process,
//! and helpers to produce to and read from topics.
//!
//! The broker binary comes from `scripts/nisshi.sh install` (or `NISSHI_BIN`).

pub mod bench;
pub mod tls;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use journey_core::codec::{AvroRecord, Codec};
use journey_core::config::{ConfigSource, KafkaConfig};
use journey_core::contract::{Channel, CustomerEvent, EventType, Order, Page};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Where `scripts/nisshi.sh install` puts the broker.
pub fn nisshi_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("NISSHI_BIN") {
        return PathBuf::from(bin);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/journey/nisshi-0.8.1/bin/nisshi")
}

/// How long a test process may go on after a panic before it exits.
const STUCK_AFTER_PANIC: Duration = Duration::from_secs(30);

/// Makes a test process that panicked exit with a failure if it has not
/// finished within [`STUCK_AFTER_PANIC`]. A failed assertion drops the
/// broker under services still running in the process, whose Kafka clients
/// may then wait for it forever: the test run must fail, not hang.
fn exit_if_stuck_after_a_panic() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            let message = info.to_string();
            std::thread::spawn(move || {
                std::thread::sleep(STUCK_AFTER_PANIC);
                // Straight to stderr: the test harness's capture would keep it.
                let _ = writeln!(
                    std::io::stderr(),
                    "a test panicked and the process is still running {STUCK_AFTER_PANIC:?} later: exiting\n{message}"
                );
                std::process::exit(101);
            });
        }));
    });
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// A nisshi broker, killed when dropped.
pub struct Broker {
    child: Child,
    pub bootstrap: String,
    /// The librdkafka properties its clients need: TLS and SASL for a
    /// [`Broker::start_secured`] one, none otherwise.
    pub properties: BTreeMap<String, String>,
    /// The secured broker's certificates and storage.
    _files: Option<(tls::TestPki, tempfile::TempDir)>,
}

/// User and password of the SCRAM-SHA-512 account of [`Broker::start_secured`].
pub const BROKER_USER: (&str, &str) = ("journey", "journey-test-password");

fn nisshi(args: &[&str]) -> Child {
    let bin = nisshi_bin();
    assert!(
        bin.exists(),
        "nisshi broker not found at {}: run `scripts/nisshi.sh install` (or set NISSHI_BIN)",
        bin.display()
    );
    Command::new(&bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()))
}

impl Broker {
    /// Starts a broker with in-memory storage on a free port and waits until
    /// it answers metadata requests.
    pub fn start() -> Broker {
        exit_if_stuck_after_a_panic();
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = nisshi(&[
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://nisshi/",
            "--group-initial-rebalance-delay",
            "0s",
        ]);
        let broker = Broker {
            child,
            bootstrap: format!("127.0.0.1:{port}"),
            properties: BTreeMap::new(),
            _files: None,
        };
        broker.wait_ready();
        broker
    }

    /// Starts a broker that takes only TLS connections (a certificate of a
    /// test CA) authenticated with SASL SCRAM-SHA-512 as [`BROKER_USER`], as
    /// a production cluster would (`SASL_SSL`). nisshi keeps SCRAM users in
    /// SQLite and cannot create them while it requires authentication: the
    /// user is created on a plain broker first, which then restarts secured.
    pub fn start_secured() -> Broker {
        exit_if_stuck_after_a_panic();
        let pki = tls::TestPki::new();
        let storage = tempfile::tempdir().expect("a storage directory");
        // Four slashes: an absolute path.
        let engine = format!("sqlite:///{}/nisshi.db", storage.path().display());
        let setup_port = free_port();
        let setup_url = format!("tcp://127.0.0.1:{setup_port}");
        let mut setup = Broker {
            child: nisshi(&[
                "broker",
                "--listener-url",
                &setup_url,
                "--advertised-listener-url",
                &setup_url,
                "--storage-engine",
                &engine,
            ]),
            bootstrap: format!("127.0.0.1:{setup_port}"),
            properties: BTreeMap::new(),
            _files: None,
        };
        setup.wait_ready();
        let created = Command::new(nisshi_bin())
            .args([
                "user",
                "create",
                "--broker",
                &setup_url,
                "--mechanism",
                "scram512",
                BROKER_USER.0,
                BROKER_USER.1,
            ])
            .output()
            .expect("running nisshi user create");
        assert!(
            created.status.success(),
            "nisshi user create: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        let _ = setup.child.kill();
        let _ = setup.child.wait();

        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let cert = pki.server_cert_file();
        let key = pki.server_key_file();
        let child = nisshi(&[
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            &engine,
            "--group-initial-rebalance-delay",
            "0s",
            "--authentication",
            "--cert",
            cert.to_str().expect("a UTF-8 path"),
            "--key",
            key.to_str().expect("a UTF-8 path"),
        ]);
        let properties = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", BROKER_USER.0),
            ("sasl.password", BROKER_USER.1),
            (
                "ssl.ca.location",
                pki.ca_file().to_str().expect("a UTF-8 path"),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let broker = Broker {
            child,
            bootstrap: format!("127.0.0.1:{port}"),
            properties,
            _files: Some((pki, storage)),
        };
        broker.wait_ready();
        broker
    }

    /// The `[kafka]` section of a config file reaching this broker, with its
    /// properties (as a `[kafka.properties]` table) and `extra` lines.
    pub fn kafka_toml(&self, extra: &str) -> String {
        let mut toml = format!(
            "[kafka]\nbootstrap_servers = \"{}\"\npartitions = 3\n{extra}\n",
            self.bootstrap
        );
        if !self.properties.is_empty() {
            toml.push_str("\n[kafka.properties]\n");
            for (key, value) in &self.properties {
                toml.push_str(&format!("{key:?} = {value:?}\n"));
            }
        }
        toml
    }

    fn wait_ready(&self) {
        let consumer: BaseConsumer = journey_core::kafka::client_config(&self.kafka())
            .create()
            .expect("metadata client");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if consumer
                .fetch_metadata(None, Duration::from_secs(1))
                .is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("nisshi on {} did not answer within 30 s", self.bootstrap);
    }

    /// Kafka settings pointing at this broker.
    pub fn kafka(&self) -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: self.bootstrap.clone(),
            properties: self.properties.clone(),
            partitions: 3,
            ..KafkaConfig::default()
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Produces `(key, payload, timestamp)` records to `topic`, waiting for every delivery.
pub async fn produce(
    kafka: &KafkaConfig,
    topic: &str,
    records: &[(String, Vec<u8>, i64)],
) -> anyhow::Result<()> {
    let producer: FutureProducer = journey_core::kafka::producer(kafka)?;
    for (key, payload, timestamp) in records {
        producer
            .send(
                FutureRecord::to(topic)
                    .key(key)
                    .payload(payload)
                    .timestamp(*timestamp),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .with_context(|| format!("producing to {topic}"))?;
    }
    Ok(())
}

/// A consumer of `topic` from its beginning, in a group of its own.
fn reader(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<StreamConsumer> {
    let consumer: StreamConsumer = journey_core::kafka::client_config(kafka)
        .set("group.id", format!("reader-{topic}-{}", free_port()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

/// Reads `topic` from the beginning until `expected` records decode as `T`,
/// then for `settle` more to catch any extra record; fails after `timeout`.
pub async fn collect<T: AvroRecord>(
    kafka: &KafkaConfig,
    topic: &str,
    expected: usize,
    timeout: Duration,
    settle: Duration,
) -> anyhow::Result<Vec<T>> {
    let keyed = collect_keyed(kafka, topic, expected, timeout, settle).await?;
    Ok(keyed.into_iter().map(|(_, record)| record).collect())
}

/// Like [`collect`], with each record's key (as UTF-8).
pub async fn collect_keyed<T: AvroRecord>(
    kafka: &KafkaConfig,
    topic: &str,
    expected: usize,
    timeout: Duration,
    settle: Duration,
) -> anyhow::Result<Vec<(String, T)>> {
    let codec = Codec::builtin();
    collect_raw(kafka, topic, expected, timeout, settle)
        .await?
        .into_iter()
        .map(|(key, payload)| {
            let record = codec
                .decode::<T>(&payload)
                .with_context(|| format!("decoding a record of {topic}"))?;
            Ok((String::from_utf8_lossy(&key).into_owned(), record))
        })
        .collect()
}

/// Reads `topic` from the beginning until `expected` records arrived, then
/// for `settle` more to catch any extra one; fails after `timeout`. Returns
/// keys and values as they are.
pub async fn collect_raw(
    kafka: &KafkaConfig,
    topic: &str,
    expected: usize,
    timeout: Duration,
    settle: Duration,
) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let consumer = reader(kafka, topic)?;
    let mut records = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut settle_until: Option<Instant> = None;
    loop {
        let until = settle_until.unwrap_or(deadline);
        let now = Instant::now();
        if now >= until {
            break;
        }
        match tokio::time::timeout(until - now, consumer.recv()).await {
            Err(_) => break,
            Ok(message) => {
                let message = message?;
                records.push((
                    message.key().unwrap_or_default().to_vec(),
                    message.payload().unwrap_or_default().to_vec(),
                ));
                if records.len() >= expected && settle_until.is_none() {
                    settle_until = Some(Instant::now() + settle);
                }
            }
        }
    }
    anyhow::ensure!(
        records.len() == expected,
        "{topic}: expected {expected} records, got {}",
        records.len()
    );
    Ok(records)
}

/// The four services running in this process against one broker.
pub struct Pipeline {
    pub stop: CancellationToken,
    services: JoinSet<anyhow::Result<()>>,
    pub http: Vec<(&'static str, SocketAddr)>,
    source: ConfigSource,
    state: tempfile::TempDir,
}

impl Pipeline {
    /// Creates the topics and starts the services with test-friendly timing:
    /// a 5 s session gap, no grace, 1 s idle timeout. `extra` is appended to the config.
    pub async fn start(broker: &Broker, test: &str, extra: &str) -> anyhow::Result<Pipeline> {
        Self::start_with_idle_timeout(broker, test, extra, "1s").await
    }

    /// [`Pipeline::start`] with another idle timeout: after it, a quiet
    /// partition's stream time follows the wall clock and closes its sessions.
    pub async fn start_with_idle_timeout(
        broker: &Broker,
        test: &str,
        extra: &str,
        idle_timeout: &str,
    ) -> anyhow::Result<Pipeline> {
        let state = tempfile::tempdir()?;
        let http: Vec<(&'static str, SocketAddr)> =
            ["ingest", "sessionizer", "classifier", "alerting"]
                .into_iter()
                .map(|name| (name, SocketAddr::from(([127, 0, 0, 1], free_port()))))
                .collect();
        let mut toml = format!(
            "{}\n[runtime]\nstate_dir = \"{}\"\ncommit_interval = \"200ms\"\ntick_interval = \"100ms\"\nidle_timeout = \"{idle_timeout}\"\n\n",
            broker.kafka_toml(""),
            state.path().display()
        );
        for (name, addr) in &http {
            let gap = if *name == "sessionizer" {
                "gap = \"5s\"\ngrace = \"0s\"\n"
            } else {
                ""
            };
            toml.push_str(&format!(
                "[{name}]\nhttp_listen = \"{addr}\"\ngroup_id = \"{test}-{name}\"\n{gap}\n"
            ));
        }
        toml.push_str(extra);
        let path = state.path().join("journey.toml");
        std::fs::write(&path, toml)?;
        let source = ConfigSource::load(Some(&path))?;
        let common = source.common()?;
        let topics = journey_core::kafka::pipeline_topics(&common.topics, common.kafka.partitions);
        journey_core::kafka::ensure_topics(&common.kafka, &topics).await?;

        let (stop, services) = Self::spawn(&source);
        Ok(Pipeline {
            stop,
            services,
            http,
            source,
            state,
        })
    }

    fn spawn(source: &ConfigSource) -> (CancellationToken, JoinSet<anyhow::Result<()>>) {
        let stop = CancellationToken::new();
        let mut services = JoinSet::new();
        services.spawn(journey_ingest::run(source.clone(), stop.clone()));
        services.spawn(journey_sessionizer::run(source.clone(), stop.clone()));
        services.spawn(journey_classifier::run(source.clone(), stop.clone()));
        services.spawn(journey_alerting::run(source.clone(), stop.clone()));
        (stop, services)
    }

    /// Stops every service and starts them again with the same config; with
    /// `wipe_state`, their state directories are deleted in between, so each
    /// restores its state from its changelog.
    pub async fn restart(mut self, wipe_state: bool) -> anyhow::Result<Pipeline> {
        self.stop_services().await?;
        if wipe_state {
            for (name, _) in &self.http {
                let dir = self.state.path().join(name);
                if dir.exists() {
                    std::fs::remove_dir_all(&dir)?;
                }
            }
        }
        (self.stop, self.services) = Self::spawn(&self.source);
        Ok(self)
    }

    /// The config file the services run with.
    pub fn config_path(&self) -> PathBuf {
        self.state.path().join("journey.toml")
    }

    /// The HTTP address of a service.
    pub fn http(&self, service: &str) -> SocketAddr {
        self.http
            .iter()
            .find(|(name, _)| *name == service)
            .map(|(_, addr)| *addr)
            .unwrap_or_else(|| panic!("no service {service}"))
    }

    /// Stops every service and returns the first failure, if any.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop_services().await
    }

    async fn stop_services(&mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        let mut first = Ok(());
        while let Some(joined) = self.services.join_next().await {
            let outcome = joined.map_err(anyhow::Error::from).and_then(|r| r);
            if first.is_ok() {
                first = outcome;
            }
        }
        first
    }
}

/// A plain HTTP/1.1 GET; returns the status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The value of the first metric line starting with `prefix` that the
/// service at `addr` exposes, if any.
pub async fn metric(addr: SocketAddr, prefix: &str) -> Option<f64> {
    let (_, body) = http_get(addr, "/metrics").await.ok()?;
    body.lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// A service binary built next to the test executable (`cargo build --bins` puts it there).
pub fn service_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps layout");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} not found: build the binaries first (`cargo build --workspace --bins`; scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A service running as its own process, killed (SIGKILL) when dropped.
pub struct ServiceProcess {
    child: Child,
}

impl ServiceProcess {
    /// Starts `binary` with the config file at `config`.
    pub fn start(binary: &str, config: &std::path::Path) -> ServiceProcess {
        let child = Command::new(service_bin(binary))
            .arg("--config")
            .arg(config)
            .env("JOURNEY_LOG__FILTER", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        ServiceProcess { child }
    }

    /// Starts `binary` with the config file at `config`, its log level as
    /// the config says and its log lines (standard output) appended to `log`.
    pub fn start_logging_to(
        binary: &str,
        config: &std::path::Path,
        log: &std::path::Path,
    ) -> ServiceProcess {
        let file = std::fs::File::create(log).expect("creating the log file");
        let child = Command::new(service_bin(binary))
            .arg("--config")
            .arg(config)
            .stdout(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        ServiceProcess { child }
    }

    /// Asks the process to stop (SIGTERM) and waits until it has.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// Kills the process at once, as a crash would: nothing is flushed or committed.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every record of `topic` decoded as `T`, read from the beginning until no
/// record arrives for a second.
pub async fn read_all<T: AvroRecord>(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<Vec<T>> {
    let consumer = reader(kafka, topic)?;
    let codec = Codec::builtin();
    let mut records = Vec::new();
    let mut idle = Duration::from_secs(10);
    while let Ok(message) = tokio::time::timeout(idle, consumer.recv()).await {
        let message = message?;
        records.push(codec.decode::<T>(message.payload().unwrap_or_default())?);
        idle = Duration::from_secs(1);
    }
    Ok(records)
}

/// The latest value of every key of a compacted topic such as a changelog,
/// read as [`read_log`] does; a tombstone removes its key.
pub async fn read_table(
    kafka: &KafkaConfig,
    topic: &str,
) -> anyhow::Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let mut table = BTreeMap::new();
    for (key, value) in read_log(kafka, topic).await? {
        match value {
            Some(value) => table.insert(key, value),
            None => table.remove(&key),
        };
    }
    Ok(table)
}

/// Every record of `topic` as key and value (`None`: a tombstone), from the
/// beginning up to the end it had when called (a changelog may never go quiet).
pub async fn read_log(
    kafka: &KafkaConfig,
    topic: &str,
) -> anyhow::Result<Vec<(Vec<u8>, Option<Vec<u8>>)>> {
    let consumer = reader(kafka, topic)?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len() as i32)
        .with_context(|| format!("no metadata of {topic}"))?;
    let mut ends = BTreeMap::new();
    for partition in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
        if high > low {
            ends.insert(partition, high);
        }
    }
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() {
        let message = tokio::time::timeout_at(deadline.into(), consumer.recv())
            .await
            .with_context(|| format!("{topic}: still short of {ends:?} after 60 s"))??;
        if ends
            .get(&message.partition())
            .is_some_and(|end| message.offset() < *end)
        {
            records.push((
                message.key().unwrap_or_default().to_vec(),
                message.payload().map(<[u8]>::to_vec),
            ));
        }
        if ends
            .get(&message.partition())
            .is_some_and(|end| message.offset() + 1 >= *end)
        {
            ends.remove(&message.partition());
        }
    }
    Ok(records)
}

/// The embedded schema registry, serving on `listen` from `topic` until stopped.
pub struct EmbeddedRegistry {
    pub url: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl EmbeddedRegistry {
    /// Starts the registry on `listen` (port 0 picks one), storing schemas in `topic`.
    pub async fn start(kafka: &KafkaConfig, listen: SocketAddr, topic: &str) -> EmbeddedRegistry {
        let config = journey_registry::RegistryConfig {
            listen,
            topic: topic.to_string(),
            kafka: kafka.clone(),
            ..Default::default()
        };
        let registry = journey_registry::Registry::start(&config)
            .await
            .expect("the embedded registry starts");
        let url = format!("http://{}", registry.local_addr().expect("a bound address"));
        let stop = CancellationToken::new();
        let task = tokio::spawn(registry.run(stop.clone()));
        EmbeddedRegistry { url, stop, task }
    }

    /// Stops serving and waits until the server is done.
    pub async fn stop(self) {
        self.stop.cancel();
        self.task
            .await
            .expect("registry task")
            .expect("registry stops cleanly");
    }
}

/// A codec that fetches writer schemas from the registry at `url`.
pub fn registry_codec(url: &str) -> Codec {
    let client = journey_core::schema_registry::RegistryClient::new(url).expect("registry URL");
    Codec::with_source(std::sync::Arc::new(client))
}

/// A service run in this process against a broker, from a config file in
/// a state directory of its own.
pub struct InProcessService {
    pub http: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _state: tempfile::TempDir,
}

impl InProcessService {
    /// Writes the config `config` makes of a fresh state directory and a
    /// free HTTP address, creates the pipeline topics it names (3
    /// partitions), and spawns `run` on it.
    pub async fn start<F, Fut>(
        broker: &Broker,
        config: impl FnOnce(&Path, SocketAddr) -> String,
        run: F,
    ) -> InProcessService
    where
        F: FnOnce(ConfigSource, CancellationToken) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let state = tempfile::tempdir().expect("a state directory");
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let path = state.path().join("journey.toml");
        std::fs::write(&path, config(state.path(), http)).expect("writing the config");
        let source = ConfigSource::load(Some(&path)).expect("a valid config");
        let common = source.common().expect("common config");
        let topics = journey_core::kafka::pipeline_topics(&common.topics, 3);
        journey_core::kafka::ensure_topics(&broker.kafka(), &topics)
            .await
            .expect("creating topics");
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(source, stop.clone()));
        InProcessService {
            http,
            stop,
            task,
            _state: state,
        }
    }

    /// Ingest alone in group `group`; `kafka_extra` lines are added to the
    /// `[kafka]` section.
    pub async fn ingest(broker: &Broker, group: &str, kafka_extra: &str) -> InProcessService {
        let config = |state: &Path, http| {
            format!(
                "[kafka]\nbootstrap_servers = \"{}\"\npartitions = 3\n{kafka_extra}\n\n\
                 [runtime]\nstate_dir = \"{}\"\ncommit_interval = \"200ms\"\n\n\
                 [ingest]\nhttp_listen = \"{http}\"\ngroup_id = \"{group}\"\n",
                broker.bootstrap,
                state.display()
            )
        };
        InProcessService::start(broker, config, journey_ingest::run).await
    }

    /// The value of the metric line starting with `prefix`, if exposed.
    pub async fn metric(&self, prefix: &str) -> Option<f64> {
        metric(self.http, prefix).await
    }

    /// Stops the service and waits for its final commit; it must stop cleanly.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.task
            .await
            .expect("the service task")
            .expect("the service stops cleanly");
    }
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs a script of `tests/python` with `args` and returns its standard
/// output; panics with its standard error if it fails. The scripts need
/// `tests/python/requirements.txt` (`scripts/setup.sh` installs it).
pub async fn run_python(script: &str, args: Vec<String>) -> String {
    let script = repo_root().join("tests/python").join(script);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(&script)
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()))
    })
    .await
    .expect("python task");
    assert!(
        out.status.success(),
        "python failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// `events` Avro-encoded as raw-topic records `(key, payload, timestamp)`,
/// keyed by customer key (the customer id, else the anonymous id).
pub fn keyed_by_customer(events: &[CustomerEvent]) -> Vec<(String, Vec<u8>, i64)> {
    let codec = Codec::builtin();
    events
        .iter()
        .map(|e| {
            let key = e
                .customer_key()
                .expect("events with a customer key")
                .to_string();
            (
                key,
                codec.encode(e).expect("encodable event"),
                e.occurred_at,
            )
        })
        .collect()
}

/// A web event of `customer` with nothing but its id, type and time.
pub fn web_event(id: &str, customer: &str, event_type: EventType, at: i64) -> CustomerEvent {
    CustomerEvent {
        event_id: id.into(),
        event_type,
        occurred_at: at,
        customer_id: Some(customer.into()),
        channel: Channel::Web,
        ..CustomerEvent::default()
    }
}

/// The event `event(i, prefix)` of `tests/python/avro_producer.py`, as the
/// contract reads it; `with_properties` false for writer schemas without
/// `properties`.
pub fn python_event(prefix: &str, i: usize, with_properties: bool) -> CustomerEvent {
    let purchase = i % 3 == 2;
    CustomerEvent {
        event_id: format!("{prefix}-{i}"),
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
        properties: if with_properties {
            BTreeMap::from([("seq".to_string(), i.to_string())])
        } else {
            BTreeMap::new()
        },
        ..CustomerEvent::default()
    }
}
