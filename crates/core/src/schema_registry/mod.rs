//! Talking to a Confluent-compatible schema registry (Confluent's, or the
//! embedded one in `journey-registry`): a blocking client and the REST API's
//! JSON bodies.

mod client;
pub mod wire;

pub use client::{RegistryClient, RegistryError};
