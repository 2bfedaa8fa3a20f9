//! A blocking client of a Confluent-compatible registry (this one or Confluent's),
//! with schemas cached by id forever: ids never change meaning.
//!
//! Blocking on purpose: decoding calls [`RegistryClient::schema_by_id`] from
//! synchronous processing code, and only on a cache miss. On a tokio
//! multi-thread runtime the call moves the worker's other tasks elsewhere
//! while it waits (`block_in_place`); on a current-thread runtime, call it
//! from `spawn_blocking`.
//!
//! `http://` and `https://` (rustls; Mozilla's roots built in, or the CAs of
//! a PEM file for a private registry), with optional HTTP basic
//! authentication, as Confluent's `basic.auth.user.info`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use apache_avro::Schema;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::codec::{SchemaFetchError, SchemaSource};
use crate::config::{KafkaConfig, Secret};

use super::wire::{
    ErrorBody, RegisteredId, SchemaRequest, SchemaText, SubjectVersion, CONTENT_TYPE,
};

/// What went wrong talking to the registry, split by what the caller should do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered that the subject, version or schema id does not
    /// exist: a record naming it cannot be decoded (dead-letter it).
    #[error("not in the schema registry: {message} (error code {code})")]
    NotFound { code: u32, message: String },
    /// The registry refused the request, e.g. an incompatible (409) or invalid
    /// (422) schema: retrying the same request will not help.
    #[error(
        "the schema registry refused the request: {message} (HTTP {status}, error code {code})"
    )]
    Rejected {
        status: u16,
        code: u32,
        message: String,
    },
    /// The registry could not be reached or did not answer properly
    /// (connection refused, timeout, 5xx, not a registry's answer): retry with backoff.
    #[error("the schema registry is unavailable: {0}")]
    Unavailable(String),
    /// The registry served a schema that is not valid Avro (dead-letter records using it).
    #[error("schema {id} from the registry is not usable Avro: {reason}")]
    InvalidSchema { id: u32, reason: String },
    /// The client was given a URL it cannot use.
    #[error("invalid schema registry URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The file of trusted certificate authorities cannot be used.
    #[error("cannot use {path} as the schema registry's CA file: {reason}")]
    InvalidCaFile { path: PathBuf, reason: String },
}

impl RegistryError {
    /// Whether the same call may succeed later: only when the registry was unavailable.
    pub fn is_retryable(&self) -> bool {
        matches!(self, RegistryError::Unavailable(_))
    }
}

/// How long connecting may take before the registry counts as unavailable.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a whole call may take before the registry counts as unavailable.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A client of one registry, safe to share between threads.
pub struct RegistryClient {
    base: String,
    agent: ureq::Agent,
    /// `Basic <base64 of user:password>`, sent with every request.
    authorization: Option<Secret>,
    schemas: RwLock<HashMap<u32, Arc<Schema>>>,
}

/// Settings of a [`RegistryClient`] beyond its URL.
pub struct RegistryClientBuilder {
    url: String,
    connect: Duration,
    request: Duration,
    basic_auth: Option<(String, Secret)>,
    ca_file: Option<PathBuf>,
}

impl RegistryClientBuilder {
    /// The connect timeout and the timeout of a whole call.
    pub fn timeouts(mut self, connect: Duration, request: Duration) -> Self {
        self.connect = connect;
        self.request = request;
        self
    }

    /// HTTP basic authentication with `user` and `password` on every request.
    pub fn basic_auth(mut self, user: impl Into<String>, password: Secret) -> Self {
        self.basic_auth = Some((user.into(), password));
        self
    }

    /// Trusts the certificate authorities of the PEM file at `path` for
    /// `https://`, instead of the built-in public roots.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// The client; refuses a URL it cannot use or a CA file without certificates.
    pub fn build(self) -> Result<RegistryClient, RegistryError> {
        let url = self.url.as_str();
        let invalid = |reason: &str| RegistryError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| invalid("only http:// and https:// URLs are supported"))?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(invalid("no host"));
        }
        if rest.contains(['@', '?', '#']) {
            return Err(invalid(
                "user info, query and fragment are not supported (set the credentials apart)",
            ));
        }
        let mut config = ureq::Agent::config_builder()
            .timeout_connect(Some(self.connect))
            .timeout_global(Some(self.request))
            .http_status_as_error(false);
        if let Some(path) = &self.ca_file {
            let roots = ureq::tls::RootCerts::new_with_certs(&read_certificates(path)?);
            config = config.tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build());
        }
        let authorization = self.basic_auth.map(|(user, password)| {
            let pair = format!("{user}:{}", password.expose());
            Secret::new(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ))
        });
        Ok(RegistryClient {
            base: url.trim_end_matches('/').to_string(),
            agent: config.build().into(),
            authorization,
            schemas: RwLock::new(HashMap::new()),
        })
    }
}

/// The certificates of the PEM file at `path`; at least one.
fn read_certificates(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, RegistryError> {
    let invalid = |reason: String| RegistryError::InvalidCaFile {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| invalid(e.to_string()))?;
    let mut certificates = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let ureq::tls::PemItem::Certificate(certificate) =
            item.map_err(|e| invalid(e.to_string()))?
        {
            certificates.push(certificate);
        }
    }
    if certificates.is_empty() {
        return Err(invalid("no PEM certificate in it".to_string()));
    }
    Ok(certificates)
}

impl RegistryClient {
    /// A client of the registry at `url`, e.g. `http://127.0.0.1:8081`, with
    /// a 2 s connect timeout and a 10 s timeout per call.
    pub fn new(url: &str) -> Result<RegistryClient, RegistryError> {
        RegistryClient::builder(url).build()
    }

    /// A client with its own connect timeout and timeout per call.
    pub fn with_timeouts(
        url: &str,
        connect: Duration,
        request: Duration,
    ) -> Result<RegistryClient, RegistryError> {
        RegistryClient::builder(url)
            .timeouts(connect, request)
            .build()
    }

    /// Settings for a client of the registry at `url`, with the default
    /// timeouts, no credentials and the built-in public roots.
    pub fn builder(url: &str) -> RegistryClientBuilder {
        RegistryClientBuilder {
            url: url.to_string(),
            connect: DEFAULT_CONNECT_TIMEOUT,
            request: DEFAULT_REQUEST_TIMEOUT,
            basic_auth: None,
            ca_file: None,
        }
    }

    /// The client `kafka` configures (`kafka.schema_registry_*`), `None`
    /// without a registry URL. A setting it cannot use is named in the error.
    pub fn from_config(kafka: &KafkaConfig) -> anyhow::Result<Option<RegistryClient>> {
        let Some(url) = &kafka.schema_registry_url else {
            return Ok(None);
        };
        let mut builder = RegistryClient::builder(url);
        if let (Some(user), Some(password)) = (
            &kafka.schema_registry_username,
            &kafka.schema_registry_password,
        ) {
            if !url.starts_with("https://") {
                tracing::warn!(
                    registry = url,
                    "schema registry credentials are sent over plain http: use https://"
                );
            }
            builder = builder.basic_auth(user, password.clone());
        }
        if let Some(path) = &kafka.schema_registry_ca_file {
            builder = builder.ca_file(path);
        }
        builder.build().map(Some).map_err(|e| {
            let field = match e {
                RegistryError::InvalidCaFile { .. } => "schema_registry_ca_file",
                _ => "schema_registry_url",
            };
            anyhow::anyhow!("invalid configuration: field `kafka.{field}`: {e}")
        })
    }

    /// The writer schema with global id `id`, fetched once and cached for good.
    pub fn schema_by_id(&self, id: u32) -> Result<Arc<Schema>, RegistryError> {
        let cached = self
            .schemas
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned();
        if let Some(schema) = cached {
            return Ok(schema);
        }
        let text: SchemaText = self.get(&format!("/schemas/ids/{id}"))?;
        if let Some(kind) = text.schema_type.filter(|k| !k.eq_ignore_ascii_case("AVRO")) {
            return Err(RegistryError::InvalidSchema {
                id,
                reason: format!("a {kind} schema, not Avro"),
            });
        }
        let schema = Schema::parse_str(&text.schema).map_err(|e| RegistryError::InvalidSchema {
            id,
            reason: e.to_string(),
        })?;
        let mut schemas = self.schemas.write().unwrap_or_else(PoisonError::into_inner);
        Ok(schemas
            .entry(id)
            .or_insert_with(|| Arc::new(schema))
            .clone())
    }

    /// Registers an Avro schema under `subject` (or finds it there) and returns its id.
    pub fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let body = SchemaRequest {
            schema: schema.to_string(),
            schema_type: None,
            references: Vec::new(),
        };
        let body = serde_json::to_string(&body)
            .map_err(|e| RegistryError::Unavailable(format!("encoding the request: {e}")))?;
        let path = format!("/subjects/{}/versions", encode_segment(subject));
        let registered: RegisteredId = self.post(&path, body)?;
        Ok(registered.id)
    }

    /// The latest version registered under `subject`.
    pub fn latest(&self, subject: &str) -> Result<SubjectVersion, RegistryError> {
        self.get(&format!(
            "/subjects/{}/versions/latest",
            encode_segment(subject)
        ))
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, RegistryError> {
        let url = format!("{}{path}", self.base);
        self.call(path, || {
            let mut request = self.agent.get(&url).header("Accept", CONTENT_TYPE);
            if let Some(authorization) = &self.authorization {
                request = request.header("Authorization", authorization.expose());
            }
            request.call()
        })
    }

    fn post<T: DeserializeOwned>(&self, path: &str, body: String) -> Result<T, RegistryError> {
        let url = format!("{}{path}", self.base);
        self.call(path, || {
            let mut request = self
                .agent
                .post(&url)
                .header("Accept", CONTENT_TYPE)
                .header("Content-Type", CONTENT_TYPE);
            if let Some(authorization) = &self.authorization {
                request = request.header("Authorization", authorization.expose());
            }
            request.send(body.as_str())
        })
    }

    fn call<T: DeserializeOwned>(
        &self,
        path: &str,
        send: impl FnOnce() -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, RegistryError> {
        let unavailable = |e: ureq::Error| RegistryError::Unavailable(format!("{path}: {e}"));
        let (status, body) = blocking(|| {
            let mut response = send().map_err(unavailable)?;
            let body = response.body_mut().read_to_string().map_err(unavailable)?;
            Ok((response.status().as_u16(), body))
        })?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&body).map_err(|e| {
                RegistryError::Unavailable(format!("{path}: not a schema registry answer: {e}"))
            });
        }
        Err(classify(status, &body, path))
    }
}

/// The error for a non-2xx answer. Only a registry's own "not found" body is
/// [`RegistryError::NotFound`]: a bare 404 (a proxy, a wrong base path) must
/// not make the caller dead-letter good records.
fn classify(status: u16, body: &str, path: &str) -> RegistryError {
    let error: Option<ErrorBody> = serde_json::from_str(body).ok();
    match (status, error) {
        // Whatever the body (a proxy's page), retrying with the same credentials won't help.
        (401 | 403, error) => RegistryError::Rejected {
            status,
            code: error.as_ref().map_or(u32::from(status), |e| e.error_code),
            message: format!(
                "{path}: credentials missing or refused (kafka.schema_registry_username, \
                 kafka.schema_registry_password)"
            ),
        },
        (404, Some(e)) if (40400..40500).contains(&e.error_code) => RegistryError::NotFound {
            code: e.error_code,
            message: e.message,
        },
        (400..=499, Some(e)) if !matches!(status, 404 | 408 | 429) => RegistryError::Rejected {
            status,
            code: e.error_code,
            message: e.message,
        },
        (_, Some(e)) => RegistryError::Unavailable(format!("{path}: HTTP {status}: {}", e.message)),
        (_, None) => RegistryError::Unavailable(format!(
            "{path}: HTTP {status} without a schema registry error body"
        )),
    }
}

/// Runs blocking I/O, letting a multi-thread runtime move its other tasks off this worker.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl SchemaSource for RegistryClient {
    /// Fetches the schema text uncached: the codec caches what it parses.
    fn schema_text(&self, id: u32) -> Result<String, SchemaFetchError> {
        let text: SchemaText = self
            .get(&format!("/schemas/ids/{id}"))
            .map_err(|e| match e {
                RegistryError::NotFound { .. } => SchemaFetchError::NotFound(id),
                // Anything else may be a passing outage or a misconfiguration
                // (wrong URL, credentials): hold records back, don't dead-letter them.
                other => SchemaFetchError::Unavailable(other.to_string()),
            })?;
        match text.schema_type {
            Some(kind) if !kind.eq_ignore_ascii_case("AVRO") => Err(SchemaFetchError::NotFound(id)),
            _ => Ok(text.schema),
        }
    }
}

/// Percent-encodes a subject for use as one URL path segment.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_registry_not_found_body_means_not_found() {
        let not_found = r#"{"error_code":40403,"message":"Schema not found"}"#;
        assert!(matches!(
            classify(404, not_found, "/x"),
            RegistryError::NotFound { code: 40403, .. }
        ));
        for (status, body) in [
            (404, "<html>no such page</html>"),
            (404, r#"{"error_code":50001,"message":"odd"}"#),
            (500, r#"{"error_code":50001,"message":"store down"}"#),
            (503, ""),
            (429, r#"{"error_code":429,"message":"slow down"}"#),
        ] {
            let error = classify(status, body, "/x");
            assert!(error.is_retryable(), "{status} {body}: {error}");
        }
    }

    #[test]
    fn refused_requests_are_not_retryable() {
        let body = r#"{"error_code":409,"message":"incompatible"}"#;
        let error = classify(409, body, "/x");
        assert!(matches!(
            error,
            RegistryError::Rejected {
                status: 409,
                code: 409,
                ..
            }
        ));
        assert!(!error.is_retryable());
    }

    #[test]
    fn refused_credentials_are_not_retryable() {
        for (status, body) in [
            (401, r#"{"error_code":40101,"message":"Unauthorized"}"#),
            (401, "<html>login</html>"),
            (403, ""),
        ] {
            let error = classify(status, body, "/x");
            assert!(!error.is_retryable(), "{status} {body}: {error}");
            assert!(error.to_string().contains("credentials"), "{error}");
        }
    }

    #[test]
    fn urls_other_than_http_and_https_are_refused() {
        for url in [
            "ftp://r:8081",
            "https://",
            "https://u:p@r:8081",
            "r:8081",
            "http://",
            "http://u:p@r:8081",
            "http:///x",
        ] {
            assert!(
                matches!(
                    RegistryClient::new(url),
                    Err(RegistryError::InvalidUrl { .. })
                ),
                "{url}"
            );
        }
        assert!(RegistryClient::new("http://127.0.0.1:8081/").is_ok());
        assert!(RegistryClient::new("https://registry.example:8081").is_ok());
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_by_field() {
        let empty = tempfile::NamedTempFile::new().unwrap();
        let kafka = KafkaConfig {
            schema_registry_url: Some("https://registry.example:8081".into()),
            schema_registry_ca_file: Some(empty.path().to_path_buf()),
            ..KafkaConfig::default()
        };
        let err = RegistryClient::from_config(&kafka)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains("field `kafka.schema_registry_ca_file`"),
            "{err}"
        );
    }

    #[test]
    fn subjects_are_encoded_as_one_path_segment() {
        assert_eq!(
            encode_segment("journey.events.raw-value"),
            "journey.events.raw-value"
        );
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
