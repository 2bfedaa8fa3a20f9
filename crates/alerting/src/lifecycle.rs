//! The life of an alert: fired unless suppressed, then resolved, or expired
//! at the end of its cooldown. Each step is an alert record on the alerts
//! topic (with the same deterministic `alert_id`) and a metric; webhooks
//! are notified from the topic (see [`crate::webhook`]).
//!
//! An alert is kept in state per rule and subject (customer, or an
//! aggregate's scope). Per-customer rules have a cooldown: while the last
//! alert of the rule for the customer is younger than it, further triggers
//! are suppressed, and at its end the alert is resolved as expired (if still
//! firing) and forgotten, so state does not grow with every customer ever
//! alerted. Aggregate rules have no cooldown: a firing alert suppresses
//! further triggers until a window clears it.
//!
//! Most triggers and resolving events concern a customer with no alert of
//! the rule open: a filter of the open alerts' keys ([`KeyFilter`]) answers
//! those without a RocksDB read.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use journey_core::contract::{Alert, AlertStatus};
use journey_core::ids;
use journey_core::runtime::{Context, KeyFilter, ProcessError};
use journey_core::state::Clock;
use serde::{Deserialize, Serialize};

use crate::metrics::AlertMetrics;
use crate::rules::Draft;

/// State key prefix of alerts, followed by rule, `/` and subject.
const ALERT: &[u8] = b"alert/";
/// Prefix of the timers that expire alerts.
pub const EXPIRY_TIMER: &[u8] = b"expire/";
/// State key of a partition's firing alerts, counted by rule and severity.
const FIRING_KEY: &[u8] = b"firing";

/// An alert raised and not yet forgotten, kept in state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OpenAlert {
    alert: Alert,
    /// End of the cooldown, for per-customer rules.
    expires_at: Option<i64>,
}

/// Firing alerts of one partition by rule and severity.
type FiringCounts = BTreeMap<(String, String), i64>;

/// Raises, resolves and expires alerts.
pub struct Lifecycle {
    topic: String,
    metrics: AlertMetrics,
    /// Firing counts of the partitions seen since they were assigned.
    firing: HashMap<i32, FiringCounts>,
    /// The alerts that may be in state.
    open: KeyFilter,
    /// Bytes of the processor's other key filters, reported with this one's.
    other_filter_bytes: usize,
}

fn alert_key(rule: &str, subject: &str) -> Vec<u8> {
    [ALERT, rule.as_bytes(), b"/", subject.as_bytes()].concat()
}

/// The key of the timer expiring the alert of `rule` for `subject`.
pub fn expiry_timer(rule: &str, subject: &str) -> Vec<u8> {
    [EXPIRY_TIMER, rule.as_bytes(), b"/", subject.as_bytes()].concat()
}

impl Lifecycle {
    /// Alerts go to `topic` and are counted in `metrics`.
    pub fn new(topic: String, metrics: AlertMetrics) -> Self {
        Lifecycle {
            topic,
            metrics,
            firing: HashMap::new(),
            open: KeyFilter::new(ALERT),
            other_filter_bytes: 0,
        }
    }

    /// Notes the memory of the processor's other key filters, reported in
    /// `filter_bytes` with the open alerts' filter.
    pub fn report_other_filter_bytes(&mut self, bytes: usize) {
        self.other_filter_bytes = bytes;
        self.report_filter_bytes();
    }

    /// The alert under `key`, if there is one.
    fn open_alert(
        &mut self,
        ctx: &mut Context<'_>,
        key: &[u8],
    ) -> Result<Option<OpenAlert>, ProcessError> {
        let may_hold = self.open.may_hold(ctx, &key[ALERT.len()..])?;
        // The first look at a partition builds its filter.
        self.report_filter_bytes();
        if !may_hold {
            return Ok(None);
        }
        Ok(ctx.state().get(key)?)
    }

    /// Raises `draft` unless suppressed; `cooldown` (ms) for per-customer
    /// rules. Returns whether an alert was emitted.
    pub fn fire(
        &mut self,
        ctx: &mut Context<'_>,
        draft: Draft,
        cooldown: Option<i64>,
    ) -> Result<bool, ProcessError> {
        let key = alert_key(draft.rule, &draft.subject);
        if let Some(open) = self.open_alert(ctx, &key)? {
            match open.expires_at {
                Some(end) if draft.at >= end => {
                    ctx.cancel_timer(Clock::Event, end, &expiry_timer(draft.rule, &draft.subject));
                    self.expire(ctx, draft.rule, &draft.subject, end)?;
                }
                Some(_) => return Ok(self.suppress(draft.rule)),
                None if open.alert.status == AlertStatus::Firing => {
                    return Ok(self.suppress(draft.rule))
                }
                None => {}
            }
        }
        let alert = Alert {
            alert_id: ids::derive(&[
                draft.rule.as_bytes(),
                draft.subject.as_bytes(),
                draft.evidence_id.as_bytes(),
            ]),
            rule: draft.rule.to_string(),
            severity: draft.severity,
            status: AlertStatus::Firing,
            customer_id: draft.customer_id,
            summary: draft.summary,
            action_plan: Some(draft.action_plan),
            evidence_id: draft.evidence_id,
            fired_at: draft.at,
            context: draft.context,
        };
        let expires_at = cooldown.map(|c| draft.at.saturating_add(c));
        if let Some(end) = expires_at {
            ctx.set_timer(Clock::Event, end, &expiry_timer(draft.rule, &draft.subject));
        }
        self.emit(ctx, &alert, &draft.subject, draft.at)?;
        self.count_firing(ctx, &alert, 1);
        ctx.state().put(&key, &OpenAlert { alert, expires_at });
        self.open.insert(ctx, &key[ALERT.len()..])?;
        self.report_filter_bytes();
        Ok(true)
    }

    /// Resolves the firing alert of `rule` for `subject`, if there is one,
    /// at `at` because of `reason`. Returns whether it was firing.
    pub fn resolve(
        &mut self,
        ctx: &mut Context<'_>,
        rule: &str,
        subject: &str,
        at: i64,
        reason: &str,
    ) -> Result<bool, ProcessError> {
        let key = alert_key(rule, subject);
        let Some(mut open) = self.open_alert(ctx, &key)? else {
            return Ok(false);
        };
        if open.alert.status != AlertStatus::Firing {
            return Ok(false);
        }
        open.alert.status = AlertStatus::Resolved;
        open.alert
            .context
            .insert("resolved_at".into(), at.to_string());
        open.alert
            .context
            .insert("resolution".into(), reason.into());
        self.emit(ctx, &open.alert, subject, at)?;
        self.count_firing(ctx, &open.alert, -1);
        if open.expires_at.is_some() {
            ctx.state().put(&key, &open);
        } else {
            ctx.state().delete(&key);
        }
        Ok(true)
    }

    /// Ends the cooldown of the alert of `rule` for `subject` that expires at
    /// `at`: resolves it if still firing and forgets it. A stale timer (the
    /// alert was replaced) does nothing.
    pub fn expire(
        &mut self,
        ctx: &mut Context<'_>,
        rule: &str,
        subject: &str,
        at: i64,
    ) -> Result<(), ProcessError> {
        let key = alert_key(rule, subject);
        let open = self.open_alert(ctx, &key)?;
        if open.is_none_or(|o| o.expires_at != Some(at)) {
            return Ok(());
        }
        self.resolve(
            ctx,
            rule,
            subject,
            at,
            "expired: cooldown over without a resolving event",
        )?;
        ctx.state().delete(&key);
        Ok(())
    }

    /// Forgets the alert of `rule` for an erased `subject`: resolves it if
    /// firing (so receivers clear it), then deletes it and its expiry timer.
    pub fn erase(
        &mut self,
        ctx: &mut Context<'_>,
        rule: &str,
        subject: &str,
        at: i64,
    ) -> Result<(), ProcessError> {
        self.resolve(ctx, rule, subject, at, "the customer's data was erased")?;
        ctx.state().delete(&alert_key(rule, subject));
        ctx.cancel_timers(&expiry_timer(rule, subject))?;
        Ok(())
    }

    /// Loads the firing counts of the context's partition on first sight,
    /// so the gauge covers every partition this instance works on.
    pub fn observe_partition(&mut self, ctx: &mut Context<'_>) -> Result<(), ProcessError> {
        if let Entry::Vacant(entry) = self.firing.entry(ctx.partition()) {
            entry.insert(ctx.state().get(FIRING_KEY)?.unwrap_or_default());
            self.update_gauges();
        }
        Ok(())
    }

    /// Forgets what is kept in memory of `partition`: when it is given back
    /// to the group (its alerts are the new owner's to count), and when it is
    /// assigned (its restored state may hold alerts the filter has not seen).
    pub fn forget_partition(&mut self, partition: i32) {
        self.open.forget(partition);
        self.report_filter_bytes();
        if self.firing.remove(&partition).is_some() {
            self.update_gauges();
        }
    }

    fn report_filter_bytes(&self) {
        let bytes = self.open.bytes() + self.other_filter_bytes;
        self.metrics.filter_bytes.set(bytes as i64);
    }

    fn suppress(&self, rule: &str) -> bool {
        self.metrics.suppressed.with_label_values(&[rule]).inc();
        false
    }

    fn emit(
        &self,
        ctx: &mut Context<'_>,
        alert: &Alert,
        subject: &str,
        at: i64,
    ) -> Result<(), ProcessError> {
        ctx.emit(&self.topic, subject, alert, at)?;
        let status = match alert.status {
            AlertStatus::Firing => "FIRING",
            AlertStatus::Resolved => "RESOLVED",
        };
        self.metrics
            .alerts
            .with_label_values(&[alert.rule.as_str(), alert.severity.as_str(), status])
            .inc();
        Ok(())
    }

    fn count_firing(&mut self, ctx: &mut Context<'_>, alert: &Alert, delta: i64) {
        let counts = self.firing.entry(ctx.partition()).or_default();
        let key = (alert.rule.clone(), alert.severity.as_str().to_string());
        let count = counts.entry(key.clone()).or_default();
        *count += delta;
        if *count <= 0 {
            counts.remove(&key);
        }
        ctx.state().put(FIRING_KEY, counts);
        let total: i64 = self.firing.values().filter_map(|c| c.get(&key)).sum();
        self.metrics
            .firing
            .with_label_values(&[key.0.as_str(), key.1.as_str()])
            .set(total);
    }

    fn update_gauges(&self) {
        let mut totals: BTreeMap<&(String, String), i64> = BTreeMap::new();
        for counts in self.firing.values() {
            for (key, n) in counts {
                *totals.entry(key).or_default() += n;
            }
        }
        self.metrics.firing.reset();
        for ((rule, severity), n) in totals {
            self.metrics
                .firing
                .with_label_values(&[rule.as_str(), severity.as_str()])
                .set(n);
        }
    }
}
