//! Threshold rules over tumbling event-time windows (complaint surge, dead
//! letters): more than `threshold` matching records in one window.
//!
//! Windows are counted per input partition (see the crate docs for why) and
//! aligned to the epoch, so every instance agrees on their bounds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Draft, Verdict};
use crate::ruleset::ThresholdRule;

/// Start of the window of `window_ms` that holds `at`.
pub fn window_start(at: i64, window_ms: i64) -> i64 {
    at - at.rem_euclid(window_ms)
}

/// The open window of a threshold rule on one partition, kept in state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowCount {
    pub start: i64,
    pub count: u64,
}

impl WindowCount {
    /// The empty window holding `at`.
    pub fn holding(at: i64, window_ms: i64) -> WindowCount {
        WindowCount {
            start: window_start(at, window_ms),
            count: 0,
        }
    }

    /// End of the window (exclusive).
    pub fn end(&self, window_ms: i64) -> i64 {
        self.start + window_ms
    }
}

/// Whether a closed window's `count` breaks the rule.
pub fn threshold_verdict(count: u64, rule: &ThresholdRule) -> Verdict {
    if count > rule.threshold {
        Verdict::Fire
    } else {
        Verdict::Clear
    }
}

/// The alert for a closed window of partition `partition` that broke the
/// rule; `what` names the records counted (`complaints`, `dead letters`).
pub fn threshold_draft(
    name: &'static str,
    rule: &ThresholdRule,
    what: &str,
    partition: i32,
    window: &WindowCount,
) -> Draft {
    let window_ms = rule.window.as_millis() as i64;
    let subject = format!("partition {partition}");
    Draft {
        rule: name,
        severity: rule.severity,
        summary: format!(
            "{} {what} in {} min on {subject} (threshold {})",
            window.count,
            rule.window.as_secs() / 60,
            rule.threshold
        ),
        customer_id: None,
        action_plan: rule.action_plan.clone(),
        evidence_id: format!("{name}/{partition}/{}", window.start),
        at: window.end(window_ms),
        context: BTreeMap::from([
            ("scope".to_string(), subject.clone()),
            ("window_start".to_string(), window.start.to_string()),
            ("count".to_string(), window.count.to_string()),
            ("threshold".to_string(), rule.threshold.to_string()),
        ]),
        subject,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ruleset::RuleSet;

    #[test]
    fn more_than_the_threshold_fires_and_at_most_the_threshold_clears() {
        let mut rule = RuleSet::default().complaint_surge;
        rule.threshold = 3;
        assert_eq!(threshold_verdict(4, &rule), Verdict::Fire);
        assert_eq!(threshold_verdict(3, &rule), Verdict::Clear);
        assert_eq!(threshold_verdict(0, &rule), Verdict::Clear);
    }

    #[test]
    fn the_draft_names_scope_window_and_count() {
        let rule = RuleSet::default().dead_letter_rate;
        let window = WindowCount {
            start: 600_000,
            count: 51,
        };
        let draft = threshold_draft("dead_letter_rate", &rule, "dead letters", 2, &window);
        assert_eq!(draft.subject, "partition 2");
        assert_eq!(draft.customer_id, None);
        assert_eq!(draft.at, 900_000);
        assert_eq!(draft.evidence_id, "dead_letter_rate/2/600000");
        assert_eq!(
            draft.summary,
            "51 dead letters in 5 min on partition 2 (threshold 50)"
        );
    }

    proptest! {
        #[test]
        fn every_time_falls_in_exactly_its_aligned_window(at in -1_000_000_000i64..1_000_000_000_000, window in 1i64..10_000_000) {
            let w = WindowCount::holding(at, window);
            prop_assert!(w.start <= at && at < w.end(window));
            prop_assert_eq!(w.start.rem_euclid(window), 0);
        }
    }
}
