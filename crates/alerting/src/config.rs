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
