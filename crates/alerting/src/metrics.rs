//! The alerting service's own metrics (`journey_alerting_...`), declared in
//! one place. No label holds a customer id.

use journey_core::metrics::register;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// What alerting measures beside the runtime's metrics.
#[derive(Clone)]
pub struct AlertMetrics {
    /// Alert records emitted, by rule, severity and status (`FIRING`, `RESOLVED`).
    pub alerts: IntCounterVec,
    /// Triggers not alerted because the subject had an alert within the cooldown (or one firing).
    pub suppressed: IntCounterVec,
    /// Alerts firing now on this instance's partitions, by rule and severity.
    pub firing: IntGaugeVec,
    /// Memory held by the in-memory filters of open alerts', latest purchases' and folded visitors' keys.
    pub filter_bytes: IntGauge,
    /// Contexts of customers who never bought, forgotten after the retention.
    pub contexts_forgotten: IntCounter,
    /// Visitors' carts and purchases sent to the customer they were folded into.
    pub folds_sent: IntCounter,
    /// Visitors' carts and purchases folded into a customer's.
    pub folds_applied: IntCounter,
    /// Visitors' events read after their id was folded, sent on to the customer.
    pub forwarded: IntCounter,
}

impl AlertMetrics {
    /// Creates and registers the metrics.
    pub fn new(registry: &Registry) -> Self {
        let counters = |name: &str, help: &str, labels: &[&str]| {
            register(
                registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let counter = |name: &str, help: &str| {
            register(registry, IntCounter::new(name, help).expect("valid metric"))
        };
        AlertMetrics {
            alerts: counters(
                "alerts_total",
                "Alert records emitted, by rule, severity and status.",
                &["rule", "severity", "status"],
            ),
            suppressed: counters(
                "alerts_suppressed_total",
                "Triggers not alerted: the subject had an alert of the rule within its cooldown, or one is firing.",
                &["rule"],
            ),
            firing: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "alerts_firing",
                        "Alerts firing on this instance's partitions, by rule and severity.",
                    ),
                    &["rule", "severity"],
                )
                .expect("valid metric"),
            ),
            filter_bytes: register(
                registry,
                IntGauge::new(
                    "filter_bytes",
                    "Memory held by the in-memory filters of open alerts', latest purchases' and folded visitors' keys.",
                )
                .expect("valid metric"),
            ),
            contexts_forgotten: counter(
                "contexts_forgotten_total",
                "Contexts of customers who never bought, forgotten after alerting.context_retention without a session.",
            ),
            folds_sent: counter(
                "identity_folds_sent_total",
                "Visitors' open carts and purchases sent to the customer they were folded into.",
            ),
            folds_applied: counter(
                "identity_folds_applied_total",
                "Visitors' open carts and purchases folded into a customer's.",
            ),
            forwarded: counter(
                "identity_forwarded_events_total",
                "Anonymous events read after their id was folded, sent on to the customer's partition.",
            ),
        }
    }
}
