//! Settings of the embedded registry: the `[registry]` config section, plus
//! the cluster from `[kafka]`.

use std::net::SocketAddr;

use journey_core::config::KafkaConfig;
use serde::{Deserialize, Serialize};

/// Where the registry listens and where it keeps its schemas.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Address of the REST API; port 0 picks a free one (see [`crate::Registry::local_addr`]).
    pub listen: SocketAddr,
    /// Compacted single-partition topic holding schemas and compatibility levels.
    pub topic: String,
    /// Whether `journey run` starts this registry beside the services.
    pub embedded: bool,
    /// The cluster the topic lives on (the `[kafka]` section).
    #[serde(skip)]
    pub kafka: KafkaConfig,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8081)),
            topic: "_schemas".into(),
            embedded: false,
            kafka: KafkaConfig::default(),
        }
    }
}
