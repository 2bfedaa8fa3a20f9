//! Delivery of notifications: one thread and one bounded queue per receiver,
//! so a slow or dead receiver never holds up the processing loop or another
//! receiver. The alert itself is already on the alerts topic; a notification
//! that cannot be queued or delivered is counted and logged, never waited for.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::thread;

use journey_core::contract::Alert;
use journey_core::telemetry::{customer_tag, CustomerTag};
use prometheus::IntCounter;

use super::payload::notification;
use super::WebhookConfig;
use crate::metrics::AlertMetrics;

/// Queues alert notifications for every configured receiver.
pub struct Notifier {
    receivers: Vec<Queue>,
    external_url: String,
}

struct Queue {
    name: String,
    sender: SyncSender<String>,
    dropped: IntCounter,
}

/// A receiver's delivery thread's counters.
struct Outcomes {
    delivered: IntCounter,
    abandoned: IntCounter,
    failures: IntCounter,
}

impl Notifier {
    /// Starts a delivery thread per receiver. The threads end once the
    /// notifier is dropped and their queues are empty.
    pub fn start(
        receivers: &[WebhookConfig],
        external_url: &str,
        metrics: &AlertMetrics,
    ) -> std::io::Result<Notifier> {
        let mut queues = Vec::new();
        for config in receivers {
            let (sender, queue) = sync_channel(config.queue.get());
            let outcome = |o: &str| {
                metrics
                    .webhook_notifications
                    .with_label_values(&[config.name.as_str(), o])
            };
            let outcomes = Outcomes {
                delivered: outcome("delivered"),
                abandoned: outcome("abandoned"),
                failures: metrics
                    .webhook_failures
                    .with_label_values(&[config.name.as_str()]),
            };
            let worker = config.clone();
            thread::Builder::new()
                .name(format!("webhook-{}", config.name))
                .spawn(move || deliver(&worker, &queue, &outcomes))?;
            queues.push(Queue {
                name: config.name.clone(),
                sender,
                dropped: outcome("dropped"),
            });
        }
        Ok(Notifier {
            receivers: queues,
            external_url: external_url.to_string(),
        })
    }

    /// Queues a notification of `alert` for every receiver without waiting;
    /// `ends_at` is the resolution time of a resolved alert.
    pub fn notify(&self, alert: &Alert, ends_at: Option<i64>) {
        for receiver in &self.receivers {
            let body = notification(alert, &receiver.name, &self.external_url, ends_at).to_string();
            match receiver.sender.try_send(body) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    receiver.dropped.inc();
                    tracing::warn!(
                        receiver = receiver.name,
                        alert_id = alert.alert_id,
                        rule = alert.rule,
                        customer = customer_field(alert),
                        "webhook queue full: notification dropped (the alert is on the alerts topic)"
                    );
                }
                Err(TrySendError::Disconnected(_)) => {
                    receiver.dropped.inc();
                    tracing::error!(
                        receiver = receiver.name,
                        alert_id = alert.alert_id,
                        customer = customer_field(alert),
                        "webhook delivery thread is gone: notification dropped"
                    );
                }
            }
        }
    }
}

/// The log field of `alert`'s customer: its tag, never the id.
fn customer_field(alert: &Alert) -> Option<tracing::field::DisplayValue<CustomerTag>> {
    alert
        .customer_id
        .as_deref()
        .map(|id| tracing::field::display(customer_tag(id)))
}

/// Delivers queued notifications one after the other, each with retries.
fn deliver(config: &WebhookConfig, queue: &Receiver<String>, outcomes: &Outcomes) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(config.timeout))
        .http_status_as_error(false)
        .build()
        .into();
    for body in queue {
        let mut attempt = 1;
        loop {
            match post(&agent, &config.url, &body) {
                Ok(()) => {
                    outcomes.delivered.inc();
                    break;
                }
                Err(error) => {
                    outcomes.failures.inc();
                    if attempt >= config.max_attempts {
                        outcomes.abandoned.inc();
                        tracing::error!(
                            receiver = config.name,
                            attempts = attempt,
                            %error,
                            "webhook notification abandoned"
                        );
                        break;
                    }
                    let wait = config.backoff(attempt);
                    tracing::warn!(
                        receiver = config.name,
                        attempt,
                        retry_in = ?wait,
                        %error,
                        "webhook delivery failed, retrying"
                    );
                    thread::sleep(wait);
                    attempt += 1;
                }
            }
        }
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
    use std::time::{Duration, Instant};

    use journey_core::contract::AlertStatus;
    use prometheus::Registry;
    use serde_json::Value;

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

    fn alert() -> Alert {
        Alert {
            alert_id: "a".repeat(32),
            rule: "cart_abandonment".into(),
            status: AlertStatus::Firing,
            customer_id: Some("alice".into()),
            summary: "Cart abandoned".into(),
            ..Alert::default()
        }
    }

    fn fast(name: &str, url: &str) -> WebhookConfig {
        WebhookConfig {
            initial_backoff: Duration::from_millis(20),
            timeout: Duration::from_secs(2),
            ..WebhookConfig::new(name, url)
        }
    }

    #[test]
    fn a_receiver_that_fails_then_succeeds_gets_the_notification_after_retries() {
        let (url, bodies) = flaky_receiver(2);
        let metrics = AlertMetrics::new(&Registry::new());
        let notifier =
            Notifier::start(&[fast("cx", &url)], "http://alerting:9104", &metrics).unwrap();
        notifier.notify(&alert(), None);
        let body: Value =
            serde_json::from_str(&bodies.recv_timeout(Duration::from_secs(10)).unwrap()).unwrap();
        assert_eq!(body["version"], "4");
        assert_eq!(body["receiver"], "cx");
        assert_eq!(body["alerts"][0]["labels"]["customer_id"], "alice");
        let delivered = metrics
            .webhook_notifications
            .with_label_values(&["cx", "delivered"]);
        let deadline = Instant::now() + Duration::from_secs(5);
        while delivered.get() == 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(delivered.get(), 1);
        assert_eq!(metrics.webhook_failures.with_label_values(&["cx"]).get(), 2);
    }

    #[test]
    fn a_dead_receiver_neither_blocks_nor_hides_its_losses() {
        // Nothing listens on this port: every attempt fails at once.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = WebhookConfig {
            queue: std::num::NonZeroUsize::MIN,
            max_attempts: 2,
            ..fast("dead", &format!("http://127.0.0.1:{port}/"))
        };
        let metrics = AlertMetrics::new(&Registry::new());
        let notifier = Notifier::start(&[config], "http://alerting:9104", &metrics).unwrap();
        let started = Instant::now();
        for _ in 0..50 {
            notifier.notify(&alert(), None);
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "notify waited on the receiver"
        );
        let dropped = metrics
            .webhook_notifications
            .with_label_values(&["dead", "dropped"])
            .get();
        assert!(dropped >= 48, "dropped {dropped}");
        let abandoned = metrics
            .webhook_notifications
            .with_label_values(&["dead", "abandoned"]);
        let deadline = Instant::now() + Duration::from_secs(5);
        while abandoned.get() + dropped < 50 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(abandoned.get() + dropped, 50);
        assert_eq!(
            metrics.webhook_failures.with_label_values(&["dead"]).get(),
            2 * abandoned.get()
        );
    }
}
