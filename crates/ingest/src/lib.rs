//! Ingest: the pipeline's front door.
//!
//! Reads producers' Confluent-framed Avro events, checks them against the
//! contract and its semantic rules, drops repeats of an event id within the
//! dedup window, stitches anonymous visitors to customers, and republishes
//! valid events keyed by customer (the anonymous id while the customer is
//! unknown), with `received_at` set. When a visitor is identified, an
//! identity-merge record tells downstream services to fold the anonymous
//! history into the customer. Every record that fails goes to the
//! dead-letter topic with the reason; nothing is dropped silently.
//!
//! ```no_run
//! # async fn f(source: journey_core::config::ConfigSource) -> anyhow::Result<()> {
//! journey_ingest::run(source, tokio_util::sync::CancellationToken::new()).await
//! # }
//! ```

mod config;
mod dedup;
mod erasure;
mod identity;
mod processor;
mod validate;

pub use config::IngestConfig;
pub use identity::{is_placeholder, visitor_key};
pub use processor::{Ingest, IngestTopics};
pub use validate::{validate, Limits};

use journey_core::config::ConfigSource;
use journey_core::service::{self, ServiceSpec};
use journey_core::state::Workload;
use tokio_util::sync::CancellationToken;

/// Service name: config section, metric prefix and state directory.
pub const NAME: &str = "ingest";

/// Runs ingest until `shutdown` is cancelled.
pub async fn run(source: ConfigSource, shutdown: CancellationToken) -> anyhow::Result<()> {
    let common = source.common()?;
    let config: IngestConfig = source.section(NAME)?;
    config.check(journey_core::kafka::max_message_bytes(&common.kafka))?;
    let registry = journey_core::metrics::registry(NAME);
    let topics = IngestTopics::new(&common.topics, &config.group_id);
    let processor = Ingest::new(&config, topics.clone(), &registry);
    let spec = ServiceSpec {
        name: NAME,
        common: &common,
        http_listen: config.http_listen,
        group_id: config.group_id.clone(),
        store: "state",
        // Event ids and links are written once and read again only when
        // their Bloom filter cannot rule them out: caching them costs more
        // than it saves.
        workload: Workload::WriteOnce,
        inputs: vec![
            common.topics.raw_events.clone(),
            topics.repartition.clone(),
            topics.erasure_requests.clone(),
            topics.erasure_broadcast.clone(),
            topics.erasure_progress.clone(),
        ],
        internal_inputs: vec![topics.repartition, topics.erasure_broadcast.clone()],
        control_inputs: vec![
            topics.erasure_requests,
            topics.erasure_broadcast,
            topics.erasure_progress,
        ],
        registry,
        routes: Default::default(),
    };
    service::run(spec, processor, shutdown).await
}
