//! Detractor feedback: NPS or CSAT at or below its threshold, at once, with
//! the action plan and the customer's context.

use std::collections::BTreeMap;

use journey_core::contract::{CustomerEvent, Feedback};

use super::{Draft, DETRACTOR_FEEDBACK};
use crate::customer::CustomerContext;
use crate::ruleset::DetractorRule;

/// Whether `feedback` is a detractor's: NPS or CSAT at or below its threshold.
pub fn is_detractor(feedback: &Feedback, rule: &DetractorRule) -> bool {
    feedback.nps.is_some_and(|n| n <= rule.max_nps)
        || feedback.csat.is_some_and(|c| c <= rule.max_csat)
}

/// The alert for a detractor's feedback event from `customer`, if it is one.
pub fn detractor_feedback(
    event: &CustomerEvent,
    customer: &str,
    known: &CustomerContext,
    rule: &DetractorRule,
) -> Option<Draft> {
    let feedback = event.feedback.as_ref()?;
    if !is_detractor(feedback, rule) {
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
    known.describe(&mut context);
    Some(Draft {
        rule: DETRACTOR_FEEDBACK,
        severity: rule.severity,
        subject: customer.to_string(),
        customer_id: Some(customer.to_string()),
        summary: format!("Detractor feedback ({})", scores.join(", ")),
        action_plan: rule.action_plan.clone(),
        evidence_id: event.event_id.clone(),
        at: event.occurred_at,
        context,
    })
}

#[cfg(test)]
mod tests {
    use journey_core::contract::{EventType, Stage};

    use super::*;
    use crate::ruleset::RuleSet;

    fn feedback(nps: Option<i32>, csat: Option<i32>) -> CustomerEvent {
        CustomerEvent {
            event_id: "f1".into(),
            event_type: EventType::Feedback,
            occurred_at: 1_000,
            customer_id: Some("c1".into()),
            feedback: Some(Feedback {
                nps,
                csat,
                comment: Some("late again".into()),
                ..Feedback::default()
            }),
            ..CustomerEvent::default()
        }
    }

    #[test]
    fn detractor_thresholds_are_inclusive_for_nps_and_csat() {
        let rule = RuleSet::default().detractor_feedback;
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
            let draft = detractor_feedback(&feedback(nps, csat), "c1", &Default::default(), &rule);
            assert_eq!(draft.is_some(), fires, "{nps:?} {csat:?}");
        }
    }

    #[test]
    fn tuned_thresholds_apply() {
        let mut rule = RuleSet::default().detractor_feedback;
        rule.max_nps = 4;
        assert!(
            detractor_feedback(&feedback(Some(5), None), "c1", &Default::default(), &rule)
                .is_none()
        );
    }

    #[test]
    fn the_alert_carries_action_plan_feedback_text_and_customer_context() {
        let rule = RuleSet::default().detractor_feedback;
        let known = CustomerContext {
            stage: Some(Stage::PostPurchase),
            lifetime_value: 80.0,
            orders: 1,
            last_session: None,
        };
        let draft = detractor_feedback(&feedback(Some(2), None), "c1", &known, &rule).unwrap();
        assert_eq!(draft.customer_id.as_deref(), Some("c1"));
        assert_eq!(draft.evidence_id, "f1");
        assert_eq!(draft.at, 1_000);
        assert_eq!(draft.context["feedback_text"], "late again");
        assert_eq!(draft.context["stage"], "POST_PURCHASE");
        assert_eq!(draft.context["lifetime_value"], "80.00");
        assert_eq!(draft.action_plan, rule.action_plan);
        assert_eq!(draft.summary, "Detractor feedback (NPS 2)");
    }
}
