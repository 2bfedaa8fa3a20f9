//! Journey-stage classifier and the live customer profile.
//!
//! Reads validated events and closed sessions keyed by customer, and identity
//! merges keyed by anonymous id. Keeps a profile per customer in state (first
//! and last seen, channels, sessions, orders, lifetime value, last NPS and
//! CSAT, stage and since when), moves customers between journey stages by
//! configurable rules ([`Rules`], defaults in `deploy/stage_rules.toml`),
//! wall-clock timers included (churn risk), and emits a stage change per
//! transition. Serves `GET /customers/{id}` with the profile, stage and RFM
//! scores, redirecting to the owning instance when several run.
//!
//! ```
//! use journey_classifier::{Profile, Rules, Signal};
//! use journey_core::contract::{Channel, CustomerEvent, EventType, Stage};
//!
//! let rules = Rules::parse(journey_classifier::DEFAULT_RULES).unwrap();
//! let view = CustomerEvent { event_type: EventType::ProductView, ..CustomerEvent::default() };
//! let mut profile = Profile::new(0, Channel::Web);
//! profile.observe(&view, &rules.feedback, rules.order_history);
//! let rule = rules.evaluate(&profile, Signal::Event(&view), 0).unwrap();
//! assert_eq!((rule.to, rule.name.as_str()), (Stage::Consideration, "consideration_signal"));
//! ```

mod config;
mod instances;
mod metrics;
mod processor;
mod profile;
mod query;
mod rfm;
mod rules;
mod stats;

pub use config::ClassifierConfig;
pub use instances::{Claim, Directory, LocalPartitions};
pub use processor::{Classifier, ClassifierTopics, MERGE_RULE};
pub use profile::Profile;
pub use query::{router, CustomerView, Query};
pub use rfm::{Rfm, RfmThresholds};
pub use rules::{Rule, Rules, RulesError, Signal, Trigger, DEFAULT_RULES};

use std::sync::Arc;

use anyhow::Context as _;
use journey_core::config::ConfigSource;
use journey_core::service::{self, ServiceSpec};
use journey_core::state::Workload;
use tokio_util::sync::CancellationToken;

/// Service name: config section, metric prefix and state directory.
pub const NAME: &str = "classifier";

/// Runs the classifier until `shutdown` is cancelled.
pub async fn run(source: ConfigSource, shutdown: CancellationToken) -> anyhow::Result<()> {
    let common = source.common()?;
    let config: ClassifierConfig = source.section(NAME)?;
    let rules = Arc::new(Rules::load(config.rules_file.as_deref())?);
    let url = config.advertised_url()?;
    let visitor_retention_ms = config.visitor_retention_ms()?;
    let registry = journey_core::metrics::registry(NAME);
    let t = &common.topics;
    let topics = ClassifierTopics::new(t, &config.group_id);
    let external = [t.events.clone(), t.sessions.clone(), t.identities.clone()];
    let partitions = journey_core::kafka::input_partitions(&common.kafka, &external).await?;
    let instances = instances::topic_spec(&config.group_id);
    journey_core::kafka::ensure_topics(&common.kafka, std::slice::from_ref(&instances))
        .await
        .context("creating the instances topic")?;

    let local = LocalPartitions::default();
    let directory = Directory::default();
    let background = shutdown.child_token();
    let publisher = tokio::spawn(instances::publish(
        common.kafka.clone(),
        instances.name.clone(),
        url.clone(),
        local.clone(),
        background.clone(),
    ));
    let follower = tokio::spawn(instances::follow(
        common.kafka.clone(),
        instances.name,
        directory.clone(),
        background.clone(),
    ));
    let routes = router(Query {
        local: local.clone(),
        directory,
        url,
        partitions,
        rules: Arc::clone(&rules),
    });
    let processor = Classifier::new(
        rules,
        topics.clone(),
        local,
        visitor_retention_ms,
        &registry,
    );
    let spec = ServiceSpec {
        name: NAME,
        common: &common,
        http_listen: config.http_listen,
        group_id: config.group_id.clone(),
        store: "profiles",
        workload: Workload::ReadModifyWrite,
        inputs: vec![
            topics.events,
            topics.sessions,
            topics.identities,
            topics.repartition.clone(),
            topics.erasure.tasks.clone(),
        ],
        internal_inputs: vec![topics.repartition],
        control_inputs: vec![topics.erasure.tasks],
        registry,
        routes,
    };
    let result = service::run(spec, processor, shutdown).await;
    background.cancel();
    for (task, name) in [
        (publisher, "instance claim publisher"),
        (follower, "instance directory"),
    ] {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = format!("{e:#}"), "{name} failed"),
            Err(e) => tracing::warn!(error = %e, "{name} panicked"),
        }
    }
    result
}
