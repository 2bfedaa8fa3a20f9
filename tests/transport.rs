//! Transport security: the whole pipeline on a broker that takes only TLS
//! connections authenticated with SASL SCRAM (`kafka.properties`), and the
//! schema registry client over HTTPS with a private CA and basic auth.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use journey_core::config::{KafkaConfig, Secret, TopicsConfig};
use journey_core::contract::{Alert, Channel, EventType, Feedback, SessionSummary};
use journey_core::runtime::now_millis;
use journey_core::schema_registry::{pipeline_codec, RegistryClient, RegistryError};
use journey_tests::tls::TestPki;
use journey_tests::{collect, keyed_by_customer, produce, web_event, Broker, Pipeline};
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipeline_runs_on_a_broker_requiring_sasl_scram_over_tls() {
    let broker = Broker::start_secured();
    let kafka = broker.kafka();

    // The broker refuses clients without the right credentials, so what
    // follows went through SASL_SSL.
    for (name, password) in [("no SASL", None), ("a wrong password", Some("wrong"))] {
        let mut refused = kafka.clone();
        match password {
            None => {
                refused
                    .properties
                    .insert("security.protocol".into(), "SSL".into());
                refused.properties.retain(|k, _| !k.starts_with("sasl."));
            }
            Some(p) => {
                refused.properties.insert("sasl.password".into(), p.into());
            }
        }
        let consumer: BaseConsumer = journey_core::kafka::client_config(&refused)
            .create()
            .unwrap();
        let metadata = tokio::task::spawn_blocking(move || {
            consumer.fetch_metadata(None, Duration::from_secs(3))
        })
        .await
        .unwrap();
        assert!(metadata.is_err(), "a client with {name} was let in");
    }

    // Topics (admin client), the four services (consumers, producers,
    // changelogs, the classifier's instances topic), the test's producer and
    // readers: every client takes the properties from the config.
    let pipeline = Pipeline::start(&broker, "sasl", "").await.unwrap();
    let t = now_millis() - 10 * 60 * 1_000;
    let mut feedback = web_event("c2", "carol", EventType::Feedback, t + 1_000);
    feedback.channel = Channel::Survey;
    feedback.feedback = Some(Feedback {
        nps: Some(1),
        ..Feedback::default()
    });
    let records = keyed_by_customer(&[
        web_event("a1", "alice", EventType::PageView, t),
        web_event("c1", "carol", EventType::PageView, t),
        feedback,
    ]);
    produce(&kafka, "journey.events.raw", &records)
        .await
        .unwrap();

    let wait = Duration::from_secs(60);
    let settle = Duration::from_secs(1);
    let mut sessions = collect::<SessionSummary>(&kafka, "journey.sessions", 2, wait, settle)
        .await
        .unwrap();
    sessions.sort_by(|a, b| a.customer_id.cmp(&b.customer_id));
    let counts: Vec<_> = sessions
        .iter()
        .map(|s| (s.customer_id.as_str(), s.event_count))
        .collect();
    assert_eq!(counts, [("alice", 1), ("carol", 2)]);
    let alerts = collect::<Alert>(&kafka, "journey.alerts", 1, wait, settle)
        .await
        .unwrap();
    assert_eq!(alerts[0].rule, "detractor_feedback");
    pipeline.shutdown().await.unwrap();
}

/// A stand-in Confluent registry that wants `Authorization: Basic` for
/// `journey:s3cret`, over plain HTTP or TLS: it serves schema 7 and
/// registers any schema as 7. Every `Authorization` header it saw is kept.
struct FakeRegistry {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

const USER: &str = "journey";
const PASSWORD: &str = "s3cret-registry-password";

impl FakeRegistry {
    fn start(tls: Option<Arc<rustls::ServerConfig>>) -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        // Serves until the test process ends.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                match &tls {
                    None => serve(stream, &log),
                    Some(config) => {
                        let Ok(connection) = rustls::ServerConnection::new(Arc::clone(config))
                        else {
                            continue;
                        };
                        serve(rustls::StreamOwned::new(connection, stream), &log);
                    }
                }
            }
        });
        FakeRegistry { addr, seen }
    }

    fn authorizations(&self) -> Vec<Option<String>> {
        self.seen.lock().unwrap().clone()
    }
}

/// Answers one request on `stream`; I/O errors (a refused handshake) end it.
fn serve<S: Read + Write>(stream: S, seen: &Mutex<Vec<Option<String>>>) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut authorization = None;
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.trim_end().split_once(':') {
            match name.to_ascii_lowercase().as_str() {
                "authorization" => authorization = Some(value.trim().to_string()),
                "content-length" => length = value.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    seen.lock().unwrap().push(authorization.clone());
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    let (status, body) = if authorization.as_deref() != Some(expected.as_str()) {
        (
            "401 Unauthorized",
            r#"{"error_code":401,"message":"Unauthorized"}"#,
        )
    } else if request_line.starts_with("GET /schemas/ids/7 ") {
        ("200 OK", r#"{"schema":"\"string\""}"#)
    } else if request_line.starts_with("POST /subjects/") {
        ("200 OK", r#"{"id":7}"#)
    } else {
        (
            "404 Not Found",
            r#"{"error_code":40403,"message":"Schema not found"}"#,
        )
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = reader.into_inner();
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
}

fn registry_config(
    url: String,
    password: &str,
    ca_file: Option<std::path::PathBuf>,
) -> KafkaConfig {
    KafkaConfig {
        schema_registry_url: Some(url),
        schema_registry_username: Some(USER.into()),
        schema_registry_password: Some(Secret::new(password)),
        schema_registry_ca_file: ca_file,
        ..KafkaConfig::default()
    }
}

fn client(kafka: &KafkaConfig) -> RegistryClient {
    RegistryClient::from_config(kafka)
        .expect("a usable config")
        .expect("a registry URL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_client_authenticates_with_basic_auth() {
    let registry = FakeRegistry::start(None);
    let url = format!("http://{}", registry.addr);
    let good = registry_config(url.clone(), PASSWORD, None);

    let fetched = tokio::task::spawn_blocking({
        let good = good.clone();
        move || client(&good).schema_by_id(7).map(|s| s.canonical_form())
    })
    .await
    .unwrap();
    assert_eq!(fetched.unwrap(), r#""string""#);
    // Start-up registers the contract's schemas with the same credentials.
    let codec = pipeline_codec(&good, &TopicsConfig::default(), &CancellationToken::new())
        .await
        .unwrap();
    assert!(codec.is_some());
    let seen = registry.authorizations();
    assert!(seen.len() >= 7, "{seen:?}");
    assert!(seen
        .iter()
        .all(|a| a.as_deref().is_some_and(|a| a.starts_with("Basic "))));

    // Refused credentials stop start-up at once, without echoing the password.
    for (name, kafka) in [
        (
            "a wrong password",
            registry_config(url.clone(), "wrong-password", None),
        ),
        (
            "no credentials",
            KafkaConfig {
                schema_registry_url: Some(url.clone()),
                ..KafkaConfig::default()
            },
        ),
    ] {
        let err = tokio::time::timeout(
            Duration::from_secs(30),
            pipeline_codec(&kafka, &TopicsConfig::default(), &CancellationToken::new()),
        )
        .await
        .expect("refused credentials are not retried")
        .err()
        .unwrap_or_else(|| panic!("{name} was let in"));
        let message = format!("{err:#}");
        assert!(message.contains("credentials"), "{name}: {message}");
        assert!(!message.contains("wrong-password"), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_client_trusts_a_private_ca_over_https() {
    let pki = TestPki::new();
    let registry = FakeRegistry::start(Some(pki.server_config()));
    let https = format!("https://{}", registry.addr);

    let trusted = registry_config(https.clone(), PASSWORD, Some(pki.ca_file()));
    let fetched = tokio::task::spawn_blocking(move || {
        client(&trusted).schema_by_id(7).map(|s| s.canonical_form())
    })
    .await
    .unwrap();
    assert_eq!(fetched.unwrap(), r#""string""#);
    let seen = registry.authorizations();
    assert_eq!(seen.len(), 1, "{seen:?}");

    // Without the CA (the built-in public roots), the certificate is not
    // trusted; plain http to a TLS port gets no answer either. Both are
    // retryable outages to the client, and the server saw no request.
    for (kafka, why) in [
        (
            registry_config(https.clone(), PASSWORD, None),
            "certificate",
        ),
        (
            registry_config(format!("http://{}", registry.addr), PASSWORD, None),
            "",
        ),
    ] {
        let outcome = tokio::task::spawn_blocking(move || client(&kafka).schema_by_id(7))
            .await
            .unwrap();
        match outcome {
            Err(e @ RegistryError::Unavailable(_)) => {
                assert!(e.to_string().contains(why), "{e}");
                assert!(!e.to_string().contains(PASSWORD), "{e}");
            }
            other => panic!("expected an unavailable registry, got {other:?}"),
        }
    }
    assert_eq!(registry.authorizations().len(), 1);
}
