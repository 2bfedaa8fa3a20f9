//! Webhook relays: the alerts topic is the notifications' queue.
//!
//! Each receiver has a thread reading the alerts topic in its own consumer
//! group, `<group_id>-webhook-<name>`, and storing an alert's offset once its
//! notification is delivered or abandoned; stored offsets are committed every
//! few seconds and when the relay stops. So a slow or dead receiver falls
//! behind on its own, holding up neither the processing loop nor another
//! receiver, and drops nothing while it lags; and a notification not yet
//! delivered when the service stops, crashes or loses the partition is sent
//! by whoever reads it next (at least once: a receiver may hear of an alert
//! twice, under the same `alert_id`).
//!
//! A receiver's group starts at the end of the topic: a receiver added to a
//! running pipeline hears of alerts from then on, not of the topic's history.

use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::Context as _;
use journey_core::codec::Codec;
use journey_core::config::KafkaConfig;
use journey_core::contract::{Alert, AlertStatus};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::backlog::{learn_positions, Backlog, RelayConsumer, RelayContext};
use super::delivery::{Delivery, DeliveryMetrics, Outcome};
use super::payload::notification;
use super::WebhookConfig;

/// Longest wait for records before checking for a stop.
const POLL: Duration = Duration::from_millis(200);

/// Time allowed for each metadata, offset and commit request at start-up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The running relays, one per receiver.
pub struct Relays {
    threads: Vec<JoinHandle<()>>,
    /// Dropped to stop the threads.
    running: Vec<Sender<()>>,
    /// Reports the relays' backlogs while they run.
    backlog: Backlog,
}

/// What a relay needs besides its consumer.
struct Relay {
    delivery: Delivery,
    codec: Codec,
    external_url: String,
    stop: Receiver<()>,
}

/// The consumer group of `receiver`'s relay within alerting's `group_id`.
fn relay_group(group_id: &str, receiver: &str) -> String {
    format!("{group_id}-webhook-{receiver}")
}

impl Relays {
    /// Starts a relay per receiver of `receivers` (named uniquely: see
    /// [`crate::AlertingConfig::webhooks`]) on `topic`, decoding alerts with
    /// `codec`, counted in `metrics`. Blocks while each new group's start
    /// offsets are committed; an error if the broker cannot be reached.
    pub fn start(
        kafka: &KafkaConfig,
        topic: &str,
        group_id: &str,
        receivers: &[WebhookConfig],
        external_url: &str,
        codec: &Codec,
        metrics: &DeliveryMetrics,
    ) -> anyhow::Result<Relays> {
        let mut relays = Relays {
            threads: Vec::new(),
            running: Vec::new(),
            backlog: metrics.backlog.clone(),
        };
        for config in receivers {
            let group = relay_group(group_id, &config.name);
            let consumer: RelayConsumer = journey_core::kafka::consumer_config(kafka, &group)
                .set("enable.auto.commit", "true")
                .set("max.poll.interval.ms", max_poll_interval(config))
                .create_with_context(RelayContext::default())
                .with_context(|| format!("creating the webhook consumer of group {group}"))?;
            start_at_end(&consumer, topic)
                .with_context(|| format!("setting the start of webhook consumer group {group}"))?;
            consumer
                .subscribe(&[topic])
                .with_context(|| format!("subscribing group {group} to {topic}"))?;
            let consumer = Arc::new(consumer);
            relays
                .backlog
                .track(&config.name, topic, Arc::clone(&consumer));
            let (running, stop) = channel();
            let relay = Relay {
                delivery: Delivery::new(config, metrics),
                codec: codec.clone(),
                external_url: external_url.to_string(),
                stop,
            };
            let thread = thread::Builder::new()
                .name(format!("webhook-{}", config.name))
                .spawn(move || relay.run(&consumer))
                .context("starting a webhook relay thread")?;
            relays.threads.push(thread);
            relays.running.push(running);
        }
        Ok(relays)
    }

    /// Stops the relays and waits for them: an attempt under way is let
    /// finish (within the receiver's `timeout`); a notification not
    /// delivered by then is sent again on the next start. Offsets of what
    /// was delivered are committed.
    pub fn stop(self) {
        drop(self.running);
        for thread in self.threads {
            if thread.join().is_err() {
                tracing::error!("a webhook relay thread panicked");
            }
        }
        self.backlog.forget();
    }
}

impl Relay {
    fn run(&self, consumer: &RelayConsumer) {
        let positions = consumer.context().positions();
        while self.stop.try_recv() == Err(TryRecvError::Empty) {
            if let Err(error) = learn_positions(consumer, REQUEST_TIMEOUT) {
                tracing::warn!(receiver = self.delivery.receiver(), %error, "webhook relay: reading the group's committed offsets failed");
            }
            let message = match consumer.poll(POLL) {
                None => continue,
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    tracing::warn!(receiver = self.delivery.receiver(), %error, "webhook relay: reading alerts failed");
                    continue;
                }
            };
            positions.advance(message.partition(), message.offset());
            match self
                .codec
                .decode::<Alert>(message.payload().unwrap_or_default())
            {
                Ok(alert) => {
                    // A resolved alert's record is stamped with its resolution.
                    let ends_at = match alert.status {
                        AlertStatus::Resolved => message.timestamp().to_millis(),
                        AlertStatus::Firing => None,
                    };
                    let body = notification(
                        &alert,
                        self.delivery.receiver(),
                        &self.external_url,
                        ends_at,
                    );
                    if self.delivery.deliver(&body.to_string(), &self.stop) == Outcome::Stopped {
                        break;
                    }
                }
                Err(error) => self.delivery.abandon(&format!(
                    "the alert record at {}/{}@{} is unreadable: {error}",
                    message.topic(),
                    message.partition(),
                    message.offset()
                )),
            }
            if let Err(error) = consumer.store_offset_from_message(&message) {
                tracing::warn!(receiver = self.delivery.receiver(), %error, "webhook relay: storing an offset failed");
            }
            positions.advance(message.partition(), message.offset() + 1);
        }
        if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored since the last commit is the usual reason.
            tracing::debug!(receiver = self.delivery.receiver(), %error, "webhook relay: final commit");
        }
    }
}

/// How long a relay may go without polling: a notification's every attempt
/// and wait, and a minute to spare, at least Kafka's default five minutes.
fn max_poll_interval(config: &WebhookConfig) -> String {
    let waits: Duration = (1..config.max_attempts).map(|a| config.backoff(a)).sum();
    let worst = config.timeout.saturating_mul(config.max_attempts) + waits;
    let ms = (worst + Duration::from_secs(60)).as_millis().max(300_000);
    ms.min(i32::MAX as u128).to_string()
}

/// Commits the end of `topic` as the start of each partition the consumer's
/// group has no offset for: a new group begins with the alerts produced
/// from now on. A topic not created yet is left alone (the group starts at
/// its beginning, which is then now), and so is a group that has members
/// already (the broker refuses the commit).
fn start_at_end(consumer: &RelayConsumer, topic: &str) -> anyhow::Result<()> {
    let metadata = consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
    let mut partitions = TopicPartitionList::new();
    for p in metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions())
    {
        partitions.add_partition(topic, p.id());
    }
    if partitions.count() == 0 {
        return Ok(());
    }
    let committed = consumer.committed_offsets(partitions, REQUEST_TIMEOUT)?;
    let mut start = TopicPartitionList::new();
    for partition in committed.elements() {
        if partition.offset() == Offset::Invalid {
            let (_, end) =
                consumer.fetch_watermarks(topic, partition.partition(), REQUEST_TIMEOUT)?;
            start.add_partition_offset(topic, partition.partition(), Offset::Offset(end))?;
        }
    }
    if start.count() == 0 {
        return Ok(());
    }
    match consumer.commit(&start, CommitMode::Sync) {
        Ok(()) => tracing::info!(
            topic,
            partitions = start.count(),
            "webhook relay: a new consumer group starts at the end of the alerts topic"
        ),
        // The group has members already (another instance started it at
        // the same time): those partitions have not been read yet, and are
        // read from their beginning.
        Err(error) => tracing::warn!(
            topic,
            %error,
            "webhook relay: the group's start was not set; partitions it has no offset for are read from their beginning"
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_may_go_without_polling_for_a_notifications_every_attempt() {
        let default = WebhookConfig::new("cx", "http://127.0.0.1:1/");
        // 8 attempts of 5 s, waits of 0.5 + 1 + ... + 32 s: under five minutes.
        assert_eq!(max_poll_interval(&default), "300000");
        let patient = WebhookConfig {
            max_attempts: 20,
            ..default
        };
        // 20 attempts of 5 s, 19 waits (63.5 s, then 12 of 60 s), a minute.
        assert_eq!(max_poll_interval(&patient), "943500");
    }
}
