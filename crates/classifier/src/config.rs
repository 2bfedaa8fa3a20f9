//! The `[classifier]` config section.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Settings of the classifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierConfig {
    /// Address of the HTTP endpoints.
    pub http_listen: SocketAddr,
    /// Kafka consumer group.
    pub group_id: String,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        ClassifierConfig {
            http_listen: SocketAddr::from(([127, 0, 0, 1], 9103)),
            group_id: "journey-classifier".into(),
        }
    }
}
