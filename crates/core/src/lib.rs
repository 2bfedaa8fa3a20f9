//! Shared core of the Journey services: the event contract and its Avro codec,
//! configuration, the Kafka processing runtime, RocksDB state, metrics and HTTP.
//!
//! A service is a [`runtime::Processor`]: plain logic over decoded records and
//! per-partition state. The runtime owns everything else: polling, producing,
//! committing state and offsets, stream time, dead letters, metrics, shutdown.
//!
//! ```no_run
//! use journey_core::runtime::{Context, InputRecord, ProcessError, Processor};
//!
//! struct Count;
//! impl Processor for Count {
//!     fn process(&mut self, record: &InputRecord<'_>, ctx: &mut Context<'_>) -> Result<(), ProcessError> {
//!         let key = record.key.unwrap_or_default();
//!         let seen: u64 = ctx.state().get(key)?.unwrap_or(0);
//!         ctx.state().put(key, &(seen + 1));
//!         Ok(())
//!     }
//! }
//! ```

#[cfg(feature = "jemalloc")]
mod allocator;
pub mod bloom;
pub mod codec;
pub mod config;
pub mod contract;
pub mod erasure;
pub mod http;
pub mod ids;
pub mod kafka;
pub mod metrics;
pub mod runtime;
pub mod schema_registry;
pub mod service;
pub mod state;
pub mod telemetry;
