//! `journey run`: the whole pipeline in one process against a running broker:
//! the embedded schema registry (when `registry.embedded`), the four
//! services, the synthetic producer, and a running account of what comes out.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use journey_core::codec::Codec;
use journey_core::config::{CommonConfig, ConfigSource};
use journey_core::contract::{Alert, DeadLetter};
use journey_core::schema_registry::pipeline_codec;
use journey_core::telemetry::customer_tag;
use journey_registry::{Registry, RegistryConfig};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::live::{self, Figures, View};
use crate::produce::{produce, ProduceOptions};

/// Runs every service and the producer until `stop` is cancelled or one fails.
pub async fn run(
    source: ConfigSource,
    produce_options: ProduceOptions,
    display: Display,
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
    let endpoints = print_endpoints(&source)?;

    let Some(codec) = pipeline_codec(&common.kafka, &common.topics, &stop).await? else {
        return Ok(());
    };
    let kafka = common.kafka.clone();
    let producer_stop = stop.clone();
    let producer_codec = codec.clone();
    let producer = tokio::spawn(async move {
        produce(&kafka, &producer_codec, &produce_options, producer_stop).await
    });
    let watcher = tokio::spawn(watch(common, codec, endpoints, display, stop.clone()));

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

/// Prints where each service's endpoints are and returns their addresses.
fn print_endpoints(source: &ConfigSource) -> anyhow::Result<Vec<SocketAddr>> {
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
    println!(
        "customers    http://{}/customers/{{id}}",
        classifier.http_listen
    );
    println!("press Ctrl-C to stop");
    Ok(vec![
        ingest.http_listen,
        sessionizer.http_listen,
        classifier.http_listen,
        alerting.http_listen,
    ])
}

/// Where the output goes: a live view redrawn in place on a terminal, or
/// plain lines (each alert and dead letter, figures every 5 s) otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    Live,
    Lines,
}

/// Follows the alerts and dead-letter topics and the services' metrics until `stop`.
async fn watch(
    common: CommonConfig,
    codec: Codec,
    endpoints: Vec<SocketAddr>,
    display: Display,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let topics = &common.topics;
    let consumer: StreamConsumer = journey_core::kafka::client_config(&common.kafka)
        .set(
            "group.id",
            format!("journey-run-watch-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        .create()?;
    consumer.subscribe(&[&topics.alerts, &topics.dead_letters])?;
    let mut view = View::default();
    let mut redraw = tokio::time::interval(match display {
        Display::Live => Duration::from_secs(1),
        Display::Lines => Duration::from_secs(5),
    });
    if display == Display::Live {
        // The alternate screen keeps the user's scrollback as it was.
        print!("\x1b[?1049h\x1b[?25l");
    }
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = redraw.tick() => {
                let mut scrapes = Vec::with_capacity(endpoints.len());
                for addr in &endpoints {
                    scrapes.push(live::scrape(*addr).await.unwrap_or_default());
                }
                let figures = Figures::from_scrapes(&scrapes);
                let now = Instant::now();
                view.update(&figures, now);
                match display {
                    Display::Live => {
                        print!("\x1b[H\x1b[J{}", view.render(&figures, now));
                        let _ = std::io::stdout().flush();
                    }
                    Display::Lines => println!(
                        "events valid {:>8.0} | sessions closed {:>6.0} | alerts {:>5.0} | dead letters {:>4.0}",
                        figures.events_valid, figures.sessions_closed, figures.alerts, figures.dead_letters
                    ),
                }
            }
            polled = consumer.recv() => {
                let Ok(message) = polled else { continue };
                let payload = message.payload().unwrap_or_default();
                if message.topic() == topics.alerts {
                    if let Ok(alert) = codec.decode::<Alert>(payload) {
                        let line = format!(
                            "{:<20} {:<8} {:<8} {:<20} {}",
                            alert.rule,
                            alert.severity.as_str(),
                            format!("{:?}", alert.status),
                            // The tag, as in log lines: plain output is often kept as a log.
                            alert.customer_id.as_deref().map(|id| customer_tag(id).to_string()).unwrap_or_default(),
                            alert.summary
                        );
                        if display == Display::Lines {
                            println!("ALERT {line}");
                        }
                        view.alert(line);
                    }
                } else if let Ok(dead) = codec.decode::<DeadLetter>(payload) {
                    let line = format!("{:<12} {:<18} {}", dead.service, dead.error_kind.as_str(), dead.message);
                    if display == Display::Lines {
                        println!("DEAD  {line}");
                    }
                    view.dead_letter(line);
                }
            }
        }
    }
    if display == Display::Live {
        print!("\x1b[?25h\x1b[?1049l");
        let _ = std::io::stdout().flush();
    }
    Ok(())
}
