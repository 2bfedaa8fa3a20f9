//! State store benchmark: get-modify-put per event against RocksDB through the
//! write-back cache, with 100k and 1M distinct keys, beside an in-memory
//! HashMap doing the same work in the same run; and the process's peak RSS
//! with 1M keys against the configured memory budget, for three budgets, so
//! what the budget does not hold shows as a constant beside it.
//!
//! Run: `cargo bench -p journey-core --bench state_store`

use std::collections::HashMap;
use std::time::Instant;

use journey_core::state::StateStore;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

const OPERATIONS: u64 = 1_000_000;
const COMMIT_EVERY: u64 = 5_000;
/// The budget of the throughput runs, MiB.
const BUDGET_MIB: usize = 64;
/// The budgets of the RSS runs, MiB.
const RSS_BUDGETS_MIB: [usize; 3] = [32, 64, 128];

/// A profile-sized value: a few counters and a short string.
#[derive(Default, Serialize, Deserialize)]
struct Value {
    events: u64,
    revenue: f64,
    last_seen: i64,
    segment: String,
}

fn key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

/// Get-modify-put over `keys` keys; returns operations per second and the
/// state memory accounted at the end (block cache with memtables, record cache).
fn rocksdb_run(keys: u64, budget_mib: usize) -> (f64, usize, usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = StateStore::open(dir.path(), budget_mib << 20).expect("open store");
    for i in 0..keys {
        store.partition((i % 6) as i32).put(
            &key(i),
            &Value {
                segment: "new".into(),
                ..Value::default()
            },
        );
        if i % 10_000 == 0 {
            store.commit().expect("commit");
        }
    }
    store.commit().expect("commit");
    let mut rng = SmallRng::seed_from_u64(7);
    let started = Instant::now();
    for n in 0..OPERATIONS {
        let i = rng.gen_range(0..keys);
        let mut partition = store.partition((i % 6) as i32);
        let mut value: Value = partition.get(&key(i)).expect("get").unwrap_or_default();
        value.events += 1;
        value.revenue += 1.5;
        value.last_seen = n as i64;
        partition.put(&key(i), &value);
        if n % COMMIT_EVERY == 0 {
            store.commit().expect("commit");
        }
    }
    store.commit().expect("commit");
    let rate = OPERATIONS as f64 / started.elapsed().as_secs_f64();
    let memory = store.memory();
    (
        rate,
        memory.block_cache_bytes(),
        memory.record_cache_bytes(),
    )
}

fn hashmap_run(keys: u64) -> f64 {
    let mut map: HashMap<u64, Vec<u8>> = (0..keys)
        .map(|i| (i, postcard::to_stdvec(&Value::default()).expect("encode")))
        .collect();
    let mut rng = SmallRng::seed_from_u64(7);
    let started = Instant::now();
    for n in 0..OPERATIONS {
        let i = rng.gen_range(0..keys);
        let mut value: Value = postcard::from_bytes(&map[&i]).expect("decode");
        value.events += 1;
        value.revenue += 1.5;
        value.last_seen = n as i64;
        map.insert(i, postcard::to_stdvec(&value).expect("encode"));
    }
    OPERATIONS as f64 / started.elapsed().as_secs_f64()
}

fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Peak RSS, block cache and record cache bytes of 1M keys within
/// `budget_mib`, run in a process of its own (the budget is process-wide,
/// and the HashMap baseline must not count).
fn rss_run(budget_mib: usize) -> [u64; 3] {
    let exe = std::env::current_exe().expect("bench executable");
    let output = std::process::Command::new(exe)
        .args(["--rss-only", &budget_mib.to_string()])
        .output()
        .expect("RSS run");
    let text = String::from_utf8_lossy(&output.stdout);
    let figures: Vec<u64> = text
        .split_whitespace()
        .map(|v| v.parse().expect("figures of the RSS run"))
        .collect();
    figures[..]
        .try_into()
        .unwrap_or_else(|_| panic!("the RSS run printed {text:?}"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--rss-only") {
        let budget_mib = args[at + 1].parse().expect("budget in MiB");
        let (_, block_cache, record_cache) = rocksdb_run(1_000_000, budget_mib);
        println!("{} {block_cache} {record_cache}", peak_rss_bytes());
        return;
    }
    println!("state store: get-modify-put, {OPERATIONS} operations, commit every {COMMIT_EVERY}, {BUDGET_MIB} MiB budget");
    println!(
        "{:>10} {:>16} {:>16} {:>10}",
        "keys", "rocksdb ops/s", "hashmap ops/s", "ratio"
    );
    for keys in [100_000u64, 1_000_000] {
        let (rocks, _, _) = rocksdb_run(keys, BUDGET_MIB);
        let memory = hashmap_run(keys);
        println!(
            "{keys:>10} {rocks:>16.0} {memory:>16.0} {:>10.2}",
            rocks / memory
        );
    }
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    println!("peak RSS with 1M keys, MiB; state memory at the end (block cache with memtables, record cache); RSS beyond the budget");
    println!(
        "{:>8} {:>10} {:>12} {:>13} {:>14}",
        "budget", "peak RSS", "block cache", "record cache", "beyond budget"
    );
    for budget_mib in RSS_BUDGETS_MIB {
        let [rss, block_cache, record_cache] = rss_run(budget_mib);
        println!(
            "{budget_mib:>8} {:>10.1} {:>12.1} {:>13.1} {:>14.1}",
            mib(rss),
            mib(block_cache),
            mib(record_cache),
            mib(rss) - budget_mib as f64
        );
    }
}
