//! The alert rules as plain functions and structs over inputs, state and
//! time: no Kafka, no clock of their own. Each returns a [`Draft`] (or a
//! verdict) that the processor hands to the alert lifecycle.

pub mod cart;
pub mod churn;
pub mod detractor;
pub mod funnel;
pub mod window;

use std::collections::BTreeMap;

use journey_core::contract::Severity;

/// Rule name of cart abandonment.
pub const CART_ABANDONMENT: &str = "cart_abandonment";
/// Rule name of detractor feedback.
pub const DETRACTOR_FEEDBACK: &str = "detractor_feedback";
/// Rule name of a valued customer entering churn risk.
pub const VALUED_CUSTOMER_CHURN_RISK: &str = "valued_customer_churn_risk";
/// Rule name of a channel's conversion drop.
pub const FUNNEL_CONVERSION_DROP: &str = "funnel_conversion_drop";
/// Rule name of a surge of complaints.
pub const COMPLAINT_SURGE: &str = "complaint_surge";
/// Rule name of too many dead letters.
pub const DEAD_LETTER_RATE: &str = "dead_letter_rate";

/// Every rule name, for metrics and docs.
pub const ALL: [&str; 6] = [
    CART_ABANDONMENT,
    DETRACTOR_FEEDBACK,
    VALUED_CUSTOMER_CHURN_RISK,
    FUNNEL_CONVERSION_DROP,
    COMPLAINT_SURGE,
    DEAD_LETTER_RATE,
];

/// The rules whose alerts are about one customer (the others are about an aggregate).
pub const PER_CUSTOMER: [&str; 3] = [
    CART_ABANDONMENT,
    DETRACTOR_FEEDBACK,
    VALUED_CUSTOMER_CHURN_RISK,
];

/// An alert a rule wants raised, before suppression and id assignment.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub rule: &'static str,
    pub severity: Severity,
    /// What the alert is about: a customer key, or an aggregate's scope
    /// (`partition 3`, `partition 3 channel WEB`).
    pub subject: String,
    /// The customer, for per-customer rules.
    pub customer_id: Option<String>,
    pub summary: String,
    pub action_plan: String,
    /// The event, session, stage change or window that triggered it.
    pub evidence_id: String,
    /// Event time of the trigger, ms.
    pub at: i64,
    pub context: BTreeMap<String, String>,
}

/// What an aggregate rule concluded about a closed window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// The condition holds: fire (if not firing already).
    Fire,
    /// The condition does not hold: resolve (if firing).
    Clear,
    /// Too little traffic to tell: leave things as they are.
    Quiet,
}
