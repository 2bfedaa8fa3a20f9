//! Ids a processor applied recently, remembered in state for a while so that
//! a repeat is recognised and applied once.
//!
//! The runtime never applies one of its own input records twice, but an
//! upstream service that crashes re-sends what it produced since its last
//! commit: the same ids, moments later. A processor whose effect of a record
//! is not idempotent (adding an order's revenue, counting a session) checks
//! the record's id here first. Each id costs a key and a wall-clock timer
//! that deletes it, so this is meant for the few records that need it.

use prometheus::{IntCounter, Registry};

use super::{now_millis, Context};
use crate::ids;
use crate::state::{Clock, StateError};

/// How long a processor should remember an id for a repeat to be
/// recognised: an upstream service re-sends within minutes of a crash.
pub const REPEAT_MEMORY_MS: i64 = 60 * 60 * 1000;

/// A kind of remembered id: its key prefix and how long it is kept.
#[derive(Debug, Clone, Copy)]
pub struct RecentIds {
    prefix: &'static [u8],
    memory_ms: i64,
}

impl RecentIds {
    /// Ids kept under keys starting with `prefix` for `memory_ms` of wall
    /// clock. The prefix must start no other key of the processor's state or
    /// timers.
    pub const fn new(prefix: &'static [u8], memory_ms: i64) -> Self {
        RecentIds { prefix, memory_ms }
    }

    /// Remembers the id made of `parts` (hashed: the key holds no personal
    /// data, and is short); false when it was already remembered (a repeat).
    pub fn first_sighting(
        &self,
        ctx: &mut Context<'_>,
        parts: &[&[u8]],
    ) -> Result<bool, StateError> {
        let key = self.key(parts);
        if ctx.state().get::<i64>(&key)?.is_some() {
            return Ok(false);
        }
        // Valued with its forget time: an empty value could read as a
        // deletion on a changelog.
        let forget_at = now_millis().saturating_add(self.memory_ms);
        ctx.state().put(&key, &forget_at);
        ctx.set_timer(Clock::Wall, forget_at, &key);
        Ok(true)
    }

    /// The state key of the id made of `parts`: the prefix and the parts'
    /// [`ids::digest`] (collisions are out of reach among an hour's ids).
    fn key(&self, parts: &[&[u8]]) -> Vec<u8> {
        [self.prefix, &ids::digest(parts)].concat()
    }

    /// Whether `key`, of a due timer, is one of these ids.
    pub fn owns(&self, key: &[u8]) -> bool {
        key.starts_with(self.prefix)
    }

    /// Forgets the id under `key`, whose timer came due.
    pub fn forget(&self, ctx: &mut Context<'_>, key: &[u8]) {
        ctx.state().delete(key);
    }
}

/// The service's counter of records seen again and not applied twice
/// (`repeats_total`).
pub fn repeats_counter(registry: &Registry) -> IntCounter {
    crate::metrics::register(
        registry,
        IntCounter::new(
            "repeats_total",
            "Records seen again (re-sent by an upstream service after a crash) and not applied twice.",
        )
        .expect("valid metric"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fixture::Fixture;

    #[test]
    fn an_id_is_new_once_until_its_timer_forgets_it() {
        let mut fixture = Fixture::new(8 << 20);
        let recent = RecentIds::new(b"\xffr", 60_000);
        let mut ctx = fixture.ctx(0);
        assert!(recent
            .first_sighting(&mut ctx, &[b"c1", b"order-1"])
            .unwrap());
        assert!(!recent
            .first_sighting(&mut ctx, &[b"c1", b"order-1"])
            .unwrap());
        assert!(recent
            .first_sighting(&mut ctx, &[b"c1", b"order-2"])
            .unwrap());
        assert!(recent
            .first_sighting(&mut ctx, &[b"c2", b"order-1"])
            .unwrap());

        let due = fixture
            .store
            .due_timers(0, Clock::Wall, now_millis() + 60_000)
            .unwrap();
        assert_eq!(due.len(), 3);
        assert!(due.iter().all(|(_, key)| recent.owns(key)));
        assert!(!recent.owns(b"customer"));
        let mut ctx = fixture.ctx(0);
        for (_, key) in &due {
            recent.forget(&mut ctx, key);
        }
        assert!(recent
            .first_sighting(&mut ctx, &[b"c1", b"order-1"])
            .unwrap());
    }
}
