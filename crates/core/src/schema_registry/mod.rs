//! Talking to a Confluent-compatible schema registry (Confluent's, or the
//! embedded one in `journey-registry`): a blocking client and the REST API's
//! JSON bodies.

mod client;
mod pipeline;
pub mod wire;

pub use client::{RegistryClient, RegistryError};
pub use pipeline::pipeline_codec;
