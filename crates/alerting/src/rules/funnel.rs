//! Funnel conversion drop: per entry channel, the share of sessions that end
//! in a purchase over one window, against the same share over the
//! `baseline_windows` windows before it.

use std::collections::{BTreeMap, VecDeque};

use journey_core::contract::{FunnelStep, SessionSummary};
use serde::{Deserialize, Serialize};

use super::{Draft, Verdict, FUNNEL_CONVERSION_DROP};
use crate::ruleset::FunnelDropRule;

/// Sessions and the converted among them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub sessions: u64,
    pub conversions: u64,
}

impl Counts {
    /// Conversions per session (0 without sessions).
    pub fn rate(&self) -> f64 {
        if self.sessions == 0 {
            0.0
        } else {
            self.conversions as f64 / self.sessions as f64
        }
    }
}

/// Whether a session converted: it reached the purchase.
pub fn converted(session: &SessionSummary) -> bool {
    session.furthest_step == FunnelStep::Purchase || !session.order_ids.is_empty()
}

/// A channel's open window and the closed windows before it, kept in state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunnelWindows {
    pub start: i64,
    pub current: Counts,
    /// Closed windows, newest last, at most `baseline_windows`.
    pub history: VecDeque<Counts>,
}

impl FunnelWindows {
    /// No history, the window starting at `start` open.
    pub fn new(start: i64) -> FunnelWindows {
        FunnelWindows {
            start,
            current: Counts::default(),
            history: VecDeque::new(),
        }
    }

    /// Counts a session in the open window.
    pub fn record(&mut self, converted: bool) {
        self.current.sessions += 1;
        self.current.conversions += u64::from(converted);
    }

    /// The closed windows together.
    pub fn baseline(&self) -> Counts {
        self.history.iter().fold(Counts::default(), |a, c| Counts {
            sessions: a.sessions + c.sessions,
            conversions: a.conversions + c.conversions,
        })
    }

    /// Judges the open window against the baseline, then closes it and opens the next.
    pub fn close(&mut self, rule: &FunnelDropRule) -> (Verdict, Counts, Counts) {
        let (current, baseline) = (self.current, self.baseline());
        let verdict = conversion_drop(current, baseline, rule);
        self.history.push_back(current);
        while self.history.len() > rule.baseline_windows as usize {
            self.history.pop_front();
        }
        self.start += rule.window.as_millis() as i64;
        self.current = Counts::default();
        (verdict, current, baseline)
    }

    /// Whether there is nothing left to judge or compare against.
    pub fn is_empty(&self) -> bool {
        self.current.sessions == 0 && self.history.iter().all(|c| c.sessions == 0)
    }
}

/// Whether `current` converts more than `drop_percent` below `baseline`,
/// each with at least `min_sessions`.
pub fn conversion_drop(current: Counts, baseline: Counts, rule: &FunnelDropRule) -> Verdict {
    if current.sessions < rule.min_sessions
        || baseline.sessions < rule.min_sessions
        || baseline.conversions == 0
    {
        return Verdict::Quiet;
    }
    let floor = baseline.rate() * (1.0 - rule.drop_percent / 100.0);
    if current.rate() < floor {
        Verdict::Fire
    } else {
        Verdict::Clear
    }
}

/// The subject of the conversion-drop alert of `channel` on `partition`.
pub fn drop_subject(partition: i32, channel: &str) -> String {
    format!("partition {partition} channel {channel}")
}

/// The alert for `channel` on `partition` whose window ending at `end` dropped.
pub fn drop_draft(
    rule: &FunnelDropRule,
    partition: i32,
    channel: &str,
    end: i64,
    current: Counts,
    baseline: Counts,
) -> Draft {
    let subject = drop_subject(partition, channel);
    let percent = |c: Counts| format!("{:.1}", c.rate() * 100.0);
    Draft {
        rule: FUNNEL_CONVERSION_DROP,
        severity: rule.severity,
        summary: format!(
            "{channel} conversion {}% vs baseline {}% on partition {partition}",
            percent(current),
            percent(baseline)
        ),
        customer_id: None,
        action_plan: rule.action_plan.clone(),
        evidence_id: format!("{FUNNEL_CONVERSION_DROP}/{partition}/{channel}/{end}"),
        at: end,
        context: BTreeMap::from([
            ("scope".to_string(), subject.clone()),
            ("channel".to_string(), channel.to_string()),
            ("conversion_percent".to_string(), percent(current)),
            ("baseline_percent".to_string(), percent(baseline)),
            ("sessions".to_string(), current.sessions.to_string()),
            (
                "baseline_sessions".to_string(),
                baseline.sessions.to_string(),
            ),
        ]),
        subject,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::RuleSet;

    fn counts(sessions: u64, conversions: u64) -> Counts {
        Counts {
            sessions,
            conversions,
        }
    }

    #[test]
    fn a_drop_beyond_the_percentage_fires_with_enough_volume() {
        let mut rule = RuleSet::default().funnel_conversion_drop;
        rule.drop_percent = 30.0;
        rule.min_sessions = 50;
        let baseline = counts(1000, 100); // 10 %
        let cases = [
            (counts(100, 6), Verdict::Fire),   // 6 % < 7 %
            (counts(100, 7), Verdict::Clear),  // 7 % is the floor
            (counts(100, 12), Verdict::Clear), // better than usual
            (counts(49, 0), Verdict::Quiet),   // quiet hour
        ];
        for (current, expected) in cases {
            assert_eq!(
                conversion_drop(current, baseline, &rule),
                expected,
                "{current:?}"
            );
        }
        assert_eq!(
            conversion_drop(counts(100, 0), counts(49, 10), &rule),
            Verdict::Quiet
        );
        assert_eq!(
            conversion_drop(counts(100, 0), counts(100, 0), &rule),
            Verdict::Quiet
        );
    }

    #[test]
    fn closing_rolls_the_baseline_over_the_last_windows() {
        let mut rule = RuleSet::default().funnel_conversion_drop;
        rule.baseline_windows = 2;
        rule.min_sessions = 1;
        let mut windows = FunnelWindows::new(0);
        for converted in [true, false] {
            windows.record(converted);
        }
        assert_eq!(windows.close(&rule).0, Verdict::Quiet); // no baseline yet
        assert_eq!(windows.start, 3_600_000);
        windows.record(false);
        windows.record(false);
        let (verdict, current, baseline) = windows.close(&rule);
        assert_eq!(
            (verdict, current, baseline),
            (Verdict::Fire, counts(2, 0), counts(2, 1))
        );
        windows.close(&rule);
        assert_eq!(
            windows.history,
            VecDeque::from([counts(2, 0), counts(0, 0)])
        );
        windows.close(&rule);
        windows.close(&rule);
        assert!(windows.is_empty());
    }

    #[test]
    fn a_session_converts_when_it_reaches_the_purchase() {
        let bought = SessionSummary {
            furthest_step: FunnelStep::Purchase,
            ..SessionSummary::default()
        };
        assert!(converted(&bought));
        assert!(!converted(&SessionSummary::default()));
    }
}
