//! Alerting: tells people when to act.
//!
//! Evaluates rules over validated events and closed sessions (detractor
//! feedback, cart abandonment), suppresses repeats per customer and rule
//! within a cooldown, and emits alerts to the alerts topic, counted in
//! Prometheus by rule and severity.
//!
//! ```
//! use journey_alerting::{cart_abandonment, CART_ABANDONMENT};
//! use journey_core::contract::{FunnelStep, SessionSummary};
//!
//! let session = SessionSummary { cart_adds: 2, furthest_step: FunnelStep::Cart, ..SessionSummary::default() };
//! assert_eq!(cart_abandonment(&session).unwrap().rule, CART_ABANDONMENT);
//! ```

mod config;
mod processor;
mod rules;

pub use config::AlertingConfig;
pub use processor::{Alerting, Topics};
pub use rules::{
    cart_abandonment, detractor_feedback, Draft, CART_ABANDONMENT, DETRACTOR_FEEDBACK,
};

use journey_core::config::ConfigSource;
use journey_core::service::{self, ServiceSpec};
use tokio_util::sync::CancellationToken;

/// Service name: config section, metric prefix and state directory.
pub const NAME: &str = "alerting";

/// Runs alerting until `shutdown` is cancelled.
pub async fn run(source: ConfigSource, shutdown: CancellationToken) -> anyhow::Result<()> {
    let common = source.common()?;
    let config: AlertingConfig = source.section(NAME)?;
    let registry = journey_core::metrics::registry(NAME);
    let topics = Topics {
        events: common.topics.events.clone(),
        sessions: common.topics.sessions.clone(),
        alerts: common.topics.alerts.clone(),
    };
    let (http_listen, group_id) = (config.http_listen, config.group_id.clone());
    let processor = Alerting::new(config, topics, &registry);
    let spec = ServiceSpec {
        name: NAME,
        common: &common,
        http_listen,
        group_id,
        store: "alerts",
        inputs: vec![common.topics.events.clone(), common.topics.sessions.clone()],
        internal_inputs: Vec::new(),
        registry,
        routes: Default::default(),
    };
    service::run(spec, processor, shutdown).await
}
