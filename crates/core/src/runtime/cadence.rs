//! When the processing loop fires timers and commits: timers every tick
//! interval, commits every commit interval, and a commit early once a batch
//! reaches `max_batch` records or the record cache is full of uncommitted
//! writes. Benchmarks drive processors by it too, so they commit as the
//! services do.

use std::time::{Duration, Instant};

use crate::config::RuntimeConfig;
use crate::state::StateStore;

/// Records the loop takes from the consumer between two looks at the
/// cadence: waiting costs once per batch, not per record.
pub const CHECK_EVERY: usize = 512;

/// Timers fired per partition and clock on one tick. A backlog (a restart
/// after downtime, stream time leaping forward) fires over the next ticks
/// instead of stalling the loop and holding every output it makes at once;
/// at the default tick interval (200 ms) that is up to 100 000 a second per
/// partition.
pub const TIMERS_PER_TICK: usize = 20_000;

/// The loop's tick and commit deadlines.
#[derive(Debug, Clone)]
pub struct Cadence {
    tick_interval: Duration,
    commit_interval: Duration,
    max_batch: usize,
    next_tick: Instant,
    next_commit: Instant,
}

/// What is due at a look at the cadence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Fire due timers.
    pub tick: bool,
    /// Commit state, outputs and offsets.
    pub commit: bool,
}

impl Cadence {
    /// Deadlines of `config`'s intervals from `now`.
    pub fn new(config: &RuntimeConfig, now: Instant) -> Self {
        Cadence {
            tick_interval: config.tick_interval,
            commit_interval: config.commit_interval,
            max_batch: config.max_batch,
            next_tick: now + config.tick_interval,
            next_commit: now + config.commit_interval,
        }
    }

    /// What is due at `now`, with `processed` records applied to `store`
    /// since the last commit; a tick due moves the next one an interval on.
    pub fn check(&mut self, now: Instant, processed: usize, store: &StateStore) -> Due {
        let tick = now >= self.next_tick;
        if tick {
            self.next_tick = now + self.tick_interval;
        }
        let commit = now >= self.next_commit || processed >= self.max_batch || store.wants_commit();
        Due { tick, commit }
    }

    /// Notes a commit finished at `now`: the next is an interval on.
    pub fn committed(&mut self, now: Instant) {
        self.next_commit = now + self.commit_interval;
    }

    /// The next deadline, to sleep until when no records come.
    pub fn next_deadline(&self) -> Instant {
        self.next_tick.min(self.next_commit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RuntimeConfig {
        RuntimeConfig {
            tick_interval: Duration::from_millis(200),
            commit_interval: Duration::from_millis(500),
            max_batch: 1_000,
            ..RuntimeConfig::default()
        }
    }

    /// An empty store: it never asks for a commit of its own.
    fn store() -> (tempfile::TempDir, StateStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path(), 16 << 20).unwrap();
        (dir, store)
    }

    #[test]
    fn ticks_and_commits_come_on_their_intervals() {
        let (_dir, store) = store();
        let start = Instant::now();
        let mut cadence = Cadence::new(&config(), start);
        let at = |ms| start + Duration::from_millis(ms);
        let nothing = Due {
            tick: false,
            commit: false,
        };
        assert_eq!(cadence.check(at(100), 10, &store), nothing);
        assert_eq!(cadence.next_deadline(), at(200));
        let tick = cadence.check(at(250), 10, &store);
        assert!(tick.tick && !tick.commit);
        // The next tick is an interval after the one just taken.
        assert!(!cadence.check(at(400), 10, &store).tick);
        assert_eq!(cadence.next_deadline(), at(450));
        let both = cadence.check(at(500), 10, &store);
        assert!(both.tick && both.commit);
        cadence.committed(at(510));
        assert!(!cadence.check(at(900), 10, &store).commit);
        assert!(cadence.check(at(1_010), 10, &store).commit);
    }

    #[test]
    fn a_full_batch_commits_early() {
        let (_dir, store) = store();
        let start = Instant::now();
        let mut cadence = Cadence::new(&config(), start);
        assert!(!cadence.check(start, 999, &store).commit);
        assert!(cadence.check(start, 1_000, &store).commit);
    }
}
