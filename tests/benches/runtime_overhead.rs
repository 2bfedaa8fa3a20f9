//! Runtime overhead: a no-op processor on the full runtime (offsets, commits,
//! changelog), once without and once with a get-modify-put per record, against
//! a bare rdkafka consumer that only counts, over the same topic on the same
//! local broker, in one run: three rounds, each running all three in turn, so
//! a slow spell of the shared machine falls on one round and not on one side.
//! Prints each round's rates and ratios, and the median ratios.
//!
//! Run: `cargo bench -p journey-tests --bench runtime_overhead`

use journey_core::config::RuntimeConfig;
use journey_core::runtime::{Context, InputRecord, ProcessError, Processor};
use journey_tests::bench::{bare_rate, fill, histogram, run_in_runtime, BenchTopic};
use journey_tests::Broker;

const BENCH: BenchTopic = BenchTopic {
    name: "bench-input",
    partitions: 3,
    // Enough that the steady-state window (all partitions running) is most
    // of the run: with 600 000 it was a few tenths of a second, and a commit
    // falling in it or not moved the ratios by half.
    records: 3_000_000,
};

/// Counts records per key in state (if `stateful`); else does nothing.
struct Counting {
    stateful: bool,
}

impl Processor for Counting {
    fn process(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        if self.stateful {
            let key = record.key.unwrap_or_default();
            let count: u64 = ctx.state().get(key)?.unwrap_or(0);
            ctx.state().put(key, &(count + 1));
        }
        Ok(())
    }
}

/// Rounds of the three runs.
const ROUNDS: usize = 3;

/// The runtime's rate over the steady-state window, with or without state
/// writes, in a consumer group of round `round`'s own.
async fn runtime(broker: &Broker, stateful: bool, round: usize) -> f64 {
    let name = if stateful { "stateful" } else { "stateless" };
    let registry = prometheus::Registry::new();
    let window = run_in_runtime(
        broker,
        BENCH,
        &format!("bench-{name}-{round}"),
        Counting { stateful },
        RuntimeConfig {
            state_memory_bytes: 64 << 20,
            ..RuntimeConfig::default()
        },
        &registry,
    )
    .await;
    let seconds = |name: &str| histogram(&registry, name).map_or(0.0, |h| h.get_sample_sum());
    println!(
        "  {name} runtime: {:.3} s steady-state window; over the whole run ~{:.3} s processing records (sampled), {:.3} s committing",
        window.elapsed().unwrap_or_default().as_secs_f64(),
        seconds("process_latency_seconds") * journey_core::runtime::LATENCY_SAMPLE as f64,
        seconds("commit_latency_seconds")
    );
    window.rate()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let broker = Broker::start();
    let payload = vec![7u8; 100];
    let now = journey_core::runtime::now_millis();
    let records =
        (0..BENCH.records).map(|i| (format!("customer-{}", i % 10_000), payload.clone(), now));
    fill(&broker.kafka(), BENCH, records).await;
    println!(
        "runtime overhead over {} records (100-byte values, 10k keys, 3 partitions), {ROUNDS} rounds",
        BENCH.records
    );
    let mut stateless_ratios = Vec::new();
    let mut stateful_ratios = Vec::new();
    for round in 0..ROUNDS {
        let bare = bare_rate(&broker, BENCH, &format!("bench-bare-{round}")).await;
        let stateless = runtime(&broker, false, round).await;
        let stateful = runtime(&broker, true, round).await;
        println!(
            "round {round}: bare rdkafka consumer {bare:.0} records/s; runtime, no state writes {stateless:.0} records/s (ratio {:.2}); runtime, get-modify-put {stateful:.0} records/s (ratio {:.2})",
            stateless / bare,
            stateful / bare
        );
        stateless_ratios.push(stateless / bare);
        stateful_ratios.push(stateful / bare);
    }
    println!(
        "median ratio to the bare consumer: no state writes {:.2}, get-modify-put {:.2}",
        median(stateless_ratios),
        median(stateful_ratios)
    );
}

/// The middle value.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
