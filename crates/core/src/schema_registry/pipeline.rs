//! The codec a Journey process uses, from its config: with a schema registry,
//! the contract's schemas are registered under their topics' subjects
//! (Confluent's TopicNameStrategy, `<topic>-value`) and written with the ids
//! the registry gave them; records of any other id are decoded with the
//! writer schema fetched from the registry.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use super::{RegistryClient, RegistryError};
use crate::codec::{AvroRecord, Codec};
use crate::config::{KafkaConfig, TopicsConfig};
use crate::contract::{
    Alert, CustomerEvent, DeadLetter, ErasureConfirmation, ErasureProgress, ErasureRequest,
    ErasureTask, IdentityMerge, SessionSummary, StageChange,
};

/// Longest wait between attempts to reach the registry at start-up.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The subject each contract record is registered under, `<topic>-value`.
fn subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// The codec for `kafka`'s registry, or the built-in one without a registry.
/// Waits for an unreachable registry (with backoff) until `shutdown`; returns
/// `None` if shut down meanwhile. A schema the registry refuses (incompatible
/// with the subject's latest version) stops start-up with the reason.
pub async fn pipeline_codec(
    kafka: &KafkaConfig,
    topics: &TopicsConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Codec>> {
    let Some(client) = RegistryClient::from_config(kafka)? else {
        return Ok(Some(Codec::builtin()));
    };
    let client = Arc::new(client);
    let url = kafka.schema_registry_url.clone().unwrap_or_default();
    let mut backoff = Duration::from_millis(200);
    loop {
        let registering = Arc::clone(&client);
        let topics = topics.clone();
        let outcome = tokio::task::spawn_blocking(move || register(&registering, &topics))
            .await
            .context("registering schemas")?;
        match outcome {
            Ok(codec) => {
                tracing::info!(registry = url, "contract schemas registered");
                return Ok(Some(codec));
            }
            Err(e @ RegistryError::Unavailable(_)) => {
                tracing::warn!(registry = url, error = %e, retry_in_ms = backoff.as_millis() as u64, "schema registry unavailable");
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("registering the contract's schemas with {url}"))
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Registers every contract record under its topic's subject (the raw
/// events topic too, for producers) and builds the codec writing those ids.
fn register(client: &Arc<RegistryClient>, topics: &TopicsConfig) -> Result<Codec, RegistryError> {
    fn id<T: AvroRecord>(client: &RegistryClient, topic: &str) -> Result<u32, RegistryError> {
        client.register(&subject(topic), T::SCHEMA)
    }
    id::<CustomerEvent>(client, &topics.raw_events)?;
    let source: Arc<dyn crate::codec::SchemaSource> = client.clone();
    Ok(Codec::with_source(source)
        .with_writer_id::<CustomerEvent>(id::<CustomerEvent>(client, &topics.events)?)
        .with_writer_id::<IdentityMerge>(id::<IdentityMerge>(client, &topics.identities)?)
        .with_writer_id::<SessionSummary>(id::<SessionSummary>(client, &topics.sessions)?)
        .with_writer_id::<StageChange>(id::<StageChange>(client, &topics.stage_changes)?)
        .with_writer_id::<Alert>(id::<Alert>(client, &topics.alerts)?)
        .with_writer_id::<DeadLetter>(id::<DeadLetter>(client, &topics.dead_letters)?)
        .with_writer_id::<ErasureRequest>(id::<ErasureRequest>(client, &topics.erasure_requests)?)
        .with_writer_id::<ErasureTask>(id::<ErasureTask>(client, &topics.erasure_tasks)?)
        .with_writer_id::<ErasureProgress>(id::<ErasureProgress>(client, &topics.erasure_progress)?)
        .with_writer_id::<ErasureConfirmation>(id::<ErasureConfirmation>(
            client,
            &topics.erasure_confirmations,
        )?))
}
