//! Sessionizer: event-time sessions per customer.
//!
//! Reads validated events keyed by customer, groups each customer's events
//! into sessions separated by an inactivity gap (late events within a grace
//! period still join or merge sessions; sessions never outlast a maximum
//! length), and emits one summary per session when it is final; optionally
//! interim summaries before. Events too late for their session go to a
//! late-events topic. Quiet partitions still close their sessions: the
//! runtime moves stream time on with the wall clock after an idle timeout.
//! Identity merges from ingest fold an anonymous visitor's open sessions into
//! the customer's.
//!
//! ```
//! use journey_sessionizer::{OpenSessions, Placement, Windows};
//! use journey_core::contract::CustomerEvent;
//!
//! let windows = Windows { gap: 1_800_000, grace: 300_000, max_session: 86_400_000 };
//! let mut open = OpenSessions::new();
//! let event = CustomerEvent { occurred_at: 0, ..CustomerEvent::default() };
//! assert!(matches!(windows.place_event(&mut open, &event, 0), Placement::Placed(_)));
//! assert_eq!(windows.take_final(&mut open, 2_100_001).len(), 1);
//! ```

mod config;
mod fold;
mod metrics;
mod open_count;
mod processor;
mod session;
mod window;

pub use config::SessionizerConfig;
pub use fold::{Fold, FOLD_MEMORY_MS};
pub use processor::{
    session_id, Sessionizer, SessionizerTopics, LATE_CLOSE_TIME_HEADER, LATE_STREAM_TIME_HEADER,
};
pub use session::{event_hash, Session};
pub use window::{OpenSessions, Placed, Placement, Windows};

use journey_core::config::ConfigSource;
use journey_core::service::{self, ServiceSpec};
use journey_core::state::Workload;
use tokio_util::sync::CancellationToken;

/// Service name: config section, metric prefix and state directory.
pub const NAME: &str = "sessionizer";

/// Runs the sessionizer until `shutdown` is cancelled.
pub async fn run(source: ConfigSource, shutdown: CancellationToken) -> anyhow::Result<()> {
    let common = source.common()?;
    let config: SessionizerConfig = source.section(NAME)?;
    let registry = journey_core::metrics::registry(NAME);
    let windows = config.windows()?;
    let topics = SessionizerTopics::new(&common.topics, &config.group_id);
    let processor = Sessionizer::new(windows, config.early_updates(), topics.clone(), &registry);
    let spec = ServiceSpec {
        name: NAME,
        common: &common,
        http_listen: config.http_listen,
        group_id: config.group_id.clone(),
        store: "sessions",
        workload: Workload::ReadModifyWrite,
        inputs: vec![
            topics.events,
            topics.identities,
            topics.folds.clone(),
            topics.erasure.tasks.clone(),
        ],
        internal_inputs: vec![topics.folds],
        control_inputs: vec![topics.erasure.tasks],
        registry,
        routes: Default::default(),
    };
    service::run(spec, processor, shutdown).await
}
