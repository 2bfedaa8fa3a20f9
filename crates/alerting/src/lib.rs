//! Alerting: tells the people who can act, at once, with a plan.
//!
//! Reads validated events, closed sessions, stage changes, dead letters and
//! identity merges (a visitor's cart and purchases follow them to the
//! customer they log in as);
//! evaluates the rules of the rule file (`deploy/alert_rules.toml` built in):
//! cart abandonment, detractor feedback, a valued customer entering churn
//! risk, a channel's conversion drop, a complaint surge and the dead-letter
//! rate. Alerts fire and resolve as records on the alerts topic with
//! deterministic ids, are counted in Prometheus by rule, severity and status,
//! and are optionally relayed from the topic to webhooks in Alertmanager's
//! format.
//!
//! Per-customer rules keep the customer's context (stage, lifetime value,
//! last session) in this service's own state. Aggregate rules count per
//! input partition: each instance judges only what it reads, without a
//! repartition through one key (which would funnel all traffic through one
//! partition); the alert names its partition, and the global view of the
//! same signals is Prometheus's (`deploy/prometheus/rules.yml`).
//!
//! ```
//! use journey_alerting::rules::detractor::detractor_feedback;
//! use journey_alerting::RuleSet;
//! use journey_core::contract::{CustomerEvent, Feedback};
//!
//! let feedback = CustomerEvent {
//!     event_id: "e1".into(),
//!     feedback: Some(Feedback { nps: Some(3), ..Feedback::default() }),
//!     ..CustomerEvent::default()
//! };
//! let rules = RuleSet::default();
//! let draft = detractor_feedback(&feedback, "c1", &Default::default(), &rules.detractor_feedback);
//! assert_eq!(draft.unwrap().summary, "Detractor feedback (NPS 3)");
//! ```

mod config;
mod customer;
mod fold;
mod lifecycle;
mod metrics;
mod processor;
mod retention;
pub mod rules;
mod ruleset;
pub mod webhook;

pub use config::AlertingConfig;
pub use customer::{CustomerContext, LastSession};
pub use lifecycle::Lifecycle;
pub use metrics::AlertMetrics;
pub use processor::{Alerting, Counters, Topics};
pub use retention::ContextRetention;
pub use ruleset::{
    CartAbandonmentRule, ChurnRiskRule, DetractorRule, FunnelDropRule, RuleSet, RulesError,
    ThresholdRule, DEFAULT_RULES,
};

use anyhow::Context as _;
use journey_core::config::{CommonConfig, ConfigSource};
use journey_core::schema_registry::pipeline_codec;
use journey_core::service::{self, ServiceSpec};
use journey_core::state::Workload;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

/// Service name: config section, metric prefix and state directory.
pub const NAME: &str = "alerting";

/// The alerting processor for `config`, its metrics registered in `registry`.
pub fn processor(
    config: &AlertingConfig,
    rules: RuleSet,
    topics: Topics,
    registry: &Registry,
) -> anyhow::Result<Alerting> {
    let metrics = AlertMetrics::new(registry);
    let retention = ContextRetention::new(
        config.context_retention_ms()?,
        metrics.contexts_forgotten.clone(),
    );
    let counters = Counters {
        erased: journey_core::erasure::erasures_counter(registry),
        repeats: journey_core::runtime::repeats_counter(registry),
        folds_sent: metrics.folds_sent.clone(),
        folds_applied: metrics.folds_applied.clone(),
        forwarded: metrics.forwarded.clone(),
    };
    let lifecycle = Lifecycle::new(topics.alerts.clone(), metrics);
    Ok(Alerting::new(rules, topics, lifecycle, retention, counters))
}

/// Runs alerting until `shutdown` is cancelled.
pub async fn run(source: ConfigSource, shutdown: CancellationToken) -> anyhow::Result<()> {
    let common = source.common()?;
    let config: AlertingConfig = source.section(NAME)?;
    let rules = RuleSet::load(config.rules_file.as_deref())?;
    let receivers = config.webhooks()?.to_vec();
    let registry = journey_core::metrics::registry(NAME);
    let delivery = webhook::DeliveryMetrics::new(&registry);
    let topics = Topics::new(&common.topics, &config.group_id);
    let inputs = vec![
        topics.events.clone(),
        topics.sessions.clone(),
        topics.stage_changes.clone(),
        topics.dead_letters.clone(),
        topics.identities.clone(),
        topics.folds.clone(),
        topics.erasure.tasks.clone(),
    ];
    let internal_inputs = vec![topics.folds.clone()];
    let control_inputs = vec![topics.erasure.tasks.clone()];
    let processor = processor(&config, rules, topics, &registry)?;
    let spec = ServiceSpec {
        name: NAME,
        common: &common,
        http_listen: config.http_listen,
        group_id: config.group_id.clone(),
        store: "alerts",
        workload: Workload::ReadModifyWrite,
        inputs,
        internal_inputs,
        control_inputs,
        registry,
        routes: Default::default(),
    };
    let relays = start_relays(&common, &config, receivers, delivery, &shutdown).await?;
    let result = service::run(spec, processor, shutdown).await;
    if let Some(relays) = relays {
        tokio::task::spawn_blocking(move || relays.stop())
            .await
            .context("stopping the webhook relays")?;
    }
    result
}

/// Starts a webhook relay per receiver of `receivers` (checked: see
/// [`AlertingConfig::webhooks`]); `None` without receivers, or if
/// `shutdown` came while the schema registry was awaited.
async fn start_relays(
    common: &CommonConfig,
    config: &AlertingConfig,
    receivers: Vec<webhook::WebhookConfig>,
    metrics: webhook::DeliveryMetrics,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<webhook::Relays>> {
    if receivers.is_empty() {
        return Ok(None);
    }
    let Some(codec) = pipeline_codec(&common.kafka, &common.topics, shutdown).await? else {
        return Ok(None);
    };
    let (kafka, topic) = (common.kafka.clone(), common.topics.alerts.clone());
    let (group, external_url) = (config.group_id.clone(), config.external_url.clone());
    let relays = tokio::task::spawn_blocking(move || {
        webhook::Relays::start(
            &kafka,
            &topic,
            &group,
            &receivers,
            &external_url,
            &codec,
            &metrics,
        )
    })
    .await
    .context("starting the webhook relays")??;
    Ok(Some(relays))
}
