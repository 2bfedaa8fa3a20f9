//! The live profile kept per customer.

use std::collections::BTreeSet;

use journey_core::contract::{Channel, CustomerEvent, EventType, Stage};
use serde::{Deserialize, Serialize};

/// One customer's profile as stored in state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub first_seen: i64,
    pub last_seen: i64,
    pub channels: BTreeSet<Channel>,
    pub orders: u32,
    pub revenue: f64,
    pub last_nps: Option<i32>,
    pub last_csat: Option<i32>,
    pub stage: Option<Stage>,
    pub stage_since: i64,
}

impl Profile {
    /// A profile first seen at `at`.
    pub fn new(at: i64) -> Self {
        Profile {
            first_seen: at,
            last_seen: at,
            channels: BTreeSet::new(),
            orders: 0,
            revenue: 0.0,
            last_nps: None,
            last_csat: None,
            stage: None,
            stage_since: at,
        }
    }

    /// Folds an event into the profile's facts (not its stage).
    pub fn observe(&mut self, event: &CustomerEvent) {
        self.first_seen = self.first_seen.min(event.occurred_at);
        self.last_seen = self.last_seen.max(event.occurred_at);
        self.channels.insert(event.channel);
        if event.event_type == EventType::Purchase {
            if let Some(order) = &event.order {
                self.orders += 1;
                self.revenue += order.revenue;
            }
        }
        if let Some(feedback) = &event.feedback {
            self.last_nps = feedback.nps.or(self.last_nps);
            self.last_csat = feedback.csat.or(self.last_csat);
        }
    }
}
