//! `journey run`: the whole pipeline in one process against a running broker:
//! the embedded schema registry (when `registry.embedded`), the four
//! services, the synthetic producer, and a running account of what comes out.

use std::time::Duration;

use journey_core::codec::Codec;
use journey_core::config::{CommonConfig, ConfigSource};
use journey_core::contract::{Alert, DeadLetter, SessionSummary, StageChange};
use journey_core::schema_registry::pipeline_codec;
use journey_registry::{Registry, RegistryConfig};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::produce::{produce, ProduceOptions};

/// Runs every service and the producer until `stop` is cancelled or one fails.
pub async fn run(
    source: ConfigSource,
    produce_options: ProduceOptions,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let common = source.common()?;
    let specs = journey_core::kafka::pipeline_topics(&common.topics, common.kafka.partitions);
    journey_core::kafka::ensure_topics(&common.kafka, &specs).await?;

    let mut services = JoinSet::new();
    let mut registry: RegistryConfig = source.section("registry")?;
    if registry.embedded {
        registry.kafka = common.kafka.clone();
        let server = Registry::start(&registry).await?;
        println!("registry     http://{}", server.local_addr()?);
        services.spawn(server.run(stop.clone()));
    }
    services.spawn(journey_ingest::run(source.clone(), stop.clone()));
    services.spawn(journey_sessionizer::run(source.clone(), stop.clone()));
    services.spawn(journey_classifier::run(source.clone(), stop.clone()));
    services.spawn(journey_alerting::run(source.clone(), stop.clone()));
    print_endpoints(&source)?;

    let Some(codec) = pipeline_codec(&common.kafka, &common.topics, &stop).await? else {
        return Ok(());
    };
    let kafka = common.kafka.clone();
    let producer_stop = stop.clone();
    let producer_codec = codec.clone();
    let producer = tokio::spawn(async move {
        produce(&kafka, &producer_codec, &produce_options, producer_stop).await
    });
    let watcher = tokio::spawn(watch(common, codec, stop.clone()));

    let mut failure = None;
    while let Some(joined) = services.join_next().await {
        let outcome = joined.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = outcome {
            stop.cancel();
            failure.get_or_insert(e);
        }
    }
    stop.cancel();
    match producer.await? {
        Ok(sent) => println!("producer sent {sent} events"),
        Err(e) => {
            failure.get_or_insert(e);
        }
    }
    let _ = watcher.await;
    failure.map_or(Ok(()), Err)
}

fn print_endpoints(source: &ConfigSource) -> anyhow::Result<()> {
    let ingest: journey_ingest::IngestConfig = source.section(journey_ingest::NAME)?;
    let sessionizer: journey_sessionizer::SessionizerConfig =
        source.section(journey_sessionizer::NAME)?;
    let classifier: journey_classifier::ClassifierConfig =
        source.section(journey_classifier::NAME)?;
    let alerting: journey_alerting::AlertingConfig = source.section(journey_alerting::NAME)?;
    for (name, addr) in [
        ("ingest", ingest.http_listen),
        ("sessionizer", sessionizer.http_listen),
        ("classifier", classifier.http_listen),
        ("alerting", alerting.http_listen),
    ] {
        println!("{name:<12} metrics http://{addr}/metrics   health http://{addr}/healthz");
    }
    println!("press Ctrl-C to stop");
    Ok(())
}

#[derive(Default)]
struct Tally {
    sessions: u64,
    stage_changes: u64,
    alerts: u64,
    dead_letters: u64,
}

/// Follows the output topics: prints every alert and dead letter, and a tally every 5 s.
async fn watch(common: CommonConfig, codec: Codec, stop: CancellationToken) -> anyhow::Result<()> {
    let topics = &common.topics;
    let consumer: StreamConsumer = journey_core::kafka::client_config(&common.kafka)
        .set(
            "group.id",
            format!("journey-run-watch-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        .create()?;
    consumer.subscribe(&[
        &topics.sessions,
        &topics.stage_changes,
        &topics.alerts,
        &topics.dead_letters,
    ])?;
    let mut tally = Tally::default();
    let mut report = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = report.tick() => println!(
                "sessions closed {:>6} | stage changes {:>6} | alerts {:>5} | dead letters {:>4}",
                tally.sessions, tally.stage_changes, tally.alerts, tally.dead_letters
            ),
            polled = consumer.recv() => {
                let Ok(message) = polled else { continue };
                let payload = message.payload().unwrap_or_default();
                let topic = message.topic();
                if topic == topics.sessions {
                    tally.sessions += u64::from(codec.decode::<SessionSummary>(payload).is_ok());
                } else if topic == topics.stage_changes {
                    tally.stage_changes += u64::from(codec.decode::<StageChange>(payload).is_ok());
                } else if topic == topics.alerts {
                    if let Ok(alert) = codec.decode::<Alert>(payload) {
                        tally.alerts += 1;
                        println!(
                            "ALERT {:<20} {:<8} {:<24} {}",
                            alert.rule,
                            alert.severity.as_str(),
                            alert.customer_id.unwrap_or_default(),
                            alert.summary
                        );
                    }
                } else if let Ok(dead) = codec.decode::<DeadLetter>(payload) {
                    tally.dead_letters += 1;
                    println!("DEAD  {:<20} {:<18} {}", dead.service, dead.error_kind.as_str(), dead.message);
                }
            }
        }
    }
}
