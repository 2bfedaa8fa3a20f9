//! The classifier's own metrics, declared together: customers per stage,
//! transitions, the live funnel per entry channel, identity merges. No label
//! holds a customer id.

use journey_core::contract::Stage;
use journey_core::metrics::register;
use prometheus::{
    Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::profile::{CHANNELS, FUNNEL_STEPS};
use crate::stats::Stats;

/// Handles resolved once, so the hot path does no label lookups.
pub struct ClassifierMetrics {
    customers: Vec<IntGauge>,
    transitions: IntCounterVec,
    funnel: Vec<[IntGauge; 3]>,
    /// Consideration / awareness and purchase / consideration, per channel.
    conversion: Vec<[Gauge; 2]>,
    pub merges: IntCounter,
    /// Anonymous events read after their visitor's merge, sent to the customer.
    pub forwarded: IntCounter,
    /// Orders, sessions and forwarded events seen again and not applied twice.
    pub repeats: IntCounter,
    pub erased: IntCounter,
    /// Anonymous visitors' profiles forgotten after `visitor_retention` without activity.
    pub visitors_forgotten: IntCounter,
}

impl ClassifierMetrics {
    /// Registers the metrics in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let customers = register(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "customers",
                    "Customers per current journey stage, over the partitions this instance owns.",
                ),
                &["stage"],
            )
            .expect("valid metric"),
        );
        let transitions = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "stage_transitions_total",
                    "Stage transitions by from and to stage.",
                ),
                &["from", "to"],
            )
            .expect("valid metric"),
        );
        let funnel = register(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "funnel_customers",
                    "Customers by entry channel who reached each funnel step (awareness, consideration, purchase).",
                ),
                &["channel", "step"],
            )
            .expect("valid metric"),
        );
        let conversion = register(
            registry,
            GaugeVec::new(
                Opts::new(
                    "funnel_conversion_ratio",
                    "Share of customers by entry channel who reached `to` among those who reached `from`.",
                ),
                &["channel", "from", "to"],
            )
            .expect("valid metric"),
        );
        let merges = register(
            registry,
            IntCounter::new(
                "identity_merges_total",
                "Anonymous profiles folded into a customer's.",
            )
            .expect("valid metric"),
        );
        let visitors_forgotten = register(
            registry,
            IntCounter::new(
                "visitors_forgotten_total",
                "Anonymous visitors' profiles forgotten after classifier.visitor_retention without activity.",
            )
            .expect("valid metric"),
        );
        let forwarded = register(
            registry,
            IntCounter::new(
                "identity_forwarded_events_total",
                "Anonymous events read after their visitor's merge, sent on to the customer.",
            )
            .expect("valid metric"),
        );
        ClassifierMetrics {
            customers: Stage::ALL
                .iter()
                .map(|s| customers.with_label_values(&[s.as_str()]))
                .collect(),
            transitions,
            funnel: CHANNELS
                .iter()
                .map(|c| FUNNEL_STEPS.map(|step| funnel.with_label_values(&[c.as_str(), step])))
                .collect(),
            conversion: CHANNELS
                .iter()
                .map(|c| {
                    [0, 1].map(|i| {
                        conversion.with_label_values(&[
                            c.as_str(),
                            FUNNEL_STEPS[i],
                            FUNNEL_STEPS[i + 1],
                        ])
                    })
                })
                .collect(),
            merges,
            forwarded,
            repeats: journey_core::runtime::repeats_counter(registry),
            erased: journey_core::erasure::erasures_counter(registry),
            visitors_forgotten,
        }
    }

    /// Counts a transition.
    pub fn transition(&self, from: Option<Stage>, to: Stage) {
        self.transitions
            .with_label_values(&[from.map_or("NONE", Stage::as_str), to.as_str()])
            .inc();
    }

    /// Adds (`sign` 1) or removes (`sign` -1) `delta`, a partition's counts or a change of them.
    pub fn add(&self, delta: &Stats, sign: i64) {
        for (gauge, count) in self.customers.iter().zip(delta.stages) {
            if count != 0 {
                gauge.add(sign * count);
            }
        }
        for (channel, counts) in delta.funnel.iter().enumerate() {
            if counts.iter().all(|c| *c == 0) {
                continue;
            }
            let gauges = &self.funnel[channel];
            for (gauge, count) in gauges.iter().zip(counts) {
                gauge.add(sign * count);
            }
            for (i, ratio) in self.conversion[channel].iter().enumerate() {
                let (from, to) = (gauges[i].get(), gauges[i + 1].get());
                ratio.set(if from > 0 {
                    to as f64 / from as f64
                } else {
                    0.0
                });
            }
        }
    }
}
