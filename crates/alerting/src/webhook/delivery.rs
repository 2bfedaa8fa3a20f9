//! Delivery of one notification to one receiver: attempts with backoff
//! until it is accepted or `max_attempts` have failed, each counted and
//! logged. A stop signal ends the wait between attempts.

use std::sync::mpsc::{Receiver, RecvTimeoutError};

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use super::backlog::Backlog;
use super::WebhookConfig;

/// How the delivery of one notification ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver accepted it (a 2xx answer).
    Delivered,
    /// Every attempt failed.
    Abandoned,
    /// Stopped before it was delivered or abandoned: it is to be sent again.
    Stopped,
}

/// Webhook delivery's metrics (`journey_alerting_webhook_...`), by receiver.
#[derive(Clone)]
pub struct DeliveryMetrics {
    notifications: IntCounterVec,
    failures: IntCounterVec,
    /// Each receiver's alerts yet to deal with.
    pub(crate) backlog: Backlog,
}

impl DeliveryMetrics {
    /// Creates and registers the metrics.
    pub fn new(registry: &Registry) -> Self {
        let counters = |name: &str, help: &str, labels: &[&str]| {
            journey_core::metrics::register(
                registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        DeliveryMetrics {
            notifications: counters(
                "webhook_notifications_total",
                "Webhook notifications by receiver and outcome: delivered, or abandoned (attempts exhausted, or the alert record unreadable).",
                &["receiver", "outcome"],
            ),
            failures: counters(
                "webhook_failures_total",
                "Failed webhook delivery attempts, by receiver.",
                &["receiver"],
            ),
            backlog: journey_core::metrics::register(registry, Backlog::new()),
        }
    }
}

/// Posts notifications to one receiver.
pub struct Delivery {
    config: WebhookConfig,
    agent: ureq::Agent,
    delivered: IntCounter,
    abandoned: IntCounter,
    failures: IntCounter,
}

impl Delivery {
    /// Delivery to the receiver of `config`, counted in `metrics`.
    pub fn new(config: &WebhookConfig, metrics: &DeliveryMetrics) -> Self {
        let outcome = |o: &str| {
            metrics
                .notifications
                .with_label_values(&[config.name.as_str(), o])
        };
        Delivery {
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(config.timeout))
                .http_status_as_error(false)
                .build()
                .into(),
            delivered: outcome("delivered"),
            abandoned: outcome("abandoned"),
            failures: metrics.failures.with_label_values(&[config.name.as_str()]),
            config: config.clone(),
        }
    }

    /// The receiver's name.
    pub fn receiver(&self) -> &str {
        &self.config.name
    }

    /// Posts `body` until the receiver accepts it or `max_attempts` have
    /// failed; stops waiting between attempts once `stop`'s sender is gone
    /// (or sends).
    pub fn deliver(&self, body: &str, stop: &Receiver<()>) -> Outcome {
        let config = &self.config;
        let mut attempt = 1;
        loop {
            let error = match post(&self.agent, &config.url, body) {
                Ok(()) => {
                    self.delivered.inc();
                    return Outcome::Delivered;
                }
                Err(error) => error,
            };
            self.failures.inc();
            if attempt >= config.max_attempts {
                self.abandon(&format!("{attempt} attempts failed, the last: {error}"));
                return Outcome::Abandoned;
            }
            let wait = config.backoff(attempt);
            tracing::warn!(
                receiver = config.name,
                attempt,
                retry_in = ?wait,
                %error,
                "webhook delivery failed, retrying"
            );
            if stop.recv_timeout(wait) != Err(RecvTimeoutError::Timeout) {
                return Outcome::Stopped;
            }
            attempt += 1;
        }
    }

    /// Counts and logs a notification given up for `reason`.
    pub fn abandon(&self, reason: &str) {
        self.abandoned.inc();
        tracing::error!(
            receiver = self.config.name,
            reason,
            "webhook notification abandoned (the alert is on the alerts topic)"
        );
    }
}

fn post(agent: &ureq::Agent, url: &str, body: &str) -> Result<(), String> {
    let response = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body)
        .map_err(|e| e.to_string())?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::thread;
    use std::time::{Duration, Instant};

    use super::*;

    /// A receiver answering 503 to the first `failures` requests, then 200;
    /// sends each request body it accepted (answered 200) on the channel.
    fn flaky_receiver(failures: usize) -> (String, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (accepted, bodies) = mpsc::channel();
        thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let status = if n < failures {
                    "503 Service Unavailable"
                } else {
                    "200 OK"
                };
                write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
                if n >= failures {
                    accepted.send(String::from_utf8(body).unwrap()).unwrap();
                }
            }
        });
        (url, bodies)
    }

    fn fast(name: &str, url: &str) -> WebhookConfig {
        WebhookConfig {
            initial_backoff: Duration::from_millis(20),
            timeout: Duration::from_secs(2),
            ..WebhookConfig::new(name, url)
        }
    }

    /// A URL nothing listens on: every attempt fails at once.
    fn dead_url() -> String {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("http://127.0.0.1:{port}/")
    }

    fn count(metrics: &DeliveryMetrics, receiver: &str, outcome: &str) -> u64 {
        metrics
            .notifications
            .with_label_values(&[receiver, outcome])
            .get()
    }

    #[test]
    fn a_receiver_that_fails_then_succeeds_gets_the_notification_after_retries() {
        let (url, bodies) = flaky_receiver(2);
        let metrics = DeliveryMetrics::new(&Registry::new());
        let (_running, stop) = mpsc::channel();
        let delivery = Delivery::new(&fast("cx", &url), &metrics);
        assert_eq!(delivery.deliver("{\"n\":1}", &stop), Outcome::Delivered);
        let body = bodies.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(body, "{\"n\":1}");
        assert_eq!(count(&metrics, "cx", "delivered"), 1);
        assert_eq!(metrics.failures.with_label_values(&["cx"]).get(), 2);
    }

    #[test]
    fn a_dead_receiver_is_abandoned_after_its_attempts_and_counted() {
        let config = WebhookConfig {
            max_attempts: 3,
            ..fast("dead", &dead_url())
        };
        let metrics = DeliveryMetrics::new(&Registry::new());
        let (_running, stop) = mpsc::channel();
        let delivery = Delivery::new(&config, &metrics);
        assert_eq!(delivery.deliver("{}", &stop), Outcome::Abandoned);
        assert_eq!(count(&metrics, "dead", "abandoned"), 1);
        assert_eq!(count(&metrics, "dead", "delivered"), 0);
        assert_eq!(metrics.failures.with_label_values(&["dead"]).get(), 3);
    }

    #[test]
    fn a_stop_ends_the_wait_between_attempts_without_abandoning() {
        let config = WebhookConfig {
            initial_backoff: Duration::from_secs(60),
            ..fast("dead", &dead_url())
        };
        let metrics = DeliveryMetrics::new(&Registry::new());
        let (running, stop) = mpsc::channel::<()>();
        let delivery = Delivery::new(&config, &metrics);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(200));
            drop(running);
        });
        let started = Instant::now();
        assert_eq!(delivery.deliver("{}", &stop), Outcome::Stopped);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "waited out the backoff"
        );
        assert_eq!(count(&metrics, "dead", "abandoned"), 0);
        assert_eq!(metrics.failures.with_label_values(&["dead"]).get(), 1);
    }
}
