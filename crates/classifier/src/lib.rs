//! Journey-stage classifier: where each customer stands in the journey.
//!
//! Reads validated events keyed by customer, keeps a profile per customer in
//! state (first and last seen, channels, orders, revenue, last scores, stage),
//! and emits a stage change whenever a rule moves the customer to another
//! stage: awareness, consideration, purchase, post-purchase.
//!
//! ```
//! use journey_classifier::next_stage;
//! use journey_core::contract::{CustomerEvent, EventType, Stage};
//!
//! let view = CustomerEvent { event_type: EventType::ProductView, ..CustomerEvent::default() };
//! assert_eq!(next_stage(Some(Stage::Awareness), &view).unwrap().to, Stage::Consideration);
//! ```

mod config;
mod processor;
mod profile;
mod stage;

pub use config::ClassifierConfig;
pub use processor::Classifier;
pub use profile::Profile;
pub use stage::{next_stage, Transition};

use journey_core::config::ConfigSource;
use journey_core::service::{self, ServiceSpec};
use tokio_util::sync::CancellationToken;

/// Service name: config section, metric prefix and state directory.
pub const NAME: &str = "classifier";

/// Runs the classifier until `shutdown` is cancelled.
pub async fn run(source: ConfigSource, shutdown: CancellationToken) -> anyhow::Result<()> {
    let common = source.common()?;
    let config: ClassifierConfig = source.section(NAME)?;
    let registry = journey_core::metrics::registry(NAME);
    let processor = Classifier::new(common.topics.stage_changes.clone(), &registry);
    let spec = ServiceSpec {
        name: NAME,
        common: &common,
        http_listen: config.http_listen,
        group_id: config.group_id.clone(),
        store: "profiles",
        inputs: vec![common.topics.events.clone()],
        internal_inputs: Vec::new(),
        registry,
        routes: Default::default(),
    };
    service::run(spec, processor, shutdown).await
}
