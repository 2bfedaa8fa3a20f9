//! `journey`: run the embedded pipeline, produce synthetic journeys, tail topics,
//! and tell support staff which log lines are a customer's.

mod embedded;
mod erase;
mod live;
mod produce;
mod synth;
mod tail;

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use journey_core::config::{ConfigSource, LogConfig};
use journey_core::contract::ErasureRequest;
use journey_core::schema_registry::pipeline_codec;
use journey_core::service::{shutdown_on_signals, CONFIG_ENV};
use journey_core::telemetry::CustomerTagger;
use journey_registry::{Registry, RegistryConfig};

use crate::embedded::Display;
use crate::produce::ProduceOptions;

/// Journey: a real-time customer-journey pipeline on Apache Kafka.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Config file (TOML); `JOURNEY_<SECTION>__<FIELD>` variables override it.
    #[arg(long, short, global = true, env = CONFIG_ENV)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the four services and the synthetic producer in one process.
    Run {
        #[command(flatten)]
        synth: SynthArgs,
        /// Print plain lines instead of the live view (the default when
        /// standard output is not a terminal).
        #[arg(long)]
        plain: bool,
    },
    /// Produces synthetic customer journeys to the raw events topic.
    Produce {
        #[command(flatten)]
        synth: SynthArgs,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Prints a topic's records decoded to JSON lines.
    Tail {
        /// Topic name.
        topic: String,
        /// Start from the earliest offset instead of new records only.
        #[arg(long)]
        from_beginning: bool,
        /// Stop after this many records.
        #[arg(long)]
        max: Option<u64>,
        /// Stop after this many seconds without a record.
        #[arg(long)]
        idle_secs: Option<u64>,
    },
    /// Creates the pipeline's topics if they do not exist.
    Topics,
    /// Asks every service to erase a customer's data, then waits for the
    /// confirmation and prints it as JSON.
    Erase {
        /// The customer's id.
        customer_id: String,
        /// An anonymous (device or cookie) id of the customer's; ids ingest
        /// linked to the customer are erased anyway. Repeatable.
        #[arg(long = "anonymous-id")]
        anonymous_ids: Vec<String>,
        /// The request's id (default: derived from the customer id and the time).
        #[arg(long)]
        request_id: Option<String>,
        /// Seconds to wait for the confirmation; 0 sends without waiting.
        #[arg(long, default_value_t = 120)]
        wait_secs: u64,
    },
    /// Prints the tag that stands for each customer (or anonymous) id in the
    /// services' log lines (`customer=<tag>`), one per line, computed with
    /// `log.customer_id_key`. Without ids, reads them from standard input,
    /// one per line (keeping them out of the shell's history).
    CustomerTag {
        /// Customer or anonymous ids.
        ids: Vec<String>,
    },
    /// Runs the embedded Confluent-compatible schema registry alone (`[registry]` settings).
    Registry,
}

#[derive(clap::Args)]
struct SynthArgs {
    /// Events per second.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Visitors in flight at once.
    #[arg(long, default_value_t = 200)]
    concurrent: usize,
    /// Seed of the journeys.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Make every n-th record malformed (0: never).
    #[arg(long, default_value_t = 500)]
    malformed_every: u64,
}

impl SynthArgs {
    fn options(&self, topic: String, count: Option<u64>) -> ProduceOptions {
        ProduceOptions {
            topic,
            rate: self.rate,
            count,
            concurrent: self.concurrent,
            seed: self.seed,
            malformed_every: self.malformed_every,
        }
    }
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let source = ConfigSource::load(cli.config.as_deref())?;
    let common = source.common()?;
    if let Command::CustomerTag { ids } = &cli.command {
        return customer_tags(&common.log, ids);
    }
    let display = match cli.command {
        Command::Run { plain: false, .. } if std::io::stdout().is_terminal() => Display::Live,
        _ => Display::Lines,
    };
    if display == Display::Live {
        // Log lines would tear the live view: they go to a file instead.
        std::fs::create_dir_all(&common.runtime.state_dir)?;
        let log = common.runtime.state_dir.join("journey-run.log");
        journey_core::telemetry::init_to_file(&common.log, &log)?;
        println!("logs         {}", log.display());
    } else {
        journey_core::telemetry::init(&common.log)?;
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let stop = shutdown_on_signals();
        match cli.command {
            Command::Run { synth, .. } => {
                let options = synth.options(common.topics.raw_events.clone(), None);
                embedded::run(source, options, display, stop).await
            }
            Command::Produce { synth, count } => {
                let options = synth.options(common.topics.raw_events.clone(), count);
                let Some(codec) = pipeline_codec(&common.kafka, &common.topics, &stop).await?
                else {
                    return Ok(());
                };
                let sent = produce::produce(&common.kafka, &codec, &options, stop).await?;
                println!("sent {sent} events to {}", options.topic);
                Ok(())
            }
            Command::Tail {
                topic,
                from_beginning,
                max,
                idle_secs,
            } => {
                let Some(codec) = pipeline_codec(&common.kafka, &common.topics, &stop).await?
                else {
                    return Ok(());
                };
                tail::tail(
                    &common.kafka,
                    &codec,
                    &topic,
                    from_beginning,
                    max,
                    idle_secs.map(Duration::from_secs),
                    stop,
                )
                .await
            }
            Command::Topics => {
                let specs =
                    journey_core::kafka::pipeline_topics(&common.topics, common.kafka.partitions);
                journey_core::kafka::ensure_topics(&common.kafka, &specs).await?;
                for spec in specs {
                    println!("{} ({} partitions)", spec.name, spec.partitions);
                }
                Ok(())
            }
            Command::Erase {
                customer_id,
                anonymous_ids,
                request_id,
                wait_secs,
            } => {
                let Some(codec) = pipeline_codec(&common.kafka, &common.topics, &stop).await?
                else {
                    return Ok(());
                };
                let requested_at = journey_core::runtime::now_millis();
                let request = ErasureRequest {
                    request_id: request_id.unwrap_or_else(|| {
                        journey_core::ids::derive(&[
                            b"erasure",
                            customer_id.as_bytes(),
                            &requested_at.to_be_bytes(),
                        ])
                    }),
                    customer_id,
                    anonymous_ids,
                    requested_at,
                };
                let wait = (wait_secs > 0).then(|| Duration::from_secs(wait_secs));
                let confirmed =
                    erase::erase(&common.kafka, &common.topics, &codec, &request, wait, stop)
                        .await?;
                match confirmed {
                    Some(confirmation) => println!(
                        "{}",
                        serde_json::json!({
                            "request_id": confirmation.request_id,
                            "subjects": confirmation.subjects,
                            "services": confirmation.services,
                            "seconds": (confirmation.confirmed_at - confirmation.requested_at) as f64 / 1000.0,
                        })
                    ),
                    None => println!("sent erasure request {}", request.request_id),
                }
                Ok(())
            }
            Command::CustomerTag { .. } => unreachable!("answered before logging starts"),
            Command::Registry => {
                let mut config: RegistryConfig = source.section("registry")?;
                config.kafka = common.kafka.clone();
                let registry = Registry::start(&config).await?;
                println!("schema registry on http://{}", registry.local_addr()?);
                registry.run(stop).await
            }
        }
    })
}

/// Prints the log tag of each of `ids` (or of each line of standard input).
fn customer_tags(log: &LogConfig, ids: &[String]) -> anyhow::Result<()> {
    let key = log.customer_id_key.as_ref().context(
        "log.customer_id_key is not set: without it each service tags customers with a \
         random key of its own, which no one can compute again (set it in the services' \
         config and here, e.g. JOURNEY_LOG__CUSTOMER_ID_KEY)",
    )?;
    let tagger = CustomerTagger::new(key);
    let mut out = std::io::stdout().lock();
    if ids.is_empty() {
        for line in std::io::stdin().lock().lines() {
            let line = line.context("reading ids from standard input")?;
            let id = line.trim();
            if !id.is_empty() {
                writeln!(out, "{}", tagger.tag(id))?;
            }
        }
    } else {
        for id in ids {
            writeln!(out, "{}", tagger.tag(id))?;
        }
    }
    Ok(())
}
