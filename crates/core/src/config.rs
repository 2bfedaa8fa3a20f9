//! Configuration: defaults, then an optional TOML file, then environment
//! variables (`JOURNEY_<SECTION>__<FIELD>`, e.g. `JOURNEY_KAFKA__BOOTSTRAP_SERVERS`).
//!
//! A bad value stops start-up with an error that names the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use figment::Provider;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "JOURNEY_";

/// A setting that must never be printed (a password, a key): `Debug` shows
/// `"***"`, and only [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// Kafka connection settings shared by every client.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// Extra librdkafka properties passed to every client (security, tuning),
    /// e.g. `security.protocol`, `sasl.mechanisms`, `sasl.username`,
    /// `sasl.password`, `ssl.ca.location`. Checked by librdkafka at start-up.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Partitions of topics the services create when missing.
    pub partitions: i32,
    /// Replication factor of topics the services create when missing.
    pub replication_factor: i32,
    /// A Confluent-compatible schema registry, e.g. `http://schema-registry:8081`:
    /// output schemas are registered under `<topic>-value` and input schemas
    /// fetched by id. Unset: the contract's built-in ids (1-6), which only
    /// Journey's own tools read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry_url: Option<String>,
    /// User of the registry's HTTP basic authentication; needs the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry_username: Option<String>,
    /// Password of the registry's HTTP basic authentication; needs the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry_password: Option<Secret>,
    /// PEM file of the certificate authorities trusted for an `https://`
    /// registry, instead of the built-in public roots (a private CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry_ca_file: Option<PathBuf>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: "127.0.0.1:9092".into(),
            properties: BTreeMap::new(),
            partitions: 6,
            replication_factor: 1,
            schema_registry_url: None,
            schema_registry_username: None,
            schema_registry_password: None,
            schema_registry_ca_file: None,
        }
    }
}

/// Whether the librdkafka property `key` holds a secret (a password, a
/// private key) that must not be printed.
pub fn is_secret_property(key: &str) -> bool {
    ["password", "secret", "passphrase"]
        .iter()
        .any(|word| key.contains(word))
        || key.ends_with("key.pem")
        || key == "sasl.oauthbearer.config"
}

impl std::fmt::Debug for KafkaConfig {
    /// Secret properties and the registry password show as `"***"`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(key, value)| {
                let shown = if is_secret_property(key) {
                    "***"
                } else {
                    value.as_str()
                };
                (key.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("properties", &properties)
            .field("partitions", &self.partitions)
            .field("replication_factor", &self.replication_factor)
            .field("schema_registry_url", &self.schema_registry_url)
            .field("schema_registry_username", &self.schema_registry_username)
            .field("schema_registry_password", &self.schema_registry_password)
            .field("schema_registry_ca_file", &self.schema_registry_ca_file)
            .finish()
    }
}

impl KafkaConfig {
    /// Checks what serde cannot: the registry settings fit together, and
    /// librdkafka accepts every property. The error names the field.
    pub fn check(&self) -> anyhow::Result<()> {
        let field = |name: &str, why: &str| {
            anyhow::anyhow!("invalid configuration: field `kafka.{name}`: {why}")
        };
        match (
            &self.schema_registry_username,
            &self.schema_registry_password,
        ) {
            (Some(_), None) => {
                return Err(field(
                    "schema_registry_password",
                    "missing: `kafka.schema_registry_username` is set",
                ))
            }
            (None, Some(_)) => {
                return Err(field(
                    "schema_registry_username",
                    "missing: `kafka.schema_registry_password` is set",
                ))
            }
            _ => {}
        }
        let registry_settings = [
            (
                "schema_registry_username",
                self.schema_registry_username.is_some(),
            ),
            (
                "schema_registry_ca_file",
                self.schema_registry_ca_file.is_some(),
            ),
        ];
        if self.schema_registry_url.is_none() {
            if let Some((name, _)) = registry_settings.iter().find(|(_, set)| *set) {
                return Err(field(name, "set without `kafka.schema_registry_url`"));
            }
        }
        let https = self
            .schema_registry_url
            .as_deref()
            .is_some_and(|url| url.starts_with("https://"));
        if self.schema_registry_ca_file.is_some() && !https {
            return Err(field(
                "schema_registry_ca_file",
                "only used with an `https://` `kafka.schema_registry_url`",
            ));
        }
        crate::kafka::check_properties(self)
    }
}

/// Topic names of the pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    /// Producers' Confluent-framed Avro events.
    pub raw_events: String,
    /// Validated events keyed by resolved customer.
    pub events: String,
    /// Anonymous visitors identified as customers, keyed by anonymous id.
    pub identities: String,
    /// Closed session summaries.
    pub sessions: String,
    /// Events that arrived after their session was final, as they came, keyed by customer.
    pub late_events: String,
    /// Journey stage transitions.
    pub stage_changes: String,
    /// Alerts for CX staff and SREs.
    pub alerts: String,
    /// Records no service could process, with the reason.
    pub dead_letters: String,
    /// Customers' erasure requests, keyed by customer id (ingest reads them).
    pub erasure_requests: String,
    /// One record per id to erase, keyed by that id, for the downstream services.
    pub erasure_tasks: String,
    /// Steps of erasure requests, keyed by request id, gathered by ingest.
    pub erasure_progress: String,
    /// One record per erasure request done by every service, keyed by customer id.
    pub erasure_confirmations: String,
    /// `retention.ms` of the pipeline topics `journey topics` creates.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// `retention.ms` of the dead-letter topic: its records keep the original
    /// bytes, personal data included.
    #[serde(with = "humantime_serde")]
    pub dead_letters_retention: Duration,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            raw_events: "journey.events.raw".into(),
            events: "journey.events".into(),
            identities: "journey.identities".into(),
            sessions: "journey.sessions".into(),
            late_events: "journey.events.late".into(),
            stage_changes: "journey.stage-changes".into(),
            alerts: "journey.alerts".into(),
            dead_letters: "journey.dead-letters".into(),
            erasure_requests: "journey.erasure.requests".into(),
            erasure_tasks: "journey.erasure.tasks".into(),
            erasure_progress: "journey.erasure.progress".into(),
            erasure_confirmations: "journey.erasure.confirmations".into(),
            retention: Duration::from_secs(7 * 24 * 3600),
            dead_letters_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `pretty` for people, `json` for log shippers.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `info,journey_core=debug`.
    pub filter: String,
    /// Key of the hash that stands for a customer id in log lines
    /// (`customer=<tag>`, see [`crate::telemetry::CustomerTagger`]). Unset: a
    /// random key per process, so tags cannot be matched across processes or
    /// restarts, nor looked up with `journey customer-tag`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id_key: Option<Secret>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Pretty,
            filter: "info".into(),
            customer_id_key: None,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Settings of the processing loop, shared by the services.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Root directory of the services' RocksDB state; each service uses a subdirectory.
    pub state_dir: PathBuf,
    /// How often state, outputs and offsets are committed. Longer commits
    /// coalesce more writes of a hot key into one (Kafka Streams commits
    /// every 30 s), at the cost of the query API's staleness and of the
    /// input re-processed after a crash.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// Commit early once this many records are processed (a commit also
    /// comes early when the record cache fills with uncommitted writes).
    pub max_batch: usize,
    /// How often timers are checked.
    #[serde(with = "humantime_serde")]
    pub tick_interval: Duration,
    /// A partition with no records for this long lets its stream time follow the wall clock.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Memory budget of all state in the process (record caches, RocksDB block
    /// cache and write buffers), bytes.
    pub state_memory_bytes: usize,
    /// How often a commit reads the end of every owned partition's
    /// changelog, so that another writer's records (a stalled former
    /// owner's late commit) are found on partitions this instance has not
    /// written to since; `0s` reads them at every commit.
    #[serde(with = "humantime_serde")]
    pub changelog_check_interval: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            state_dir: PathBuf::from("state"),
            commit_interval: Duration::from_secs(5),
            max_batch: 1_000_000,
            tick_interval: Duration::from_millis(200),
            idle_timeout: Duration::from_secs(30),
            state_memory_bytes: 256 << 20,
            changelog_check_interval: Duration::from_secs(10),
        }
    }
}

/// The settings shared by all services.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CommonConfig {
    pub kafka: KafkaConfig,
    pub topics: TopicsConfig,
    pub log: LogConfig,
    pub runtime: RuntimeConfig,
}

/// Top-level sections a config file may hold: the common ones and one per service.
pub const SECTIONS: [&str; 9] = [
    "kafka",
    "topics",
    "log",
    "runtime",
    "registry",
    "ingest",
    "sessionizer",
    "classifier",
    "alerting",
];

/// The layered configuration source: an optional TOML file, then `JOURNEY_*`
/// environment variables. Every service reads the common sections and its own.
#[derive(Clone)]
pub struct ConfigSource {
    layers: Figment,
}

impl ConfigSource {
    /// Reads the TOML file at `path` (if given) and the environment.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        Self::with_env(path, std::env::vars())
    }

    /// Reads the TOML file at `path` (if given) and `vars` as if they were the
    /// environment: how deployment checks see what a container would read.
    pub fn with_env(
        path: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let mut layers = Figment::new();
        if let Some(path) = path {
            if !path.exists() {
                anyhow::bail!("config file {} does not exist", path.display());
            }
            layers = layers.merge(Toml::file(path));
        }
        for (path, value) in env_settings(vars) {
            layers = layers.merge(Serialized::default(&path, value));
        }
        let source = ConfigSource { layers };
        source.check_sections()?;
        Ok(source)
    }

    fn check_sections(&self) -> anyhow::Result<()> {
        let data = self
            .layers
            .data()
            .map_err(|e| anyhow::anyhow!(describe(e, "")))?;
        for dict in data.values() {
            if let Some(unknown) = dict.keys().find(|k| !SECTIONS.contains(&k.as_str())) {
                anyhow::bail!(
                    "invalid configuration: unknown section `{unknown}` (expected one of {})",
                    SECTIONS.join(", ")
                );
            }
        }
        Ok(())
    }

    /// The settings shared by every service, checked (see [`KafkaConfig::check`]).
    pub fn common(&self) -> anyhow::Result<CommonConfig> {
        let common: CommonConfig = Figment::from(Serialized::defaults(CommonConfig::default()))
            .merge(self.layers.clone())
            .extract()
            .map_err(|e| anyhow::anyhow!(describe(e, "")))?;
        common.kafka.check()?;
        Ok(common)
    }

    /// One service's section, `[name]`, over its defaults.
    pub fn section<T: Serialize + DeserializeOwned + Default>(
        &self,
        name: &str,
    ) -> anyhow::Result<T> {
        Figment::from(Serialized::defaults(T::default()))
            .merge(self.layers.focus(name))
            .extract()
            .map_err(|e| anyhow::anyhow!(describe(e, name)))
    }
}

/// Prefix of the variables that set one librdkafka property each.
/// Shortest retention of state a service forgets after inactivity: what it
/// keeps of a customer should outlive the gaps between their visits.
pub const MIN_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// `value` of the retention setting `field` (dotted, e.g.
/// `classifier.visitor_retention`) in ms, refused by name under [`MIN_RETENTION`].
pub fn retention_ms(field: &str, value: Duration) -> anyhow::Result<i64> {
    anyhow::ensure!(
        value >= MIN_RETENTION,
        "invalid configuration: field `{field}`: must be at least 1day"
    );
    Ok(value.as_millis().min(i64::MAX as u128) as i64)
}

const PROPERTIES_PREFIX: &str = "kafka__properties__";

/// The settings `vars` make: `JOURNEY_<SECTION>__<FIELD>` as the dotted path
/// `section.field`, its value parsed as figment's own `Env` provider parses
/// it. Only variables with a `__` configure: `JOURNEY_CONFIG` and the like do not.
///
/// `JOURNEY_KAFKA__PROPERTIES__<NAME>` sets the librdkafka property `<name>`
/// with `_` read as `.` (`..._SASL_PASSWORD` is `sasl.password`; no settable
/// property has a `_`), its value kept as the string it is.
fn env_settings(
    vars: impl IntoIterator<Item = (String, String)>,
) -> impl Iterator<Item = (String, figment::value::Value)> {
    vars.into_iter().filter_map(|(key, value)| {
        let key = key.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
        if let Some(name) = key.strip_prefix(PROPERTIES_PREFIX) {
            let mut property = figment::value::Dict::new();
            property.insert(name.replace('_', "."), value.into());
            return Some(("kafka.properties".to_string(), property.into()));
        }
        let value = value.parse().expect("parsing a value is infallible");
        key.contains("__").then(|| (key.replace("__", "."), value))
    })
}

fn describe(error: figment::Error, section: &str) -> String {
    let details = error
        .into_iter()
        .map(|e| {
            let mut path: Vec<&str> = e.path.iter().map(String::as_str).collect();
            if !section.is_empty() {
                path.insert(0, section);
            }
            if path.is_empty() {
                e.kind.to_string()
            } else {
                format!("field `{}`: {}", path.join("."), e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    format!("invalid configuration: {details}")
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn defaults_load_without_a_file() {
        let c = ConfigSource::load(None).unwrap().common().unwrap();
        assert_eq!(c.topics.events, "journey.events");
    }

    #[test]
    fn a_bad_value_names_the_field() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "[runtime]\ncommit_interval = \"soon\"").unwrap();
        let err = ConfigSource::load(Some(f.path()))
            .unwrap()
            .common()
            .unwrap_err()
            .to_string();
        assert!(err.contains("runtime.commit_interval"), "{err}");
    }

    #[test]
    fn an_unknown_field_is_refused_by_name() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "[kafka]\nbootstrap_server = \"x:1\"").unwrap();
        let err = ConfigSource::load(Some(f.path()))
            .unwrap()
            .common()
            .unwrap_err()
            .to_string();
        assert!(err.contains("bootstrap_server"), "{err}");
    }

    #[test]
    fn an_unknown_section_is_refused_by_name() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "[sesionizer]\ngap = \"1m\"").unwrap();
        let err = ConfigSource::load(Some(f.path()))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("sesionizer"), "{err}");
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Section {
        #[serde(with = "humantime_serde")]
        gap: Duration,
    }

    #[test]
    fn a_bad_section_value_names_section_and_field() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "[sessionizer]\ngap = 5").unwrap();
        let source = ConfigSource::load(Some(f.path())).unwrap();
        let err = source
            .section::<Section>("sessionizer")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sessionizer.gap"), "{err}");
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn environment_variables_set_fields_by_section() {
        let vars = env(&[
            ("JOURNEY_KAFKA__BOOTSTRAP_SERVERS", "kafka:9092"),
            ("JOURNEY_KAFKA__PARTITIONS", "12"),
            ("JOURNEY_CONFIG", "ignored.toml"),
            ("PATH", "/usr/bin"),
        ]);
        let c = ConfigSource::with_env(None, vars)
            .unwrap()
            .common()
            .unwrap();
        assert_eq!(c.kafka.bootstrap_servers, "kafka:9092");
        assert_eq!(c.kafka.partitions, 12);
    }

    #[test]
    fn an_unknown_environment_variable_is_refused_by_name() {
        let vars = env(&[("JOURNEY_RUNTIME__STATE_DIRECTORY", "/var/lib/journey")]);
        let err = ConfigSource::with_env(None, vars)
            .unwrap()
            .common()
            .unwrap_err()
            .to_string();
        assert!(err.contains("state_directory"), "{err}");
    }

    #[test]
    fn kafka_properties_come_from_the_file_and_the_environment() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            f,
            "[kafka]\nbootstrap_servers = \"broker:9093\"\n\n[kafka.properties]\n\
             \"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanisms\" = \"SCRAM-SHA-512\""
        )
        .unwrap();
        let vars = env(&[
            ("JOURNEY_KAFKA__PROPERTIES__SASL_USERNAME", "journey"),
            ("JOURNEY_KAFKA__PROPERTIES__SASL_PASSWORD", "12345"),
            ("JOURNEY_KAFKA__PROPERTIES__SOCKET_TIMEOUT_MS", "30000"),
        ]);
        let c = ConfigSource::with_env(Some(f.path()), vars)
            .unwrap()
            .common()
            .unwrap();
        let properties: Vec<(&str, &str)> = c
            .kafka
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            properties,
            [
                ("sasl.mechanisms", "SCRAM-SHA-512"),
                ("sasl.password", "12345"),
                ("sasl.username", "journey"),
                ("security.protocol", "SASL_SSL"),
                ("socket.timeout.ms", "30000"),
            ]
        );
    }

    #[test]
    fn a_property_librdkafka_refuses_stops_loading_by_name() {
        let vars = env(&[("JOURNEY_KAFKA__PROPERTIES__SECURITY_PROTOCOL", "TLS")]);
        let err = ConfigSource::with_env(None, vars)
            .unwrap()
            .common()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("field `kafka.properties.security.protocol`"),
            "{err}"
        );
    }

    #[test]
    fn debug_output_hides_every_secret() {
        let vars = env(&[
            ("JOURNEY_KAFKA__PROPERTIES__SASL_USERNAME", "journey"),
            ("JOURNEY_KAFKA__PROPERTIES__SASL_PASSWORD", "kafka-pw-1"),
            ("JOURNEY_KAFKA__PROPERTIES__SSL_KEY_PASSWORD", "key-pw-2"),
            (
                "JOURNEY_KAFKA__SCHEMA_REGISTRY_URL",
                "https://registry:8081",
            ),
            ("JOURNEY_KAFKA__SCHEMA_REGISTRY_USERNAME", "journey"),
            ("JOURNEY_KAFKA__SCHEMA_REGISTRY_PASSWORD", "registry-pw-3"),
            ("JOURNEY_LOG__CUSTOMER_ID_KEY", "log-key-4"),
        ]);
        let c = ConfigSource::with_env(None, vars)
            .unwrap()
            .common()
            .unwrap();
        assert_eq!(
            c.kafka
                .schema_registry_password
                .as_ref()
                .map(Secret::expose),
            Some("registry-pw-3")
        );
        let shown = format!("{c:?} {c:#?}");
        for secret in ["kafka-pw-1", "key-pw-2", "registry-pw-3", "log-key-4"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("journey"), "{shown}");
    }

    #[test]
    fn registry_settings_that_do_not_fit_together_are_refused_by_name() {
        let cases: [(&[(&str, &str)], &str); 4] = [
            (
                &[
                    ("JOURNEY_KAFKA__SCHEMA_REGISTRY_URL", "http://r:8081"),
                    ("JOURNEY_KAFKA__SCHEMA_REGISTRY_USERNAME", "u"),
                ],
                "kafka.schema_registry_password",
            ),
            (
                &[
                    ("JOURNEY_KAFKA__SCHEMA_REGISTRY_URL", "http://r:8081"),
                    ("JOURNEY_KAFKA__SCHEMA_REGISTRY_PASSWORD", "p"),
                ],
                "kafka.schema_registry_username",
            ),
            (
                &[
                    ("JOURNEY_KAFKA__SCHEMA_REGISTRY_USERNAME", "u"),
                    ("JOURNEY_KAFKA__SCHEMA_REGISTRY_PASSWORD", "p"),
                ],
                "kafka.schema_registry_username",
            ),
            (
                &[
                    ("JOURNEY_KAFKA__SCHEMA_REGISTRY_URL", "http://r:8081"),
                    ("JOURNEY_KAFKA__SCHEMA_REGISTRY_CA_FILE", "/etc/ca.pem"),
                ],
                "kafka.schema_registry_ca_file",
            ),
        ];
        for (vars, field) in cases {
            let err = ConfigSource::with_env(None, env(vars))
                .unwrap()
                .common()
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("field `{field}`")), "{err}");
        }
    }

    #[test]
    fn file_values_override_defaults() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            f,
            "[kafka]\nbootstrap_servers = \"broker:29092\"\npartitions = 3"
        )
        .unwrap();
        let c = ConfigSource::load(Some(f.path()))
            .unwrap()
            .common()
            .unwrap();
        assert_eq!(c.kafka.bootstrap_servers, "broker:29092");
        assert_eq!(c.kafka.partitions, 3);
        assert_eq!(c.kafka.replication_factor, 1);
    }
}
