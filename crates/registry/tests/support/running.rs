//! A registry running in the test's runtime against a local broker.

use journey_core::config::KafkaConfig;
use journey_registry::{Registry, RegistryConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// An embedded registry serving on a free port.
pub struct Running {
    pub url: String,
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Starts a registry keeping its state in `topic`.
    pub async fn start(kafka: &KafkaConfig, topic: &str) -> Running {
        let config = RegistryConfig {
            listen: "127.0.0.1:0".parse().expect("an address"),
            topic: topic.to_string(),
            kafka: kafka.clone(),
            ..RegistryConfig::default()
        };
        let registry = Registry::start(&config).await.expect("registry starts");
        let url = format!("http://{}", registry.local_addr().expect("bound address"));
        let stop = CancellationToken::new();
        let task = tokio::spawn(registry.run(stop.clone()));
        Running { url, stop, task }
    }

    /// Stops serving and waits until the server is done.
    pub async fn stop(self) {
        self.stop.cancel();
        self.task
            .await
            .expect("registry task")
            .expect("registry ran cleanly");
    }
}
