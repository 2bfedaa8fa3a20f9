//! The `[alerting]` config section.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use journey_core::config::retention_ms;
use serde::{Deserialize, Serialize};

use crate::webhook::WebhookConfig;

/// Settings of the alerting service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    /// Address of the HTTP endpoints.
    pub http_listen: SocketAddr,
    /// Kafka consumer group.
    pub group_id: String,
    /// A rule file read over the built-in rules (`deploy/alert_rules.toml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_file: Option<PathBuf>,
    /// This service's address as people reach it: webhook payloads' `externalURL`.
    pub external_url: String,
    /// Receivers notified of every alert in Alertmanager's webhook format.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// How long the context of a customer who never bought (an anonymous
    /// visitor's, most often) is kept after their last session ended (event
    /// time); buyers' contexts are kept for good.
    #[serde(default = "default_context_retention", with = "humantime_serde")]
    pub context_retention: Duration,
}

fn default_context_retention() -> Duration {
    Duration::from_secs(90 * 24 * 3600)
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            http_listen: SocketAddr::from(([127, 0, 0, 1], 9104)),
            group_id: "journey-alerting".into(),
            rules_file: None,
            external_url: "http://127.0.0.1:9104".into(),
            webhooks: Vec::new(),
            context_retention: default_context_retention(),
        }
    }
}

impl AlertingConfig {
    /// The webhook receivers, checked: each has a name of its own (it names
    /// the receiver's consumer group).
    pub fn webhooks(&self) -> anyhow::Result<&[WebhookConfig]> {
        let mut names = HashSet::new();
        for receiver in &self.webhooks {
            if receiver.name.trim().is_empty() {
                bail!("`alerting.webhooks`: a receiver has no `name`");
            }
            if !names.insert(receiver.name.as_str()) {
                bail!(
                    "`alerting.webhooks`: two receivers are named `{}`; each `name` must be its own (it names the receiver's consumer group)",
                    receiver.name
                );
            }
        }
        Ok(&self.webhooks)
    }

    /// [`AlertingConfig::context_retention`] in ms, checked.
    pub fn context_retention_ms(&self) -> anyhow::Result<i64> {
        retention_ms("alerting.context_retention", self.context_retention)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use journey_core::config::ConfigSource;

    fn section(text: &str) -> anyhow::Result<AlertingConfig> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        ConfigSource::load(Some(file.path()))?.section("alerting")
    }

    #[test]
    fn receivers_sharing_a_name_are_refused_naming_it() {
        let receiver = |name: &str| {
            format!("[[alerting.webhooks]]\nname = \"{name}\"\nurl = \"http://127.0.0.1:1/\"\n")
        };
        let two = section(&format!("{}{}", receiver("cx"), receiver("ops"))).unwrap();
        assert_eq!(two.webhooks().unwrap().len(), 2);
        let twice = section(&format!("{}{}", receiver("cx"), receiver("cx"))).unwrap();
        let err = twice.webhooks().unwrap_err().to_string();
        assert!(
            err.contains("alerting.webhooks") && err.contains("`cx`"),
            "{err}"
        );
        let blank = section(&receiver(" ")).unwrap();
        let err = blank.webhooks().unwrap_err().to_string();
        assert!(
            err.contains("alerting.webhooks") && err.contains("`name`"),
            "{err}"
        );
        // The bounded in-memory queue is gone: the alerts topic is the queue.
        let err = section(&format!("{}queue = 10\n", receiver("cx")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("queue"), "{err}");
    }

    #[test]
    fn a_context_retention_under_a_day_is_refused_naming_the_field() {
        let config = section("[alerting]\ncontext_retention = \"12h\"\n").unwrap();
        let err = config.context_retention_ms().unwrap_err().to_string();
        assert!(err.contains("`alerting.context_retention`"), "{err}");
        let ninety_days = AlertingConfig::default().context_retention_ms().unwrap();
        assert_eq!(ninety_days, 90 * 24 * 3600 * 1000);
    }
}
