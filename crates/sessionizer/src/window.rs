//! Session windows of one customer: where an event lands, and which sessions
//! are final at a given stream time.
//!
//! Semantics follow Kafka Streams' session windows: a session covers
//! `[first, last]` event inclusive; an event joins every open session whose
//! `[start - gap, end + gap]` contains it, merging them; a session is final
//! once stream time passes `end + gap + grace`.

use crate::session::Session;

/// Gap and grace of the session windows, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub gap: i64,
    pub grace: i64,
}

/// Where an event went.
#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    /// Into the session at this index of the open list (new or merged), after
    /// removing the sessions whose close times are listed.
    Placed {
        index: usize,
        replaced_close_times: Vec<i64>,
    },
    /// Too late: the session it belongs to is already final.
    Late,
}

impl Windows {
    /// When a session ending at `end` becomes final: stream time must pass this.
    pub fn close_time(&self, end: i64) -> i64 {
        end.saturating_add(self.gap).saturating_add(self.grace)
    }

    /// Adds `event` (a one-event session) to `open`, kept sorted by start.
    pub fn place(&self, open: &mut Vec<Session>, event: Session, stream_time: i64) -> Placement {
        let t = event.start;
        let joins = |s: &Session| {
            t >= s.start.saturating_sub(self.gap) && t <= s.end.saturating_add(self.gap)
        };
        let merged_end = open
            .iter()
            .filter(|s| joins(s))
            .map(|s| s.end)
            .fold(t, i64::max);
        if self.close_time(merged_end) < stream_time {
            return Placement::Late;
        }
        let mut merged = event;
        let mut replaced_close_times = Vec::new();
        let mut kept = Vec::with_capacity(open.len());
        for session in open.drain(..) {
            if joins(&session) {
                replaced_close_times.push(self.close_time(session.end));
                merged.merge(session);
            } else {
                kept.push(session);
            }
        }
        let index = kept.partition_point(|s| s.start < merged.start);
        kept.insert(index, merged);
        *open = kept;
        Placement::Placed {
            index,
            replaced_close_times,
        }
    }

    /// Removes and returns the sessions of `open` that are final at `stream_time`.
    pub fn take_final(&self, open: &mut Vec<Session>, stream_time: i64) -> Vec<Session> {
        let (done, still_open): (Vec<Session>, Vec<Session>) = open
            .drain(..)
            .partition(|s| self.close_time(s.end) < stream_time);
        *open = still_open;
        done
    }
}

#[cfg(test)]
mod tests {
    use journey_core::contract::{CustomerEvent, EventType};
    use proptest::prelude::*;

    use super::*;

    const MIN: i64 = 60_000;
    const W: Windows = Windows {
        gap: 30 * MIN,
        grace: 5 * MIN,
    };

    fn at(t: i64) -> Session {
        Session::of(&CustomerEvent {
            event_id: format!("e{t}"),
            event_type: EventType::PageView,
            occurred_at: t,
            ..CustomerEvent::default()
        })
    }

    fn spans(open: &[Session]) -> Vec<(i64, i64)> {
        open.iter().map(|s| (s.start, s.end)).collect()
    }

    /// Feeds events in order, advancing stream time as the runtime does, and
    /// returns the final sessions plus the open ones and the late count.
    fn run(events: &[i64]) -> (Vec<(i64, i64, u32)>, usize) {
        let mut open = Vec::new();
        let mut stream_time = i64::MIN;
        let mut closed = Vec::new();
        let mut late = 0;
        for &t in events {
            stream_time = stream_time.max(t);
            if W.place(&mut open, at(t), stream_time) == Placement::Late {
                late += 1;
            }
            closed.extend(W.take_final(&mut open, stream_time));
        }
        closed.extend(open);
        let mut out: Vec<_> = closed
            .iter()
            .map(|s| (s.start, s.end, s.event_count))
            .collect();
        out.sort_unstable();
        (out, late)
    }

    #[test]
    fn one_event_makes_a_point_session() {
        let mut open = Vec::new();
        W.place(&mut open, at(10), 10);
        assert_eq!(spans(&open), vec![(10, 10)]);
    }

    #[test]
    fn an_event_exactly_at_the_gap_joins_the_session() {
        assert_eq!(run(&[0, 30 * MIN]).0, vec![(0, 30 * MIN, 2)]);
    }

    #[test]
    fn an_event_one_ms_past_the_gap_starts_a_new_session() {
        assert_eq!(
            run(&[0, 30 * MIN + 1]).0,
            vec![(0, 0, 1), (30 * MIN + 1, 30 * MIN + 1, 1)]
        );
    }

    #[test]
    fn late_event_within_grace_merges_two_sessions() {
        // Two sessions 33 minutes apart (more than the gap); the first is not
        // final yet (it closes at 35 min) when a late event bridges them.
        let (sessions, late) = run(&[0, 33 * MIN, 16 * MIN]);
        assert_eq!(late, 0);
        assert_eq!(sessions, vec![(0, 33 * MIN, 3)]);
    }

    #[test]
    fn late_event_after_grace_is_late() {
        // Stream time reaches 100 min: the session [0,0] closed at 35 min.
        let (sessions, late) = run(&[0, 100 * MIN, 10 * MIN]);
        assert_eq!(late, 1);
        assert_eq!(sessions, vec![(0, 0, 1), (100 * MIN, 100 * MIN, 1)]);
    }

    #[test]
    fn a_session_is_final_only_once_stream_time_passes_end_gap_grace() {
        let mut open = vec![at(0)];
        assert!(W.take_final(&mut open, 35 * MIN).is_empty());
        assert_eq!(W.take_final(&mut open, 35 * MIN + 1).len(), 1);
        assert!(open.is_empty());
    }

    #[test]
    fn an_event_before_a_session_within_the_gap_extends_its_start() {
        let mut open = Vec::new();
        W.place(&mut open, at(40 * MIN), 40 * MIN);
        W.place(&mut open, at(15 * MIN), 40 * MIN);
        assert_eq!(spans(&open), vec![(15 * MIN, 40 * MIN)]);
    }

    proptest! {
        #[test]
        fn any_reordering_within_grace_yields_the_same_sessions(
            events in proptest::collection::vec((0i64..(6 * 60 * MIN), 0i64..(5 * MIN)), 1..40),
        ) {
            let mut in_order: Vec<i64> = events.iter().map(|(t, _)| *t).collect();
            in_order.sort_unstable();
            // Each event arrives up to `grace` after it occurred, so none is late.
            let mut arrivals = events.clone();
            arrivals.sort_by_key(|(t, delay)| (t + delay, *t));
            let shuffled: Vec<i64> = arrivals.iter().map(|(t, _)| *t).collect();
            let (sessions, late) = run(&shuffled);
            prop_assert_eq!(late, 0);
            prop_assert_eq!(sessions, run(&in_order).0);
        }
    }
}
