//! The ingest processor: decode, validate, route by visitor, deduplicate,
//! stitch identities, republish keyed by customer.

use journey_core::contract::{CustomerEvent, ErrorKind};
use journey_core::runtime::{now_millis, Context, InputRecord, ProcessError, Processor, Rejection};
use journey_core::state::Clock;
use prometheus::{IntCounter, Registry};

use crate::config::IngestConfig;
use crate::dedup::Dedup;
use crate::identity::{drop_placeholders, stitch, visitor_key};
use crate::validate::{validate, Limits};

/// The topics ingest reads and writes.
#[derive(Debug, Clone)]
pub struct IngestTopics {
    /// Validated events keyed by resolved customer.
    pub events: String,
    /// Identity merges keyed by anonymous id.
    pub identities: String,
    /// Ingest's own input for valid events that arrived under another key
    /// than their visitor's (see [`crate::identity::visitor_key`]).
    pub repartition: String,
}

/// Validates raw events and republishes them keyed by customer.
pub struct Ingest {
    limits: Limits,
    max_record_bytes: usize,
    dedup: Dedup,
    topics: IngestTopics,
    metrics: IngestMetrics,
}

/// Ingest's own counters, beside the runtime's (dead letters per kind among them).
struct IngestMetrics {
    valid: IntCounter,
    duplicates: IntCounter,
    merges: IntCounter,
    rerouted: IntCounter,
}

impl IngestMetrics {
    fn new(registry: &Registry) -> Self {
        let counter = |name: &str, help: &str| {
            journey_core::metrics::register(
                registry,
                IntCounter::new(name, help).expect("ingest metric"),
            )
        };
        IngestMetrics {
            valid: counter(
                "events_valid_total",
                "Events that passed validation and were republished.",
            ),
            duplicates: counter(
                "events_duplicate_total",
                "Events dropped as a repeat of an event id seen within the dedup window.",
            ),
            merges: counter(
                "identity_merges_total",
                "Anonymous visitors linked to a customer (identity merge records sent).",
            ),
            rerouted: counter(
                "events_rerouted_total",
                "Valid events re-keyed by visitor through the repartition topic.",
            ),
        }
    }
}

impl Ingest {
    /// An ingest processor writing to `topics`.
    pub fn new(config: &IngestConfig, topics: IngestTopics, registry: &Registry) -> Self {
        Ingest {
            limits: Limits::from(config),
            max_record_bytes: config.max_record_bytes,
            dedup: Dedup::new(config.dedup_window.as_millis() as i64),
            topics,
            metrics: IngestMetrics::new(registry),
        }
    }

    /// Republishes `event`, received at `now`, unless its id was seen within the dedup window.
    fn publish(
        &mut self,
        mut event: CustomerEvent,
        now: i64,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        if !self
            .dedup
            .first_sighting(ctx, event.event_id.as_bytes(), now)?
        {
            self.metrics.duplicates.inc();
            return Ok(());
        }

        let link = event.anonymous_id.as_deref().map(link_key);
        let linked: Option<String> = match &link {
            Some(link) => ctx.state().get(link)?,
            None => None,
        };
        let stitched = stitch(&mut event, linked.as_deref())
            .ok_or_else(|| Rejection::semantic("customer_id", "event has no customer key"))?;
        if let (Some(merge), Some(link)) = (&stitched.merge, &link) {
            ctx.state().put(link, &merge.customer_id);
            ctx.emit(
                &self.topics.identities,
                &merge.anonymous_id,
                merge,
                merge.merged_at,
            )?;
            self.metrics.merges.inc();
        }
        event.received_at = Some(now);
        ctx.emit(
            &self.topics.events,
            &stitched.key,
            &event,
            event.occurred_at,
        )?;
        self.metrics.valid.inc();
        Ok(())
    }
}

impl Processor for Ingest {
    fn process(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let payload = record.payload.unwrap_or_default();
        if payload.len() > self.max_record_bytes {
            return Err(Rejection {
                kind: ErrorKind::TooLarge,
                message: format!(
                    "{} bytes exceeds the limit of {}",
                    payload.len(),
                    self.max_record_bytes
                ),
                field_path: None,
            }
            .into());
        }
        let mut event: CustomerEvent = ctx.codec().decode(payload)?;
        drop_placeholders(&mut event);
        let now = now_millis();
        if record.topic == self.topics.repartition {
            // Validated on its first pass, under its original position.
            return self.publish(event, now, ctx);
        }
        validate(&event, now, &self.limits)?;
        let visitor = visitor_key(&event).expect("validated events have a visitor key");
        if record.key != Some(visitor.as_bytes()) {
            // Links are learnt and looked up per visitor: every event of a
            // visitor must be handled by the partition that owns its key.
            ctx.emit_raw(
                &self.topics.repartition,
                visitor.as_bytes(),
                payload,
                record.timestamp,
            );
            self.metrics.rerouted.inc();
            return Ok(());
        }
        self.publish(event, now, ctx)
    }

    fn on_timer(
        &mut self,
        _clock: Clock,
        at: i64,
        key: &[u8],
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        if !self.dedup.on_timer(ctx, at, key)? {
            // A timer of an event id, from state written before ids were bucketed.
            ctx.state().delete(&[b"d/".as_slice(), key].concat());
        }
        Ok(())
    }

    fn on_revoked(&mut self, partition: i32) {
        self.dedup.revoked(partition);
    }
}

/// State key of the customer an anonymous id is linked to.
fn link_key(anonymous_id: &str) -> Vec<u8> {
    [b"l/".as_slice(), anonymous_id.as_bytes()].concat()
}
