//! The `[alerting]` config section.

use std::net::SocketAddr;
use std::path::PathBuf;

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
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            http_listen: SocketAddr::from(([127, 0, 0, 1], 9104)),
            group_id: "journey-alerting".into(),
            rules_file: None,
            external_url: "http://127.0.0.1:9104".into(),
            webhooks: Vec::new(),
        }
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
    fn a_webhook_queue_of_zero_is_refused_by_name() {
        let webhook = "[[alerting.webhooks]]\nname = \"cx\"\nurl = \"http://127.0.0.1:1/\"\n";
        let config = section(webhook).unwrap();
        assert_eq!(config.webhooks[0].queue.get(), 10_000);
        let err = section(&format!("{webhook}queue = 0\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("alerting.webhooks") && err.contains("queue"),
            "{err}"
        );
    }
}
