//! The rule file: which rules run and how they are tuned.
//!
//! The defaults are `deploy/alert_rules.toml`, built in; a rule file named by
//! `alerting.rules_file` is read over them, so it only holds what it changes.
//! A bad file stops start-up with a message naming the rule and the field.

use std::path::Path;
use std::time::Duration;

use figment::providers::{Format, Toml};
use figment::Figment;
use journey_core::contract::Severity;
use serde::Deserialize;

/// The built-in rule file.
pub const DEFAULT_RULES: &str = include_str!("../../../deploy/alert_rules.toml");

/// A rule file that cannot be used, naming the rule and field at fault.
#[derive(Debug, thiserror::Error)]
#[error("invalid alert rules{}: {message}", .source_file.as_deref().map(|f| format!(" in {f}")).unwrap_or_default())]
pub struct RulesError {
    source_file: Option<String>,
    message: String,
}

/// Cart abandonment: a cart add or checkout with no purchase within `after`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CartAbandonmentRule {
    /// Whether the rule runs at all.
    pub enabled: bool,
    /// Severity of its alerts.
    pub severity: Severity,
    /// What the person receiving the alert should do.
    pub action_plan: String,
    /// How long after the first cart event a purchase may still come.
    #[serde(with = "humantime_serde")]
    pub after: Duration,
    /// At most one alert per customer within this.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
}

/// Detractor feedback: NPS at or below `max_nps` or CSAT at or below `max_csat`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetractorRule {
    /// Whether the rule runs at all.
    pub enabled: bool,
    /// Severity of its alerts.
    pub severity: Severity,
    /// What the person receiving the alert should do.
    pub action_plan: String,
    /// NPS at or below this is a detractor's.
    pub max_nps: i32,
    /// CSAT at or below this is a detractor's.
    pub max_csat: i32,
    /// At most one alert per customer within this.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
}

/// A valued customer (lifetime value at least `min_lifetime_value`) entering churn risk.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChurnRiskRule {
    /// Whether the rule runs at all.
    pub enabled: bool,
    /// Severity of its alerts.
    pub severity: Severity,
    /// What the person receiving the alert should do.
    pub action_plan: String,
    /// Lifetime value (sum of purchases) from which a customer is valued.
    pub min_lifetime_value: f64,
    /// At most one alert per customer within this.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
}

/// A channel's conversion rate over a window more than `drop_percent` below its baseline.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunnelDropRule {
    /// Whether the rule runs at all.
    pub enabled: bool,
    /// Severity of its alerts.
    pub severity: Severity,
    /// What the person receiving the alert should do.
    pub action_plan: String,
    /// Length of the windows compared.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Windows before the current one that make the baseline.
    pub baseline_windows: u32,
    /// How far below the baseline's rate, in percent, fires.
    pub drop_percent: f64,
    /// Sessions needed in the window and in the baseline to judge at all.
    pub min_sessions: u64,
}

/// More than `threshold` matching records in one `window`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdRule {
    /// Whether the rule runs at all.
    pub enabled: bool,
    /// Severity of its alerts.
    pub severity: Severity,
    /// What the person receiving the alert should do.
    pub action_plan: String,
    /// Length of the tumbling windows counted.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// More than this many in one window fires.
    pub threshold: u64,
}

/// Every rule's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    /// `[cart_abandonment]`
    pub cart_abandonment: CartAbandonmentRule,
    /// `[detractor_feedback]`
    pub detractor_feedback: DetractorRule,
    /// `[valued_customer_churn_risk]`
    pub valued_customer_churn_risk: ChurnRiskRule,
    /// `[funnel_conversion_drop]`
    pub funnel_conversion_drop: FunnelDropRule,
    /// `[complaint_surge]`: support contacts plus detractor feedbacks.
    pub complaint_surge: ThresholdRule,
    /// `[dead_letter_rate]`: records on the dead-letter topic.
    pub dead_letter_rate: ThresholdRule,
}

impl Default for RuleSet {
    fn default() -> Self {
        RuleSet::parse(DEFAULT_RULES, None).expect("the built-in rule file is valid")
    }
}

impl RuleSet {
    /// The built-in rules, with the file at `path` (if any) read over them.
    pub fn load(path: Option<&Path>) -> Result<RuleSet, RulesError> {
        match path {
            None => RuleSet::parse(DEFAULT_RULES, None),
            Some(path) => {
                let name = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|e| RulesError {
                    source_file: Some(name.clone()),
                    message: format!("cannot read it: {e}"),
                })?;
                RuleSet::parse(&text, Some(name))
            }
        }
    }

    /// The built-in rules with `overrides` (TOML text) read over them.
    pub fn parse(overrides: &str, source_file: Option<String>) -> Result<RuleSet, RulesError> {
        let error = |message: String| RulesError {
            source_file: source_file.clone(),
            message,
        };
        let rules: RuleSet = Figment::from(Toml::string(DEFAULT_RULES))
            .merge(Toml::string(overrides))
            .extract()
            .map_err(|e| error(describe(e)))?;
        rules.validate().map_err(error)?;
        Ok(rules)
    }

    fn validate(&self) -> Result<(), String> {
        // Rules count in whole milliseconds: a shorter duration would be 0.
        let positive = |rule: &str, field: &str, d: Duration| {
            if d < Duration::from_millis(1) {
                Err(format!(
                    "rule `{rule}`, field `{field}`: must be at least 1 ms (got {d:?})"
                ))
            } else {
                Ok(())
            }
        };
        positive("cart_abandonment", "after", self.cart_abandonment.after)?;
        positive(
            "cart_abandonment",
            "cooldown",
            self.cart_abandonment.cooldown,
        )?;
        positive(
            "detractor_feedback",
            "cooldown",
            self.detractor_feedback.cooldown,
        )?;
        positive(
            "valued_customer_churn_risk",
            "cooldown",
            self.valued_customer_churn_risk.cooldown,
        )?;
        positive(
            "funnel_conversion_drop",
            "window",
            self.funnel_conversion_drop.window,
        )?;
        positive("complaint_surge", "window", self.complaint_surge.window)?;
        positive("dead_letter_rate", "window", self.dead_letter_rate.window)?;
        let funnel = &self.funnel_conversion_drop;
        if !(funnel.drop_percent > 0.0 && funnel.drop_percent < 100.0) {
            return Err(format!(
                "rule `funnel_conversion_drop`, field `drop_percent`: must be above 0 and below 100 (got {})",
                funnel.drop_percent
            ));
        }
        if funnel.min_sessions == 0 {
            return Err(
                "rule `funnel_conversion_drop`, field `min_sessions`: must be at least 1".into(),
            );
        }
        if funnel.baseline_windows == 0 {
            return Err(
                "rule `funnel_conversion_drop`, field `baseline_windows`: must be at least 1"
                    .into(),
            );
        }
        let churn = &self.valued_customer_churn_risk;
        if !(churn.min_lifetime_value.is_finite() && churn.min_lifetime_value >= 0.0) {
            return Err(format!(
                "rule `valued_customer_churn_risk`, field `min_lifetime_value`: must be 0 or more (got {})",
                churn.min_lifetime_value
            ));
        }
        Ok(())
    }
}

/// Figment's errors, phrased as rule and field.
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| match e.path.as_slice() {
            [] => e.kind.to_string(),
            [rule] => format!("rule `{rule}`: {}", e.kind),
            [rule, field @ ..] => format!("rule `{rule}`, field `{}`: {}", field.join("."), e.kind),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_rules_are_all_enabled_with_the_documented_defaults() {
        let rules = RuleSet::default();
        assert!(rules.cart_abandonment.enabled);
        assert_eq!(rules.cart_abandonment.after, Duration::from_secs(3600));
        assert_eq!(rules.detractor_feedback.max_nps, 6);
        assert_eq!(rules.detractor_feedback.max_csat, 2);
        assert_eq!(rules.detractor_feedback.severity, Severity::Critical);
    }

    #[test]
    fn a_rule_file_changes_only_what_it_names() {
        let rules = RuleSet::parse(
            "[cart_abandonment]\nafter = \"5m\"\n[complaint_surge]\nenabled = false\n",
            None,
        )
        .unwrap();
        assert_eq!(rules.cart_abandonment.after, Duration::from_secs(300));
        assert_eq!(rules.cart_abandonment.cooldown, Duration::from_secs(86_400));
        assert!(!rules.complaint_surge.enabled);
        assert!(rules.dead_letter_rate.enabled);
    }

    #[test]
    fn bad_rule_files_name_the_rule_and_the_field() {
        let cases = [
            (
                "[cart_abandonment]\nafter = \"soon\"",
                "rule `cart_abandonment`, field `after`",
            ),
            (
                "[detractor_feedback]\nmax_nps = \"six\"",
                "rule `detractor_feedback`, field `max_nps`",
            ),
            ("[complaint_surge]\nthreshhold = 3", "threshhold"),
            ("[cart_abandonement]\nafter = \"1m\"", "cart_abandonement"),
            (
                "[funnel_conversion_drop]\ndrop_percent = 120.0",
                "rule `funnel_conversion_drop`, field `drop_percent`",
            ),
            (
                "[dead_letter_rate]\nwindow = \"0s\"",
                "rule `dead_letter_rate`, field `window`",
            ),
            (
                "[complaint_surge]\nwindow = \"500us\"",
                "rule `complaint_surge`, field `window`: must be at least 1 ms",
            ),
            (
                "[funnel_conversion_drop]\nmin_sessions = 0",
                "rule `funnel_conversion_drop`, field `min_sessions`",
            ),
            (
                "[dead_letter_rate]\nseverity = \"LOUD\"",
                "rule `dead_letter_rate`, field `severity`",
            ),
        ];
        for (text, expected) in cases {
            let err = RuleSet::parse(text, Some("rules.toml".into()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{text}: {err}");
            assert!(err.contains("rules.toml"), "{err}");
        }
    }

    #[test]
    fn a_missing_rule_file_is_an_error_naming_it() {
        let err = RuleSet::load(Some(Path::new("/nonexistent/rules.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/rules.toml"), "{err}");
    }
}
