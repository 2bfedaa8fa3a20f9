//! The `[sessionizer]` config section.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of the sessionizer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionizerConfig {
    /// Address of the HTTP endpoints.
    pub http_listen: SocketAddr,
    /// Kafka consumer group.
    pub group_id: String,
    /// Inactivity gap that ends a session (event time).
    #[serde(with = "humantime_serde")]
    pub gap: Duration,
    /// How long after a session's close late events may still join it.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
}

impl Default for SessionizerConfig {
    fn default() -> Self {
        SessionizerConfig {
            http_listen: SocketAddr::from(([127, 0, 0, 1], 9102)),
            group_id: "journey-sessionizer".into(),
            gap: Duration::from_secs(30 * 60),
            grace: Duration::from_secs(5 * 60),
        }
    }
}
