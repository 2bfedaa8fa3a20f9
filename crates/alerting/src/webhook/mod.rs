//! Webhook receivers: alerts as notifications in Alertmanager's webhook
//! format, relayed from the alerts topic off the processing loop, with
//! retries.

mod backlog;
mod delivery;
mod payload;
mod relay;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use delivery::DeliveryMetrics;
pub use payload::{notification, rfc3339};
pub use relay::Relays;

/// One webhook receiver (`[[alerting.webhooks]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Receiver name: the payload's `receiver`, the metrics' `receiver` label
    /// and the relay's consumer group (`<group_id>-webhook-<name>`).
    pub name: String,
    /// `http://` URL notifications are POSTed to.
    pub url: String,
    /// Attempts per notification before it is abandoned (and counted).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Wait after the first failure; doubled after each further one.
    #[serde(default = "default_initial_backoff", with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Time allowed for one attempt, connecting included.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_max_attempts() -> u32 {
    8
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(500)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(60)
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

impl WebhookConfig {
    /// A receiver at `url` with the default retries and timeouts.
    pub fn new(name: &str, url: &str) -> WebhookConfig {
        WebhookConfig {
            name: name.to_string(),
            url: url.to_string(),
            max_attempts: default_max_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            timeout: default_timeout(),
        }
    }

    /// The wait before attempt `attempt` + 1 after `attempt` failures.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_maximum() {
        let config = WebhookConfig::new("r", "http://127.0.0.1:1/");
        let waits: Vec<u64> = (1..=9)
            .map(|a| config.backoff(a).as_millis() as u64)
            .collect();
        assert_eq!(
            waits,
            [500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]
        );
    }
}
