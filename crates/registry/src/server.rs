//! Start-up and serving: load the topic, bind, serve until shut down.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::api::{self, Shared};
use crate::config::RegistryConfig;
use crate::store::Store;

/// A registry with its state read from the topic and its port bound, not yet serving.
pub struct Registry {
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
}

impl Registry {
    /// Creates the schemas topic if missing, reads it, and binds the listen address.
    pub async fn start(config: &RegistryConfig) -> anyhow::Result<Registry> {
        let (store, catalog) = Store::open(&config.kafka, &config.topic).await?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the schema registry on {}", config.listen))?;
        Ok(Registry {
            listener,
            shared: Arc::new(Shared::new(catalog, store)),
        })
    }

    /// The address the REST API is bound to.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listener
            .local_addr()
            .context("reading the schema registry's address")
    }

    /// Serves the REST API until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let addr = self.local_addr()?;
        tracing::info!(%addr, "schema registry listening");
        axum::serve(self.listener, api::router(self.shared))
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .context("serving the schema registry")
    }
}

/// Starts a registry with `config` and serves it until `shutdown` is cancelled.
pub async fn serve(config: RegistryConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    Registry::start(&config).await?.run(shutdown).await
}
