//! The `[alerting]` config section.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of the alerting service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    /// Address of the HTTP endpoints.
    pub http_listen: SocketAddr,
    /// Kafka consumer group.
    pub group_id: String,
    /// At most one alert per customer and rule within this time (event time).
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// NPS at or below this is a detractor.
    pub detractor_max_nps: i32,
    /// CSAT at or below this is a detractor.
    pub detractor_max_csat: i32,
    /// What the front line should do about a detractor.
    pub detractor_action_plan: String,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            http_listen: SocketAddr::from(([127, 0, 0, 1], 9104)),
            group_id: "journey-alerting".into(),
            cooldown: Duration::from_secs(24 * 3600),
            detractor_max_nps: 6,
            detractor_max_csat: 2,
            detractor_action_plan:
                "Call the customer back within 24 hours, acknowledge the issue, \
                                    and log the root cause."
                    .into(),
        }
    }
}
