//! How many sessions are open, per partition, kept in state so that the
//! `open_sessions` gauge stays right across restarts and rebalances.

use std::collections::HashMap;

use journey_core::runtime::{Context, ProcessError};
use prometheus::IntGauge;

/// State key of a partition's open-session count (no customer key starts with it).
const COUNT: &[u8] = b"n";

/// Open sessions per owned partition, mirrored in the `open_sessions` gauge.
pub(crate) struct OpenCount {
    partitions: HashMap<i32, i64>,
    gauge: IntGauge,
}

impl OpenCount {
    pub fn new(gauge: IntGauge) -> Self {
        OpenCount {
            partitions: HashMap::new(),
            gauge,
        }
    }

    /// Loads the count of a partition just assigned (its state restored).
    pub fn load(&mut self, ctx: &mut Context<'_>) -> Result<(), ProcessError> {
        let count = ctx.state().get::<i64>(COUNT)?.unwrap_or(0);
        self.partitions.insert(ctx.partition(), count);
        self.publish();
        Ok(())
    }

    /// Forgets a partition that moved away.
    pub fn drop_partition(&mut self, partition: i32) {
        self.partitions.remove(&partition);
        self.publish();
    }

    /// Records that the context's partition has `delta` more open sessions.
    pub fn adjust(&mut self, ctx: &mut Context<'_>, delta: i64) -> Result<(), ProcessError> {
        if delta == 0 {
            return Ok(());
        }
        let count = match self.partitions.get(&ctx.partition()) {
            Some(count) => *count,
            None => ctx.state().get::<i64>(COUNT)?.unwrap_or(0),
        } + delta;
        ctx.state().put(COUNT, &count);
        self.partitions.insert(ctx.partition(), count);
        self.publish();
        Ok(())
    }

    fn publish(&self) {
        self.gauge.set(self.partitions.values().sum());
    }
}
