//! Alert rules: pure functions from an event or a session to an alert draft.

use std::collections::BTreeMap;

use journey_core::contract::{CustomerEvent, FunnelStep, SessionSummary, Severity};

use crate::config::AlertingConfig;

/// Rule name of cart abandonment.
pub const CART_ABANDONMENT: &str = "cart_abandonment";
/// Rule name of detractor feedback.
pub const DETRACTOR_FEEDBACK: &str = "detractor_feedback";

/// An alert before suppression and id assignment.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub rule: &'static str,
    pub severity: Severity,
    pub customer_id: String,
    pub summary: String,
    pub action_plan: Option<String>,
    pub evidence_id: String,
    pub at: i64,
    pub context: BTreeMap<String, String>,
}

/// A detractor: NPS at or below the threshold, or CSAT at or below its threshold.
pub fn detractor_feedback(event: &CustomerEvent, config: &AlertingConfig) -> Option<Draft> {
    let feedback = event.feedback.as_ref()?;
    let nps = feedback.nps.filter(|n| *n <= config.detractor_max_nps);
    let csat = feedback.csat.filter(|c| *c <= config.detractor_max_csat);
    if nps.is_none() && csat.is_none() {
        return None;
    }
    let mut context = BTreeMap::from([("channel".to_string(), event.channel.as_str().to_string())]);
    let mut scores = Vec::new();
    if let Some(nps) = feedback.nps {
        context.insert("nps".into(), nps.to_string());
        scores.push(format!("NPS {nps}"));
    }
    if let Some(csat) = feedback.csat {
        context.insert("csat".into(), csat.to_string());
        scores.push(format!("CSAT {csat}"));
    }
    if let Some(comment) = &feedback.comment {
        context.insert("feedback_text".into(), comment.clone());
    }
    Some(Draft {
        rule: DETRACTOR_FEEDBACK,
        severity: Severity::Critical,
        customer_id: event.customer_key()?.to_string(),
        summary: format!("Detractor feedback ({})", scores.join(", ")),
        action_plan: Some(config.detractor_action_plan.clone()),
        evidence_id: event.event_id.clone(),
        at: event.occurred_at,
        context,
    })
}

/// A session that reached the cart or checkout and ended without a purchase.
pub fn cart_abandonment(session: &SessionSummary) -> Option<Draft> {
    let reached_cart = session.cart_adds > 0 || session.checkout_started;
    if !reached_cart || session.furthest_step == FunnelStep::Purchase {
        return None;
    }
    let context = BTreeMap::from([
        ("cart_adds".to_string(), session.cart_adds.to_string()),
        (
            "checkout_started".to_string(),
            session.checkout_started.to_string(),
        ),
        ("entry_channel".to_string(), session.entry_channel.clone()),
        (
            "products_viewed".to_string(),
            session.products_viewed.join(","),
        ),
    ]);
    Some(Draft {
        rule: CART_ABANDONMENT,
        severity: Severity::Warning,
        customer_id: session.customer_id.clone(),
        summary: format!(
            "Cart abandoned after a {} s session",
            session.duration_ms / 1000
        ),
        action_plan: Some("Send a cart reminder within the hour.".into()),
        evidence_id: session.session_id.clone(),
        at: session.end,
        context,
    })
}

#[cfg(test)]
mod tests {
    use journey_core::contract::{EventType, Feedback};

    use super::*;

    fn feedback(nps: Option<i32>, csat: Option<i32>) -> CustomerEvent {
        CustomerEvent {
            event_id: "f1".into(),
            event_type: EventType::Feedback,
            customer_id: Some("c1".into()),
            feedback: Some(Feedback {
                nps,
                csat,
                ..Feedback::default()
            }),
            ..CustomerEvent::default()
        }
    }

    #[test]
    fn detractor_thresholds() {
        let config = AlertingConfig::default();
        let cases = [
            (Some(6), None, true),
            (Some(7), None, false),
            (Some(0), None, true),
            (None, Some(2), true),
            (None, Some(3), false),
            (Some(9), Some(1), true),
            (None, None, false),
        ];
        for (nps, csat, fires) in cases {
            assert_eq!(
                detractor_feedback(&feedback(nps, csat), &config).is_some(),
                fires,
                "{nps:?} {csat:?}"
            );
        }
    }

    #[test]
    fn detractor_alert_carries_the_action_plan_and_the_feedback() {
        let mut event = feedback(Some(2), None);
        event.feedback.as_mut().unwrap().comment = Some("late again".into());
        let draft = detractor_feedback(&event, &AlertingConfig::default()).unwrap();
        assert_eq!(draft.customer_id, "c1");
        assert_eq!(draft.context["feedback_text"], "late again");
        assert!(draft.action_plan.unwrap().contains("24 hours"));
    }

    #[test]
    fn cart_abandonment_needs_a_cart_and_no_purchase() {
        let cart = SessionSummary {
            cart_adds: 1,
            furthest_step: FunnelStep::Cart,
            ..SessionSummary::default()
        };
        assert!(cart_abandonment(&cart).is_some());
        let checkout = SessionSummary {
            checkout_started: true,
            furthest_step: FunnelStep::Checkout,
            ..SessionSummary::default()
        };
        assert!(cart_abandonment(&checkout).is_some());
        let bought = SessionSummary {
            cart_adds: 1,
            furthest_step: FunnelStep::Purchase,
            ..SessionSummary::default()
        };
        assert!(cart_abandonment(&bought).is_none());
        let browsing = SessionSummary {
            furthest_step: FunnelStep::ProductView,
            ..SessionSummary::default()
        };
        assert!(cart_abandonment(&browsing).is_none());
    }
}
