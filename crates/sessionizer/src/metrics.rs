//! The sessionizer's own counters, beside the runtime's.

use prometheus::{IntCounter, IntGauge, Registry};

/// Every counter of the sessionizer (`journey_sessionizer_*`).
pub(crate) struct Metrics {
    pub closed: IntCounter,
    pub interim: IntCounter,
    pub late: IntCounter,
    pub duplicates: IntCounter,
    pub split: IntCounter,
    pub folds_sent: IntCounter,
    pub folds_applied: IntCounter,
    pub folds_repeated: IntCounter,
    pub forwarded: IntCounter,
    pub erased: IntCounter,
    pub open: IntGauge,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Self {
        let counter = |name: &str, help: &str| {
            journey_core::metrics::register(
                registry,
                IntCounter::new(name, help).expect("valid metric"),
            )
        };
        Metrics {
            closed: counter("sessions_closed_total", "Sessions closed and summarised."),
            interim: counter(
                "interim_summaries_total",
                "Early updates of open sessions sent (early_updates on).",
            ),
            late: counter(
                "late_events_total",
                "Events that arrived after their session was final, sent to the late-events topic.",
            ),
            duplicates: counter(
                "duplicate_events_total",
                "Events dropped as a repeat of an event id already in an open session.",
            ),
            split: counter(
                "sessions_split_total",
                "Placements that left a session within the gap apart to respect max_session.",
            ),
            folds_sent: counter(
                "identity_folds_sent_total",
                "Identity merges whose anonymous open sessions were sent to the customer's partition.",
            ),
            folds_applied: counter(
                "identity_folds_applied_total",
                "Folded anonymous sessions merged into a customer's sessions.",
            ),
            folds_repeated: counter(
                "identity_folds_repeated_total",
                "Folds received again (re-sent after a crash) and ignored.",
            ),
            forwarded: counter(
                "identity_forwarded_events_total",
                "Anonymous events read after their id was folded, sent on to the customer's partition.",
            ),
            erased: journey_core::erasure::erasures_counter(registry),
            open: journey_core::metrics::register(
                registry,
                IntGauge::new(
                    "open_sessions",
                    "Sessions open on this instance's partitions (kept in state).",
                )
                .expect("valid metric"),
            ),
        }
    }
}
