//! The services' side of erasure requests (the right to be forgotten).
//!
//! Ingest takes a customer's [`ErasureRequest`], drops its identity links and
//! sends one [`ErasureTask`] per id to erase (the customer id and its
//! anonymous ids), keyed by that id, so each task reaches the partition that
//! holds the id's state in every downstream service. A service deletes what
//! it keeps under the id (state, whose deletion writes changelog tombstones,
//! and timers) and reports an [`ErasureStep::Erased`] step; ingest confirms
//! the request once every service has reported every id.
//!
//! [`ErasureRequest`]: crate::contract::ErasureRequest

use prometheus::{IntCounter, Registry};

use crate::config::TopicsConfig;
use crate::contract::{ErasureProgress, ErasureStep, ErasureTask};
use crate::runtime::{now_millis, Context, InputRecord, ProcessError, Rejection};

/// Where a downstream service reads its tasks and reports its steps.
#[derive(Debug, Clone)]
pub struct ErasureTopics {
    /// Tasks, keyed by the id to erase (an input of the service).
    pub tasks: String,
    /// Steps, keyed by request id (an output).
    pub progress: String,
}

impl ErasureTopics {
    /// The erasure topics of the pipeline's `topics`.
    pub fn new(topics: &TopicsConfig) -> Self {
        ErasureTopics {
            tasks: topics.erasure_tasks.clone(),
            progress: topics.erasure_progress.clone(),
        }
    }
}

/// Registers the counter of erasure tasks a service has done,
/// `journey_<service>_erasures_total`.
pub fn erasures_counter(registry: &Registry) -> IntCounter {
    crate::metrics::register(
        registry,
        IntCounter::new(
            "erasures_total",
            "Erasure tasks done: ids whose state this service deleted.",
        )
        .expect("valid metric"),
    )
}

/// Decodes the erasure task in `record`; one without a subject is rejected.
pub fn task(ctx: &Context<'_>, record: &InputRecord<'_>) -> Result<ErasureTask, ProcessError> {
    let task: ErasureTask = ctx.codec().decode(record.payload.unwrap_or_default())?;
    if task.request_id.is_empty() {
        return Err(Rejection::semantic("request_id", "erasure task without a request id").into());
    }
    if task.subject.is_empty() {
        return Err(Rejection::semantic("subject", "erasure task without an id to erase").into());
    }
    Ok(task)
}

/// Reports that `service` erased `task`'s subject.
pub fn report_erased(
    ctx: &mut Context<'_>,
    topics: &ErasureTopics,
    service: &str,
    task: &ErasureTask,
) -> Result<(), ProcessError> {
    let now = now_millis();
    let step = ErasureProgress {
        request_id: task.request_id.clone(),
        customer_id: task.customer_id.clone(),
        step: ErasureStep::Erased,
        service: service.to_string(),
        subjects: vec![task.subject.clone()],
        partition: Some(ctx.partition()),
        partition_count: None,
        requested_at: task.requested_at,
        at: now,
    };
    ctx.emit(&topics.progress, &task.request_id, &step, now)
}
