//! The processor over a real state store, driven as the runtime drives it,
//! with the wall clock under the test's control.

use journey_core::codec::Codec;
use journey_core::contract::{
    Channel, CustomerEvent, EventType, Feedback, IdentityMerge, Order, SessionSummary, Stage,
    StageChange,
};
use journey_core::runtime::{Context, InputRecord, Output, Processor};
use journey_core::state::{Clock, StateStore};
use prometheus::Registry;

use super::*;

const DAY: i64 = 24 * 3600 * 1000;
const T0: i64 = 1_700_000_000_000;
/// How long the harness keeps an inactive visitor's profile.
const VISITOR_RETENTION: i64 = 90 * DAY;

fn topics() -> ClassifierTopics {
    ClassifierTopics {
        events: "events".into(),
        sessions: "sessions".into(),
        identities: "identities".into(),
        repartition: "merge-repartition".into(),
        stage_changes: "stage-changes".into(),
        erasure: ErasureTopics::new(&TopicsConfig::default()),
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    store: StateStore,
    codec: Codec,
    classifier: Classifier,
    registry: Registry,
    offset: i64,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path(), 32 << 20).unwrap();
        let (classifier, registry) = classifier();
        Harness {
            _dir: dir,
            store,
            codec: Codec::builtin(),
            classifier,
            registry,
            offset: 0,
        }
    }

    fn feed(
        &mut self,
        topic: &str,
        partition: i32,
        key: &str,
        payload: &[u8],
        timestamp: i64,
    ) -> Vec<Output> {
        self.offset += 1;
        let record = InputRecord {
            topic,
            partition,
            offset: self.offset,
            timestamp,
            key: Some(key.as_bytes()),
            payload: Some(payload),
        };
        let mut outputs = Vec::new();
        let mut ctx = Context::new(
            &mut self.store,
            &self.codec,
            &mut outputs,
            partition,
            timestamp,
        );
        self.classifier.process(&record, &mut ctx).unwrap();
        outputs
    }

    fn changes(&self, outputs: &[Output]) -> Vec<StageChange> {
        outputs
            .iter()
            .filter(|o| o.topic == "stage-changes")
            .map(|o| self.codec.decode(&o.payload).unwrap())
            .collect()
    }

    fn event(&mut self, partition: i32, event: &CustomerEvent) -> Vec<StageChange> {
        let payload = self.codec.encode(event).unwrap();
        let key = event.customer_key().unwrap().to_string();
        let outputs = self.feed("events", partition, &key, &payload, event.occurred_at);
        self.changes(&outputs)
    }

    /// Fires the wall-clock timers due at `now`, as the runtime's tick does.
    fn tick(&mut self, partition: i32, now: i64) -> Vec<StageChange> {
        let mut outputs = Vec::new();
        for (at, key) in self.store.due_timers(partition, Clock::Wall, now).unwrap() {
            self.store.cancel_timer(partition, Clock::Wall, at, &key);
            let mut ctx = Context::new(&mut self.store, &self.codec, &mut outputs, partition, now);
            self.classifier
                .on_timer(Clock::Wall, at, &key, &mut ctx)
                .unwrap();
        }
        self.changes(&outputs)
    }

    fn profile(&mut self, partition: i32, id: &str) -> Option<Profile> {
        self.store.partition(partition).get(id.as_bytes()).unwrap()
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        gauge(&self.registry, name, labels)
    }
}

fn classifier() -> (Classifier, Registry) {
    let registry = Registry::new();
    let rules = Arc::new(Rules::parse(crate::DEFAULT_RULES).unwrap());
    let classifier = Classifier::new(
        rules,
        topics(),
        LocalPartitions::default(),
        VISITOR_RETENTION,
        &registry,
    );
    (classifier, registry)
}

/// The value of metric `name` with `labels` in `registry`'s text exposition (0 when absent).
fn gauge(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut text = Vec::new();
    use prometheus::Encoder as _;
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut text)
        .unwrap();
    String::from_utf8(text)
        .unwrap()
        .lines()
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .find(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|line| line.rsplit(' ').next())
        .map(|value| value.parse().unwrap())
        .unwrap_or(0.0)
}

fn event(id: &str, customer: &str, event_type: EventType, at: i64) -> CustomerEvent {
    let mut event = CustomerEvent {
        event_id: id.into(),
        event_type,
        occurred_at: at,
        customer_id: Some(customer.into()),
        channel: Channel::Web,
        ..CustomerEvent::default()
    };
    if event_type == EventType::Purchase {
        event.order = Some(Order {
            order_id: format!("o-{id}"),
            revenue: 40.0,
            currency: "EUR".into(),
            item_count: Some(1),
        });
    }
    event
}

fn anonymous(id: &str, anon: &str, event_type: EventType, at: i64) -> CustomerEvent {
    let mut e = event(id, anon, event_type, at);
    e.customer_id = None;
    e.anonymous_id = Some(anon.into());
    e
}

fn moves(changes: &[StageChange]) -> Vec<(Option<Stage>, Stage, &str, &str)> {
    changes
        .iter()
        .map(|c| {
            (
                c.from_stage,
                c.to_stage,
                c.rule.as_str(),
                c.evidence_id.as_str(),
            )
        })
        .collect()
}

#[test]
fn a_stage_change_per_transition_and_none_when_the_stage_stays() {
    let mut h = Harness::new();
    let first = h.event(0, &event("e1", "alice", EventType::AdClick, T0));
    assert_eq!(
        moves(&first),
        vec![(None, Stage::Awareness, "first_touch", "e1")]
    );
    assert_eq!(first[0].customer_id, "alice");
    assert_eq!(first[0].changed_at, T0);
    assert!(h
        .event(0, &event("e2", "alice", EventType::PageView, T0 + 1))
        .is_empty());
    let second = h.event(0, &event("e3", "alice", EventType::ProductView, T0 + 2));
    assert_eq!(
        moves(&second),
        vec![(
            Some(Stage::Awareness),
            Stage::Consideration,
            "consideration_signal",
            "e3"
        )]
    );

    // The same input gives the same ids, whoever processes it.
    let mut again = Harness::new();
    let replayed = again.event(0, &event("e1", "alice", EventType::AdClick, T0));
    assert_eq!(replayed[0].change_id, first[0].change_id);
    assert_ne!(first[0].change_id, second[0].change_id);
    assert_eq!(
        h.gauge(
            "stage_transitions_total",
            &[("from", "NONE"), ("to", "AWARENESS")]
        ),
        1.0
    );
}

#[test]
fn the_profile_keeps_facts_of_every_event_and_session() {
    let mut h = Harness::new();
    h.event(0, &event("e1", "bob", EventType::PageView, T0));
    let mut email = event("e2", "bob", EventType::EmailClick, T0 + 10);
    email.channel = Channel::Email;
    h.event(0, &email);
    h.event(0, &event("e3", "bob", EventType::Purchase, T0 + 20));
    let session = SessionSummary {
        session_id: "s1".into(),
        customer_id: "bob".into(),
        start: T0 + 30,
        end: T0 + 90,
        entry_channel: "WEB".into(),
        ..SessionSummary::default()
    };
    let payload = h.codec.encode(&session).unwrap();
    let outputs = h.feed("sessions", 0, "bob", &payload, T0 + 90);
    assert_eq!(
        moves(&h.changes(&outputs)),
        vec![(
            Some(Stage::Purchase),
            Stage::PostPurchase,
            "repeat_visit",
            "s1"
        )]
    );
    let p = h.profile(0, "bob").unwrap();
    assert_eq!((p.first_seen, p.last_seen), (T0, T0 + 90));
    assert_eq!(p.channel_names(), vec!["WEB", "EMAIL"]);
    assert_eq!((p.sessions, p.orders, p.revenue), (1, 1, 40.0));
    assert_eq!(
        (p.stage, p.stage_since),
        (Some(Stage::PostPurchase), T0 + 90)
    );
}

#[test]
fn a_silent_buyer_becomes_a_churn_risk_on_the_wall_clock_and_returns_as_win_back() {
    let mut h = Harness::new();
    h.event(0, &event("p1", "carol", EventType::Purchase, T0));
    // Activity within the silence pushes the deadline on.
    h.event(0, &event("v1", "carol", EventType::PageView, T0 + 30 * DAY));
    assert!(h.tick(0, T0 + 60 * DAY).is_empty());
    assert!(h.tick(0, T0 + 90 * DAY - 1).is_empty());
    let churn = h.tick(0, T0 + 90 * DAY);
    let evidence = format!("buyer_silent@{}", T0 + 90 * DAY);
    assert_eq!(
        moves(&churn),
        vec![(
            Some(Stage::Purchase),
            Stage::ChurnRisk,
            "buyer_silent",
            evidence.as_str()
        )]
    );
    assert_eq!(churn[0].changed_at, T0 + 90 * DAY);
    // Nothing more is due for a churn risk, however long the silence lasts.
    assert!(h.tick(0, T0 + 900 * DAY).is_empty());
    assert_eq!(h.profile(0, "carol").unwrap().timer_at, None);
    let back = h.event(
        0,
        &event("v2", "carol", EventType::PageView, T0 + 100 * DAY),
    );
    assert_eq!(
        moves(&back),
        vec![(Some(Stage::ChurnRisk), Stage::WinBack, "win_back", "v2")]
    );
    assert_eq!(h.gauge("customers", &[("stage", "WIN_BACK")]), 1.0);
    assert_eq!(h.gauge("customers", &[("stage", "CHURN_RISK")]), 0.0);
}

#[test]
fn a_late_event_neither_wins_back_a_churn_risk_nor_dates_a_move_before_the_stage_it_leaves() {
    let mut h = Harness::new();
    h.event(0, &event("p1", "carol", EventType::Purchase, T0));
    let churn = h.tick(0, T0 + 60 * DAY);
    assert_eq!(moves(&churn)[0].1, Stage::ChurnRisk);
    // A page view from before the churn risk was judged, read late: a fact
    // of the profile, not a return. Before, it won the customer back, and
    // the silence timer it re-armed, already past, moved her straight back.
    let late = h.event(0, &event("v1", "carol", EventType::PageView, T0 + 59 * DAY));
    assert!(late.is_empty(), "{:?}", moves(&late));
    assert_eq!(h.profile(0, "carol").unwrap().last_seen, T0 + 59 * DAY);
    assert!(h.tick(0, T0 + 200 * DAY).is_empty());
    let back = h.event(0, &event("v2", "carol", EventType::PageView, T0 + 61 * DAY));
    assert_eq!(
        moves(&back),
        vec![(Some(Stage::ChurnRisk), Stage::WinBack, "win_back", "v2")]
    );

    // A late purchase still counts as one, dated no earlier than the stage it ends.
    h.event(0, &event("pv", "bob", EventType::ProductView, T0 + 10));
    let bought = h.event(0, &event("p2", "bob", EventType::Purchase, T0 + 5));
    assert_eq!(
        moves(&bought),
        vec![(
            Some(Stage::Consideration),
            Stage::Purchase,
            "order_completed",
            "p2"
        )]
    );
    assert_eq!(bought[0].changed_at, T0 + 10);
}

#[test]
fn an_inactive_visitor_is_forgotten_after_the_retention_and_a_customer_never_is() {
    let mut h = Harness::new();
    h.event(0, &anonymous("a1", "visitor", EventType::PageView, T0));
    h.event(0, &event("c1", "carol", EventType::PageView, T0));
    // Activity pushes the retention on.
    h.event(
        0,
        &anonymous("a2", "visitor", EventType::PageView, T0 + 30 * DAY),
    );
    assert!(h.tick(0, T0 + VISITOR_RETENTION).is_empty());
    assert!(h.tick(0, T0 + 30 * DAY + VISITOR_RETENTION - 1).is_empty());
    assert!(
        h.profile(0, "visitor").is_some(),
        "active within the retention"
    );
    assert_eq!(h.gauge("customers", &[("stage", "AWARENESS")]), 2.0);
    h.tick(0, T0 + 30 * DAY + VISITOR_RETENTION);
    assert!(h.profile(0, "visitor").is_none(), "forgotten");
    assert_eq!(h.gauge("customers", &[("stage", "AWARENESS")]), 1.0);
    assert_eq!(h.gauge("visitors_forgotten_total", &[]), 1.0);
    h.tick(0, T0 + 900 * DAY);
    assert!(
        h.profile(0, "carol").is_some(),
        "a customer is kept for good"
    );

    // A visitor who bought goes through the stage timers first.
    h.event(0, &anonymous("p1", "buyer", EventType::Purchase, T0));
    let churn = h.tick(0, T0 + 60 * DAY);
    assert_eq!(moves(&churn)[0].1, Stage::ChurnRisk);
    assert!(h.profile(0, "buyer").is_some());
    h.tick(0, T0 + VISITOR_RETENTION);
    assert!(h.profile(0, "buyer").is_none());
    assert_eq!(h.gauge("customers", &[("stage", "CHURN_RISK")]), 0.0);
}

#[test]
fn a_detractor_won_back_from_churn_risk_stays_won_back_until_a_new_detractor_score() {
    let mut h = Harness::new();
    let detractor = |id: &str, nps: i32, at: i64| {
        let mut e = event(id, "dan", EventType::Feedback, at);
        e.feedback = Some(Feedback {
            nps: Some(nps),
            ..Feedback::default()
        });
        e
    };
    h.event(0, &detractor("f1", 2, T0));
    let churn = h.tick(0, T0 + 14 * DAY);
    assert_eq!(moves(&churn)[0].1, Stage::ChurnRisk);
    let back = h.event(0, &event("v1", "dan", EventType::PageView, T0 + 20 * DAY));
    assert_eq!(
        moves(&back),
        vec![(Some(Stage::ChurnRisk), Stage::WinBack, "win_back", "v1")]
    );
    // The score already acted on is not a reason to move again.
    assert!(h.tick(0, T0 + 20 * DAY).is_empty());
    assert!(h
        .event(0, &event("v2", "dan", EventType::PageView, T0 + 21 * DAY))
        .is_empty());
    assert!(h.tick(0, T0 + 60 * DAY).is_empty());
    // A new detractor score starts its own clock.
    h.event(0, &detractor("f2", 1, T0 + 61 * DAY));
    assert!(h.tick(0, T0 + 75 * DAY - 1).is_empty());
    let again = h.tick(0, T0 + 75 * DAY);
    assert_eq!(
        moves(&again)[0].1,
        Stage::ChurnRisk,
        "fourteen days after the new score"
    );
}

#[test]
fn identity_merge_folds_the_visitor_into_the_customer_once() {
    let mut h = Harness::new();
    let (anon_partition, customer_partition) = (1, 2);
    h.event(
        anon_partition,
        &anonymous("a1", "anon-9", EventType::PageView, T0),
    );
    h.event(
        anon_partition,
        &anonymous("a2", "anon-9", EventType::AddToCart, T0 + 5),
    );
    h.event(
        customer_partition,
        &event("c1", "dave", EventType::Login, T0 + 10),
    );

    let payload = h
        .codec
        .encode(&merge("m1", "anon-9", "dave", T0 + 10))
        .unwrap();
    let forwarded = h.feed("identities", anon_partition, "anon-9", &payload, T0 + 10);
    assert_eq!(forwarded.len(), 1);
    assert_eq!(
        (forwarded[0].topic.as_str(), forwarded[0].key.as_slice()),
        ("merge-repartition", &b"dave"[..])
    );
    assert_eq!(h.profile(anon_partition, "anon-9"), None);
    // Replayed on the visitor's side: nothing is left to forward.
    assert!(h
        .feed("identities", anon_partition, "anon-9", &payload, T0 + 10)
        .is_empty());

    let out = h.feed(
        "merge-repartition",
        customer_partition,
        "dave",
        &forwarded[0].payload,
        T0 + 10,
    );
    assert_eq!(
        moves(&h.changes(&out)),
        vec![(
            Some(Stage::Awareness),
            Stage::Consideration,
            MERGE_RULE,
            "m1"
        )]
    );
    let dave = h.profile(customer_partition, "dave").unwrap();
    assert_eq!(dave.first_seen, T0);
    assert_eq!(dave.merged, vec!["anon-9".to_string()]);
    // A repeat of the forwarded profile (the visitor's side re-sent it after a crash) is not counted twice.
    let out = h.feed(
        "merge-repartition",
        customer_partition,
        "dave",
        &forwarded[0].payload,
        T0 + 10,
    );
    assert!(out.is_empty());
    assert_eq!(h.profile(customer_partition, "dave").unwrap(), dave);
    assert_eq!(h.gauge("customers", &[("stage", "CONSIDERATION")]), 1.0);
    assert_eq!(h.gauge("customers", &[("stage", "AWARENESS")]), 0.0);
}

#[test]
fn a_merged_visitor_carries_its_timer_to_the_customer() {
    let mut h = Harness::new();
    h.event(1, &anonymous("a1", "anon-1", EventType::Purchase, T0));
    let sent = h.identity(1, &merge("m1", "anon-1", "erin", T0 + 1));
    // The visitor's timer went with its profile.
    assert!(h.tick(1, T0 + 1_000 * DAY).is_empty());
    assert_eq!(
        moves(&h.fold(2, "erin", &sent[0])),
        vec![(None, Stage::Purchase, MERGE_RULE, "m1")]
    );
    let churn = h.tick(2, T0 + 60 * DAY);
    assert_eq!(churn.len(), 1);
    assert_eq!(
        (churn[0].customer_id.as_str(), churn[0].to_stage),
        ("erin", Stage::ChurnRisk)
    );
}

#[test]
fn the_stage_gauge_and_funnel_follow_the_partitions_owned() {
    let mut h = Harness::new();
    h.event(0, &event("e1", "a", EventType::PageView, T0));
    h.event(0, &event("e2", "a", EventType::ProductView, T0 + 1));
    h.event(1, &event("e3", "b", EventType::PageView, T0));
    h.event(1, &event("e4", "c", EventType::PageView, T0));
    h.store.commit().unwrap();
    let web_ratio = |registry: &Registry| {
        gauge(
            registry,
            "funnel_conversion_ratio",
            &[
                ("channel", "WEB"),
                ("from", "AWARENESS"),
                ("to", "CONSIDERATION"),
            ],
        )
    };
    assert_eq!(h.gauge("customers", &[("stage", "AWARENESS")]), 2.0);
    assert_eq!(
        h.gauge(
            "funnel_customers",
            &[("channel", "WEB"), ("step", "AWARENESS")]
        ),
        3.0
    );
    assert!((web_ratio(&h.registry) - 1.0 / 3.0).abs() < 1e-9);

    h.classifier.on_revoked(1);
    assert_eq!(h.gauge("customers", &[("stage", "AWARENESS")]), 0.0);
    assert_eq!(web_ratio(&h.registry), 1.0);

    // A new instance (a restart) finds the counts in state as partitions come.
    let (mut fresh, registry) = classifier();
    for partition in [0, 1] {
        let mut outputs = Vec::new();
        let mut ctx = Context::new(&mut h.store, &h.codec, &mut outputs, partition, T0);
        fresh.on_assigned(partition, &mut ctx).unwrap();
    }
    assert_eq!(
        gauge(&registry, "customers", &[("stage", "AWARENESS")]),
        2.0
    );
    assert_eq!(
        gauge(&registry, "customers", &[("stage", "CONSIDERATION")]),
        1.0
    );
    assert!((web_ratio(&registry) - 1.0 / 3.0).abs() < 1e-9);
}

fn merge(id: &str, anon: &str, customer: &str, at: i64) -> IdentityMerge {
    IdentityMerge {
        merge_id: id.into(),
        anonymous_id: anon.into(),
        customer_id: customer.into(),
        previous_customer_id: None,
        evidence_event_id: "login".into(),
        merged_at: at,
    }
}

impl Harness {
    /// Feeds an identity merge on the anonymous id's partition; returns what goes to the repartition topic.
    fn identity(&mut self, partition: i32, merge: &IdentityMerge) -> Vec<Vec<u8>> {
        let payload = self.codec.encode(merge).unwrap();
        let outputs = self.feed(
            "identities",
            partition,
            &merge.anonymous_id,
            &payload,
            merge.merged_at,
        );
        forwarded(outputs)
    }

    /// Feeds an event; returns what goes to the repartition topic.
    fn event_forwarded(&mut self, partition: i32, event: &CustomerEvent) -> Vec<Vec<u8>> {
        let payload = self.codec.encode(event).unwrap();
        let key = event.customer_key().unwrap().to_string();
        forwarded(self.feed("events", partition, &key, &payload, event.occurred_at))
    }

    /// Feeds a record of the repartition topic on the customer's partition.
    fn fold(&mut self, partition: i32, customer: &str, payload: &[u8]) -> Vec<StageChange> {
        let outputs = self.feed("merge-repartition", partition, customer, payload, T0);
        self.changes(&outputs)
    }
}

fn forwarded(outputs: Vec<Output>) -> Vec<Vec<u8>> {
    outputs
        .into_iter()
        .filter(|o| o.topic == "merge-repartition")
        .map(|o| o.payload)
        .collect()
}

#[test]
fn an_anonymous_event_read_after_its_merge_follows_the_visitor_to_the_customer() {
    let mut h = Harness::new();
    let (anon_partition, customer_partition) = (1, 2);
    h.event(
        customer_partition,
        &event("c1", "fay", EventType::Login, T0),
    );
    // The merge is read before any of the visitor's events: nothing to move yet.
    assert!(h
        .identity(anon_partition, &merge("m1", "anon-5", "fay", T0))
        .is_empty());
    let purchase = anonymous("a1", "anon-5", EventType::Purchase, T0 - 5);
    let sent = h.event_forwarded(anon_partition, &purchase);
    assert_eq!(sent.len(), 1);
    assert_eq!(h.profile(anon_partition, "anon-5"), None);
    assert_eq!(h.gauge("customers", &[("stage", "AWARENESS")]), 1.0);

    let changes = h.fold(customer_partition, "fay", &sent[0]);
    assert_eq!(
        moves(&changes),
        vec![(
            Some(Stage::Awareness),
            Stage::Purchase,
            "order_completed",
            "a1"
        )]
    );
    assert_eq!(changes[0].customer_id, "fay");
    let fay = h.profile(customer_partition, "fay").unwrap();
    assert_eq!((fay.orders, fay.revenue, fay.first_seen), (1, 40.0, T0 - 5));
    // A repeat (the visitor's side re-sent it after a crash) counts once.
    assert!(h.fold(customer_partition, "fay", &sent[0]).is_empty());
    assert_eq!(h.profile(customer_partition, "fay").unwrap(), fay);
    assert_eq!(h.gauge("identity_forwarded_events_total", &[]), 1.0);
    assert_eq!(h.gauge("customers", &[("stage", "PURCHASE")]), 1.0);
    assert_eq!(h.gauge("customers", &[("stage", "AWARENESS")]), 0.0);
}

#[test]
fn a_visitor_profile_forwarded_before_forwarded_events_existed_still_folds_in() {
    // The repartition record as the classifier wrote it before events were forwarded.
    let mut h = Harness::new();
    let mut visitor = Profile::new(T0, Channel::Web);
    visitor.enter(Stage::Consideration, T0);
    let old = serde_json::json!({
        "merge_id": "m1",
        "anonymous_id": "anon-2",
        "merged_at": T0 + 1,
        "profile": visitor,
    });
    let changes = h.fold(0, "gus", &serde_json::to_vec(&old).unwrap());
    assert_eq!(
        moves(&changes),
        vec![(None, Stage::Consideration, MERGE_RULE, "m1")]
    );
    assert_eq!(h.profile(0, "gus").unwrap().merged, vec!["anon-2"]);
}

#[test]
fn where_a_visitor_went_is_forgotten_after_the_fold_memory_and_on_erasure() {
    let mut h = Harness::new();
    h.identity(1, &merge("m1", "anon-7", "hal", T0));
    h.identity(1, &merge("m2", "anon-8", "hal", T0));
    let forget_at = journey_core::runtime::now_millis() + journey_core::runtime::REPEAT_MEMORY_MS;

    // Erasure of the anonymous id leaves no key or timer of it behind.
    let task = journey_core::contract::ErasureTask {
        request_id: "r1".into(),
        subject: "anon-8".into(),
        ..Default::default()
    };
    let payload = h.codec.encode(&task).unwrap();
    h.feed("journey.erasure.tasks", 1, "anon-8", &payload, T0);
    let timers_of = |h: &mut Harness, id: &[u8]| {
        h.store
            .due_timers(1, Clock::Wall, i64::MAX)
            .unwrap()
            .into_iter()
            .filter(|(_, key)| fold::FOLDED.owns(key) && key.ends_with(id))
            .count()
    };
    assert_eq!(timers_of(&mut h, b"anon-8"), 0);
    assert_eq!(timers_of(&mut h, b"anon-7"), 1);
    let after_erasure = anonymous("a2", "anon-8", EventType::PageView, T0 + 1);
    assert!(h.event_forwarded(1, &after_erasure).is_empty());
    assert!(h.profile(1, "anon-8").is_some());

    // Still remembered just before the fold memory runs out, forgotten after.
    h.tick(1, forget_at - 60_000);
    let early = anonymous("a3", "anon-7", EventType::PageView, T0 + 2);
    assert_eq!(h.event_forwarded(1, &early).len(), 1);
    h.tick(1, forget_at + 60_000);
    let late = anonymous("a4", "anon-7", EventType::PageView, T0 + 3);
    assert!(h.event_forwarded(1, &late).is_empty());
    assert!(h.profile(1, "anon-7").is_some());
}

#[test]
fn an_order_or_session_re_sent_by_a_crashed_upstream_counts_once() {
    let mut h = Harness::new();
    let purchase = event("p1", "ivy", EventType::Purchase, T0);
    assert_eq!(h.event(0, &purchase).len(), 1);
    // The same order again (ingest re-sent it after a crash): not a second order, so not loyal.
    assert!(h.event(0, &purchase).is_empty());
    let mut resent = event("p1-again", "ivy", EventType::Purchase, T0 + 1);
    resent.order = purchase.order.clone();
    assert!(h.event(0, &resent).is_empty());
    let ivy = h.profile(0, "ivy").unwrap();
    assert_eq!((ivy.orders, ivy.revenue), (1, 40.0));
    assert_eq!(ivy.stage, Some(Stage::Purchase));
    // Another order is one.
    let second = h.event(0, &event("p2", "ivy", EventType::Purchase, T0 + 2));
    assert_eq!(
        moves(&second),
        vec![(Some(Stage::Purchase), Stage::Loyal, "repeat_purchase", "p2")]
    );

    let session = SessionSummary {
        session_id: "s1".into(),
        customer_id: "ivy".into(),
        start: T0,
        end: T0 + 60,
        entry_channel: "WEB".into(),
        ..SessionSummary::default()
    };
    let payload = h.codec.encode(&session).unwrap();
    h.feed("sessions", 0, "ivy", &payload, T0 + 60);
    h.feed("sessions", 0, "ivy", &payload, T0 + 60);
    assert_eq!(h.profile(0, "ivy").unwrap().sessions, 1);
    assert_eq!(h.gauge("repeats_total", &[]), 3.0);
}
