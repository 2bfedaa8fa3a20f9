//! Stream time per partition: the largest record timestamp seen, moved on by
//! the wall clock once the partition has been idle for a while.

use std::time::{Duration, Instant};

/// The stream time of one partition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PartitionClock {
    /// Largest timestamp seen, or reached by idle advance.
    pub(crate) stream_time: i64,
    /// Stream time when the last record arrived, and when that was.
    at_last_record: i64,
    last_record: Instant,
}

impl PartitionClock {
    pub(crate) fn new(stream_time: i64, now: Instant) -> Self {
        PartitionClock {
            stream_time,
            at_last_record: stream_time,
            last_record: now,
        }
    }

    /// Stream time once a record at `timestamp` is observed.
    pub(crate) fn after(&self, timestamp: i64) -> i64 {
        self.stream_time.max(timestamp)
    }

    pub(crate) fn observe(&mut self, timestamp: i64, now: Instant) {
        self.stream_time = self.after(timestamp);
        self.at_last_record = self.stream_time;
        self.last_record = now;
    }

    /// After `idle_timeout` without records, stream time follows the wall
    /// clock; returns whether it moved.
    pub(crate) fn advance_if_idle(&mut self, now: Instant, idle_timeout: Duration) -> bool {
        let idle = now.saturating_duration_since(self.last_record);
        if idle <= idle_timeout || self.at_last_record == i64::MIN {
            return false;
        }
        let by_wall_clock = self
            .at_last_record
            .saturating_add((idle - idle_timeout).as_millis() as i64);
        let advanced = by_wall_clock > self.stream_time;
        self.stream_time = self.stream_time.max(by_wall_clock);
        advanced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_time_is_the_largest_timestamp_seen() {
        let now = Instant::now();
        let mut clock = PartitionClock::new(i64::MIN, now);
        clock.observe(100, now);
        clock.observe(50, now);
        assert_eq!(clock.stream_time, 100);
    }

    #[test]
    fn an_idle_partition_follows_the_wall_clock_after_the_timeout() {
        let start = Instant::now();
        let mut clock = PartitionClock::new(i64::MIN, start);
        clock.observe(1_000, start);
        let timeout = Duration::from_secs(10);
        assert!(!clock.advance_if_idle(start + Duration::from_secs(5), timeout));
        assert_eq!(clock.stream_time, 1_000);
        assert!(clock.advance_if_idle(start + Duration::from_secs(13), timeout));
        assert_eq!(clock.stream_time, 4_000);
    }

    #[test]
    fn a_record_resets_idleness_but_never_moves_time_back() {
        let start = Instant::now();
        let mut clock = PartitionClock::new(i64::MIN, start);
        clock.observe(1_000, start);
        clock.advance_if_idle(start + Duration::from_secs(20), Duration::from_secs(10));
        assert_eq!(clock.stream_time, 11_000);
        clock.observe(2_000, start + Duration::from_secs(20));
        assert_eq!(clock.stream_time, 11_000);
        assert!(!clock.advance_if_idle(start + Duration::from_secs(25), Duration::from_secs(10)));
    }

    #[test]
    fn a_partition_that_never_saw_a_record_does_not_advance() {
        let start = Instant::now();
        let mut clock = PartitionClock::new(i64::MIN, start);
        assert!(!clock.advance_if_idle(start + Duration::from_secs(60), Duration::from_secs(1)));
    }
}
