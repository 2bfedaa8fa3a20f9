//! Forgetting the context of customers who never bought and have gone quiet.
//!
//! Every key with a closed session gets a context, anonymous visitors' keys
//! included, and alerting cannot tell a visitor's key from a customer's. So
//! a context without a purchase whose last session ended more than the
//! retention ago is forgotten: it holds nothing a rule needs (a valued
//! customer has bought), and it comes back with the customer's next session.
//! Buyers' contexts are kept for good, until erased.
//!
//! One wall-clock timer per partition, on the hour, sweeps the partition's
//! contexts a chunk per tick, so no record pays for it and no timer is kept
//! per customer.

use journey_core::runtime::{now_millis, Context, ProcessError};
use journey_core::state::Clock;
use prometheus::IntCounter;

use crate::customer::CustomerContext;

/// State key prefix of customers' contexts, followed by the customer key.
pub(crate) const CUSTOMER: &[u8] = b"customer/";

/// Leads the key of the sweep timer, followed by the last context key swept
/// when the sweep goes on from there.
const SWEEP: &[u8] = b"sweep/";

/// How often a partition's contexts are swept, ms.
const SWEEP_EVERY: i64 = 3_600_000;

/// Contexts read per firing of the sweep timer: about 10 ms of a 200 ms tick
/// (measured in the `rule_evaluation` bench).
const SWEEP_CHUNK: usize = 2_500;

/// The state key of `customer`'s context.
pub(crate) fn customer_key(customer: &str) -> Vec<u8> {
    [CUSTOMER, customer.as_bytes()].concat()
}

/// Forgets contexts without a purchase after `retention_ms` of inactivity.
pub struct ContextRetention {
    retention_ms: i64,
    forgotten: IntCounter,
}

impl ContextRetention {
    /// Forgetting after `retention_ms`, counting in `forgotten`.
    pub fn new(retention_ms: i64, forgotten: IntCounter) -> Self {
        ContextRetention {
            retention_ms,
            forgotten,
        }
    }

    /// Arms the sweep of the context's partition on the next hour. Arming
    /// again within the hour sets the same timer; a timer armed earlier
    /// re-arms on the same hour when it fires.
    pub(crate) fn arm(&self, ctx: &mut Context<'_>) {
        ctx.set_timer(Clock::Wall, next_sweep(now_millis()), SWEEP);
    }

    /// Whether `key` is the sweep timer's.
    pub(crate) fn owns(key: &[u8]) -> bool {
        key.starts_with(SWEEP)
    }

    /// Sweeps the next chunk of contexts of the sweep due at `at` (the
    /// timer `key` says where the last chunk stopped): forgets those whose
    /// last session ended the retention before `at` without a purchase.
    /// Goes on from there on the next tick, or arms the next sweep.
    pub(crate) fn sweep(
        &self,
        ctx: &mut Context<'_>,
        at: i64,
        key: &[u8],
    ) -> Result<(), ProcessError> {
        let after = key
            .strip_prefix(SWEEP)
            .filter(|last| !last.is_empty())
            .map(|last| [CUSTOMER, last].concat());
        let keys = ctx.state().keys(CUSTOMER, after.as_deref(), SWEEP_CHUNK)?;
        let inactive_since = at.saturating_sub(self.retention_ms);
        for key in &keys {
            let context: Option<CustomerContext> = ctx.state().get(key)?;
            if context.is_some_and(|c| c.forgettable(inactive_since)) {
                ctx.state().delete(key);
                self.forgotten.inc();
            }
        }
        match keys.last().filter(|_| keys.len() == SWEEP_CHUNK) {
            Some(last) => {
                let from = [SWEEP, &last[CUSTOMER.len()..]].concat();
                ctx.set_timer(Clock::Wall, at, &from);
            }
            // A sweep that fires late (after downtime) is not followed by one per hour missed.
            None => ctx.set_timer(Clock::Wall, next_sweep(at.max(now_millis())), SWEEP),
        }
        Ok(())
    }
}

/// The first sweep time after `now`: on the hour.
fn next_sweep(now: i64) -> i64 {
    now.div_euclid(SWEEP_EVERY)
        .saturating_add(1)
        .saturating_mul(SWEEP_EVERY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_fall_on_the_next_hour() {
        assert_eq!(next_sweep(0), SWEEP_EVERY);
        assert_eq!(next_sweep(SWEEP_EVERY - 1), SWEEP_EVERY);
        assert_eq!(next_sweep(SWEEP_EVERY), 2 * SWEEP_EVERY);
    }
}
