//! Rule evaluation throughput on one core, in-process, over a real RocksDB
//! state store holding realistic state (customer contexts, open carts,
//! alerts in cooldown, windows), the way the runtime drives the processor:
//! records one by one, timers fired and state committed on the runtime's
//! default cadence.
//!
//! `cargo bench -p journey-alerting --bench rule_evaluation [-- CUSTOMERS RECORDS [STATE_MIB]]`
//!
//! `STATE_MIB` is the state memory budget (`runtime.state_memory_bytes`),
//! 256 MiB by default as in the services.

use std::time::Instant;

use journey_alerting::{AlertingConfig, RuleSet, Topics};
use journey_core::codec::Codec;
use journey_core::config::{RuntimeConfig, TopicsConfig};
use journey_core::contract::{
    Channel, CustomerEvent, EventType, Feedback, FunnelStep, Order, Product, SessionSummary, Stage,
    StageChange,
};
use journey_core::runtime::{
    Cadence, Context, InputRecord, Output, Processor, CHECK_EVERY, TIMERS_PER_TICK,
};
use journey_core::state::{Clock, StateStore};
use prometheus::Registry;

const PARTITION: i32 = 0;
const T0: i64 = 1_700_000_000_000;

/// A small deterministic generator (xorshift64*), so runs compare.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

struct Record {
    topic: &'static str,
    key: String,
    payload: Vec<u8>,
    timestamp: i64,
}

fn event(codec: &Codec, i: u64, customer: u64, event_type: EventType, at: i64) -> Record {
    let key = format!("customer-{customer}");
    let mut e = CustomerEvent {
        event_id: format!("e{i}"),
        event_type,
        occurred_at: at,
        customer_id: Some(key.clone()),
        channel: if customer % 3 == 0 {
            Channel::App
        } else {
            Channel::Web
        },
        ..CustomerEvent::default()
    };
    match event_type {
        EventType::AddToCart | EventType::ProductView => {
            e.product = Some(Product {
                product_id: format!("sku-{}", i % 500),
                price: Some(25.0),
                ..Product::default()
            })
        }
        EventType::Purchase => {
            e.order = Some(Order {
                order_id: format!("o{i}"),
                revenue: 20.0 + (i % 300) as f64,
                currency: "EUR".into(),
                item_count: Some(2),
            })
        }
        EventType::Feedback => {
            e.feedback = Some(Feedback {
                nps: Some((i % 11) as i32),
                comment: Some("The parcel came two days late.".into()),
                ..Feedback::default()
            })
        }
        _ => {}
    }
    Record {
        topic: "events",
        key,
        payload: codec.encode(&e).expect("encodes"),
        timestamp: at,
    }
}

fn session(codec: &Codec, i: u64, customer: u64, at: i64) -> Record {
    let key = format!("customer-{customer}");
    let s = SessionSummary {
        session_id: format!("s{i}"),
        customer_id: key.clone(),
        start: at - 300_000,
        end: at,
        duration_ms: 300_000,
        event_count: 7,
        channels: vec!["WEB".into()],
        entry_channel: if customer % 3 == 0 { "APP" } else { "WEB" }.into(),
        page_views: 5,
        products_viewed: vec!["sku-1".into(), "sku-2".into()],
        furthest_step: if i % 20 == 0 {
            FunnelStep::Purchase
        } else {
            FunnelStep::ProductView
        },
        ..SessionSummary::default()
    };
    Record {
        topic: "sessions",
        key,
        payload: codec.encode(&s).expect("encodes"),
        timestamp: at,
    }
}

fn stage_change(codec: &Codec, i: u64, customer: u64, at: i64) -> Record {
    let key = format!("customer-{customer}");
    let to = Stage::ALL[(i % 7) as usize];
    let c = StageChange {
        change_id: format!("g{i}"),
        customer_id: key.clone(),
        from_stage: Some(Stage::Loyal),
        to_stage: to,
        rule: "bench".into(),
        evidence_id: format!("e{i}"),
        changed_at: at,
    };
    Record {
        topic: "stage-changes",
        key,
        payload: codec.encode(&c).expect("encodes"),
        timestamp: at,
    }
}

/// A realistic mix: mostly browsing, some carts and purchases, a little
/// feedback and support, sessions, stage changes and dead letters.
fn workload(codec: &Codec, customers: u64, records: u64, start: i64, seed: u64) -> Vec<Record> {
    let mut rng = Rng(seed);
    (0..records)
        .map(|i| {
            let customer = rng.below(customers);
            let at = start + i as i64 * 5;
            match rng.below(100) {
                0..=49 => event(codec, i, customer, EventType::PageView, at),
                50..=59 => event(codec, i, customer, EventType::ProductView, at),
                60..=67 => event(codec, i, customer, EventType::AddToCart, at),
                68..=71 => event(codec, i, customer, EventType::Purchase, at),
                72..=73 => event(codec, i, customer, EventType::Feedback, at),
                74 => event(codec, i, customer, EventType::SupportContact, at),
                75..=91 => session(codec, i, customer, at),
                92..=97 => stage_change(codec, i, customer, at),
                _ => Record {
                    topic: "dead-letters",
                    key: format!("customer-{customer}"),
                    payload: b"bad bytes".to_vec(),
                    timestamp: at,
                },
            }
        })
        .collect()
}

/// Feeds `records` as the runtime would (timers and commits on its default
/// [`Cadence`]); returns the alerts emitted.
fn run(
    alerting: &mut journey_alerting::Alerting,
    store: &mut StateStore,
    codec: &Codec,
    records: &[Record],
) -> usize {
    let mut outputs = Vec::new();
    let mut alerts = 0;
    let mut cadence = Cadence::new(&RuntimeConfig::default(), Instant::now());
    let mut since_commit = 0;
    for (offset, r) in records.iter().enumerate() {
        let stream_time = r.timestamp;
        let record = InputRecord {
            topic: r.topic,
            partition: PARTITION,
            offset: offset as i64,
            timestamp: r.timestamp,
            key: Some(r.key.as_bytes()),
            payload: Some(&r.payload),
        };
        let mut ctx = Context::new(store, codec, &mut outputs, PARTITION, stream_time);
        alerting.process(&record, &mut ctx).expect("processes");
        since_commit += 1;
        // As the runtime does between polls, and at the end as a shutdown does.
        let last = offset + 1 == records.len();
        if since_commit % CHECK_EVERY == 0 || last {
            let due = cadence.check(Instant::now(), since_commit, store);
            if due.tick || last {
                fire_timers(alerting, store, codec, &mut outputs, stream_time);
            }
            alerts += outputs.len();
            outputs.clear();
            if due.commit || last {
                store.commit().expect("commits");
                cadence.committed(Instant::now());
                since_commit = 0;
            }
        }
    }
    alerts
}

/// Fires the timers due at `stream_time`, at most a tick's worth per clock as
/// the runtime does. The wall clock runs with stream time here, so carts come
/// due as they would live.
fn fire_timers(
    alerting: &mut journey_alerting::Alerting,
    store: &mut StateStore,
    codec: &Codec,
    outputs: &mut Vec<Output>,
    stream_time: i64,
) {
    for clock in [Clock::Event, Clock::Wall] {
        for (at, key) in store
            .first_due_timers(PARTITION, clock, stream_time, TIMERS_PER_TICK)
            .expect("timers")
        {
            store.cancel_timer(PARTITION, clock, at, &key);
            let mut ctx = Context::new(store, codec, outputs, PARTITION, stream_time);
            alerting.on_timer(clock, at, &key, &mut ctx).expect("timer");
        }
    }
}

/// Runs one whole context retention sweep, a chunk per firing as the
/// runtime does over consecutive ticks, committing every
/// [`CHUNKS_PER_COMMIT`]; returns the time spent sweeping (commits
/// included), the chunks and the contexts left.
/// Sweep chunks between commits: one a tick, at the runtime's default 200 ms
/// ticks and 5 s commits.
const CHUNKS_PER_COMMIT: usize = 25;

fn sweep(
    alerting: &mut journey_alerting::Alerting,
    store: &mut StateStore,
    codec: &Codec,
) -> (f64, usize, usize) {
    let mut outputs = Vec::new();
    let mut ctx = Context::new(store, codec, &mut outputs, PARTITION, 0);
    alerting.on_assigned(PARTITION, &mut ctx).expect("assigned");
    let (mut secs, mut chunks) = (0.0, 0);
    // The first firing is of the plain timer, later ones go on from a context.
    while let Some((at, key)) = store
        .due_timers(PARTITION, Clock::Wall, i64::MAX)
        .expect("timers")
        .into_iter()
        .find(|(_, key)| key.starts_with(b"sweep/") && (key == b"sweep/") == (chunks == 0))
    {
        store.cancel_timer(PARTITION, Clock::Wall, at, &key);
        let started = Instant::now();
        let mut ctx = Context::new(store, codec, &mut outputs, PARTITION, 0);
        alerting
            .on_timer(Clock::Wall, at, &key, &mut ctx)
            .expect("sweeps");
        chunks += 1;
        if chunks % CHUNKS_PER_COMMIT == 0 {
            store.commit().expect("commits");
        }
        secs += started.elapsed().as_secs_f64();
    }
    store.commit().expect("commits");
    (secs, chunks, contexts(store))
}

/// Customers' contexts in state.
fn contexts(store: &mut StateStore) -> usize {
    store
        .partition(PARTITION)
        .keys(b"customer/", None, usize::MAX)
        .expect("keys")
        .len()
}

/// CPU seconds this thread has used (Linux: `/proc/thread-self/stat`, in
/// clock ticks of 1/100 s), so that figures hold on a busy machine; `None`
/// elsewhere.
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name (in parentheses): utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let customers = args.first().copied().unwrap_or(200_000);
    let records = args.get(1).copied().unwrap_or(1_000_000);
    let state_mib = args.get(2).copied().unwrap_or(256);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut store =
        StateStore::open(dir.path(), (state_mib as usize) << 20).expect("opens the store");
    let codec = Codec::builtin();
    let topics = Topics {
        events: "events".into(),
        sessions: "sessions".into(),
        stage_changes: "stage-changes".into(),
        dead_letters: "dead-letters".into(),
        alerts: "alerts".into(),
        ..Topics::new(&TopicsConfig::default(), "journey-alerting")
    };
    // Ten-minute carts, so that carts open, come due and fire within the run.
    let rules = RuleSet::parse("[cart_abandonment]\nafter = \"10m\"\n", None).expect("valid rules");
    let mut alerting =
        journey_alerting::processor(&AlertingConfig::default(), rules, topics, &Registry::new())
            .expect("a processor");

    let warmup = workload(&codec, customers, customers * 3, T0, 1);
    let started = Instant::now();
    run(&mut alerting, &mut store, &codec, &warmup);
    let warm_secs = started.elapsed().as_secs_f64();
    let end_of_warmup = warmup.last().map_or(T0, |r| r.timestamp);
    drop(warmup);

    let measured = workload(&codec, customers, records, end_of_warmup + 1, 2);
    let started = Instant::now();
    let cpu_before = thread_cpu_seconds();
    let alerts = run(&mut alerting, &mut store, &codec, &measured);
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_before.and_then(|before| Some(thread_cpu_seconds()? - before));
    println!(
        "warm-up: {} records over {customers} customers in {warm_secs:.2} s ({} state keys, {state_mib} MiB state memory)",
        customers * 3,
        store.estimated_keys()
    );
    println!(
        "rule evaluation: {records} records in {secs:.2} s wall = {:.0} records/s, {alerts} alert records",
        records as f64 / secs
    );
    if let Some(cpu) = cpu {
        println!(
            "per core (CPU time of the evaluating thread, {cpu:.2} s): {:.0} records/s ({:.2} µs/record)",
            records as f64 / cpu,
            cpu * 1e6 / records as f64
        );
    }

    // Every context dates from 2023: the sweep forgets all without a purchase.
    let contexts = contexts(&mut store);
    let (secs, chunks, left) = sweep(&mut alerting, &mut store, &codec);
    println!(
        "context retention sweep: {contexts} contexts in {chunks} chunks, {secs:.2} s ({:.2} µs/context, {:.0} ms/chunk), {} forgotten",
        secs * 1e6 / contexts.max(1) as f64,
        secs * 1e3 / chunks.max(1) as f64,
        contexts - left
    );
}
