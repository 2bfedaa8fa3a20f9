//! Start-up and shutdown shared by the service binaries and the embedded run.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use axum::Router;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::config::{CommonConfig, ConfigSource};
use crate::http::{self, Readiness};
use crate::metrics::RuntimeMetrics;
use crate::runtime::{self, LoopSettings, Processor};
use crate::schema_registry::pipeline_codec;
use crate::state::{StateStore, Workload};

/// Environment variable naming the config file, when `--config` is not given.
pub const CONFIG_ENV: &str = "JOURNEY_CONFIG";

/// One service ready to run: its name, config, inputs and metrics registry.
pub struct ServiceSpec<'a> {
    pub name: &'static str,
    pub common: &'a CommonConfig,
    /// Address of the HTTP endpoints.
    pub http_listen: SocketAddr,
    /// Kafka consumer group.
    pub group_id: String,
    /// Name of the state store; its changelog is `<group_id>-<store>-changelog`.
    pub store: &'static str,
    /// How the service uses its state store.
    pub workload: Workload,
    pub inputs: Vec<String>,
    /// Inputs the service writes itself (see [`LoopSettings::internal_inputs`]).
    pub internal_inputs: Vec<String>,
    /// Inputs that do not move stream time (see [`LoopSettings::control_inputs`]).
    pub control_inputs: Vec<String>,
    pub registry: Registry,
    /// Routes served beside `/metrics`, `/healthz` and `/readyz`.
    pub routes: Router,
}

/// Opens the service's state, serves its HTTP endpoints and runs `processor`
/// until `shutdown` is cancelled.
pub async fn run<P: Processor>(
    spec: ServiceSpec<'_>,
    processor: P,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let state_dir = spec.common.runtime.state_dir.join(spec.name);
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating state directory {}", state_dir.display()))?;
    let store = StateStore::open_for(
        &state_dir,
        spec.common.runtime.state_memory_bytes,
        spec.workload,
    )
    .with_context(|| format!("opening state in {}", state_dir.display()))?;
    let metrics = RuntimeMetrics::new(&spec.registry);
    let readiness = Readiness::default();
    let routes = http::router(spec.registry.clone(), readiness.clone()).merge(spec.routes);
    let server_stop = shutdown.child_token();
    let server = http::serve(spec.http_listen, routes, server_stop.clone()).await?;
    tracing::info!(
        service = spec.name,
        http = %spec.http_listen,
        inputs = ?spec.inputs,
        state = %state_dir.display(),
        "service started"
    );
    let settings = LoopSettings {
        service: spec.name.to_string(),
        kafka: spec.common.kafka.clone(),
        runtime: spec.common.runtime.clone(),
        changelog_topic: format!("{}-{}-changelog", spec.group_id, spec.store),
        group_id: spec.group_id,
        inputs: spec.inputs,
        internal_inputs: spec.internal_inputs,
        control_inputs: spec.control_inputs,
        dead_letter_topic: spec.common.topics.dead_letters.clone(),
    };
    let result = match pipeline_codec(&spec.common.kafka, &spec.common.topics, &shutdown).await {
        Ok(Some(codec)) => {
            runtime::run(
                settings, processor, codec, store, metrics, readiness, shutdown,
            )
            .await
        }
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    server_stop.cancel();
    let _ = server.await;
    match &result {
        Ok(()) => tracing::info!(service = spec.name, "service stopped cleanly"),
        Err(e) => tracing::error!(
            service = spec.name,
            error = format!("{e:#}"),
            "service failed"
        ),
    }
    result
}

/// A token cancelled on SIGINT or SIGTERM.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        cancel.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested: finishing the batch, flushing and committing");
        cancel.cancel();
    });
    token
}

/// The config file path from `--config PATH` or `JOURNEY_CONFIG`.
pub fn config_path_from_args() -> anyhow::Result<Option<PathBuf>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(std::env::var_os(CONFIG_ENV).map(PathBuf::from)),
        [flag, path] if flag == "--config" || flag == "-c" => Ok(Some(PathBuf::from(path))),
        _ => anyhow::bail!("unexpected arguments {args:?} (usage: [--config PATH])"),
    }
}

/// The `main` of a service binary: loads config, sets up logging and signals,
/// and runs `service`; an error is printed and exits with status 1.
pub fn main<F, Fut>(service: F)
where
    F: FnOnce(ConfigSource, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let outcome = (|| -> anyhow::Result<()> {
        let source = ConfigSource::load(config_path_from_args()?.as_deref())?;
        let common = source.common()?;
        crate::telemetry::init(&common.log)?;
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        runtime.block_on(async {
            let shutdown = shutdown_on_signals();
            service(source, shutdown).await
        })
    })();
    if let Err(e) = outcome {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
