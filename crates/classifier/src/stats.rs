//! Per-partition counts of customers by stage and by funnel step reached,
//! kept in state beside the profiles so the gauges stay right across
//! restarts and rebalances: an instance adds a partition's counts when it
//! takes the partition and subtracts them when it gives it up.

use journey_core::contract::Stage;
use serde::{Deserialize, Serialize};

use crate::profile::{channel_index, Contribution, CHANNELS, FUNNEL_STEPS};
use crate::rules::stage_index;

/// State key of a partition's counts. Customer keys are never empty, so it
/// cannot collide with a profile.
pub const STATS_KEY: &[u8] = b"";

/// Customers of one partition by stage, and by entry channel and funnel step reached.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub stages: [i64; Stage::ALL.len()],
    pub funnel: [[i64; FUNNEL_STEPS.len()]; CHANNELS.len()],
}

impl Stats {
    /// Adds (`sign` 1) or removes (`sign` -1) one profile's contribution.
    pub fn apply(&mut self, c: &Contribution, sign: i64) {
        if let Some(stage) = c.stage {
            self.stages[stage_index(stage)] += sign;
        }
        let channel = &mut self.funnel[channel_index(c.entry_channel)];
        for (step, count) in channel.iter_mut().enumerate() {
            if c.reached & (1 << step) != 0 {
                *count += sign;
            }
        }
    }
}

impl Stats {
    /// Adds `delta` count by count.
    pub fn add(&mut self, delta: &Stats) {
        for (count, d) in self.stages.iter_mut().zip(delta.stages) {
            *count += d;
        }
        for (channel, d) in self.funnel.iter_mut().zip(&delta.funnel) {
            for (count, d) in channel.iter_mut().zip(d) {
                *count += d;
            }
        }
    }
}
