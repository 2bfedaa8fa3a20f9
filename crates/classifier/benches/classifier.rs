//! The classifier with 1M customer profiles in a real RocksDB state store:
//! (a) events per second through the processor on one thread, beside the
//! codec's decode alone in the same run; (b) the query API's latency
//! (p50/p99) under concurrent clients, while the processor keeps writing on
//! another thread, as in a running instance.
//!
//! Run: `cargo bench -p journey-classifier --bench classifier`

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use journey_classifier::{
    router, Classifier, ClassifierTopics, Directory, LocalPartitions, Profile, Query, Rules,
};
use journey_core::codec::Codec;
use journey_core::config::TopicsConfig;
use journey_core::contract::{Channel, CustomerEvent, EventType, Feedback, Order, Product, Stage};
use journey_core::runtime::{now_millis, Context, InputRecord, Processor};
use journey_core::state::StateStore;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

const PROFILES: usize = 1_000_000;
const EVENTS: usize = 300_000;
const COMMIT_EVERY: usize = 10_000;
const ROUNDS: usize = 3;
const STATE_MEMORY: usize = 256 << 20;
const CLIENTS: usize = 16;
const REQUESTS: usize = 40_000;

fn customer(i: usize) -> String {
    format!("cust-{i:07}")
}

/// Profiles across every stage, as a store of a running pipeline holds them.
fn preload(store: &mut StateStore, now: i64) {
    let mut rng = SmallRng::seed_from_u64(1);
    let channels = [Channel::Web, Channel::App, Channel::Email, Channel::Store];
    for i in 0..PROFILES {
        let first = now - rng.gen_range(0..90) * 86_400_000;
        let mut p = Profile::new(first, channels[i % channels.len()]);
        p.channels = rng.gen_range(1..16);
        p.sessions = rng.gen_range(0..20);
        p.orders = rng.gen_range(0..4);
        p.revenue = f64::from(p.orders) * 42.5;
        if p.orders > 0 {
            p.last_order_at = Some(first + 3_600_000);
            p.recent_orders = vec![first + 3_600_000];
        }
        p.last_seen = first + 7_200_000;
        p.enter(Stage::ALL[rng.gen_range(0..5)], first);
        store.partition(0).put(customer(i).as_bytes(), &p);
        if (i + 1) % 100_000 == 0 {
            store.commit().expect("commit");
        }
    }
    store.commit().expect("commit");
}

fn events(now: i64) -> Vec<(String, Vec<u8>)> {
    let codec = Codec::builtin();
    let mut rng = SmallRng::seed_from_u64(7);
    (0..EVENTS)
        .map(|i| {
            let id = customer(rng.gen_range(0..PROFILES));
            let mut event = CustomerEvent {
                event_id: format!("evt-{i:08}"),
                occurred_at: now + i as i64,
                customer_id: Some(id.clone()),
                channel: Channel::Web,
                ..CustomerEvent::default()
            };
            event.event_type = match rng.gen_range(0..100) {
                0..=44 => EventType::PageView,
                45..=69 => EventType::ProductView,
                70..=81 => EventType::AddToCart,
                82..=87 => EventType::CheckoutStarted,
                88..=93 => EventType::Purchase,
                94..=96 => EventType::Feedback,
                _ => EventType::SupportContact,
            };
            match event.event_type {
                EventType::ProductView | EventType::AddToCart => {
                    event.product = Some(Product {
                        product_id: format!("sku-{}", rng.gen_range(0..5_000)),
                        price: Some(19.9),
                        ..Product::default()
                    })
                }
                EventType::Purchase => {
                    event.order = Some(Order {
                        order_id: format!("ord-{i}"),
                        revenue: 59.0,
                        currency: "EUR".into(),
                        item_count: Some(2),
                    })
                }
                EventType::Feedback => {
                    event.channel = Channel::Survey;
                    event.feedback = Some(Feedback {
                        nps: Some(rng.gen_range(0..=10)),
                        ..Feedback::default()
                    })
                }
                _ => {}
            }
            (id, codec.encode(&event).expect("encodes"))
        })
        .collect()
}

fn topics() -> ClassifierTopics {
    ClassifierTopics::new(&TopicsConfig::default(), "journey-classifier")
}

/// Runs `events` through the classifier as the runtime does (commit every
/// [`COMMIT_EVERY`]), counting them in `processed`; returns the time taken.
fn process(
    classifier: &mut Classifier,
    store: &mut StateStore,
    codec: &Codec,
    events: &[(String, Vec<u8>)],
    first_offset: i64,
    processed: &AtomicU64,
) -> Duration {
    let started = Instant::now();
    let mut outputs = Vec::with_capacity(COMMIT_EVERY);
    for (offset, (key, payload)) in (first_offset..).zip(events) {
        let record = InputRecord {
            topic: "journey.events",
            partition: 0,
            offset,
            timestamp: 0,
            key: Some(key.as_bytes()),
            payload: Some(payload),
        };
        let mut ctx = Context::new(store, codec, &mut outputs, 0, 0);
        classifier.process(&record, &mut ctx).expect("valid events");
        if (offset + 1) % COMMIT_EVERY as i64 == 0 {
            black_box(&outputs);
            outputs.clear();
            store.set_input_offset("journey.events", 0, offset + 1);
            store.commit().expect("commit");
            processed.fetch_add(COMMIT_EVERY as u64, Ordering::Relaxed);
        }
    }
    store.commit().expect("commit");
    started.elapsed()
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// One keep-alive client: `requests` GETs, each latency recorded.
async fn client(addr: SocketAddr, seed: u64, requests: usize) -> Vec<Duration> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut latencies = Vec::with_capacity(requests);
    let mut line = String::new();
    for _ in 0..requests {
        // One in ten asks for a customer nobody has seen (a 404).
        let i = rng.gen_range(0..PROFILES + PROFILES / 9);
        let request = format!(
            "GET /customers/{} HTTP/1.1\r\nHost: bench\r\n\r\n",
            customer(i)
        );
        let started = Instant::now();
        write.write_all(request.as_bytes()).await.expect("send");
        let mut length = 0;
        loop {
            line.clear();
            read.read_line(&mut line).await.expect("headers");
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().expect("content length");
            }
        }
        let mut body = vec![0; length];
        read.read_exact(&mut body).await.expect("body");
        latencies.push(started.elapsed());
        black_box(body);
    }
    latencies
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let now = now_millis();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = StateStore::open(dir.path(), STATE_MEMORY).expect("state store");
    let load_before = load();
    let started = Instant::now();
    preload(&mut store, now);
    println!(
        "preloaded {PROFILES} profiles in {:.1} s; load average {load_before}",
        started.elapsed().as_secs_f64()
    );
    let codec = Codec::builtin();
    let events = events(now);
    let rules = Arc::new(Rules::parse(journey_classifier::DEFAULT_RULES).expect("default rules"));
    let local = LocalPartitions::default();
    let registry = prometheus::Registry::new();
    let retention = journey_classifier::ClassifierConfig::default()
        .visitor_retention_ms()
        .expect("default retention");
    let mut classifier = Classifier::new(
        Arc::clone(&rules),
        topics(),
        local.clone(),
        retention,
        &registry,
    );
    let counted = AtomicU64::new(0);

    let decode = median(|| {
        let started = Instant::now();
        for (_, payload) in &events {
            black_box(codec.decode::<CustomerEvent>(payload).expect("decodes"));
        }
        started.elapsed()
    });
    let mut offset = 0;
    let classify = median(|| {
        let took = process(
            &mut classifier,
            &mut store,
            &codec,
            &events,
            offset,
            &counted,
        );
        offset += EVENTS as i64;
        took
    });

    // (b) queries while the processor goes on writing on its own thread.
    let mut ctx_outputs = Vec::new();
    let mut ctx = Context::new(&mut store, &codec, &mut ctx_outputs, 0, 0);
    classifier.on_assigned(0, &mut ctx).expect("assign");
    let query = Query {
        local,
        directory: Directory::default(),
        url: "http://127.0.0.1:9103".into(),
        partitions: 1,
        rules,
    };
    let stop_writing = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let stop = Arc::clone(&stop_writing);
        let written = Arc::clone(&written);
        std::thread::spawn(move || {
            let mut offset = offset;
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                process(
                    &mut classifier,
                    &mut store,
                    &codec,
                    &events,
                    offset,
                    &written,
                );
                offset += EVENTS as i64;
            }
            (written.load(Ordering::Relaxed), started.elapsed(), store)
        })
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (latencies, wall) = runtime.block_on(async move {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let addr = listener.local_addr().expect("address");
        drop(listener);
        let stop = CancellationToken::new();
        let server = journey_core::http::serve(addr, router(query), stop.clone())
            .await
            .expect("server");
        let started = Instant::now();
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|c| tokio::spawn(client(addr, c as u64, REQUESTS / CLIENTS)))
            .collect();
        let mut latencies = Vec::with_capacity(REQUESTS);
        for task in tasks {
            latencies.extend(task.await.expect("client"));
        }
        let wall = started.elapsed();
        stop.cancel();
        let _ = server.await;
        (latencies, wall)
    });
    stop_writing.store(true, Ordering::Relaxed);
    let (written, writing, _store) = writer.join().expect("writer thread");
    let mut sorted = latencies;
    sorted.sort();

    println!(
        "classifier: {EVENTS} events over {PROFILES} profiles (RocksDB), one thread, median of {ROUNDS} rounds"
    );
    println!("{:<52} {:>12} {:>10}", "", "events/s", "vs decode");
    println!(
        "{:<52} {:>12.0} {:>9.2}x",
        "(a) codec decode alone (CustomerEvent)", decode, 1.0
    );
    println!(
        "{:<52} {:>12.0} {:>9.2}x",
        "(b) classifier: decode, profile get/put, rules",
        classify,
        classify / decode
    );
    println!(
        "query API: {CLIENTS} keep-alive clients, {} requests in {:.2} s ({:.0} req/s), 10% unknown ids,",
        sorted.len(),
        wall.as_secs_f64(),
        sorted.len() as f64 / wall.as_secs_f64()
    );
    println!(
        "  while the processor wrote {:.0} events/s on another thread",
        written as f64 / writing.as_secs_f64()
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "  latency p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        ms(percentile(&sorted, 0.5)),
        ms(percentile(&sorted, 0.9)),
        ms(percentile(&sorted, 0.99)),
        ms(sorted[sorted.len() - 1])
    );
    println!(
        "load average before {load_before}, after {} (2 cores, shared)",
        load()
    );
}

/// Events per second: the median of [`ROUNDS`] timed rounds.
fn median(mut round: impl FnMut() -> Duration) -> f64 {
    let mut rates: Vec<f64> = (0..ROUNDS)
        .map(|_| EVENTS as f64 / round().as_secs_f64())
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[ROUNDS / 2]
}
