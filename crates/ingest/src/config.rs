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
    /// Records larger than this many bytes are dead-lettered as too large; at
    /// most the producers' `message.max.bytes` less 64 KiB (`FORWARD_HEADROOM`), so
    /// a record ingest forwards is never one the producer refuses.
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
            max_record_bytes: 900 * 1024,
            dedup_window: Duration::from_secs(24 * 3600),
            erasure_services: vec!["sessionizer".into(), "classifier".into(), "alerting".into()],
        }
    }
}

/// Bytes a forwarded event may grow by (received-at, a stitched customer id,
/// record overhead) over the record it came from.
pub const FORWARD_HEADROOM: usize = 64 * 1024;

impl IngestConfig {
    /// Checks what serde cannot: `max_record_bytes` against the producers'
    /// `message_max_bytes`. The error names the field.
    pub fn check(&self, message_max_bytes: usize) -> anyhow::Result<()> {
        let most = message_max_bytes.saturating_sub(FORWARD_HEADROOM);
        anyhow::ensure!(
            self.max_record_bytes <= most,
            "invalid configuration: field `ingest.max_record_bytes`: {} is more than the \
             producers' message.max.bytes ({message_max_bytes}) less {FORWARD_HEADROOM} bytes \
             of headroom ({most}): a record that large could not be forwarded",
            self.max_record_bytes
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_record_bytes_must_leave_room_under_the_producers_limit() {
        let config = IngestConfig::default();
        config.check(1_000_000).unwrap();
        let too_large = IngestConfig {
            max_record_bytes: 1024 * 1024,
            ..IngestConfig::default()
        };
        let err = too_large.check(1_000_000).unwrap_err().to_string();
        assert!(err.contains("ingest.max_record_bytes"), "{err}");
        too_large.check(2_000_000).unwrap();
    }
}
