//! Sessionizer throughput on one core, in-process: the real processor over a
//! real RocksDB state store with 100k customers holding open sessions, driven
//! as the runtime drives it (stream time; timers fired and state committed on
//! the runtime's default [`Cadence`]), beside the codec's decode of the same
//! records alone in the same run. Prints events per second and the ratio.
//!
//! Run: `cargo bench -p journey-sessionizer --bench sessionizer_throughput`

use std::hint::black_box;
use std::time::{Duration, Instant};

use journey_core::codec::Codec;
use journey_core::config::{RuntimeConfig, TopicsConfig};
use journey_core::contract::{Channel, CustomerEvent, EventType, Product};
use journey_core::runtime::{
    Cadence, Context, InputRecord, Output, Processor, CHECK_EVERY, TIMERS_PER_TICK,
};
use journey_core::state::{Clock, StateStore};
use journey_sessionizer::{Sessionizer, SessionizerConfig, SessionizerTopics};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const CUSTOMERS: usize = 100_000;
const EVENTS: usize = 1_000_000;
const ROUNDS: usize = 3;
const STATE_MEMORY: usize = 256 << 20;
const TOPIC: &str = "journey.events";

/// Events of `CUSTOMERS` customers in time order over two hours: ten per
/// customer, about twelve minutes apart, so every customer holds an open
/// session and some gaps exceed 30 min (sessions close throughout).
fn events() -> Vec<(String, Vec<u8>, i64)> {
    let codec = Codec::builtin();
    let mut rng = SmallRng::seed_from_u64(11);
    let start = 1_700_000_000_000i64;
    let span = 2 * 3_600_000i64;
    let mut times: Vec<(i64, usize)> = (0..EVENTS)
        .map(|i| (start + rng.gen_range(0..span), i % CUSTOMERS))
        .collect();
    times.sort_unstable();
    let types = [
        EventType::PageView,
        EventType::PageView,
        EventType::ProductView,
        EventType::AddToCart,
        EventType::Search,
    ];
    times
        .into_iter()
        .enumerate()
        .map(|(i, (at, c))| {
            let event_type = types[rng.gen_range(0..types.len())];
            let event = CustomerEvent {
                event_id: format!("evt-{i:08}"),
                event_type,
                occurred_at: at,
                customer_id: Some(format!("cust-{c:06}")),
                channel: if rng.gen_bool(0.7) {
                    Channel::Web
                } else {
                    Channel::App
                },
                product: (event_type == EventType::ProductView).then(|| Product {
                    product_id: format!("sku-{}", rng.gen_range(0..500)),
                    ..Product::default()
                }),
                ..CustomerEvent::default()
            };
            let key = format!("cust-{c:06}");
            (
                key,
                codec.encode(&event).expect("generated events encode"),
                at,
            )
        })
        .collect()
}

/// One round of the sessionizer over all records with a fresh store; returns
/// the time taken and the sessions closed.
fn round(codec: &Codec, records: &[(String, Vec<u8>, i64)]) -> (Duration, usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = StateStore::open(dir.path(), STATE_MEMORY).expect("state store");
    let registry = prometheus::Registry::new();
    let config = SessionizerConfig::default();
    let topics = SessionizerTopics {
        events: TOPIC.into(),
        ..SessionizerTopics::new(&TopicsConfig::default(), "journey-sessionizer")
    };
    let windows = config.windows().expect("default config is valid");
    let mut sessionizer = Sessionizer::new(windows, None, topics, &registry);
    let mut outputs = Vec::with_capacity(CHECK_EVERY);
    let mut closed = 0;
    let mut stream_time = i64::MIN;
    let started = Instant::now();
    let mut cadence = Cadence::new(&RuntimeConfig::default(), started);
    let mut since_commit = 0;
    for (offset, (key, payload, at)) in (0i64..).zip(records) {
        stream_time = stream_time.max(*at);
        let input = InputRecord {
            topic: TOPIC,
            partition: 0,
            offset,
            timestamp: *at,
            key: Some(key.as_bytes()),
            payload: Some(payload),
        };
        let mut ctx = Context::new(&mut store, codec, &mut outputs, 0, stream_time);
        sessionizer
            .process(&input, &mut ctx)
            .expect("generated events are valid");
        since_commit += 1;
        // As the runtime does between polls: hand the outputs over, fire due
        // timers on its ticks, commit state with offsets on its cadence; and
        // at the end, as a shutdown does.
        let last = offset + 1 == records.len() as i64;
        if since_commit % CHECK_EVERY == 0 || last {
            let due = cadence.check(Instant::now(), since_commit, &store);
            if due.tick || last {
                fire_timers(
                    &mut sessionizer,
                    &mut store,
                    codec,
                    &mut outputs,
                    stream_time,
                );
            }
            closed += outputs.len();
            black_box(&outputs);
            outputs.clear();
            if due.commit || last {
                store.set_input_offset(TOPIC, 0, offset + 1);
                store.commit().expect("commit");
                cadence.committed(Instant::now());
                since_commit = 0;
            }
        }
    }
    (started.elapsed(), closed)
}

/// Fires the event-time timers due at `stream_time`, at most a tick's worth as
/// the runtime does.
fn fire_timers(
    sessionizer: &mut Sessionizer,
    store: &mut StateStore,
    codec: &Codec,
    outputs: &mut Vec<Output>,
    stream_time: i64,
) {
    for (at, key) in store
        .first_due_timers(0, Clock::Event, stream_time, TIMERS_PER_TICK)
        .expect("timers")
    {
        store.cancel_timer(0, Clock::Event, at, &key);
        let mut ctx = Context::new(store, codec, outputs, 0, stream_time);
        sessionizer
            .on_timer(Clock::Event, at, &key, &mut ctx)
            .expect("timer");
    }
}

/// The median of `ROUNDS` rates.
fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn main() {
    let codec = Codec::builtin();
    let records = events();
    let decode = median(
        (0..ROUNDS)
            .map(|_| {
                let started = Instant::now();
                for (_, payload, _) in &records {
                    black_box(codec.decode::<CustomerEvent>(payload).expect("decodes"));
                }
                EVENTS as f64 / started.elapsed().as_secs_f64()
            })
            .collect(),
    );
    let mut closed = 0;
    let sessionizer = median(
        (0..ROUNDS)
            .map(|_| {
                let (took, sessions) = round(&codec, &records);
                closed = sessions;
                EVENTS as f64 / took.as_secs_f64()
            })
            .collect(),
    );
    println!(
        "sessionizer over {EVENTS} events of {CUSTOMERS} customers (RocksDB state, one core), {closed} sessions closed"
    );
    println!("codec decode alone   {decode:>12.0} events/s");
    println!(
        "sessionizer          {sessionizer:>12.0} events/s  ratio to decode {:.2}",
        sessionizer / decode
    );
}
