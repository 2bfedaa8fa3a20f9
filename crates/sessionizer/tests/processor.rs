//! The sessionizer processor over a real state store, driven as the runtime
//! drives it (stream time per partition, event-time timers fired on ticks),
//! without Kafka: late events, repeats, identity folds, early updates.

use std::collections::HashMap;

use journey_core::codec::Codec;
use journey_core::config::TopicsConfig;
use journey_core::contract::{
    CustomerEvent, ErasureTask, EventType, IdentityMerge, SessionSummary,
};
use journey_core::erasure::ErasureTopics;
use journey_core::runtime::{now_millis, Context, InputRecord, Output, Processor};
use journey_core::state::{Clock, StateStore};
use journey_sessionizer::{
    session_id, Sessionizer, SessionizerTopics, Windows, FOLD_MEMORY_MS, LATE_CLOSE_TIME_HEADER,
    LATE_STREAM_TIME_HEADER,
};

const MIN: i64 = 60_000;
const WINDOWS: Windows = Windows {
    gap: 30 * MIN,
    grace: 5 * MIN,
    max_session: 24 * 60 * MIN,
};

fn topics() -> SessionizerTopics {
    SessionizerTopics {
        events: "events".into(),
        identities: "identities".into(),
        folds: "folds".into(),
        sessions: "sessions".into(),
        late_events: "late".into(),
        erasure: ErasureTopics::new(&TopicsConfig::default()),
    }
}

/// A sessionizer, its store, and the stream time of each partition.
struct Harness {
    _dir: tempfile::TempDir,
    store: StateStore,
    codec: Codec,
    sessionizer: Sessionizer,
    registry: prometheus::Registry,
    stream_times: HashMap<i32, i64>,
    offset: i64,
}

impl Harness {
    fn new(early_updates: Option<i64>) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path(), 16 << 20).unwrap();
        let registry = prometheus::Registry::new();
        let sessionizer = Sessionizer::new(WINDOWS, early_updates, topics(), &registry);
        Harness {
            _dir: dir,
            store,
            codec: Codec::builtin(),
            sessionizer,
            registry,
            stream_times: HashMap::new(),
            offset: 0,
        }
    }

    /// Feeds one record as the runtime would; returns what it emitted.
    fn feed(
        &mut self,
        topic: &str,
        partition: i32,
        key: &[u8],
        payload: &[u8],
        timestamp: i64,
    ) -> Vec<Output> {
        let stream_time = self.stream_times.entry(partition).or_insert(i64::MIN);
        *stream_time = (*stream_time).max(timestamp);
        let record = InputRecord {
            topic,
            partition,
            offset: self.offset,
            timestamp,
            key: Some(key),
            payload: Some(payload),
        };
        self.offset += 1;
        let mut outputs = Vec::new();
        let mut ctx = Context::new(
            &mut self.store,
            &self.codec,
            &mut outputs,
            partition,
            *stream_time,
        );
        self.sessionizer.process(&record, &mut ctx).unwrap();
        outputs
    }

    fn event(&mut self, partition: i32, customer: &str, t: i64, id: &str) -> Vec<Output> {
        let event = CustomerEvent {
            customer_id: Some(customer.into()),
            ..page_view(id, t)
        };
        self.send_event(partition, customer, &event)
    }

    /// An event of a visitor not yet identified, keyed by the anonymous id.
    fn anonymous_event(
        &mut self,
        partition: i32,
        anonymous: &str,
        t: i64,
        id: &str,
    ) -> Vec<Output> {
        let event = CustomerEvent {
            anonymous_id: Some(anonymous.into()),
            ..page_view(id, t)
        };
        self.send_event(partition, anonymous, &event)
    }

    fn send_event(&mut self, partition: i32, key: &str, event: &CustomerEvent) -> Vec<Output> {
        let payload = self.codec.encode(event).unwrap();
        self.feed(
            "events",
            partition,
            key.as_bytes(),
            &payload,
            event.occurred_at,
        )
    }

    /// An erasure task for `subject`.
    fn erase(&mut self, partition: i32, subject: &str) -> Vec<Output> {
        let task = ErasureTask {
            request_id: format!("erase-{subject}"),
            customer_id: subject.into(),
            subject: subject.into(),
            requested_at: 0,
        };
        let payload = self.codec.encode(&task).unwrap();
        let topic = topics().erasure.tasks;
        self.feed(&topic, partition, subject.as_bytes(), &payload, 0)
    }

    fn identity(&mut self, partition: i32, anonymous: &str, customer: &str, t: i64) -> Vec<Output> {
        let merge = IdentityMerge {
            merge_id: format!("m-{anonymous}-{customer}"),
            anonymous_id: anonymous.into(),
            customer_id: customer.into(),
            evidence_event_id: "evidence".into(),
            merged_at: t,
            ..IdentityMerge::default()
        };
        let payload = self.codec.encode(&merge).unwrap();
        self.feed("identities", partition, anonymous.as_bytes(), &payload, t)
    }

    /// Moves `partition`'s stream time to `to` (as idle advance would) and fires due timers.
    fn tick(&mut self, partition: i32, to: i64) -> Vec<Output> {
        let stream_time = self.stream_times.entry(partition).or_insert(i64::MIN);
        *stream_time = (*stream_time).max(to);
        let now = *stream_time;
        self.fire(partition, Clock::Event, now)
    }

    /// Fires `partition`'s wall-clock timers due by `now` (ms since the epoch).
    fn tick_wall(&mut self, partition: i32, now: i64) -> Vec<Output> {
        self.fire(partition, Clock::Wall, now)
    }

    /// Fires `partition`'s timers on `clock` due by `now`, as the runtime does.
    fn fire(&mut self, partition: i32, clock: Clock, now: i64) -> Vec<Output> {
        let stream_time = self
            .stream_times
            .get(&partition)
            .copied()
            .unwrap_or(i64::MIN);
        let mut outputs = Vec::new();
        for (at, key) in self.store.due_timers(partition, clock, now).unwrap() {
            self.store.cancel_timer(partition, clock, at, &key);
            let mut ctx = Context::new(
                &mut self.store,
                &self.codec,
                &mut outputs,
                partition,
                stream_time,
            );
            self.sessionizer
                .on_timer(clock, at, &key, &mut ctx)
                .unwrap();
        }
        outputs
    }

    /// A new sessionizer over the same state, as after a restart, with `partitions` assigned.
    fn restart(&mut self, partitions: &[i32]) {
        self.registry = prometheus::Registry::new();
        self.sessionizer = Sessionizer::new(WINDOWS, None, topics(), &self.registry);
        for &partition in partitions {
            let mut outputs = Vec::new();
            let mut ctx = Context::new(&mut self.store, &self.codec, &mut outputs, partition, 0);
            self.sessionizer.on_assigned(partition, &mut ctx).unwrap();
        }
    }

    fn gauge(&self, name: &str) -> f64 {
        self.registry
            .gather()
            .iter()
            .find(|f| f.name() == name)
            .map_or(0.0, |f| f.get_metric()[0].get_gauge().get_value())
    }

    fn metric(&self, name: &str) -> f64 {
        self.registry
            .gather()
            .iter()
            .find(|f| f.name() == name)
            .map_or(0.0, |f| f.get_metric()[0].get_counter().get_value())
    }
}

/// A page view `id` at `t`, of no one yet.
fn page_view(id: &str, t: i64) -> CustomerEvent {
    CustomerEvent {
        event_id: id.into(),
        event_type: EventType::PageView,
        occurred_at: t,
        ..CustomerEvent::default()
    }
}

/// The outputs to `topic`.
fn to<'a>(topic: &str, outputs: &'a [Output]) -> Vec<&'a Output> {
    outputs.iter().filter(|o| o.topic == topic).collect()
}

/// The session summaries among `outputs`.
fn summaries(outputs: &[Output]) -> Vec<SessionSummary> {
    let codec = Codec::builtin();
    outputs
        .iter()
        .filter(|o| o.topic == "sessions")
        .map(|o| codec.decode(&o.payload).unwrap())
        .collect()
}

#[test]
fn a_session_closes_once_stream_time_passes_its_close_time() {
    let mut h = Harness::new(None);
    h.event(0, "c", 0, "a");
    h.event(0, "c", 10 * MIN, "b");
    assert!(
        h.tick(0, 45 * MIN).is_empty(),
        "closes only past end + gap + grace"
    );
    let closed = summaries(&h.tick(0, 45 * MIN + 1));
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].session_id, session_id("c", 0));
    assert_eq!(
        (closed[0].start, closed[0].end, closed[0].event_count),
        (0, 10 * MIN, 2)
    );
    assert!(!closed[0].interim);
    assert!(h.tick(0, 100 * MIN).is_empty(), "one summary per session");
}

#[test]
fn a_late_event_after_grace_goes_to_the_late_topic_as_it_came() {
    let mut h = Harness::new(None);
    h.event(0, "c", 0, "a");
    h.event(0, "c", 100 * MIN, "b");
    let outputs = h.event(0, "c", 10 * MIN, "late");
    assert_eq!(outputs.len(), 1);
    let late = &outputs[0];
    assert_eq!(
        (late.topic.as_str(), late.key.as_slice()),
        ("late", b"c".as_slice())
    );
    let event: CustomerEvent = h.codec.decode(&late.payload).unwrap();
    assert_eq!(event.event_id, "late");
    let header = |name: &str| {
        late.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
    };
    assert_eq!(header(LATE_CLOSE_TIME_HEADER), Some((45 * MIN).to_string()));
    assert_eq!(
        header(LATE_STREAM_TIME_HEADER),
        Some((100 * MIN).to_string())
    );
    assert_eq!(h.metric("late_events_total"), 1.0);
}

#[test]
fn a_repeated_event_counts_once() {
    let mut h = Harness::new(None);
    h.event(0, "c", 0, "a");
    h.event(0, "c", MIN, "b");
    h.event(0, "c", 0, "a");
    let closed = summaries(&h.tick(0, 200 * MIN));
    assert_eq!(closed[0].event_count, 2);
    assert_eq!(h.metric("duplicate_events_total"), 1.0);
}

#[test]
fn an_identity_merge_folds_the_anonymous_session_into_the_customers() {
    let mut h = Harness::new(None);
    // The visitor browses anonymously (partition 0), then logs in: the
    // customer's events go to partition 1.
    h.event(0, "anon", 0, "a1");
    h.event(0, "anon", 5 * MIN, "a2");
    h.event(1, "cust", 10 * MIN, "c1");
    let sent = h.identity(0, "anon", "cust", 10 * MIN);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].topic.as_str(), sent[0].key.as_slice()),
        ("folds", b"cust".as_slice())
    );
    assert!(
        h.tick(0, 300 * MIN).is_empty(),
        "the anonymous session left partition 0 with its timer"
    );
    let fold = &sent[0];
    assert!(h
        .feed("folds", 1, &fold.key, &fold.payload, fold.timestamp)
        .is_empty());
    let closed = summaries(&h.tick(1, 300 * MIN));
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].customer_id, "cust");
    assert_eq!(closed[0].session_id, session_id("cust", 0));
    assert_eq!(
        (closed[0].start, closed[0].end, closed[0].event_count),
        (0, 10 * MIN, 3)
    );
}

#[test]
fn a_fold_sent_twice_is_applied_once() {
    let mut h = Harness::new(None);
    h.event(0, "anon", 0, "a1");
    h.event(1, "cust", MIN, "c1");
    let fold = h.identity(0, "anon", "cust", MIN).remove(0);
    h.feed("folds", 1, &fold.key, &fold.payload, fold.timestamp);
    h.feed("folds", 1, &fold.key, &fold.payload, fold.timestamp);
    let closed = summaries(&h.tick(1, 300 * MIN));
    assert_eq!(closed[0].event_count, 2);
    assert_eq!(h.metric("identity_folds_repeated_total"), 1.0);
}

#[test]
fn a_folded_session_already_final_on_the_customers_partition_closes_at_once() {
    let mut h = Harness::new(None);
    h.event(0, "anon", 0, "a1");
    h.event(1, "cust", 200 * MIN, "c1");
    let fold = h.identity(0, "anon", "cust", MIN).remove(0);
    h.feed("folds", 1, &fold.key, &fold.payload, fold.timestamp);
    let closed = summaries(&h.tick(1, 200 * MIN));
    assert_eq!(
        closed.len(),
        1,
        "not lost, not late: it was never final before"
    );
    assert_eq!(
        (closed[0].customer_id.as_str(), closed[0].start),
        ("cust", 0)
    );
}

#[test]
fn early_updates_are_interim_at_most_every_interval_and_the_final_comes_once() {
    let mut h = Harness::new(Some(5 * MIN));
    let mut interim = Vec::new();
    for (i, t) in [0, 2, 4, 5, 6, 9, 11].into_iter().enumerate() {
        interim.extend(summaries(&h.event(0, "c", t * MIN, &format!("e{i}"))));
    }
    // From the start: the first at 5 min, the next 5 min of stream time later.
    let at: Vec<(i64, i32)> = interim.iter().map(|s| (s.end, s.event_count)).collect();
    assert_eq!(at, vec![(5 * MIN, 4), (11 * MIN, 7)]);
    assert!(interim
        .iter()
        .all(|s| s.interim && s.session_id == session_id("c", 0)));
    let closed = summaries(&h.tick(0, 200 * MIN));
    assert_eq!(closed.len(), 1);
    assert!(!closed[0].interim);
    assert_eq!(closed[0].event_count, 7);
}

#[test]
fn open_sessions_are_counted_through_folds_and_closes_and_across_a_restart() {
    let mut h = Harness::new(None);
    h.event(0, "anon", 0, "a1");
    h.event(0, "x", MIN, "x1");
    h.event(1, "cust", 2 * MIN, "c1");
    assert_eq!(h.gauge("open_sessions"), 3.0);
    let fold = h.identity(0, "anon", "cust", 2 * MIN).remove(0);
    assert_eq!(h.gauge("open_sessions"), 2.0, "the visitor's session left");
    h.feed("folds", 1, &fold.key, &fold.payload, fold.timestamp);
    assert_eq!(h.gauge("open_sessions"), 2.0, "merged into the customer's");
    h.restart(&[0, 1]);
    assert_eq!(h.gauge("open_sessions"), 2.0, "loaded from state");
    assert_eq!(summaries(&h.tick(0, 300 * MIN)).len(), 1);
    assert_eq!(h.gauge("open_sessions"), 1.0);
    h.sessionizer.on_revoked(1);
    assert_eq!(h.gauge("open_sessions"), 0.0, "a partition that moved away");
}

#[test]
fn an_extended_session_closes_at_its_new_close_time_after_its_first_timer_fired() {
    let mut h = Harness::new(None);
    h.event(0, "c", 0, "a");
    h.event(0, "c", 20 * MIN, "b");
    assert!(
        h.tick(0, 36 * MIN).is_empty(),
        "the timer set at the first event fires and finds the session extended"
    );
    assert!(h.tick(0, 55 * MIN).is_empty());
    let closed = summaries(&h.tick(0, 55 * MIN + 1));
    assert_eq!(closed.len(), 1);
    assert_eq!(
        (closed[0].start, closed[0].end, closed[0].event_count),
        (0, 20 * MIN, 2)
    );
}

#[test]
fn a_session_opened_out_of_order_closing_first_closes_on_time() {
    let mut h = Harness::new(None);
    h.event(0, "c", 100 * MIN, "a");
    // More than the gap before the open session, so apart from it, and
    // within grace: its own session closes at 101 min, before the other's.
    h.event(0, "c", 66 * MIN, "b");
    assert!(h.tick(0, 101 * MIN).is_empty());
    let first = summaries(&h.tick(0, 101 * MIN + 1));
    assert_eq!(
        first.iter().map(|s| s.start).collect::<Vec<_>>(),
        vec![66 * MIN]
    );
    let second = summaries(&h.tick(0, 135 * MIN + 1));
    assert_eq!(
        second.iter().map(|s| s.start).collect::<Vec<_>>(),
        vec![100 * MIN]
    );
}

#[test]
fn extending_a_session_writes_its_state_and_no_timer() {
    let mut h = Harness::new(None);
    h.event(0, "c", 0, "a");
    h.store.commit().unwrap();
    h.event(0, "c", MIN, "b");
    let changes = h.store.pending_changes();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].key[5..], *b"sc");
}

#[test]
fn an_anonymous_event_read_after_its_fold_follows_it_to_the_customer() {
    let mut h = Harness::new(None);
    h.anonymous_event(0, "anon", 0, "a1");
    h.event(1, "cust", 10 * MIN, "c1");
    let fold = h.identity(0, "anon", "cust", 10 * MIN).remove(0);
    // Sent before the login, read after the merge that folded its visitor.
    let forwarded = h.anonymous_event(0, "anon", 5 * MIN, "a2");
    assert_eq!(forwarded.len(), 1, "{forwarded:?}");
    assert_eq!(
        (forwarded[0].topic.as_str(), forwarded[0].key.as_slice()),
        ("folds", b"cust".as_slice())
    );
    assert!(
        h.tick(0, 300 * MIN).is_empty(),
        "no session left behind under the anonymous id"
    );
    for f in [&fold, &forwarded[0]] {
        h.feed("folds", 1, &f.key, &f.payload, f.timestamp);
    }
    let closed = summaries(&h.tick(1, 300 * MIN));
    assert_eq!(closed.len(), 1);
    assert_eq!(
        (
            closed[0].customer_id.as_str(),
            closed[0].start,
            closed[0].end
        ),
        ("cust", 0, 10 * MIN)
    );
    assert_eq!(closed[0].event_count, 3);
    assert_eq!(h.metric("identity_forwarded_events_total"), 1.0);
}

#[test]
fn an_anonymous_event_forwarded_twice_counts_once() {
    let mut h = Harness::new(None);
    h.event(1, "cust", 0, "c1");
    h.identity(0, "anon", "cust", 0);
    let first = h.anonymous_event(0, "anon", MIN, "a1").remove(0);
    let again = h.anonymous_event(0, "anon", MIN, "a1").remove(0);
    let other = h.anonymous_event(0, "anon", 2 * MIN, "a2").remove(0);
    for f in [&first, &again, &other] {
        h.feed("folds", 1, &f.key, &f.payload, f.timestamp);
    }
    let closed = summaries(&h.tick(1, 300 * MIN));
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].event_count, 3, "c1, a1 once, a2");
    assert_eq!(h.metric("identity_folds_repeated_total"), 1.0);
}

#[test]
fn an_anonymous_event_of_a_folded_id_too_late_for_any_session_goes_to_the_late_topic() {
    let mut h = Harness::new(None);
    h.event(0, "other", 100 * MIN, "o1");
    h.identity(0, "anon", "cust", 100 * MIN);
    let outputs = h.anonymous_event(0, "anon", 10 * MIN, "a1");
    let late = to("late", &outputs);
    assert_eq!(late.len(), 1, "{outputs:?}");
    assert_eq!(late[0].key, b"anon");
    assert!(to("folds", &outputs).is_empty());
    assert_eq!(h.metric("late_events_total"), 1.0);
}

#[test]
fn a_folded_id_is_forgotten_on_erasure_and_after_the_fold_memory() {
    let mut h = Harness::new(None);
    h.identity(0, "gone", "cust", 0);
    h.identity(0, "old", "cust", 0);
    h.erase(0, "gone");
    let outputs = h.anonymous_event(0, "gone", MIN, "g1");
    assert!(
        to("folds", &outputs).is_empty(),
        "an erased id is not followed"
    );
    assert_eq!(
        to("folds", &h.anonymous_event(0, "old", MIN, "o1")).len(),
        1
    );
    h.tick_wall(0, now_millis() + FOLD_MEMORY_MS + MIN);
    let outputs = h.anonymous_event(0, "old", 2 * MIN, "o2");
    assert!(
        to("folds", &outputs).is_empty(),
        "after the fold memory the id is a visitor of its own again"
    );
    let closed = summaries(&h.tick(0, 300 * MIN));
    let mut keys: Vec<&str> = closed.iter().map(|s| s.customer_id.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["gone", "old"]);
}
