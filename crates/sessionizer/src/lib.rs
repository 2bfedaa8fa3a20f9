//! Sessionizer: event-time sessions per customer.
//!
//! Reads validated events keyed by customer, groups each customer's events
//! into sessions separated by an inactivity gap (late events within a grace
//! period still join or merge sessions), and emits one summary per session
//! when it is final. Quiet partitions still close their sessions: the runtime
//! moves stream time on with the wall clock after an idle timeout.
//!
//! ```
//! use journey_sessionizer::{Session, Windows};
//! use journey_core::contract::CustomerEvent;
//!
//! let windows = Windows { gap: 1_800_000, grace: 300_000 };
//! let mut open = Vec::new();
//! let event = CustomerEvent { occurred_at: 0, ..CustomerEvent::default() };
//! windows.place(&mut open, Session::of(&event), 0);
//! assert_eq!(windows.take_final(&mut open, 2_100_001).len(), 1);
//! ```

mod config;
mod processor;
mod session;
mod window;

pub use config::SessionizerConfig;
pub use processor::Sessionizer;
pub use session::Session;
pub use window::{Placement, Windows};

use journey_core::config::ConfigSource;
use journey_core::service::{self, ServiceSpec};
use tokio_util::sync::CancellationToken;

/// Service name: config section, metric prefix and state directory.
pub const NAME: &str = "sessionizer";

/// Runs the sessionizer until `shutdown` is cancelled.
pub async fn run(source: ConfigSource, shutdown: CancellationToken) -> anyhow::Result<()> {
    let common = source.common()?;
    let config: SessionizerConfig = source.section(NAME)?;
    let registry = journey_core::metrics::registry(NAME);
    let windows = Windows {
        gap: config.gap.as_millis() as i64,
        grace: config.grace.as_millis() as i64,
    };
    let processor = Sessionizer::new(windows, common.topics.sessions.clone(), &registry);
    let spec = ServiceSpec {
        name: NAME,
        common: &common,
        http_listen: config.http_listen,
        group_id: config.group_id.clone(),
        store: "sessions",
        inputs: vec![common.topics.events.clone()],
        internal_inputs: Vec::new(),
        registry,
        routes: Default::default(),
    };
    service::run(spec, processor, shutdown).await
}
