//! The stage rules: read from TOML (`deploy/stage_rules.toml` holds the
//! defaults), validated once at start-up, then evaluated as pure functions of
//! a profile, a signal and the time.

use std::path::Path;
use std::time::Duration;

use figment::providers::{Format, Toml};
use figment::value::{Dict, Value};
use figment::Figment;
use journey_core::contract::{CustomerEvent, EventType, SessionSummary, Stage};
use serde::Deserialize;

use crate::profile::{funnel_rank, Profile};
use crate::rfm::RfmThresholds;

/// The default rules, built into the binary.
pub const DEFAULT_RULES: &str = include_str!("../../../deploy/stage_rules.toml");

/// Why a rule file cannot be used; it names the rule and the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("stage rules: {0}")]
    Syntax(String),
    #[error("stage rules: `{section}`: {message}")]
    Section {
        section: &'static str,
        message: String,
    },
    #[error("stage rule `{rule}`: {message}")]
    Table { rule: String, message: String },
    #[error("stage rule `{rule}`: field `{field}`: {message}")]
    Rule {
        rule: String,
        field: &'static str,
        message: String,
    },
}

/// What a rule reacts to.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// An event of one of `events` (every type when `None`), optionally with
    /// at least `min_orders` orders within `within_ms`, or a promoter's NPS.
    Event {
        events: Option<u32>,
        min_orders: Option<(u32, i64)>,
        promoter: bool,
    },
    /// A closed session that started after the customer's last order.
    Session,
    /// Wall-clock: a buyer without activity for `after_ms`.
    Silence { after_ms: i64 },
    /// Wall-clock: a detractor's score without a positive signal for `after_ms`.
    Detractor { after_ms: i64 },
}

/// One validated rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Carried by the stage changes the rule causes.
    pub name: String,
    pub to: Stage,
    /// Stages the rule applies in: bit `i` for `Stage::ALL[i]`, [`NEW_BIT`] for no stage.
    from: u8,
    pub trigger: Trigger,
}

/// The `from` bit of a customer without a stage.
const NEW_BIT: u8 = 1 << 7;

fn stage_bit(stage: Option<Stage>) -> u8 {
    match stage {
        None => NEW_BIT,
        Some(s) => 1 << stage_index(s),
    }
}

/// Position of `stage` in [`Stage::ALL`].
pub fn stage_index(stage: Stage) -> usize {
    Stage::ALL.iter().position(|s| *s == stage).unwrap_or(0)
}

impl Rule {
    fn applies_in(&self, stage: Option<Stage>) -> bool {
        self.from & stage_bit(stage) != 0
    }
}

/// Score thresholds of feedback.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackThresholds {
    pub detractor_max_nps: i32,
    pub detractor_max_csat: i32,
    pub promoter_min_nps: i32,
}

impl FeedbackThresholds {
    /// Whether an NPS or CSAT is a detractor's.
    pub fn is_detractor(&self, nps: Option<i32>, csat: Option<i32>) -> bool {
        nps.is_some_and(|n| n <= self.detractor_max_nps)
            || csat.is_some_and(|c| c <= self.detractor_max_csat)
    }
}

/// What a rule reacts to, as [`Rules::evaluate`] sees it.
#[derive(Debug, Clone, Copy)]
pub enum Signal<'a> {
    Event(&'a CustomerEvent),
    Session(&'a SessionSummary),
    /// A wall-clock timer of the customer came due.
    Timer,
}

/// The validated rule set.
#[derive(Debug, Clone)]
pub struct Rules {
    pub rules: Vec<Rule>,
    pub feedback: FeedbackThresholds,
    pub rfm: RfmThresholds,
    /// Most order times any rule needs to look back on.
    pub order_history: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    feedback: Value,
    rfm: Value,
    rule: Vec<Dict>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    to: String,
    on: String,
    from: Option<Vec<String>>,
    events: Option<Vec<String>>,
    min_orders: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    within: Option<Duration>,
    #[serde(default)]
    promoter: bool,
    #[serde(default, with = "humantime_serde")]
    after: Option<Duration>,
}

impl Rules {
    /// The rules in the file at `path`, or the defaults when `None`.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Rules> {
        use anyhow::Context as _;
        match path {
            None => Ok(Rules::parse(DEFAULT_RULES)?),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading classifier.rules_file {}", path.display()))?;
                Rules::parse(&text)
                    .with_context(|| format!("in classifier.rules_file {}", path.display()))
            }
        }
    }

    /// Parses and validates a rule file.
    pub fn parse(text: &str) -> Result<Rules, RulesError> {
        let raw: RawFile = Figment::from(Toml::string(text))
            .extract()
            .map_err(|e| RulesError::Syntax(e.to_string()))?;
        let feedback: FeedbackThresholds =
            raw.feedback
                .deserialize()
                .map_err(|e| RulesError::Section {
                    section: "feedback",
                    message: e.to_string(),
                })?;
        let rfm: RfmThresholds = raw.rfm.deserialize().map_err(|e| RulesError::Section {
            section: "rfm",
            message: e.to_string(),
        })?;
        rfm.validate().map_err(|message| RulesError::Section {
            section: "rfm",
            message,
        })?;
        let mut rules = Vec::with_capacity(raw.rule.len());
        for (i, dict) in raw.rule.into_iter().enumerate() {
            let name = match dict.get("name").and_then(Value::as_str) {
                Some(name) => name.to_string(),
                None => format!("#{}", i + 1),
            };
            let rule: RawRule = Value::Dict(figment::value::Tag::Default, dict)
                .deserialize()
                .map_err(|e: figment::Error| RulesError::Table {
                    rule: name.clone(),
                    message: e.to_string(),
                })?;
            if rules.iter().any(|r: &Rule| r.name == rule.name) {
                return Err(invalid(&name, "name", "another rule has this name".into()));
            }
            rules.push(validate(rule)?);
        }
        if rules.is_empty() {
            return Err(RulesError::Syntax("no [[rule]] defined".into()));
        }
        let order_history = rules
            .iter()
            .filter_map(|r| match r.trigger {
                Trigger::Event {
                    min_orders: Some((n, _)),
                    ..
                } => Some(n as usize),
                _ => None,
            })
            .max()
            .unwrap_or(1);
        Ok(Rules {
            rules,
            feedback,
            rfm,
            order_history,
        })
    }

    /// The rule that moves `profile` (already updated with the signal's facts)
    /// to another stage on `signal` at `now`, if any: the first rule that
    /// matches decides, and one that would keep the stage changes nothing.
    /// An event or session older than the current stage (it arrived late)
    /// moves a customer only further down the funnel, never out of churn
    /// risk or win-back: the stage was judged after it, so it cannot, say,
    /// win back a customer from a churn risk its own silence caused.
    pub fn evaluate(&self, profile: &Profile, signal: Signal<'_>, now: i64) -> Option<&Rule> {
        let stage = profile.stage;
        let late = stage.is_some() && !matches!(signal, Signal::Timer) && now < profile.stage_since;
        let decided = self.rules.iter().find(|rule| {
            rule.applies_in(stage)
                && match signal {
                    // A timer only ever fires rules that change the stage,
                    // so a due timer cannot be re-armed into a loop.
                    Signal::Timer => Some(rule.to) != stage && self.timer_due(rule, profile, now),
                    _ => self.matches(rule, profile, signal, now),
                }
        })?;
        let moves = Some(decided.to) != stage;
        // Churn risk and win-back are off the funnel (rank 0): nothing is onwards from them.
        let rank = funnel_rank(stage);
        let onwards = rank > 0 && funnel_rank(Some(decided.to)) > rank;
        (moves && (!late || onwards)).then_some(decided)
    }

    /// The earliest time after `after` at which a timer rule would move
    /// `profile` on if nothing else happened.
    pub fn next_deadline(&self, profile: &Profile, after: i64) -> Option<i64> {
        self.rules
            .iter()
            .filter(|r| r.applies_in(profile.stage) && Some(r.to) != profile.stage)
            .filter_map(|r| self.deadline(r, profile))
            .filter(|at| *at > after)
            .min()
    }

    fn deadline(&self, rule: &Rule, profile: &Profile) -> Option<i64> {
        match rule.trigger {
            Trigger::Silence { after_ms } if profile.orders > 0 => {
                Some(profile.last_seen.saturating_add(after_ms))
            }
            Trigger::Detractor { after_ms } => profile
                .detractor_since
                .map(|since| since.saturating_add(after_ms)),
            _ => None,
        }
    }

    fn timer_due(&self, rule: &Rule, profile: &Profile, now: i64) -> bool {
        self.deadline(rule, profile).is_some_and(|at| at <= now)
    }

    fn matches(&self, rule: &Rule, profile: &Profile, signal: Signal<'_>, now: i64) -> bool {
        match (&rule.trigger, signal) {
            (
                Trigger::Event {
                    events,
                    min_orders,
                    promoter,
                },
                Signal::Event(event),
            ) => {
                events.is_none_or(|set| set & event_bit(event.event_type) != 0)
                    && min_orders.is_none_or(|(n, within)| {
                        profile.orders_since(now.saturating_sub(within)) >= n as usize
                    })
                    && (!promoter
                        || event
                            .feedback
                            .as_ref()
                            .and_then(|f| f.nps)
                            .is_some_and(|nps| nps >= self.feedback.promoter_min_nps))
            }
            (Trigger::Session, Signal::Session(session)) => profile
                .last_order_at
                .is_some_and(|order| session.start > order),
            _ => false,
        }
    }
}

fn invalid(rule: &str, field: &'static str, message: String) -> RulesError {
    RulesError::Rule {
        rule: rule.to_string(),
        field,
        message,
    }
}

fn validate(raw: RawRule) -> Result<Rule, RulesError> {
    let name = raw.name.as_str();
    if name.trim().is_empty() {
        return Err(invalid(name, "name", "must not be blank".into()));
    }
    let to = parse_stage(&raw.to).ok_or_else(|| {
        invalid(
            name,
            "to",
            format!(
                "unknown stage `{}` (expected one of {})",
                raw.to,
                stage_names()
            ),
        )
    })?;
    let from = match &raw.from {
        None => u8::MAX,
        Some(list) if list.is_empty() => {
            return Err(invalid(name, "from", "must list at least one stage".into()))
        }
        Some(list) => {
            let mut bits = 0;
            for s in list {
                bits |= match s.as_str() {
                    "NEW" => NEW_BIT,
                    other => stage_bit(Some(parse_stage(other).ok_or_else(|| {
                        invalid(
                            name,
                            "from",
                            format!(
                                "unknown stage `{other}` (expected NEW or one of {})",
                                stage_names()
                            ),
                        )
                    })?)),
                };
            }
            bits
        }
    };
    let positive = |field: &'static str, d: Option<Duration>| -> Result<i64, RulesError> {
        match d {
            None => Err(invalid(name, field, "is required for this trigger".into())),
            Some(d) if d.is_zero() => Err(invalid(name, field, "must be longer than zero".into())),
            Some(d) => Ok(d.as_millis().min(i64::MAX as u128) as i64),
        }
    };
    let unexpected = |field: &'static str, present: bool| -> Result<(), RulesError> {
        if present {
            Err(invalid(
                name,
                field,
                format!("does not apply to on = \"{}\"", raw.on),
            ))
        } else {
            Ok(())
        }
    };
    let trigger = match raw.on.as_str() {
        "event" => {
            unexpected("after", raw.after.is_some())?;
            let events = match &raw.events {
                None => None,
                Some(list) if list.is_empty() => {
                    return Err(invalid(
                        name,
                        "events",
                        "must list at least one event type".into(),
                    ))
                }
                Some(list) => {
                    let mut bits = 0;
                    for e in list {
                        let t = parse_event_type(e).ok_or_else(|| {
                            invalid(name, "events", format!("unknown event type `{e}`"))
                        })?;
                        bits |= event_bit(t);
                    }
                    Some(bits)
                }
            };
            let min_orders = match (raw.min_orders, raw.within) {
                (None, None) => None,
                (Some(0), _) => {
                    return Err(invalid(name, "min_orders", "must be at least 1".into()))
                }
                (Some(n), within) => Some((n, positive("within", within)?)),
                (None, Some(_)) => {
                    return Err(invalid(name, "within", "needs `min_orders`".into()))
                }
            };
            Trigger::Event {
                events,
                min_orders,
                promoter: raw.promoter,
            }
        }
        "session" | "silence" | "detractor" => {
            unexpected("events", raw.events.is_some())?;
            unexpected("min_orders", raw.min_orders.is_some())?;
            unexpected("within", raw.within.is_some())?;
            unexpected("promoter", raw.promoter)?;
            match raw.on.as_str() {
                "session" => {
                    unexpected("after", raw.after.is_some())?;
                    Trigger::Session
                }
                "silence" => Trigger::Silence {
                    after_ms: positive("after", raw.after)?,
                },
                _ => Trigger::Detractor {
                    after_ms: positive("after", raw.after)?,
                },
            }
        }
        other => {
            return Err(invalid(
                name,
                "on",
                format!(
                    "unknown trigger `{other}` (expected event, session, silence or detractor)"
                ),
            ))
        }
    };
    if from & stage_bit(Some(to)) == from {
        return Err(invalid(
            name,
            "from",
            "only lists the stage the rule moves to".into(),
        ));
    }
    Ok(Rule {
        name: raw.name,
        to,
        from,
        trigger,
    })
}

fn stage_names() -> String {
    Stage::ALL.map(Stage::as_str).join(", ")
}

fn parse_stage(name: &str) -> Option<Stage> {
    Stage::ALL.into_iter().find(|s| s.as_str() == name)
}

/// Every event type, in contract order (bit `i` of an event set).
const EVENT_TYPES: [(EventType, &str); 19] = [
    (EventType::PageView, "PAGE_VIEW"),
    (EventType::ScreenView, "SCREEN_VIEW"),
    (EventType::ProductView, "PRODUCT_VIEW"),
    (EventType::Search, "SEARCH"),
    (EventType::AddToCart, "ADD_TO_CART"),
    (EventType::RemoveFromCart, "REMOVE_FROM_CART"),
    (EventType::CheckoutStarted, "CHECKOUT_STARTED"),
    (EventType::Purchase, "PURCHASE"),
    (EventType::Refund, "REFUND"),
    (EventType::Login, "LOGIN"),
    (EventType::Identify, "IDENTIFY"),
    (EventType::SignUp, "SIGN_UP"),
    (EventType::SupportContact, "SUPPORT_CONTACT"),
    (EventType::Feedback, "FEEDBACK"),
    (EventType::EmailOpen, "EMAIL_OPEN"),
    (EventType::EmailClick, "EMAIL_CLICK"),
    (EventType::AdClick, "AD_CLICK"),
    (EventType::StoreVisit, "STORE_VISIT"),
    (EventType::Other, "OTHER"),
];

fn parse_event_type(name: &str) -> Option<EventType> {
    EVENT_TYPES
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(t, _)| *t)
}

fn event_bit(event_type: EventType) -> u32 {
    let i = EVENT_TYPES
        .iter()
        .position(|(t, _)| *t == event_type)
        .unwrap_or(EVENT_TYPES.len() - 1);
    1 << i
}

#[cfg(test)]
mod tests {
    use journey_core::contract::{Feedback, Order};

    use super::*;

    const DAY: i64 = 24 * 3600 * 1000;

    fn defaults() -> Rules {
        Rules::parse(DEFAULT_RULES).expect("the default rules are valid")
    }

    fn event(event_type: EventType, at: i64) -> CustomerEvent {
        let mut event = CustomerEvent {
            event_id: format!("e{at}"),
            event_type,
            occurred_at: at,
            ..CustomerEvent::default()
        };
        if event_type == EventType::Purchase {
            event.order = Some(Order {
                order_id: format!("o{at}"),
                revenue: 10.0,
                currency: "EUR".into(),
                item_count: None,
            });
        }
        event
    }

    fn nps(score: i32, at: i64) -> CustomerEvent {
        let mut e = event(EventType::Feedback, at);
        e.feedback = Some(Feedback {
            nps: Some(score),
            ..Feedback::default()
        });
        e
    }

    /// A profile in `stage` with `orders` orders, the last at `at`.
    fn profile(stage: Option<Stage>, orders: u32, at: i64) -> Profile {
        let mut p = Profile::new(0, journey_core::contract::Channel::Web);
        p.stage = stage;
        p.orders = orders;
        p.last_seen = at;
        if orders > 0 {
            p.last_order_at = Some(at);
            p.recent_orders = vec![at];
        }
        p
    }

    /// Observes `event` on `p` and returns the (stage, rule) it moves to.
    fn on_event(rules: &Rules, mut p: Profile, e: &CustomerEvent) -> Option<(Stage, String)> {
        p.observe(e, &rules.feedback, rules.order_history);
        rules
            .evaluate(&p, Signal::Event(e), e.occurred_at)
            .map(|r| (r.to, r.name.clone()))
    }

    #[test]
    fn event_rules_move_customers_as_documented() {
        use EventType as E;
        use Stage as S;
        let rules = defaults();
        let t = 100 * DAY;
        // (stage, orders, event, expected stage and rule)
        type Case = (
            Option<Stage>,
            u32,
            CustomerEvent,
            Option<(Stage, &'static str)>,
        );
        let cases: Vec<Case> = vec![
            (
                None,
                0,
                event(E::AdClick, t),
                Some((S::Awareness, "first_touch")),
            ),
            (
                None,
                0,
                event(E::EmailClick, t),
                Some((S::Awareness, "first_touch")),
            ),
            (
                None,
                0,
                event(E::PageView, t),
                Some((S::Awareness, "first_touch")),
            ),
            (
                None,
                0,
                event(E::ProductView, t),
                Some((S::Consideration, "consideration_signal")),
            ),
            (
                None,
                0,
                event(E::Purchase, t),
                Some((S::Purchase, "order_completed")),
            ),
            (Some(S::Awareness), 0, event(E::PageView, t), None),
            (
                Some(S::Awareness),
                0,
                event(E::AddToCart, t),
                Some((S::Consideration, "consideration_signal")),
            ),
            (
                Some(S::Awareness),
                0,
                event(E::Search, t),
                Some((S::Consideration, "consideration_signal")),
            ),
            (
                Some(S::Consideration),
                0,
                event(E::CheckoutStarted, t),
                None,
            ),
            (
                Some(S::Consideration),
                0,
                event(E::Purchase, t),
                Some((S::Purchase, "order_completed")),
            ),
            (
                Some(S::Purchase),
                1,
                event(E::SupportContact, t),
                Some((S::PostPurchase, "after_purchase")),
            ),
            (
                Some(S::Purchase),
                1,
                nps(7, t),
                Some((S::PostPurchase, "after_purchase")),
            ),
            (Some(S::Purchase), 1, event(E::ProductView, t), None),
            (Some(S::PostPurchase), 1, event(E::PageView, t), None),
            // A second order within 180 days makes a loyal customer ...
            (
                Some(S::PostPurchase),
                1,
                event(E::Purchase, t + 30 * DAY),
                Some((S::Loyal, "repeat_purchase")),
            ),
            // ... one after that is just another purchase.
            (
                Some(S::PostPurchase),
                1,
                event(E::Purchase, t + 200 * DAY),
                Some((S::Purchase, "order_completed")),
            ),
            (Some(S::Loyal), 3, event(E::Purchase, t + DAY), None),
            (
                Some(S::PostPurchase),
                1,
                nps(9, t),
                Some((S::Loyal, "promoter_score")),
            ),
            (Some(S::Awareness), 0, nps(10, t), None),
            (
                Some(S::ChurnRisk),
                1,
                event(E::PageView, t),
                Some((S::WinBack, "win_back")),
            ),
            (
                Some(S::ChurnRisk),
                1,
                event(E::Purchase, t),
                Some((S::WinBack, "win_back")),
            ),
            (
                Some(S::WinBack),
                1,
                event(E::Purchase, t + 300 * DAY),
                Some((S::Purchase, "order_completed")),
            ),
        ];
        for (stage, orders, e, expected) in cases {
            let got = on_event(&rules, profile(stage, orders, t), &e);
            let expected = expected.map(|(s, r)| (s, r.to_string()));
            assert_eq!(
                got, expected,
                "{stage:?} with {orders} orders + {:?}",
                e.event_type
            );
        }
    }

    #[test]
    fn a_late_event_moves_a_customer_only_further_down_the_funnel() {
        use EventType as E;
        use Stage as S;
        let rules = defaults();
        let since = 100 * DAY;
        let in_stage = |stage, orders| {
            let mut p = profile(Some(stage), orders, since - 70 * DAY);
            p.stage_since = since;
            p
        };
        let cases = [
            // (stage since day 100, orders, event, expected)
            (S::ChurnRisk, 1, event(E::PageView, since - DAY), None),
            (S::ChurnRisk, 1, event(E::Purchase, since - DAY), None),
            (
                S::ChurnRisk,
                1,
                event(E::PageView, since),
                Some((S::WinBack, "win_back")),
            ),
            (
                S::Consideration,
                0,
                event(E::Purchase, since - DAY),
                Some((S::Purchase, "order_completed")),
            ),
            (
                S::Awareness,
                0,
                event(E::ProductView, since - DAY),
                Some((S::Consideration, "consideration_signal")),
            ),
            (S::WinBack, 1, event(E::Purchase, since - 300 * DAY), None),
        ];
        for (stage, orders, e, expected) in cases {
            let got = on_event(&rules, in_stage(stage, orders), &e);
            let expected = expected.map(|(s, r)| (s, r.to_string()));
            assert_eq!(
                got,
                expected,
                "{stage:?} since day 100 + {:?} on day {}",
                e.event_type,
                e.occurred_at / DAY
            );
        }
    }

    #[test]
    fn a_session_after_the_last_order_is_a_repeat_visit() {
        let rules = defaults();
        let bought = profile(Some(Stage::Purchase), 1, 1_000);
        let session = |start| SessionSummary {
            session_id: "s".into(),
            start,
            end: start + 10,
            ..SessionSummary::default()
        };
        let rule = rules.evaluate(&bought, Signal::Session(&session(2_000)), 2_010);
        assert_eq!(rule.map(|r| r.name.as_str()), Some("repeat_visit"));
        // The session that holds the order is not a repeat visit.
        assert!(rules
            .evaluate(&bought, Signal::Session(&session(500)), 2_010)
            .is_none());
        let browsing = profile(Some(Stage::Awareness), 0, 1_000);
        assert!(rules
            .evaluate(&browsing, Signal::Session(&session(2_000)), 2_010)
            .is_none());
    }

    #[test]
    fn a_silent_buyer_becomes_a_churn_risk_when_the_timer_is_due() {
        let rules = defaults();
        let buyer = profile(Some(Stage::PostPurchase), 1, 10 * DAY);
        assert_eq!(rules.next_deadline(&buyer, i64::MIN), Some(70 * DAY));
        assert!(rules
            .evaluate(&buyer, Signal::Timer, 70 * DAY - 1)
            .is_none());
        let rule = rules.evaluate(&buyer, Signal::Timer, 70 * DAY).unwrap();
        assert_eq!(
            (rule.to, rule.name.as_str()),
            (Stage::ChurnRisk, "buyer_silent")
        );
        // A visitor who never bought has nothing to lose.
        let browser = profile(Some(Stage::Consideration), 0, 10 * DAY);
        assert_eq!(rules.next_deadline(&browser, i64::MIN), None);
        assert!(rules
            .evaluate(&browser, Signal::Timer, 1_000 * DAY)
            .is_none());
    }

    #[test]
    fn a_detractor_without_a_later_positive_signal_becomes_a_churn_risk() {
        let rules = defaults();
        let mut p = profile(Some(Stage::Awareness), 0, DAY);
        p.observe(&nps(3, DAY), &rules.feedback, rules.order_history);
        assert_eq!(p.detractor_since, Some(DAY));
        assert_eq!(rules.next_deadline(&p, i64::MIN), Some(15 * DAY));
        let rule = rules.evaluate(&p, Signal::Timer, 15 * DAY).unwrap();
        assert_eq!(
            (rule.to, rule.name.as_str()),
            (Stage::ChurnRisk, "unresolved_detractor")
        );

        p.observe(&nps(8, 2 * DAY), &rules.feedback, rules.order_history);
        assert_eq!(
            p.detractor_since, None,
            "a passive score is a positive signal"
        );
        assert!(rules.evaluate(&p, Signal::Timer, 15 * DAY).is_none());
    }

    #[test]
    fn a_timer_never_re_arms_a_deadline_already_passed() {
        let rules = defaults();
        let mut churned = profile(Some(Stage::ChurnRisk), 1, 0);
        churned.detractor_since = Some(0);
        assert_eq!(rules.next_deadline(&churned, i64::MIN), None);
        let buyer = profile(Some(Stage::Purchase), 1, 0);
        assert_eq!(rules.next_deadline(&buyer, 60 * DAY), None);
    }

    fn error_of(rule_toml: &str) -> String {
        let text = format!(
            "[feedback]\ndetractor_max_nps = 6\ndetractor_max_csat = 2\npromoter_min_nps = 9\n\
             [rfm]\nrecency_days = [7, 30, 90, 180]\nfrequency_orders = [2, 3, 5, 10]\nmonetary = [50.0, 200.0, 500.0, 1000.0]\n\
             [[rule]]\n{rule_toml}"
        );
        Rules::parse(&text).expect_err(rule_toml).to_string()
    }

    #[test]
    fn invalid_rules_are_refused_naming_the_rule_and_the_field() {
        let cases = [
            (
                "name = \"r\"\nto = \"AWARENESS\"\non = \"event\"\nevents = [\"PAGE_VEW\"]",
                "stage rule `r`: field `events`: unknown event type `PAGE_VEW`",
            ),
            (
                "name = \"r\"\nto = \"BORED\"\non = \"event\"",
                "stage rule `r`: field `to`: unknown stage `BORED`",
            ),
            (
                "name = \"r\"\nto = \"AWARENESS\"\non = \"event\"\nfrom = [\"NEWISH\"]",
                "stage rule `r`: field `from`: unknown stage `NEWISH`",
            ),
            (
                "name = \"r\"\nto = \"LOYAL\"\non = \"event\"\nmin_orders = 2\nwithin = \"0s\"",
                "stage rule `r`: field `within`: must be longer than zero",
            ),
            (
                "name = \"r\"\nto = \"CHURN_RISK\"\non = \"silence\"",
                "stage rule `r`: field `after`: is required for this trigger",
            ),
            (
                "name = \"r\"\nto = \"CHURN_RISK\"\non = \"silence\"\nafter = \"1d\"\nevents = [\"PURCHASE\"]",
                "stage rule `r`: field `events`: does not apply to on = \"silence\"",
            ),
            (
                "name = \"r\"\nto = \"AWARENESS\"\non = \"hourly\"",
                "stage rule `r`: field `on`: unknown trigger `hourly`",
            ),
            (
                "name = \"r\"\nto = \"AWARENESS\"\non = \"event\"\nfrom = [\"AWARENESS\"]",
                "stage rule `r`: field `from`: only lists the stage the rule moves to",
            ),
            (
                "name = \"r\"\nto = \"AWARENESS\"\non = \"event\"\nwhen = 1",
                "stage rule `r`:",
            ),
        ];
        for (rule, expected) in cases {
            let error = error_of(rule);
            assert!(
                error.starts_with(expected),
                "{error}\n  expected: {expected}"
            );
        }
        assert!(
            error_of("name = \"r\"\nto = \"AWARENESS\"\non = \"event\"\nwhen = 1").contains("when")
        );
    }

    #[test]
    fn duplicate_rule_names_and_bad_sections_are_refused() {
        let twice = DEFAULT_RULES.to_string()
            + "\n[[rule]]\nname = \"first_touch\"\nto = \"AWARENESS\"\non = \"event\"\n";
        let error = Rules::parse(&twice).unwrap_err().to_string();
        assert!(error.contains("`first_touch`: field `name`"), "{error}");
        let bad_rfm = DEFAULT_RULES.replace("[7, 30, 90, 180]", "[30, 7, 90, 180]");
        let error = Rules::parse(&bad_rfm).unwrap_err().to_string();
        assert!(
            error.contains("`rfm`") && error.contains("recency_days"),
            "{error}"
        );
    }
}
