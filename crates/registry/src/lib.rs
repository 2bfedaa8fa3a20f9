//! An embedded, Confluent-compatible Avro schema registry, and a client for it.
//!
//! The server speaks the part of Confluent's Schema Registry REST API that
//! Confluent's serializers use (register, look up, fetch by id, compatibility,
//! config), with Confluent's error codes, and keeps its state in a compacted
//! single-partition topic (`_schemas`) laid out like Confluent's. On start it
//! reads the topic to its end; every change is written to the topic (acks=all)
//! before it is applied and answered.
//!
//! It is a single writer: run one embedded registry per cluster (it does not
//! follow writes of another instance). Production clusters use Confluent's.
//!
//! ```no_run
//! use journey_registry::{Registry, RegistryClient, RegistryConfig};
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn example() -> anyhow::Result<()> {
//! let config = RegistryConfig {
//!     listen: "127.0.0.1:0".parse()?,
//!     ..RegistryConfig::default()
//! };
//! let registry = Registry::start(&config).await?;
//! let url = format!("http://{}", registry.local_addr()?);
//! let stop = CancellationToken::new();
//! tokio::spawn(registry.run(stop.clone()));
//!
//! let id = tokio::task::spawn_blocking(move || {
//!     let client = RegistryClient::new(&url)?;
//!     let id = client.register("orders-value", r#""string""#)?;
//!     client.schema_by_id(id)?;
//!     Ok::<_, journey_registry::RegistryError>(id)
//! })
//! .await??;
//! println!("registered as schema {id}");
//! stop.cancel();
//! # Ok(())
//! # }
//! ```

mod api;
mod catalog;
mod compatibility;
mod config;
mod record;
mod schema;
mod server;
mod store;

pub use config::RegistryConfig;
pub use journey_core::schema_registry::{wire, RegistryClient, RegistryError};
pub use server::{serve, Registry};
