//! The rules and the alert lifecycle over a real state store, driven the
//! way the runtime drives them, with the clocks under the test's control.

use journey_alerting::{AlertingConfig, CustomerContext, RuleSet, Topics};
use journey_core::codec::Codec;
use journey_core::contract::{
    Alert, AlertStatus, Channel, CustomerEvent, ErasureProgress, ErasureStep, ErasureTask,
    EventType, Feedback, FunnelStep, IdentityMerge, Order, SessionSummary, Stage, StageChange,
};
use journey_core::erasure::ErasureTopics;
use journey_core::runtime::{Context, InputRecord, Output, Processor};
use journey_core::state::{Clock, StateStore};
use prometheus::proto::MetricType;
use prometheus::Registry;

const EVENTS: &str = "events";
const SESSIONS: &str = "sessions";
const STAGES: &str = "stage-changes";
const DEAD: &str = "dead-letters";
const IDENTITIES: &str = "identities";
const FOLDS: &str = "alerting-merge-repartition";
const ALERTS: &str = "alerts";
const ERASURE_TASKS: &str = "erasure-tasks";
const ERASURE_PROGRESS: &str = "erasure-progress";
const PARTITION: i32 = 0;
const MINUTE: i64 = 60_000;
/// 2023-11-14T22:13:20Z.
const T0: i64 = 1_700_000_000_000;

struct Harness {
    store: StateStore,
    codec: Codec,
    /// The rules (TOML) the processor was built with.
    rules: String,
    alerting: journey_alerting::Alerting,
    registry: Registry,
    outputs: Vec<Output>,
    stream_time: i64,
    offset: i64,
    _dir: tempfile::TempDir,
}

/// An alerting processor with the built-in rules and `rules` (TOML) over them.
fn processor(rules: &str, registry: &Registry) -> journey_alerting::Alerting {
    let topics = Topics {
        events: EVENTS.into(),
        sessions: SESSIONS.into(),
        stage_changes: STAGES.into(),
        dead_letters: DEAD.into(),
        identities: IDENTITIES.into(),
        folds: FOLDS.into(),
        alerts: ALERTS.into(),
        erasure: ErasureTopics {
            tasks: ERASURE_TASKS.into(),
            progress: ERASURE_PROGRESS.into(),
        },
    };
    let rules = RuleSet::parse(rules, None).unwrap();
    journey_alerting::processor(&AlertingConfig::default(), rules, topics, registry).unwrap()
}

impl Harness {
    /// Alerting with the built-in rules and `rules` (TOML) over them.
    fn new(rules: &str) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path(), 64 << 20).unwrap();
        let registry = Registry::new();
        let alerting = processor(rules, &registry);
        let mut harness = Harness {
            rules: rules.to_string(),
            store,
            codec: Codec::builtin(),
            alerting,
            registry,
            outputs: Vec::new(),
            stream_time: i64::MIN,
            offset: 0,
            _dir: dir,
        };
        harness.assign();
        harness
    }

    /// A new processor over the same state, as after a restart: it knows
    /// only what is in state.
    fn restart(&mut self) {
        self.store.commit().unwrap();
        self.registry = Registry::new();
        self.alerting = processor(&self.rules, &self.registry);
        self.assign();
    }

    /// Tells the processor the partition is assigned, as the runtime does
    /// before its first record.
    fn assign(&mut self) {
        let mut ctx = Context::new(
            &mut self.store,
            &self.codec,
            &mut self.outputs,
            PARTITION,
            self.stream_time,
        );
        self.alerting.on_assigned(PARTITION, &mut ctx).unwrap();
    }

    fn feed(&mut self, topic: &str, key: &str, payload: &[u8], timestamp: i64) {
        self.stream_time = self.stream_time.max(timestamp);
        self.offset += 1;
        let record = InputRecord {
            topic,
            partition: PARTITION,
            offset: self.offset,
            timestamp,
            key: Some(key.as_bytes()),
            payload: Some(payload),
        };
        let mut ctx = Context::new(
            &mut self.store,
            &self.codec,
            &mut self.outputs,
            PARTITION,
            self.stream_time,
        );
        self.alerting.process(&record, &mut ctx).unwrap();
    }

    fn event(&mut self, event: CustomerEvent) {
        let payload = self.codec.encode(&event).unwrap();
        let key = event.customer_key().unwrap().to_string();
        self.feed(EVENTS, &key, &payload, event.occurred_at);
    }

    fn session(&mut self, session: SessionSummary) {
        let payload = self.codec.encode(&session).unwrap();
        self.feed(
            SESSIONS,
            &session.customer_id.clone(),
            &payload,
            session.end,
        );
    }

    fn stage(&mut self, change: StageChange) {
        let payload = self.codec.encode(&change).unwrap();
        self.feed(
            STAGES,
            &change.customer_id.clone(),
            &payload,
            change.changed_at,
        );
    }

    /// Ingest's merge `id` of anonymous id `visitor` into `customer` at `at`.
    fn merge(&mut self, id: &str, visitor: &str, customer: &str, at: i64) {
        let merge = IdentityMerge {
            merge_id: id.into(),
            anonymous_id: visitor.into(),
            customer_id: customer.into(),
            previous_customer_id: None,
            evidence_event_id: format!("e-{id}"),
            merged_at: at,
        };
        let payload = self.codec.encode(&merge).unwrap();
        self.feed(IDENTITIES, visitor, &payload, at);
    }

    /// Takes the records alerting sent its own repartition topic since the last call.
    fn folds(&mut self) -> Vec<Output> {
        let (folds, rest) = std::mem::take(&mut self.outputs)
            .into_iter()
            .partition(|o| o.topic == FOLDS);
        self.outputs = rest;
        folds
    }

    /// Reads `folds` back, as alerting does from its repartition topic.
    fn relay(&mut self, folds: &[Output]) {
        for fold in folds {
            let key = String::from_utf8(fold.key.clone()).unwrap();
            self.feed(FOLDS, &key, &fold.payload, fold.timestamp);
        }
    }

    /// Whether state holds `key`.
    fn holds(&mut self, key: &[u8]) -> bool {
        let keys = self.store.partition(PARTITION).keys(key, None, 1);
        keys.unwrap().first().is_some_and(|k| k == key)
    }

    fn context(&mut self, customer: &str) -> CustomerContext {
        let key = format!("customer/{customer}");
        let context = self.store.partition(PARTITION).get(key.as_bytes());
        context.unwrap().expect("a context")
    }

    /// Moves stream time up to `stream_time` and the wall clock to `wall`,
    /// firing due timers as the runtime's tick does.
    fn tick(&mut self, stream_time: i64, wall: i64) {
        self.stream_time = self.stream_time.max(stream_time);
        for (clock, now) in [(Clock::Event, self.stream_time), (Clock::Wall, wall)] {
            for (at, key) in self.store.due_timers(PARTITION, clock, now).unwrap() {
                self.store.cancel_timer(PARTITION, clock, at, &key);
                let mut ctx = Context::new(
                    &mut self.store,
                    &self.codec,
                    &mut self.outputs,
                    PARTITION,
                    self.stream_time,
                );
                self.alerting.on_timer(clock, at, &key, &mut ctx).unwrap();
            }
        }
    }

    /// The alerts emitted since the last call.
    fn alerts(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.outputs)
            .into_iter()
            .filter(|o| o.topic == ALERTS)
            .map(|o| self.codec.decode(&o.payload).unwrap())
            .collect()
    }

    /// The value of metric `name` with exactly `labels`, 0 if not exported.
    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let families = self.registry.gather();
        let Some(family) = families.iter().find(|f| f.name() == name) else {
            return 0.0;
        };
        family
            .get_metric()
            .iter()
            .find(|m| {
                let pairs: Vec<(&str, &str)> = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name(), l.value()))
                    .collect();
                labels.iter().all(|l| pairs.contains(l)) && pairs.len() == labels.len()
            })
            .map_or(0.0, |m| match family.get_field_type() {
                MetricType::COUNTER => m.get_counter().get_value(),
                _ => m.get_gauge().get_value(),
            })
    }
}

fn event(id: &str, customer: &str, event_type: EventType, at: i64) -> CustomerEvent {
    CustomerEvent {
        event_id: id.into(),
        event_type,
        occurred_at: at,
        customer_id: Some(customer.into()),
        channel: Channel::Web,
        ..CustomerEvent::default()
    }
}

fn purchase(id: &str, customer: &str, at: i64, revenue: f64) -> CustomerEvent {
    CustomerEvent {
        order: Some(Order {
            order_id: format!("o-{id}"),
            revenue,
            currency: "EUR".into(),
            item_count: Some(1),
        }),
        ..event(id, customer, EventType::Purchase, at)
    }
}

fn feedback(id: &str, customer: &str, at: i64, nps: i32, comment: &str) -> CustomerEvent {
    CustomerEvent {
        channel: Channel::Survey,
        feedback: Some(Feedback {
            nps: Some(nps),
            comment: Some(comment.into()),
            ..Feedback::default()
        }),
        ..event(id, customer, EventType::Feedback, at)
    }
}

fn change(id: &str, customer: &str, from: Option<Stage>, to: Stage, at: i64) -> StageChange {
    StageChange {
        change_id: id.into(),
        customer_id: customer.into(),
        from_stage: from,
        to_stage: to,
        rule: "test".into(),
        evidence_id: format!("e-{id}"),
        changed_at: at,
    }
}

/// A loyal customer entering churn risk.
fn loyal_to_churn_risk(id: &str, customer: &str, at: i64) -> StageChange {
    change(id, customer, Some(Stage::Loyal), Stage::ChurnRisk, at)
}

/// `event` as an anonymous visitor's, under `visitor`.
fn anonymous(event: CustomerEvent, visitor: &str) -> CustomerEvent {
    CustomerEvent {
        customer_id: None,
        anonymous_id: Some(visitor.into()),
        ..event
    }
}

fn statuses(alerts: &[Alert]) -> Vec<(&str, AlertStatus)> {
    alerts.iter().map(|a| (a.rule.as_str(), a.status)).collect()
}

const CART_10M: &str = "[cart_abandonment]\nafter = \"10m\"\n";

#[test]
fn an_abandoned_cart_fires_on_the_wall_clock_and_a_later_purchase_resolves_it() {
    let mut h = Harness::new(CART_10M);
    h.event(event("a1", "alice", EventType::AddToCart, T0));
    h.event(event(
        "a2",
        "alice",
        EventType::CheckoutStarted,
        T0 + MINUTE,
    ));
    h.tick(T0 + 9 * MINUTE, T0 + 9 * MINUTE);
    assert!(h.alerts().is_empty());
    // The partition is quiet: stream time follows the wall clock past the deadline.
    h.tick(T0 + 10 * MINUTE, T0 + 10 * MINUTE);
    let fired = h.alerts();
    assert_eq!(
        statuses(&fired),
        [("cart_abandonment", AlertStatus::Firing)]
    );
    assert_eq!(fired[0].customer_id.as_deref(), Some("alice"));
    assert_eq!(fired[0].evidence_id, "a1");
    assert_eq!(fired[0].fired_at, T0 + 10 * MINUTE);
    assert_eq!(fired[0].context["checkout_started"], "true");
    assert_eq!(
        h.metric(
            "alerts_firing",
            &[("rule", "cart_abandonment"), ("severity", "WARNING")]
        ),
        1.0
    );

    h.event(purchase("a3", "alice", T0 + 30 * MINUTE, 80.0));
    let resolved = h.alerts();
    assert_eq!(
        statuses(&resolved),
        [("cart_abandonment", AlertStatus::Resolved)]
    );
    assert_eq!(resolved[0].alert_id, fired[0].alert_id);
    assert_eq!(resolved[0].context["resolution"], "the customer bought");
    let counted = |status| {
        h.metric(
            "alerts_total",
            &[
                ("rule", "cart_abandonment"),
                ("severity", "WARNING"),
                ("status", status),
            ],
        )
    };
    assert_eq!((counted("FIRING"), counted("RESOLVED")), (1.0, 1.0));
    assert_eq!(
        h.metric(
            "alerts_firing",
            &[("rule", "cart_abandonment"), ("severity", "WARNING")]
        ),
        0.0
    );
}

#[test]
fn a_purchase_within_the_deadline_cancels_the_cart_alert() {
    let mut h = Harness::new(CART_10M);
    h.event(event("b1", "bob", EventType::AddToCart, T0));
    h.event(purchase("b2", "bob", T0 + 5 * MINUTE, 20.0));
    h.tick(T0 + 60 * MINUTE, T0 + 60 * MINUTE);
    assert!(h.alerts().is_empty());
}

#[test]
fn a_cart_event_arriving_after_the_purchase_that_followed_it_raises_no_alert() {
    let mut h = Harness::new(CART_10M);
    h.event(purchase("g2", "gina", T0 + 5 * MINUTE, 20.0));
    // Out of order, or re-sent by a crashed upstream: it happened before the purchase.
    h.event(event("g1", "gina", EventType::AddToCart, T0));
    h.tick(T0 + 30 * MINUTE, T0 + 30 * MINUTE);
    assert!(h.alerts().is_empty(), "gina bought after her cart add");
    // A cart opened after the purchase is a new one, and is abandoned.
    h.event(event("g3", "gina", EventType::AddToCart, T0 + 31 * MINUTE));
    h.tick(T0 + 41 * MINUTE, T0 + 41 * MINUTE);
    let fired = h.alerts();
    assert_eq!(
        statuses(&fired),
        [("cart_abandonment", AlertStatus::Firing)]
    );
    assert_eq!(fired[0].evidence_id, "g3");
}

#[test]
fn a_partition_behind_the_deadline_waits_for_its_backlog_before_alerting() {
    let mut h = Harness::new(CART_10M);
    h.event(event("c1", "carl", EventType::AddToCart, T0));
    h.event(event("d1", "dora", EventType::AddToCart, T0));
    // The wall clock is past both deadlines, the partition's backlog is not.
    h.tick(T0, T0 + 60 * MINUTE);
    assert!(h.alerts().is_empty());
    h.event(purchase("c2", "carl", T0 + 5 * MINUTE, 20.0));
    h.event(event("x1", "xena", EventType::PageView, T0 + 11 * MINUTE));
    h.tick(T0 + 11 * MINUTE, T0 + 61 * MINUTE);
    let alerts = h.alerts();
    let who: Vec<_> = alerts
        .iter()
        .map(|a| a.customer_id.as_deref().unwrap())
        .collect();
    assert_eq!(who, ["dora"]);
}

#[test]
fn a_detractor_alert_carries_context_suppresses_repeats_and_expires_after_the_cooldown() {
    let mut h = Harness::new("[detractor_feedback]\ncooldown = \"1h\"\n");
    h.event(purchase("p1", "carol", T0, 120.0));
    h.session(SessionSummary {
        session_id: "s1".into(),
        customer_id: "carol".into(),
        end: T0 + MINUTE,
        event_count: 3,
        entry_channel: "WEB".into(),
        furthest_step: FunnelStep::Purchase,
        revenue: 120.0,
        ..SessionSummary::default()
    });
    h.stage(change(
        "g1",
        "carol",
        Some(Stage::Purchase),
        Stage::PostPurchase,
        T0 + MINUTE,
    ));
    h.event(feedback(
        "f1",
        "carol",
        T0 + 2 * MINUTE,
        2,
        "Delivery was late",
    ));
    let fired = h.alerts();
    assert_eq!(
        statuses(&fired),
        [("detractor_feedback", AlertStatus::Firing)]
    );
    let alert = &fired[0];
    assert_eq!(alert.context["feedback_text"], "Delivery was late");
    assert_eq!(alert.context["stage"], "POST_PURCHASE");
    assert_eq!(alert.context["lifetime_value"], "120.00");
    assert_eq!(alert.context["last_session_id"], "s1");
    assert!(alert.action_plan.as_deref().unwrap().contains("24 hours"));

    h.event(feedback("f2", "carol", T0 + 30 * MINUTE, 1, "Still late"));
    assert!(h.alerts().is_empty());
    assert_eq!(
        h.metric("alerts_suppressed_total", &[("rule", "detractor_feedback")]),
        1.0
    );

    h.tick(T0 + 62 * MINUTE, T0 + 62 * MINUTE);
    let expired = h.alerts();
    assert_eq!(
        statuses(&expired),
        [("detractor_feedback", AlertStatus::Resolved)]
    );
    assert_eq!(expired[0].alert_id, alert.alert_id);
    assert!(expired[0].context["resolution"].starts_with("expired"));

    h.event(feedback(
        "f3",
        "carol",
        T0 + 70 * MINUTE,
        3,
        "Late once more",
    ));
    let again = h.alerts();
    assert_eq!(
        statuses(&again),
        [("detractor_feedback", AlertStatus::Firing)]
    );
    assert_ne!(again[0].alert_id, alert.alert_id);
    h.event(feedback(
        "f4",
        "carol",
        T0 + 80 * MINUTE,
        9,
        "Sorted, thanks",
    ));
    assert_eq!(
        statuses(&h.alerts()),
        [("detractor_feedback", AlertStatus::Resolved)]
    );
}

#[test]
fn alerts_open_before_a_restart_still_suppress_and_resolve() {
    let mut h = Harness::new("[detractor_feedback]\ncooldown = \"1h\"\n");
    h.event(feedback("f1", "carol", T0, 2, "Delivery was late"));
    let fired = h.alerts();
    assert_eq!(
        statuses(&fired),
        [("detractor_feedback", AlertStatus::Firing)]
    );
    h.restart();
    h.event(feedback("f2", "carol", T0 + MINUTE, 1, "Still late"));
    assert!(h.alerts().is_empty(), "suppressed by the alert in state");
    h.event(feedback(
        "f3",
        "carol",
        T0 + 2 * MINUTE,
        9,
        "Sorted, thanks",
    ));
    let resolved = h.alerts();
    assert_eq!(
        statuses(&resolved),
        [("detractor_feedback", AlertStatus::Resolved)]
    );
    assert_eq!(resolved[0].alert_id, fired[0].alert_id);
}

#[test]
fn the_same_inputs_give_the_same_alert_ids() {
    let ids: Vec<Vec<String>> = (0..2)
        .map(|_| {
            let mut h = Harness::new("");
            h.event(feedback("f1", "carol", T0, 0, "no"));
            h.event(feedback("f1", "dave", T0, 0, "no"));
            h.alerts().into_iter().map(|a| a.alert_id).collect()
        })
        .collect();
    assert_eq!(ids[0], ids[1]);
    assert_ne!(ids[0][0], ids[0][1]);
}

#[test]
fn a_purchase_re_sent_by_a_crashed_upstream_adds_to_the_lifetime_value_once() {
    let mut h = Harness::new("");
    // 300 once is below the valued customers' 500; counted twice it would not be.
    h.event(purchase("p1", "dan", T0, 300.0));
    h.event(purchase("p1", "dan", T0, 300.0));
    h.stage(loyal_to_churn_risk("g1", "dan", T0 + MINUTE));
    assert!(h.alerts().is_empty());
    assert_eq!(h.metric("repeats_total", &[]), 1.0);
    // Remembered for an hour of wall clock, not for ever: the same order
    // later counts again (here pushing dan over the threshold).
    let later = journey_core::runtime::now_millis() + journey_core::runtime::REPEAT_MEMORY_MS;
    h.tick(T0 + MINUTE, later + MINUTE);
    h.event(purchase("p1", "dan", T0 + 2 * MINUTE, 300.0));
    h.stage(loyal_to_churn_risk("g2", "dan", T0 + 3 * MINUTE));
    let fired = h.alerts();
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].context["lifetime_value"], "600.00");
}

#[test]
fn a_disabled_rule_raises_nothing() {
    let mut h = Harness::new("[detractor_feedback]\nenabled = false\n");
    h.event(feedback("f1", "carol", T0, 0, "awful"));
    assert!(h.alerts().is_empty());
}

#[test]
fn a_valued_customer_entering_churn_risk_alerts_until_they_leave_it() {
    let mut h = Harness::new("");
    h.event(purchase("p1", "vip", T0, 400.0));
    h.event(purchase("p2", "vip", T0 + MINUTE, 300.0));
    h.event(purchase("p3", "small", T0, 20.0));
    h.stage(loyal_to_churn_risk("g1", "vip", T0 + 90 * MINUTE));
    h.stage(loyal_to_churn_risk("g2", "small", T0 + 90 * MINUTE));
    let fired = h.alerts();
    assert_eq!(
        statuses(&fired),
        [("valued_customer_churn_risk", AlertStatus::Firing)]
    );
    assert_eq!(fired[0].customer_id.as_deref(), Some("vip"));
    assert_eq!(fired[0].context["lifetime_value"], "700.00");
    assert_eq!(fired[0].context["previous_stage"], "LOYAL");
    h.stage(change(
        "g3",
        "vip",
        Some(Stage::ChurnRisk),
        Stage::WinBack,
        T0 + 100 * MINUTE,
    ));
    let resolved = h.alerts();
    assert_eq!(
        statuses(&resolved),
        [("valued_customer_churn_risk", AlertStatus::Resolved)]
    );
    assert_eq!(resolved[0].context["resolution"], "moved to WIN_BACK");
}

#[test]
fn a_complaint_surge_fires_for_the_window_and_resolves_after_a_quiet_one() {
    let mut h = Harness::new("[complaint_surge]\nwindow = \"15m\"\nthreshold = 3\n");
    let start = T0 - T0.rem_euclid(15 * MINUTE);
    for i in 0..3 {
        let at = start + i * MINUTE;
        h.event(event(
            &format!("s{i}"),
            &format!("c{i}"),
            EventType::SupportContact,
            at,
        ));
    }
    h.event(feedback("f1", "c9", start + 4 * MINUTE, 1, "angry"));
    let detractor = h.alerts();
    assert_eq!(
        statuses(&detractor),
        [("detractor_feedback", AlertStatus::Firing)]
    );
    h.tick(start + 15 * MINUTE, start + 15 * MINUTE);
    let surge = h.alerts();
    assert_eq!(statuses(&surge), [("complaint_surge", AlertStatus::Firing)]);
    assert_eq!(surge[0].customer_id, None);
    assert_eq!(surge[0].context["scope"], "partition 0");
    assert_eq!(surge[0].context["count"], "4");
    h.tick(start + 30 * MINUTE, start + 30 * MINUTE);
    assert_eq!(
        statuses(&h.alerts()),
        [("complaint_surge", AlertStatus::Resolved)]
    );
    h.tick(start + 90 * MINUTE, start + 90 * MINUTE);
    assert!(h.alerts().is_empty());
}

#[test]
fn a_complaint_re_sent_by_a_crashed_upstream_counts_towards_a_surge_once() {
    let mut h = Harness::new("[complaint_surge]\nwindow = \"15m\"\nthreshold = 3\n");
    let start = T0 - T0.rem_euclid(15 * MINUTE);
    // Three complaints, one of them twice: at the threshold, not over it.
    for (i, id) in ["s0", "s1", "s2", "s1"].into_iter().enumerate() {
        h.event(event(
            id,
            "carol",
            EventType::SupportContact,
            start + i as i64 * MINUTE,
        ));
    }
    assert_eq!(h.metric("repeats_total", &[]), 1.0);
    h.tick(start + 15 * MINUTE, start + 15 * MINUTE);
    assert!(h.alerts().is_empty());
}

#[test]
fn the_dead_letter_rate_counts_every_dead_letter_record_as_it_is() {
    let mut h = Harness::new("[dead_letter_rate]\nwindow = \"5m\"\nthreshold = 2\n");
    let start = T0 - T0.rem_euclid(5 * MINUTE);
    for i in 0..3 {
        h.feed(DEAD, "k", b"not even avro", start + i * 1_000);
    }
    // A record of the next window closes this one without waiting for the timer.
    h.feed(DEAD, "k", b"x", start + 5 * MINUTE);
    let fired = h.alerts();
    assert_eq!(
        statuses(&fired),
        [("dead_letter_rate", AlertStatus::Firing)]
    );
    assert_eq!(fired[0].severity.as_str(), "CRITICAL");
    h.tick(start + 10 * MINUTE, start + 10 * MINUTE);
    assert_eq!(
        statuses(&h.alerts()),
        [("dead_letter_rate", AlertStatus::Resolved)]
    );
}

#[test]
fn a_channel_converting_far_below_its_baseline_fires_and_recovers() {
    let mut h = Harness::new(
        "[funnel_conversion_drop]\nwindow = \"1h\"\nbaseline_windows = 2\ndrop_percent = 50.0\nmin_sessions = 5\n",
    );
    let hour = 60 * MINUTE;
    let start = T0 - T0.rem_euclid(hour);
    let mut n = 0;
    let mut window = |h: &mut Harness, w: i64, conversions: i64| {
        for i in 0..10 {
            n += 1;
            h.session(SessionSummary {
                session_id: format!("s{n}"),
                customer_id: format!("c{n}"),
                end: start + w * hour + i * MINUTE,
                entry_channel: "WEB".into(),
                furthest_step: if i < conversions {
                    FunnelStep::Purchase
                } else {
                    FunnelStep::Cart
                },
                ..SessionSummary::default()
            });
        }
        h.tick(start + (w + 1) * hour, start + (w + 1) * hour);
        h.alerts()
    };
    assert!(window(&mut h, 0, 5).is_empty());
    assert!(window(&mut h, 1, 5).is_empty());
    let fired = window(&mut h, 2, 1);
    assert_eq!(
        statuses(&fired),
        [("funnel_conversion_drop", AlertStatus::Firing)]
    );
    assert_eq!(fired[0].context["scope"], "partition 0 channel WEB");
    assert_eq!(fired[0].context["conversion_percent"], "10.0");
    assert_eq!(fired[0].context["baseline_percent"], "50.0");
    // Still low: no second alert.
    assert!(window(&mut h, 3, 1).is_empty());
    let resolved = window(&mut h, 4, 6);
    assert_eq!(
        statuses(&resolved),
        [("funnel_conversion_drop", AlertStatus::Resolved)]
    );
    assert_eq!(resolved[0].alert_id, fired[0].alert_id);

    // Fired again, then the channel goes silent: once no session is left in
    // the baseline, the alert resolves rather than firing for good.
    assert!(window(&mut h, 5, 5).is_empty());
    let again = window(&mut h, 6, 1);
    assert_eq!(
        statuses(&again),
        [("funnel_conversion_drop", AlertStatus::Firing)]
    );
    h.tick(start + 8 * hour, start + 8 * hour);
    assert!(h.alerts().is_empty(), "a session is left in the baseline");
    h.tick(start + 9 * hour, start + 9 * hour);
    let silent = h.alerts();
    assert_eq!(
        statuses(&silent),
        [("funnel_conversion_drop", AlertStatus::Resolved)]
    );
    assert_eq!(
        silent[0].context["resolution"],
        "no sessions on the channel for the whole baseline"
    );
}

#[test]
fn a_revoked_partition_leaves_the_firing_gauge() {
    let mut h = Harness::new("");
    h.event(feedback("f1", "carol", T0, 0, "no"));
    let gauge = |h: &Harness| {
        h.metric(
            "alerts_firing",
            &[("rule", "detractor_feedback"), ("severity", "CRITICAL")],
        )
    };
    assert_eq!(gauge(&h), 1.0);
    h.alerting.on_revoked(PARTITION);
    assert_eq!(gauge(&h), 0.0);
    // Assigned again: the count comes back from state on first sight.
    h.event(event("e1", "dave", EventType::PageView, T0 + 1));
    assert_eq!(gauge(&h), 1.0);
}

#[test]
fn the_open_alert_filter_reports_its_memory_until_the_partition_is_revoked() {
    let mut h = Harness::new("");
    assert_eq!(h.metric("filter_bytes", &[]), 0.0);
    h.event(feedback("f1", "carol", T0, 0, "no"));
    assert!(h.metric("filter_bytes", &[]) > 0.0);
    h.alerting.on_revoked(PARTITION);
    assert_eq!(h.metric("filter_bytes", &[]), 0.0);
}

#[test]
fn interim_session_summaries_do_not_count_as_sessions() {
    let mut h = Harness::new("");
    let summary = |id: &str, interim: bool| SessionSummary {
        session_id: id.into(),
        customer_id: "erin".into(),
        end: T0 + MINUTE,
        event_count: 2,
        entry_channel: "WEB".into(),
        interim,
        ..SessionSummary::default()
    };
    h.session(summary("final", false));
    h.session(summary("still-open", true));
    h.event(feedback("f1", "erin", T0 + 2 * MINUTE, 1, "Rude staff"));
    let fired = h.alerts();
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].context["last_session_id"], "final");
}

#[test]
fn an_erased_customer_leaves_no_state_timers_or_firing_alerts() {
    let mut h = Harness::new(CART_10M);
    // A firing cart alert (with its cooldown timer) and a second open cart.
    h.event(event("e1", "erin", EventType::AddToCart, T0));
    h.tick(T0 + 10 * MINUTE, T0 + 10 * MINUTE);
    assert_eq!(h.alerts().len(), 1);
    h.event(event("e2", "erin", EventType::AddToCart, T0 + 11 * MINUTE));
    h.event(event("f1", "finn", EventType::AddToCart, T0 + 11 * MINUTE));
    h.store.commit().unwrap();

    let task = ErasureTask {
        request_id: "r-1".into(),
        customer_id: "erin".into(),
        subject: "erin".into(),
        requested_at: T0,
    };
    let payload = h.codec.encode(&task).unwrap();
    h.feed(ERASURE_TASKS, "erin", &payload, T0);
    let outputs = h.outputs.clone();
    let resolved = h.alerts();
    assert_eq!(
        statuses(&resolved),
        [("cart_abandonment", AlertStatus::Resolved)]
    );
    assert_eq!(
        resolved[0].context["resolution"],
        "the customer's data was erased"
    );
    let step: ErasureProgress = outputs
        .iter()
        .find(|o| o.topic == ERASURE_PROGRESS)
        .map(|o| h.codec.decode(&o.payload).unwrap())
        .expect("an ERASED step");
    assert_eq!(
        (step.step, step.service.as_str(), step.subjects),
        (ErasureStep::Erased, "alerting", vec!["erin".to_string()])
    );
    assert_eq!(
        h.metric(
            "alerts_firing",
            &[("rule", "cart_abandonment"), ("severity", "WARNING")]
        ),
        0.0
    );
    h.store.commit().unwrap();
    for key in [
        &b"customer/erin"[..],
        b"cart/erin",
        b"alert/cart_abandonment/erin",
    ] {
        assert!(
            h.store
                .partition(PARTITION)
                .keys(key, None, usize::MAX)
                .unwrap()
                .is_empty(),
            "{} left",
            String::from_utf8_lossy(key)
        );
    }
    assert!(h
        .store
        .timers_under(PARTITION, b"cart/erin")
        .unwrap()
        .is_empty());
    assert!(h
        .store
        .timers_under(PARTITION, b"expire/cart_abandonment/erin")
        .unwrap()
        .is_empty());
    // Finn's cart is untouched and still comes due.
    h.tick(T0 + 21 * MINUTE, T0 + 21 * MINUTE);
    let fired = h.alerts();
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].customer_id.as_deref(), Some("finn"));
}

#[test]
fn contexts_of_customers_who_never_bought_are_forgotten_after_the_retention() {
    let mut h = Harness::new("");
    let now = journey_core::runtime::now_millis();
    let day = 24 * 60 * MINUTE;
    let session = |customer: &str, end: i64| SessionSummary {
        session_id: format!("s-{customer}"),
        customer_id: customer.into(),
        start: end - MINUTE,
        end,
        entry_channel: "WEB".into(),
        ..SessionSummary::default()
    };
    // Visitors quiet for longer than the retention (90 days), enough of
    // them that the sweep takes two chunks.
    let quiet = 2_550;
    for i in 0..quiet {
        h.session(session(&format!("anon-{i:05}"), now - 91 * day));
    }
    h.session(session("recent", now - 89 * day));
    h.event(purchase("p1", "buyer", now - 200 * day, 20.0));
    h.session(session("buyer", now - 200 * day));
    h.stage(change(
        "c1",
        "staged",
        None,
        Stage::Awareness,
        now - 200 * day,
    ));
    let contexts = |h: &mut Harness| -> Vec<String> {
        h.store
            .partition(PARTITION)
            .keys(b"customer/", None, usize::MAX)
            .unwrap()
            .iter()
            .map(|k| String::from_utf8_lossy(&k[b"customer/".len()..]).into_owned())
            .collect()
    };
    assert_eq!(contexts(&mut h).len(), quiet + 3);

    // The sweep is due on the next hour, and goes on a chunk per tick.
    let sweeps = |h: &mut Harness| h.store.timers_under(PARTITION, b"sweep/").unwrap();
    let hour = sweeps(&mut h)[0].1;
    assert!(hour > now && hour <= now + 60 * MINUTE, "{hour}");
    for _ in 0..3 {
        h.tick(h.stream_time, hour);
    }
    assert_eq!(contexts(&mut h), ["buyer", "recent", "staged"]);
    assert_eq!(h.metric("contexts_forgotten_total", &[]), quiet as f64);
    assert_eq!(sweeps(&mut h), [(Clock::Wall, hour + 60 * MINUTE)]);

    // A forgotten visitor's next session brings the context back.
    h.session(session("anon-00000", now));
    assert_eq!(contexts(&mut h).len(), 4);
}

#[test]
fn a_visitors_cart_and_guest_purchase_follow_them_to_the_customer_who_logs_in() {
    let mut h = Harness::new(CART_10M);
    h.event(anonymous(purchase("g1", "-", T0, 30.0), "anon-1"));
    h.event(anonymous(
        event("a1", "-", EventType::AddToCart, T0 + MINUTE),
        "anon-1",
    ));
    h.merge("m1", "anon-1", "carol", T0 + 2 * MINUTE);
    let folds = h.folds();
    assert_eq!(folds.len(), 1);
    assert_eq!(folds[0].key, b"carol");
    for key in [&b"cart/anon-1"[..], b"customer/anon-1", b"bought/anon-1"] {
        assert!(!h.holds(key), "{} left", String::from_utf8_lossy(key));
    }
    h.relay(&folds);
    assert!(h.holds(b"cart/carol"));
    let carol = h.context("carol");
    assert_eq!((carol.orders, carol.lifetime_value), (1, 30.0));

    // Logged in, the customer buys: the cart they filled as a visitor is not abandoned.
    h.event(purchase("p1", "carol", T0 + 5 * MINUTE, 20.0));
    h.tick(T0 + 30 * MINUTE, T0 + 30 * MINUTE);
    assert_eq!(h.alerts(), []);
    assert_eq!(h.context("carol").lifetime_value, 50.0);
    assert_eq!(h.metric("identity_folds_sent_total", &[]), 1.0);
    assert_eq!(h.metric("identity_folds_applied_total", &[]), 1.0);
}

#[test]
fn a_visitors_cart_folded_after_the_customer_bought_is_not_abandoned() {
    let mut h = Harness::new(CART_10M);
    h.event(anonymous(
        event("a1", "-", EventType::AddToCart, T0),
        "anon-2",
    ));
    h.merge("m2", "anon-2", "dave", T0 + MINUTE);
    let folds = h.folds();
    // The purchase is read before the fold, which comes through another topic.
    h.event(purchase("p2", "dave", T0 + 2 * MINUTE, 10.0));
    h.relay(&folds);
    assert!(!h.holds(b"cart/dave"));
    h.tick(T0 + 30 * MINUTE, T0 + 30 * MINUTE);
    assert_eq!(h.alerts(), []);
}

#[test]
fn a_visitors_event_read_after_the_merge_goes_to_the_customer_once() {
    let mut h = Harness::new(CART_10M);
    // Nothing kept of the visitor yet: nothing to send.
    h.merge("m3", "anon-3", "erin", T0);
    assert!(h.folds().is_empty());
    // A cart add sent before the merge, read after it.
    h.event(anonymous(
        event("a3", "-", EventType::AddToCart, T0 - MINUTE),
        "anon-3",
    ));
    let folds = h.folds();
    assert_eq!(folds.len(), 1);
    // The second time as re-sent by the visitor's side after a crash.
    h.relay(&folds);
    h.relay(&folds);
    assert!(!h.holds(b"cart/anon-3"));
    assert_eq!(h.metric("identity_forwarded_events_total", &[]), 1.0);
    assert_eq!(h.metric("repeats_total", &[]), 1.0);
    h.tick(T0 + 30 * MINUTE, T0 + 30 * MINUTE);
    let alerts = h.alerts();
    assert_eq!(
        statuses(&alerts),
        [("cart_abandonment", AlertStatus::Firing)]
    );
    assert_eq!(alerts[0].customer_id.as_deref(), Some("erin"));
    assert_eq!(alerts[0].context["cart_adds"], "1");
}

#[test]
fn a_visitors_stage_change_read_after_the_merge_leaves_no_context_behind() {
    let mut h = Harness::new("");
    h.merge("m5", "anon-5", "fay", T0);
    // Sent by the classifier before it folded the visitor, read after the merge.
    h.stage(change("c5", "anon-5", None, Stage::Awareness, T0 - MINUTE));
    assert!(!h.holds(b"customer/anon-5"));
    // A visitor not folded keeps their stage.
    h.stage(change("c6", "anon-6", None, Stage::Awareness, T0));
    assert_eq!(h.context("anon-6").stage, Some(Stage::Awareness));
}

#[test]
fn a_visitors_earlier_cart_brings_the_customers_deadline_forward() {
    let mut h = Harness::new(CART_10M);
    h.event(anonymous(
        event("v1", "-", EventType::AddToCart, T0),
        "anon-4",
    ));
    h.event(event("c1", "frank", EventType::AddToCart, T0 + 5 * MINUTE));
    h.merge("m4", "anon-4", "frank", T0 + 6 * MINUTE);
    let folds = h.folds();
    h.relay(&folds);
    assert_eq!(
        h.store.timers_under(PARTITION, b"cart/frank").unwrap(),
        [(Clock::Wall, T0 + 10 * MINUTE)]
    );
    h.tick(T0 + 10 * MINUTE, T0 + 10 * MINUTE);
    let alerts = h.alerts();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].evidence_id, "v1");
    assert_eq!(alerts[0].context["cart_adds"], "2");
}
