//! Ingest throughput on one core, in-process: the real processor over a real
//! state store, driven as the runtime drives it (wall-clock timers fired and
//! state committed on the runtime's default cadence), beside apache-avro's
//! generic decode of the same records in the same run (the baseline) and the
//! codec's decode alone.
//! Once with the default dedup window, once with one short enough that
//! remembered ids expire during the round; and once more with identities
//! churning (every identified event links a device seen for the first time),
//! the worst case for stitching.
//!
//! Run: `cargo bench -p journey-ingest --bench ingest_throughput`

use std::hint::black_box;
use std::time::{Duration, Instant};

use journey_core::codec::{AvroRecord, Codec, HEADER_LEN};
use journey_core::config::{RuntimeConfig, TopicsConfig};
use journey_core::contract::{
    Campaign, Channel, CustomerEvent, Device, EventType, Feedback, Order, Page, Product, Support,
};
use journey_core::runtime::{
    now_millis, Cadence, Context, InputRecord, Output, Processor, CHECK_EVERY, TIMERS_PER_TICK,
};
use journey_core::state::{Clock, StateStore, Workload};
use journey_ingest::{visitor_key, Ingest, IngestConfig, IngestTopics};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const EVENTS: usize = 200_000;
const ROUNDS: usize = 3;
const STATE_MEMORY: usize = 64 << 20;
const INPUT_TOPIC: &str = "journey.events.raw";
/// The default dedup window: nothing expires within a round.
const DEDUP_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// A window short enough that ids expire throughout a round (of a second or so).
const SHORT_DEDUP_WINDOW: Duration = Duration::from_millis(200);

/// Visitors (devices or cookies) in the stable-identities workload: eight
/// events each on average.
const VISITORS: u32 = (EVENTS / 8) as u32;

/// How visitors' ids relate to customers'.
#[derive(Clone, Copy)]
enum Identities {
    /// Each visitor belongs to one customer or to nobody, as a device or
    /// cookie does: three in five log in, and then some of their events
    /// carry the customer id; a visitor is linked once.
    Stable,
    /// Every identified event comes from a device seen for the first time
    /// (a link and a merge record each, for 60% of events).
    Churning,
}

/// Varied, valid events: a mix of touchpoints, known and anonymous visitors,
/// details by event type, campaigns and free-form properties.
fn events(now: i64, identities: Identities) -> Vec<CustomerEvent> {
    let mut rng = SmallRng::seed_from_u64(7);
    let channels = [Channel::Web, Channel::App, Channel::Store, Channel::Email];
    let word =
        |rng: &mut SmallRng, prefix: &str, n: u32| format!("{prefix}-{}", rng.gen_range(0..n));
    (0..EVENTS)
        .map(|i| {
            let (customer_id, anonymous_id) = match identities {
                Identities::Stable => {
                    let visitor = rng.gen_range(0..VISITORS);
                    // A fixed three in five visitors log in, each as a fixed customer.
                    let customer = (visitor % 5 < 3)
                        .then(|| format!("cust-{}", visitor.wrapping_mul(2_654_435_761) % 50_000));
                    (
                        customer.filter(|_| rng.gen_bool(0.5)),
                        format!("anon-{visitor}"),
                    )
                }
                Identities::Churning => (
                    rng.gen_bool(0.6).then(|| word(&mut rng, "cust", 50_000)),
                    word(&mut rng, "anon", 200_000),
                ),
            };
            let mut event = CustomerEvent {
                event_id: format!("evt-{i:08}-{:x}", rng.gen::<u32>()),
                occurred_at: now - rng.gen_range(0..3_600_000),
                customer_id,
                anonymous_id: Some(anonymous_id),
                channel: channels[rng.gen_range(0..channels.len())],
                device: Some(Device {
                    device_type: Some(
                        if rng.gen_bool(0.5) {
                            "mobile"
                        } else {
                            "desktop"
                        }
                        .into(),
                    ),
                    os: rng.gen_bool(0.5).then(|| "android 14".into()),
                    user_agent: rng
                        .gen_bool(0.3)
                        .then(|| "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0".into()),
                }),
                campaign: rng.gen_bool(0.2).then(|| Campaign {
                    source: word(&mut rng, "source", 8),
                    medium: Some("cpc".into()),
                    name: Some("autumn-sale".into()),
                }),
                properties: (0..rng.gen_range(0..4))
                    .map(|k| (format!("prop{k}"), word(&mut rng, "value", 1_000)))
                    .collect(),
                ..CustomerEvent::default()
            };
            let product = |rng: &mut SmallRng| Product {
                product_id: word(rng, "sku", 5_000),
                name: Some("Trail running shoes".into()),
                category: Some("outdoor".into()),
                price: Some(f64::from(rng.gen_range(100..20_000)) / 100.0),
                quantity: Some(rng.gen_range(1..4)),
            };
            event.event_type = match rng.gen_range(0..100) {
                0..=44 => {
                    event.page = Some(Page {
                        url: word(&mut rng, "/catalog/item", 5_000),
                        title: Some("Catalog".into()),
                        referrer: rng.gen_bool(0.4).then(|| "https://www.google.com/".into()),
                    });
                    EventType::PageView
                }
                45..=69 => {
                    event.product = Some(product(&mut rng));
                    EventType::ProductView
                }
                70..=81 => {
                    event.product = Some(product(&mut rng));
                    EventType::AddToCart
                }
                82..=87 => EventType::CheckoutStarted,
                88..=93 => {
                    event.order = Some(Order {
                        order_id: format!("ord-{i}"),
                        revenue: f64::from(rng.gen_range(500..50_000)) / 100.0,
                        currency: "EUR".into(),
                        item_count: Some(rng.gen_range(1..6)),
                    });
                    EventType::Purchase
                }
                94..=96 => {
                    event.channel = Channel::Survey;
                    event.feedback = Some(Feedback {
                        nps: Some(rng.gen_range(0..=10)),
                        csat: rng.gen_bool(0.5).then(|| rng.gen_range(1..=5)),
                        comment: rng
                            .gen_bool(0.3)
                            .then(|| "Delivery was two days late".into()),
                        survey_id: Some("post-purchase".into()),
                    });
                    EventType::Feedback
                }
                _ => {
                    event.channel = Channel::CallCenter;
                    event.support = Some(Support {
                        case_id: format!("case-{i}"),
                        reason: Some("where is my order".into()),
                    });
                    EventType::SupportContact
                }
            };
            event
        })
        .collect()
}

/// Events per second: the median of [`ROUNDS`] rounds, each timing itself.
fn rate(mut round: impl FnMut() -> Duration) -> f64 {
    let mut rates: Vec<f64> = (0..ROUNDS)
        .map(|_| EVENTS as f64 / round().as_secs_f64())
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[ROUNDS / 2]
}

/// How long `work` takes.
fn timed(work: impl FnOnce()) -> Duration {
    let started = Instant::now();
    work();
    started.elapsed()
}

/// Time spent in the rounds, and in their per-batch work (timers, state
/// commits); and the identity merges of the last round, as ingest counts them.
#[derive(Default)]
struct Split {
    total: Duration,
    batches: Duration,
    merges: u64,
}

impl Split {
    fn batch_share(&self) -> f64 {
        100.0 * self.batches.as_secs_f64() / self.total.as_secs_f64()
    }
}

/// One round of the ingest processor over all `framed` records (keyed by
/// visitor, as producers should), with a fresh state store so that the
/// deduplication sees no repeats, ids remembered for `dedup_window`; adds
/// its times to `split`.
fn ingest_round(
    codec: &Codec,
    framed: &[(String, Vec<u8>)],
    now: i64,
    dedup_window: Duration,
    split: &mut Split,
) -> Duration {
    let dir = tempfile::tempdir().expect("temp dir");
    // As the service opens it (see `journey_ingest::run`).
    let mut store =
        StateStore::open_for(dir.path(), STATE_MEMORY, Workload::WriteOnce).expect("state store");
    let registry = prometheus::Registry::new();
    let topics = IngestTopics::new(&TopicsConfig::default(), "journey-ingest");
    let config = IngestConfig {
        dedup_window,
        ..IngestConfig::default()
    };
    let mut ingest = Ingest::new(&config, topics, &registry);
    let mut outputs = Vec::with_capacity(CHECK_EVERY);
    let mut batches = Duration::ZERO;
    let total = timed(|| {
        let mut cadence = Cadence::new(&RuntimeConfig::default(), Instant::now());
        let mut since_commit = 0;
        for (offset, (key, record)) in (0i64..).zip(framed) {
            let input = InputRecord {
                topic: INPUT_TOPIC,
                partition: 0,
                offset,
                timestamp: now,
                key: Some(key.as_bytes()),
                payload: Some(record),
            };
            let mut ctx = Context::new(&mut store, codec, &mut outputs, 0, now);
            ingest
                .process(&input, &mut ctx)
                .expect("generated events are valid");
            since_commit += 1;
            // As the runtime does between polls: hand the outputs over, fire
            // due wall-clock timers (the dedup window's expiry) on its ticks,
            // commit state with offsets on its cadence; and at the end, as a
            // shutdown does.
            let last = offset + 1 == framed.len() as i64;
            if since_commit % CHECK_EVERY == 0 || last {
                black_box(&outputs);
                outputs.clear();
                let started = Instant::now();
                let due = cadence.check(started, since_commit, &store);
                if due.tick || last {
                    fire_timers(&mut ingest, &mut store, codec, &mut outputs, now);
                }
                if due.commit || last {
                    store.set_input_offset(INPUT_TOPIC, 0, offset + 1);
                    store.commit().expect("commit");
                    cadence.committed(Instant::now());
                    since_commit = 0;
                }
                batches += started.elapsed();
            }
        }
    });
    split.total += total;
    split.batches += batches;
    split.merges = merged(&registry);
    total
}

/// Identity merges counted in `registry` by the ingest processor.
fn merged(registry: &prometheus::Registry) -> u64 {
    registry
        .gather()
        .iter()
        .find(|family| family.name() == "identity_merges_total")
        .map_or(0, |family| {
            family.get_metric()[0].get_counter().get_value() as u64
        })
}

/// Fires the wall-clock timers due now, at most a tick's worth as the runtime does.
fn fire_timers(
    ingest: &mut Ingest,
    store: &mut StateStore,
    codec: &Codec,
    outputs: &mut Vec<Output>,
    now: i64,
) {
    for (at, key) in store
        .first_due_timers(0, Clock::Wall, now_millis(), TIMERS_PER_TICK)
        .expect("timers")
    {
        store.cancel_timer(0, Clock::Wall, at, &key);
        let mut ctx = Context::new(store, codec, outputs, 0, now);
        ingest
            .on_timer(Clock::Wall, at, &key, &mut ctx)
            .expect("timer");
    }
}

/// Each event framed as producers send it, keyed by visitor.
fn framed(codec: &Codec, events: &[CustomerEvent]) -> Vec<(String, Vec<u8>)> {
    events
        .iter()
        .map(|e| {
            let key = visitor_key(e)
                .expect("generated events have ids")
                .to_string();
            (key, codec.encode(e).expect("generated events encode"))
        })
        .collect()
}

/// apache-avro's generic decode of `keyed`'s records, events per second.
fn baseline(keyed: &[(String, Vec<u8>)]) -> f64 {
    let writer = apache_avro::Schema::parse_str(CustomerEvent::SCHEMA).expect("contract schema");
    rate(|| {
        timed(|| {
            for (_, record) in keyed {
                let mut datum: &[u8] = &record[HEADER_LEN..];
                black_box(
                    apache_avro::from_avro_datum(&writer, &mut datum, None).expect("decodes"),
                );
            }
        })
    })
}

fn main() {
    let now = now_millis();
    let codec = Codec::builtin();
    let keyed = framed(&codec, &events(now, Identities::Stable));
    let churning = framed(&codec, &events(now, Identities::Churning));
    let bytes: usize = keyed.iter().map(|(_, v)| v.len()).sum();
    let base = baseline(&keyed);
    let decode = rate(|| {
        timed(|| {
            for (_, record) in &keyed {
                black_box(codec.decode::<CustomerEvent>(record).expect("decodes"));
            }
        })
    });
    let (mut split, mut expiring_split) = (Split::default(), Split::default());
    let ingest = rate(|| ingest_round(&codec, &keyed, now, DEDUP_WINDOW, &mut split));
    let expiring =
        rate(|| ingest_round(&codec, &keyed, now, SHORT_DEDUP_WINDOW, &mut expiring_split));
    let churning_base = baseline(&churning);
    let mut churning_split = Split::default();
    let churning_ingest =
        rate(|| ingest_round(&codec, &churning, now, DEDUP_WINDOW, &mut churning_split));

    println!(
        "ingest throughput: {EVENTS} varied CustomerEvents ({} bytes on average) of {VISITORS} visitors, {} identity merges, one thread, median of {ROUNDS} rounds",
        bytes / EVENTS,
        split.merges
    );
    println!("{:<58} {:>12} {:>12}", "", "events/s", "vs baseline");
    let row = |name: &str, rate: f64, base: f64| {
        println!("{name:<58} {rate:>12.0} {:>11.2}x", rate / base);
    };
    row(
        "(a) baseline: apache-avro from_avro_datum (decode only)",
        base,
        base,
    );
    row(
        "(b) ingest: decode, validate, dedup, stitch, re-encode",
        ingest,
        base,
    );
    row(
        "(b') the same, ids expiring (200 ms dedup window)",
        expiring,
        base,
    );
    row("(c) codec decode alone", decode, base);
    println!(
        "time (b) spends firing timers and committing state on the runtime's cadence: {:.0}%, (b') {:.0}%",
        split.batch_share(),
        expiring_split.batch_share()
    );
    println!(
        "identities churning ({} merges; its own baseline {churning_base:.0} events/s):",
        churning_split.merges
    );
    row(
        "(d) ingest, every identified event a new device's link",
        churning_ingest,
        churning_base,
    );
}
