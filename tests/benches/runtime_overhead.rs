//! Runtime overhead: a no-op processor on the full runtime (offsets, commits,
//! changelog), once without and once with a get-modify-put per record, against
//! a bare rdkafka consumer that only counts, over the same topic on the same
//! local broker, in one run. Prints the rates and their ratios.
//!
//! Run: `cargo bench -p journey-tests --bench runtime_overhead`

use journey_core::runtime::{Context, InputRecord, ProcessError, Processor};
use journey_tests::bench::{bare_rate, fill, run_in_runtime, BenchTopic};
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

/// The runtime's rate over the steady-state window, with or without state writes.
async fn runtime(broker: &Broker, stateful: bool) -> f64 {
    let name = if stateful { "stateful" } else { "stateless" };
    let registry = prometheus::Registry::new();
    let window = run_in_runtime(
        broker,
        BENCH,
        &format!("bench-{name}"),
        Counting { stateful },
        64 << 20,
        &registry,
    )
    .await;
    let seconds = |name: &str| {
        registry
            .gather()
            .iter()
            .find(|family| family.name() == name)
            .map_or(0.0, |family| {
                family.get_metric()[0].get_histogram().get_sample_sum()
            })
    };
    println!(
        "{name} runtime: {:.3} s steady-state window; over the whole run ~{:.3} s processing records (sampled), {:.3} s committing",
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
    let bare_rate = bare_rate(&broker, BENCH).await;
    let stateless_rate = runtime(&broker, false).await;
    let stateful_rate = runtime(&broker, true).await;
    println!(
        "runtime overhead over {} records (100-byte values, 10k keys, 3 partitions)",
        BENCH.records
    );
    println!("bare rdkafka consumer     {bare_rate:>12.0} records/s");
    println!(
        "runtime, no state writes  {stateless_rate:>12.0} records/s  ratio {:.2}",
        stateless_rate / bare_rate
    );
    println!(
        "runtime, get-modify-put   {stateful_rate:>12.0} records/s  ratio {:.2}",
        stateful_rate / bare_rate
    );
}
