//! The ingest processor: decode, validate, key by customer, republish.

use journey_core::contract::{CustomerEvent, ErrorKind};
use journey_core::runtime::{now_millis, Context, InputRecord, ProcessError, Processor, Rejection};
use prometheus::{IntCounter, Registry};

use crate::config::IngestConfig;
use crate::validate::{validate, Limits};

/// Validates raw events and republishes them keyed by customer.
pub struct Ingest {
    limits: Limits,
    max_record_bytes: usize,
    output_topic: String,
    valid: IntCounter,
}

impl Ingest {
    /// An ingest processor writing valid events to `output_topic`.
    pub fn new(config: &IngestConfig, output_topic: String, registry: &Registry) -> Self {
        Ingest {
            limits: Limits::from(config),
            max_record_bytes: config.max_record_bytes,
            output_topic,
            valid: journey_core::metrics::register(
                registry,
                IntCounter::new(
                    "events_valid_total",
                    "Events that passed validation and were republished.",
                )
                .expect("valid metric"),
            ),
        }
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
        let now = now_millis();
        validate(&event, now, &self.limits)?;
        event.received_at = Some(now);
        let key = event
            .customer_key()
            .expect("validated events have a customer key")
            .to_string();
        ctx.emit(&self.output_topic, &key, &event, event.occurred_at)?;
        self.valid.inc();
        Ok(())
    }
}
