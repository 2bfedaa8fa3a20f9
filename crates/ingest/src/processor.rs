//! The ingest processor: decode, validate, route by visitor, deduplicate,
//! stitch identities, republish keyed by customer.

use journey_core::config::TopicsConfig;
use journey_core::contract::{
    CustomerEvent, ErasureConfirmation, ErasureProgress, ErasureRequest, ErasureStep, ErasureTask,
    ErrorKind,
};
use journey_core::runtime::{
    now_millis, Context, InputRecord, KeyFilter, ProcessError, Processor, Rejection,
};
use journey_core::state::Clock;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

use crate::config::IngestConfig;
use crate::dedup::Dedup;
use crate::erasure::{Pending, Tracker};
use crate::identity::{drop_placeholders, is_placeholder, stitch, visitor_key};
use crate::validate::{validate, Limits};

/// Timer key prefix of erasure requests to forget; no dedup timer key (an
/// expiry byte, or a legacy event id) starts with a NUL byte.
const ERASURE_TIMER: &[u8] = b"\0erasure/";

/// How long a request is remembered after its first step: repeats within it
/// are ignored, and a request still pending then is reported as stalled.
const ERASURE_MEMORY_MS: i64 = 7 * 24 * 3600 * 1000;

/// State key prefix of links: the anonymous id follows, the customer id is the value.
const LINK: &[u8] = b"l/";

/// Valid events between two readings of the filters' memory (it changes
/// only when a filter is built or grows, and reading it walks every filter).
const FILTER_BYTES_EVERY: u64 = 4096;

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
    /// Customers' erasure requests (input).
    pub erasure_requests: String,
    /// Ingest's own input: each erasure request, once to every partition.
    pub erasure_broadcast: String,
    /// Ids to erase, for the downstream services (output).
    pub erasure_tasks: String,
    /// Steps of erasure requests (output and input).
    pub erasure_progress: String,
    /// Confirmed erasure requests (output).
    pub erasure_confirmations: String,
}

impl IngestTopics {
    /// The pipeline's `topics` and the internal topics of consumer group `group_id`.
    pub fn new(topics: &TopicsConfig, group_id: &str) -> Self {
        IngestTopics {
            events: topics.events.clone(),
            identities: topics.identities.clone(),
            repartition: format!("{group_id}-visitor-repartition"),
            erasure_requests: topics.erasure_requests.clone(),
            erasure_broadcast: format!("{group_id}-erasure-broadcast"),
            erasure_tasks: topics.erasure_tasks.clone(),
            erasure_progress: topics.erasure_progress.clone(),
            erasure_confirmations: topics.erasure_confirmations.clone(),
        }
    }
}

/// Validates raw events and republishes them keyed by customer.
pub struct Ingest {
    limits: Limits,
    max_record_bytes: usize,
    dedup: Dedup,
    links: KeyFilter,
    /// The services that confirm an erasure, ingest first.
    erasure_services: Vec<String>,
    topics: IngestTopics,
    metrics: IngestMetrics,
}

/// Ingest's own counters, beside the runtime's (dead letters per kind among them).
struct IngestMetrics {
    valid: IntCounter,
    duplicates: IntCounter,
    merges: IntCounter,
    rerouted: IntCounter,
    erasure_requests: IntCounter,
    erasures_confirmed: IntCounter,
    erasures_stalled: IntCounter,
    erasure_seconds: Histogram,
    filter_bytes: IntGauge,
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
            erasure_requests: counter(
                "erasure_requests_total",
                "Erasure requests received (a repeat of a request id counts again).",
            ),
            erasures_confirmed: counter(
                "erasures_confirmed_total",
                "Erasure requests confirmed by every service.",
            ),
            erasures_stalled: counter(
                "erasures_stalled_total",
                "Erasure requests still unconfirmed a week after their first step.",
            ),
            erasure_seconds: journey_core::metrics::register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "erasure_confirmation_seconds",
                        "Time from an erasure request to its confirmation.",
                    )
                    .buckets(vec![
                        0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0, 86400.0,
                    ]),
                )
                .expect("ingest metric"),
            ),
            filter_bytes: journey_core::metrics::register(
                registry,
                IntGauge::new(
                    "filter_bytes",
                    "Memory held by the in-memory filters of remembered event ids and of links.",
                )
                .expect("ingest metric"),
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
            links: KeyFilter::new(LINK),
            erasure_services: std::iter::once(crate::NAME.to_string())
                .chain(config.erasure_services.iter().cloned())
                .collect(),
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

        let linked: Option<String> = match event.anonymous_id.as_deref() {
            Some(anonymous) if self.links.may_hold(ctx, anonymous.as_bytes())? => {
                ctx.state().get(&link_key(anonymous))?
            }
            _ => None,
        };
        let stitched = stitch(&mut event, linked.as_deref())
            .ok_or_else(|| Rejection::semantic("customer_id", "event has no customer key"))?;
        // A merge links the event's own anonymous id.
        if let Some(merge) = &stitched.merge {
            if let Some(previous) = &merge.previous_customer_id {
                ctx.state()
                    .delete(&reverse_link_key(previous, &merge.anonymous_id));
            }
            ctx.state()
                .put(&link_key(&merge.anonymous_id), &merge.customer_id);
            self.links.insert(ctx, merge.anonymous_id.as_bytes())?;
            ctx.state().put(
                &reverse_link_key(&merge.customer_id, &merge.anonymous_id),
                &(),
            );
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
        if self.metrics.valid.get() % FILTER_BYTES_EVERY == 0 {
            self.report_filter_bytes();
        }
        Ok(())
    }

    fn report_filter_bytes(&self) {
        let bytes = self.dedup.filter_bytes() + self.links.bytes();
        self.metrics.filter_bytes.set(bytes as i64);
    }
}

impl Processor for Ingest {
    fn process(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let topic = record.topic;
        if topic == self.topics.erasure_requests {
            return self.plan_erasure(record, ctx);
        } else if topic == self.topics.erasure_broadcast {
            return self.unlink(record, ctx);
        } else if topic == self.topics.erasure_progress {
            return self.track_erasure(record, ctx);
        }
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
        if let Some(request_id) = key.strip_prefix(ERASURE_TIMER) {
            return self.forget_erasure(request_id, ctx);
        }
        if !self.dedup.on_timer(ctx, at, key)? {
            self.dedup.on_unbucketed_timer(ctx, key);
        }
        Ok(())
    }

    fn on_assigned(&mut self, partition: i32, _ctx: &mut Context<'_>) -> Result<(), ProcessError> {
        // Restored state may hold ids and links the filters have not seen.
        self.dedup.forget(partition);
        self.links.forget(partition);
        Ok(())
    }

    fn on_revoked(&mut self, partition: i32) {
        self.dedup.forget(partition);
        self.links.forget(partition);
        self.report_filter_bytes();
    }
}

impl Ingest {
    /// Takes an erasure request: plans it and asks every partition to drop
    /// the customer's links (see [`crate::erasure`]).
    fn plan_erasure(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let mut request: ErasureRequest = ctx.codec().decode(record.payload.unwrap_or_default())?;
        if request.request_id.trim().is_empty() {
            return Err(Rejection::semantic("request_id", "erasure request without an id").into());
        }
        if is_placeholder(&request.customer_id) {
            return Err(Rejection::semantic(
                "customer_id",
                "erasure request without a customer id",
            )
            .into());
        }
        let customer = request.customer_id.clone();
        request
            .anonymous_ids
            .retain(|id| !is_placeholder(id) && *id != customer);
        request.anonymous_ids.sort();
        request.anonymous_ids.dedup();
        let partitions = ctx.partition_count();
        let now = now_millis();
        let plan = ErasureProgress {
            request_id: request.request_id.clone(),
            customer_id: customer.clone(),
            step: ErasureStep::Planned,
            service: crate::NAME.to_string(),
            subjects: std::iter::once(customer.clone())
                .chain(request.anonymous_ids.iter().cloned())
                .collect(),
            partition: None,
            partition_count: Some(partitions),
            requested_at: request.requested_at,
            at: now,
        };
        ctx.emit(
            &self.topics.erasure_progress,
            &request.request_id,
            &plan,
            now,
        )?;
        for partition in 0..partitions {
            ctx.emit_to_partition(
                &self.topics.erasure_broadcast,
                partition,
                &customer,
                &request,
                now,
            )?;
        }
        self.metrics.erasure_requests.inc();
        Ok(())
    }

    /// Drops this partition's links of the requested customer and reports
    /// the anonymous ids they named.
    fn unlink(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let request: ErasureRequest = ctx.codec().decode(record.payload.unwrap_or_default())?;
        let customer = &request.customer_id;
        let prefix = reverse_link_key(customer, "");
        let mut found: Vec<String> = ctx
            .state()
            .keys(&prefix, None, usize::MAX)?
            .into_iter()
            .map(|key| String::from_utf8_lossy(&key[prefix.len()..]).into_owned())
            .collect();
        // Links learnt before links were indexed by customer.
        for anonymous in &request.anonymous_ids {
            let linked: Option<String> = ctx.state().get(&link_key(anonymous))?;
            if linked.as_ref() == Some(customer) && !found.contains(anonymous) {
                found.push(anonymous.clone());
            }
        }
        for anonymous in &found {
            ctx.state().delete(&link_key(anonymous));
            ctx.state().delete(&reverse_link_key(customer, anonymous));
        }
        let now = now_millis();
        let step = ErasureProgress {
            request_id: request.request_id.clone(),
            customer_id: customer.clone(),
            step: ErasureStep::Scanned,
            service: crate::NAME.to_string(),
            subjects: found,
            partition: Some(ctx.partition()),
            partition_count: None,
            requested_at: request.requested_at,
            at: now,
        };
        ctx.emit(
            &self.topics.erasure_progress,
            &request.request_id,
            &step,
            now,
        )
    }

    /// Gathers a step of an erasure request: sends the tasks once every
    /// partition has scanned, confirms once every service erased every id.
    fn track_erasure(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let step: ErasureProgress = ctx.codec().decode(record.payload.unwrap_or_default())?;
        let key = erasure_key(step.request_id.as_bytes());
        let now = now_millis();
        let mut pending = match ctx.state().get::<Tracker>(&key)? {
            Some(Tracker::Confirmed) => return Ok(()),
            Some(Tracker::Pending(pending)) => pending,
            None => {
                let timer = [ERASURE_TIMER, step.request_id.as_bytes()].concat();
                ctx.set_timer(Clock::Wall, now + ERASURE_MEMORY_MS, &timer);
                Pending::default()
            }
        };
        pending.apply(&step);
        for subject in pending.take_due_tasks() {
            let task = ErasureTask {
                request_id: step.request_id.clone(),
                customer_id: pending.customer_id.clone(),
                subject: subject.clone(),
                requested_at: pending.requested_at,
            };
            ctx.emit(&self.topics.erasure_tasks, &subject, &task, now)?;
        }
        let tracker = if pending.is_done(&self.erasure_services[1..]) {
            let confirmation = ErasureConfirmation {
                request_id: step.request_id.clone(),
                customer_id: pending.customer_id.clone(),
                subjects: pending.subjects.iter().cloned().collect(),
                services: self.erasure_services.clone(),
                requested_at: pending.requested_at,
                confirmed_at: now,
            };
            ctx.emit(
                &self.topics.erasure_confirmations,
                &pending.customer_id,
                &confirmation,
                now,
            )?;
            self.metrics.erasures_confirmed.inc();
            self.metrics
                .erasure_seconds
                .observe((now - pending.requested_at).max(0) as f64 / 1000.0);
            tracing::info!(request_id = step.request_id, "erasure confirmed");
            Tracker::Confirmed
        } else {
            Tracker::Pending(pending)
        };
        ctx.state().put(&key, &tracker);
        Ok(())
    }

    /// Forgets a request a week after its first step, reporting it if it never completed.
    fn forget_erasure(
        &mut self,
        request_id: &[u8],
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let key = erasure_key(request_id);
        if let Some(Tracker::Pending(pending)) = ctx.state().get::<Tracker>(&key)? {
            self.metrics.erasures_stalled.inc();
            tracing::warn!(
                request_id = %String::from_utf8_lossy(request_id),
                scanned = pending.scanned.len(),
                partitions = pending.partition_count,
                tasks = pending.tasked.len(),
                erased = pending.erased.len(),
                "erasure request not confirmed within a week; forgetting it"
            );
        }
        ctx.state().delete(&key);
        Ok(())
    }
}

/// State key of the customer an anonymous id is linked to.
fn link_key(anonymous_id: &str) -> Vec<u8> {
    [LINK, anonymous_id.as_bytes()].concat()
}

/// State key indexing a link by customer, on the link's partition: the
/// customer id (length-prefixed) then the anonymous id. With an empty
/// anonymous id, the prefix of every link of the customer.
fn reverse_link_key(customer_id: &str, anonymous_id: &str) -> Vec<u8> {
    let length = (customer_id.len() as u32).to_be_bytes();
    [
        b"r/".as_slice(),
        &length,
        customer_id.as_bytes(),
        anonymous_id.as_bytes(),
    ]
    .concat()
}

/// State key of an erasure request's [`Tracker`].
fn erasure_key(request_id: &[u8]) -> Vec<u8> {
    [b"e/".as_slice(), request_id].concat()
}
