//! A valued customer going quiet: a customer whose lifetime value reaches
//! the rule's minimum enters `CHURN_RISK`.

use std::collections::BTreeMap;

use journey_core::contract::{Stage, StageChange};

use super::{Draft, VALUED_CUSTOMER_CHURN_RISK};
use crate::customer::CustomerContext;
use crate::ruleset::ChurnRiskRule;

/// The alert for `change` if it takes a valued customer into churn risk.
/// `known` is the customer's context before the change.
pub fn valued_customer_churn_risk(
    change: &StageChange,
    known: &CustomerContext,
    rule: &ChurnRiskRule,
) -> Option<Draft> {
    if change.to_stage != Stage::ChurnRisk || known.lifetime_value < rule.min_lifetime_value {
        return None;
    }
    let mut context = BTreeMap::from([
        (
            "previous_stage".to_string(),
            change.from_stage.map_or("NONE", Stage::as_str).to_string(),
        ),
        ("classifier_rule".to_string(), change.rule.clone()),
    ]);
    known.describe(&mut context);
    context.insert("stage".into(), Stage::ChurnRisk.as_str().into());
    Some(Draft {
        rule: VALUED_CUSTOMER_CHURN_RISK,
        severity: rule.severity,
        subject: change.customer_id.clone(),
        customer_id: Some(change.customer_id.clone()),
        summary: format!(
            "Valued customer (lifetime value {:.2}) at risk of churning",
            known.lifetime_value
        ),
        action_plan: rule.action_plan.clone(),
        evidence_id: change.change_id.clone(),
        at: change.changed_at,
        context,
    })
}

/// Whether `change` takes the customer out of churn risk (resolving the alert).
pub fn leaves_churn_risk(change: &StageChange) -> bool {
    change.from_stage == Some(Stage::ChurnRisk) && change.to_stage != Stage::ChurnRisk
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::RuleSet;

    fn change(from: Option<Stage>, to: Stage) -> StageChange {
        StageChange {
            change_id: "ch1".into(),
            customer_id: "c1".into(),
            from_stage: from,
            to_stage: to,
            rule: "inactive_90d".into(),
            evidence_id: "e1".into(),
            changed_at: 5_000,
        }
    }

    fn worth(lifetime_value: f64) -> CustomerContext {
        CustomerContext {
            lifetime_value,
            ..CustomerContext::default()
        }
    }

    #[test]
    fn only_valued_customers_entering_churn_risk_alert() {
        let rule = RuleSet::default().valued_customer_churn_risk;
        let into_risk = change(Some(Stage::Loyal), Stage::ChurnRisk);
        let cases = [
            (&into_risk, 500.0, true),
            (&into_risk, 499.99, false),
            (
                &change(Some(Stage::Purchase), Stage::Loyal),
                10_000.0,
                false,
            ),
        ];
        for (change, value, fires) in cases {
            let draft = valued_customer_churn_risk(change, &worth(value), &rule);
            assert_eq!(draft.is_some(), fires, "{change:?} {value}");
        }
        let draft = valued_customer_churn_risk(&into_risk, &worth(900.0), &rule).unwrap();
        assert_eq!(draft.context["previous_stage"], "LOYAL");
        assert_eq!(draft.context["stage"], "CHURN_RISK");
        assert_eq!(draft.evidence_id, "ch1");
    }

    #[test]
    fn leaving_churn_risk_is_recognised() {
        assert!(leaves_churn_risk(&change(
            Some(Stage::ChurnRisk),
            Stage::WinBack
        )));
        assert!(!leaves_churn_risk(&change(
            Some(Stage::Loyal),
            Stage::ChurnRisk
        )));
        assert!(!leaves_churn_risk(&change(None, Stage::Awareness)));
    }
}
