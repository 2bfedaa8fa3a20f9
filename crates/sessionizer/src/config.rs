//! The `[sessionizer]` config section.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::window::Windows;

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
    /// Longest a session may last (last event minus first); longer activity is split.
    #[serde(with = "humantime_serde")]
    pub max_session: Duration,
    /// Also emit interim summaries (`interim = true`) of sessions still open.
    pub early_updates: bool,
    /// With `early_updates`, the least stream time between two interim summaries of a session.
    #[serde(with = "humantime_serde")]
    pub early_update_interval: Duration,
}

impl Default for SessionizerConfig {
    fn default() -> Self {
        SessionizerConfig {
            http_listen: SocketAddr::from(([127, 0, 0, 1], 9102)),
            group_id: "journey-sessionizer".into(),
            gap: Duration::from_secs(30 * 60),
            grace: Duration::from_secs(5 * 60),
            max_session: Duration::from_secs(24 * 60 * 60),
            early_updates: false,
            early_update_interval: Duration::from_secs(60),
        }
    }
}

impl SessionizerConfig {
    /// The windows these settings describe, or an error naming the bad field.
    pub fn windows(&self) -> anyhow::Result<Windows> {
        let invalid = |field: &str, why: &str| {
            anyhow::anyhow!("invalid configuration: field `sessionizer.{field}`: {why}")
        };
        let millis = |field: &str, d: Duration| {
            i64::try_from(d.as_millis()).map_err(|_| invalid(field, "too large"))
        };
        let windows = Windows {
            gap: millis("gap", self.gap)?,
            grace: millis("grace", self.grace)?,
            max_session: millis("max_session", self.max_session)?,
        };
        if windows.gap <= 0 {
            return Err(invalid("gap", "must be at least 1ms"));
        }
        if windows.max_session < windows.gap {
            return Err(invalid("max_session", "must be at least the gap"));
        }
        if self.early_updates && self.early_update_interval.is_zero() {
            return Err(invalid(
                "early_update_interval",
                "must be at least 1ms when early_updates is on",
            ));
        }
        Ok(windows)
    }

    /// The least stream time between two interim summaries of a session, if they are on.
    pub fn early_updates(&self) -> Option<i64> {
        self.early_updates
            .then(|| self.early_update_interval.as_millis().min(i64::MAX as u128) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let windows = SessionizerConfig::default().windows().unwrap();
        assert_eq!(
            (windows.gap, windows.grace, windows.max_session),
            (1_800_000, 300_000, 86_400_000)
        );
    }

    #[test]
    fn a_bad_value_names_its_field() {
        type Breaks = fn(&mut SessionizerConfig);
        let cases: [(&str, Breaks); 3] = [
            ("sessionizer.gap", |c| c.gap = Duration::ZERO),
            ("sessionizer.max_session", |c| {
                c.max_session = Duration::from_secs(60)
            }),
            ("sessionizer.early_update_interval", |c| {
                c.early_updates = true;
                c.early_update_interval = Duration::ZERO;
            }),
        ];
        for (field, breaks) in cases {
            let mut config = SessionizerConfig::default();
            breaks(&mut config);
            let err = config.windows().unwrap_err().to_string();
            assert!(err.contains(&format!("`{field}`")), "{field}: {err}");
        }
    }
}
