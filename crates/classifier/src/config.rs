//! The `[classifier]` config section.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use journey_core::config::retention_ms;
use serde::{Deserialize, Serialize};

/// Settings of the classifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierConfig {
    /// Address of the HTTP endpoints, the query API among them.
    pub http_listen: SocketAddr,
    /// Kafka consumer group.
    pub group_id: String,
    /// Stage rules (TOML); unset: the built-in defaults (`deploy/stage_rules.toml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_file: Option<PathBuf>,
    /// Base URL other instances redirect queries to, e.g. `http://classifier-0:9103`;
    /// unset: `http://<http_listen>`, with this machine's host name when
    /// listening on every address (`0.0.0.0`), as in a container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertised_url: Option<String>,
    /// How long an anonymous visitor's profile is kept after its last
    /// activity (event time); identified customers' profiles are kept for good.
    #[serde(default = "default_visitor_retention", with = "humantime_serde")]
    pub visitor_retention: Duration,
}

fn default_visitor_retention() -> Duration {
    Duration::from_secs(90 * 24 * 3600)
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        ClassifierConfig {
            http_listen: SocketAddr::from(([127, 0, 0, 1], 9103)),
            group_id: "journey-classifier".into(),
            rules_file: None,
            advertised_url: None,
            visitor_retention: default_visitor_retention(),
        }
    }
}

impl ClassifierConfig {
    /// How long an anonymous visitor's profile is kept without activity, in
    /// ms, checked.
    pub fn visitor_retention_ms(&self) -> anyhow::Result<i64> {
        retention_ms("classifier.visitor_retention", self.visitor_retention)
    }

    /// The URL this instance advertises, checked.
    pub fn advertised_url(&self) -> anyhow::Result<String> {
        match &self.advertised_url {
            None if self.http_listen.ip().is_unspecified() => {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|name| name.trim().to_string())
                    .ok()
                    .filter(|name| !name.is_empty())
                    .unwrap_or_else(|| "127.0.0.1".into());
                Ok(format!("http://{host}:{}", self.http_listen.port()))
            }
            None => Ok(format!("http://{}", self.http_listen)),
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                Ok(url.trim_end_matches('/').to_string())
            }
            Some(url) => anyhow::bail!(
                "invalid configuration: field `classifier.advertised_url`: `{url}` is not an http(s) URL"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_listening_everywhere_advertises_its_host_name() {
        let config = ClassifierConfig {
            http_listen: SocketAddr::from(([0, 0, 0, 0], 9103)),
            ..ClassifierConfig::default()
        };
        let url = config.advertised_url().unwrap();
        assert!(url.ends_with(":9103") && !url.contains("0.0.0.0"), "{url}");
        let local = ClassifierConfig::default().advertised_url().unwrap();
        assert_eq!(local, "http://127.0.0.1:9103");
    }

    #[test]
    fn a_visitor_retention_under_a_day_is_refused_naming_the_field() {
        let ninety_days = ClassifierConfig::default().visitor_retention_ms().unwrap();
        assert_eq!(ninety_days, 90 * 24 * 3600 * 1000);
        let config = ClassifierConfig {
            visitor_retention: Duration::from_secs(3600),
            ..ClassifierConfig::default()
        };
        let error = config.visitor_retention_ms().unwrap_err().to_string();
        assert!(error.contains("`classifier.visitor_retention`"), "{error}");
    }
}
