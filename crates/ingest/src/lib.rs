//! Ingest: the pipeline's front door.
//!
//! Reads producers' Confluent-framed Avro events, checks them against the
//! contract and its semantic rules, and republishes valid events keyed by
//! customer (the anonymous id while the customer is unknown), with
//! `received_at` set. Every record that fails goes to the dead-letter topic
//! with the reason; nothing is dropped silently.
//!
//! ```no_run
//! # async fn f(source: journey_core::config::ConfigSource) -> anyhow::Result<()> {
//! journey_ingest::run(source, tokio_util::sync::CancellationToken::new()).await
//! # }
//! ```

mod config;
mod processor;
mod validate;

pub use config::IngestConfig;
pub use processor::Ingest;
pub use validate::{validate, Limits};

use journey_core::config::ConfigSource;
use journey_core::service::{self, ServiceSpec};
use tokio_util::sync::CancellationToken;

/// Service name: config section, metric prefix and state directory.
pub const NAME: &str = "ingest";

/// Runs ingest until `shutdown` is cancelled.
pub async fn run(source: ConfigSource, shutdown: CancellationToken) -> anyhow::Result<()> {
    let common = source.common()?;
    let config: IngestConfig = source.section(NAME)?;
    let registry = journey_core::metrics::registry(NAME);
    let processor = Ingest::new(&config, common.topics.events.clone(), &registry);
    let spec = ServiceSpec {
        name: NAME,
        common: &common,
        http_listen: config.http_listen,
        group_id: config.group_id.clone(),
        store: "state",
        inputs: vec![common.topics.raw_events.clone()],
        registry,
        routes: Default::default(),
    };
    service::run(spec, processor, shutdown).await
}
