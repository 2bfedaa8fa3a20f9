//! The `[ingest]` config section.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of the ingest service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Address of the HTTP endpoints.
    pub http_listen: SocketAddr,
    /// Kafka consumer group.
    pub group_id: String,
    /// How far in the future `occurred_at` may be (producer clock skew).
    #[serde(with = "humantime_serde")]
    pub max_future_skew: Duration,
    /// Events that occurred before this instant (ms since epoch) are refused.
    pub min_occurred_at: i64,
    /// Records larger than this many bytes are dead-lettered as too large.
    pub max_record_bytes: usize,
    /// A second copy of an event id within this time of the first is a
    /// duplicate: counted, not forwarded.
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    /// The downstream services that must report an erasure done before
    /// ingest confirms it (each one's name, as in its `service` field).
    pub erasure_services: Vec<String>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            http_listen: SocketAddr::from(([127, 0, 0, 1], 9101)),
            group_id: "journey-ingest".into(),
            max_future_skew: Duration::from_secs(300),
            // 2000-01-01T00:00:00Z
            min_occurred_at: 946_684_800_000,
            max_record_bytes: 1024 * 1024,
            dedup_window: Duration::from_secs(24 * 3600),
            erasure_services: vec!["sessionizer".into(), "classifier".into(), "alerting".into()],
        }
    }
}
