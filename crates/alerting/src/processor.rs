//! The alerting processor: rules over events and sessions, with per-customer
//! suppression kept in state.

use journey_core::contract::{Alert, AlertStatus, CustomerEvent, SessionSummary};
use journey_core::ids;
use journey_core::runtime::{Context, InputRecord, ProcessError, Processor};
use prometheus::{IntCounterVec, Opts, Registry};

use crate::config::AlertingConfig;
use crate::rules::{cart_abandonment, detractor_feedback, Draft};

/// Evaluates the rules and emits alerts, at most one per customer, rule and cooldown.
pub struct Alerting {
    config: AlertingConfig,
    events_topic: String,
    sessions_topic: String,
    alerts_topic: String,
    fired: IntCounterVec,
    suppressed: IntCounterVec,
}

/// The input topics and the output topic of alerting.
pub struct Topics {
    pub events: String,
    pub sessions: String,
    pub alerts: String,
}

impl Alerting {
    /// An alerting processor over `topics`.
    pub fn new(config: AlertingConfig, topics: Topics, registry: &Registry) -> Self {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            journey_core::metrics::register(
                registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        Alerting {
            config,
            events_topic: topics.events,
            sessions_topic: topics.sessions,
            alerts_topic: topics.alerts,
            fired: counter(
                "alerts_total",
                "Alerts emitted, by rule and severity.",
                &["rule", "severity"],
            ),
            suppressed: counter(
                "alerts_suppressed_total",
                "Alerts not emitted because the customer had one within the cooldown.",
                &["rule"],
            ),
        }
    }

    fn fire(&self, draft: Draft, ctx: &mut Context<'_>) -> Result<(), ProcessError> {
        let key = [draft.rule.as_bytes(), b"/", draft.customer_id.as_bytes()].concat();
        let last: Option<i64> = ctx.state().get(&key)?;
        let cooldown = self.config.cooldown.as_millis() as i64;
        if last.is_some_and(|at| draft.at >= at && draft.at - at < cooldown) {
            self.suppressed.with_label_values(&[draft.rule]).inc();
            return Ok(());
        }
        ctx.state().put(&key, &draft.at);
        let alert = Alert {
            alert_id: ids::derive(&[draft.rule.as_bytes(), draft.evidence_id.as_bytes()]),
            rule: draft.rule.to_string(),
            severity: draft.severity,
            status: AlertStatus::Firing,
            customer_id: Some(draft.customer_id.clone()),
            summary: draft.summary,
            action_plan: draft.action_plan,
            evidence_id: draft.evidence_id,
            fired_at: draft.at,
            context: draft.context,
        };
        ctx.emit(&self.alerts_topic, &draft.customer_id, &alert, draft.at)?;
        self.fired
            .with_label_values(&[draft.rule, draft.severity.as_str()])
            .inc();
        Ok(())
    }
}

impl Processor for Alerting {
    fn process(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let payload = record.payload.unwrap_or_default();
        let draft = if record.topic == self.events_topic {
            let event: CustomerEvent = ctx.codec().decode(payload)?;
            detractor_feedback(&event, &self.config)
        } else if record.topic == self.sessions_topic {
            let session: SessionSummary = ctx.codec().decode(payload)?;
            cart_abandonment(&session)
        } else {
            return Err(anyhow::anyhow!("record from unexpected topic {}", record.topic).into());
        };
        match draft {
            Some(draft) => self.fire(draft, ctx),
            None => Ok(()),
        }
    }
}
