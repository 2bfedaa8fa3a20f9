//! Session windows of one customer: where an event (or a whole session, when
//! an identity merge folds one in) lands, and which sessions are final at a
//! given stream time.
//!
//! Semantics follow Kafka Streams' session windows: a session covers
//! `[first, last]` event inclusive; an event joins every open session whose
//! `[start - gap, end + gap]` contains it, merging them; a session is final
//! once stream time passes `end + gap + grace`, and an event that would land
//! in a final session is late.
//!
//! One rule is added, the maximum session length: a session never lasts
//! longer than `max_session` (`end - start`). When joining every session
//! within the gap would break that, the newcomer joins the earliest of them
//! it fits with, then each later one that still fits, in start order; if it
//! fits with none it starts a session of its own. Events in time order so
//! split a run of activity greedily: a session takes every event up to
//! `max_session` after its first, the next event starts the next session.
//! Out of order (within grace), the result is the same except where an event
//! arriving out of order meets sessions it cannot all join ([`Placed::capped`]):
//! a session is an aggregate and cannot be cut again, so a bridge between two
//! runs that together outlast `max_session` may split them elsewhere than
//! time order would have.

use journey_core::contract::CustomerEvent;
use smallvec::SmallVec;

use crate::session::{event_hash, Session};

/// A customer's open sessions, sorted by start: nearly always one, held
/// inline (encoded as a sequence, as a `Vec` is).
pub type OpenSessions = SmallVec<[Session; 1]>;

/// Gap, grace and maximum session length of the session windows, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub gap: i64,
    pub grace: i64,
    pub max_session: i64,
}

/// Where a newcomer went: into the open session at `index` (new, or with
/// the sessions within its gap merged into it).
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    pub index: usize,
    /// Some session within the gap was left apart to respect `max_session`.
    pub capped: bool,
}

/// What became of an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    Placed(Placed),
    /// Too late: the session it belongs to became final at `close_time`.
    Late {
        close_time: i64,
    },
    /// An open session already holds an event with this id.
    Duplicate,
}

impl Windows {
    /// When a session ending at `end` becomes final: stream time must pass this.
    pub fn close_time(&self, end: i64) -> i64 {
        end.saturating_add(self.gap).saturating_add(self.grace)
    }

    /// The close time of a session ending at `end` if it is final at `stream_time`.
    pub fn final_at(&self, end: i64, stream_time: i64) -> Option<i64> {
        let close = self.close_time(end);
        (close < stream_time).then_some(close)
    }

    /// Adds `event` to `open` (kept sorted by start), unless it repeats an
    /// event of an open session or is late at `stream_time`.
    pub fn place_event(
        &self,
        open: &mut OpenSessions,
        event: &CustomerEvent,
        stream_time: i64,
    ) -> Placement {
        let hash = event_hash(&event.event_id);
        if open.iter().any(|s| s.has_event(hash)) {
            return Placement::Duplicate;
        }
        let t = event.occurred_at;
        let chosen = self.choose(open, t, t);
        let end = chosen.joined.iter().map(|&i| open[i].end).fold(t, i64::max);
        if let Some(close_time) = self.final_at(end, stream_time) {
            return Placement::Late { close_time };
        }
        match chosen.joined[..] {
            // Joining one session that stays in place among the others (its
            // start moves back at most to the event's, never past the
            // session before): folded in where it is.
            [i] if i == 0 || open[i - 1].start <= t.min(open[i].start) => {
                open[i].absorb(event, hash);
                Placement::Placed(Placed {
                    index: i,
                    capped: chosen.capped,
                })
            }
            _ => Placement::Placed(self.apply(open, Session::of(event), chosen)),
        }
    }

    /// Adds a whole `session` (folded in from another key) to `open`, by the
    /// same rules; never late: it was not final where it came from.
    pub fn place_session(&self, open: &mut OpenSessions, session: Session) -> Placed {
        let chosen = self.choose(open, session.start, session.end);
        self.apply(open, session, chosen)
    }

    /// Removes and returns the sessions of `open` that are final at `stream_time`.
    pub fn take_final(&self, open: &mut OpenSessions, stream_time: i64) -> Vec<Session> {
        let (done, still_open): (OpenSessions, OpenSessions) = open
            .drain(..)
            .partition(|s| self.final_at(s.end, stream_time).is_some());
        *open = still_open;
        done.into_vec()
    }

    /// Which of the open sessions within the gap of a newcomer spanning
    /// `[start, end]` it joins.
    fn choose(&self, open: &[Session], start: i64, end: i64) -> Choice {
        let candidates: Vec<usize> = (0..open.len())
            .filter(|&i| {
                let s = &open[i];
                start <= s.end.saturating_add(self.gap) && end >= s.start.saturating_sub(self.gap)
            })
            .collect();
        let span = |joined: &[usize]| {
            let (start, end) = joined.iter().fold((start, end), |(a, b), &i| {
                (a.min(open[i].start), b.max(open[i].end))
            });
            end.saturating_sub(start)
        };
        if span(&candidates) <= self.max_session {
            return Choice {
                joined: candidates,
                capped: false,
            };
        }
        let mut joined = Vec::new();
        for &i in &candidates {
            joined.push(i);
            if span(&joined) > self.max_session {
                joined.pop();
            }
        }
        Choice {
            joined,
            capped: true,
        }
    }

    fn apply(&self, open: &mut OpenSessions, mut new: Session, chosen: Choice) -> Placed {
        // Highest index first, so the indices left to remove stay valid.
        for &i in chosen.joined.iter().rev() {
            let mut other = open.remove(i);
            // Merging is commutative: fold the smaller into the larger, whose
            // sets then take an item or two in place.
            if other.event_count > new.event_count {
                std::mem::swap(&mut new, &mut other);
            }
            new.merge(other);
        }
        let index = open.partition_point(|s| s.start < new.start);
        open.insert(index, new);
        Placed {
            index,
            capped: chosen.capped,
        }
    }
}

/// The open sessions a newcomer joins.
struct Choice {
    joined: Vec<usize>,
    capped: bool,
}

#[cfg(test)]
mod tests {
    use journey_core::contract::EventType;
    use proptest::prelude::*;
    use smallvec::smallvec;

    use super::*;

    const MIN: i64 = 60_000;
    const W: Windows = Windows {
        gap: 30 * MIN,
        grace: 5 * MIN,
        max_session: 24 * 60 * MIN,
    };
    /// Short maximum length, so that splits show within a few hours.
    const SHORT: Windows = Windows {
        max_session: 90 * MIN,
        ..W
    };

    /// A page view at `t` with id `id`.
    fn event(t: i64, id: &str) -> CustomerEvent {
        CustomerEvent {
            event_id: id.to_string(),
            event_type: EventType::PageView,
            occurred_at: t,
            ..CustomerEvent::default()
        }
    }

    /// The session of a page view at `t`.
    fn at(t: i64) -> Session {
        Session::of(&event(t, &format!("e{t}")))
    }

    fn spans(open: &[Session]) -> Vec<(i64, i64)> {
        open.iter().map(|s| (s.start, s.end)).collect()
    }

    /// What a run of events gave.
    #[derive(Debug, Default)]
    struct Outcome {
        /// Every session, final or still open: (start, end, events), sorted.
        sessions: Vec<(i64, i64, u32)>,
        late: usize,
        /// An event out of time order could not join every session within the gap.
        capped_out_of_order: bool,
    }

    /// Feeds events in arrival order, advancing stream time as the runtime
    /// does and closing final sessions after each event.
    fn run(windows: Windows, events: &[i64]) -> Outcome {
        let mut open = OpenSessions::new();
        let mut stream_time = i64::MIN;
        let mut closed = Vec::new();
        let mut outcome = Outcome::default();
        for (i, &t) in events.iter().enumerate() {
            let in_order = t >= stream_time;
            stream_time = stream_time.max(t);
            match windows.place_event(&mut open, &event(t, &format!("e{i}")), stream_time) {
                Placement::Late { .. } => outcome.late += 1,
                Placement::Placed(p) => outcome.capped_out_of_order |= p.capped && !in_order,
                Placement::Duplicate => panic!("no repeats fed"),
            }
            closed.extend(windows.take_final(&mut open, stream_time));
        }
        closed.extend(open);
        outcome.sessions = closed
            .iter()
            .map(|s| (s.start, s.end, s.event_count))
            .collect();
        outcome.sessions.sort_unstable();
        outcome
    }

    /// The sessions the rules define for a set of events, computed directly:
    /// runs of events no more than `gap` apart, each split greedily so that
    /// a session takes every event up to `max_session` after its first.
    fn reference(windows: Windows, events: &[i64]) -> Vec<(i64, i64, u32)> {
        let mut sorted = events.to_vec();
        sorted.sort_unstable();
        let mut sessions: Vec<(i64, i64, u32)> = Vec::new();
        for t in sorted {
            match sessions.last_mut() {
                Some((start, end, n))
                    if t - *end <= windows.gap && t - *start <= windows.max_session =>
                {
                    *end = t;
                    *n += 1;
                }
                _ => sessions.push((t, t, 1)),
            }
        }
        sessions
    }

    #[test]
    fn session_rules() {
        struct Case {
            rule: &'static str,
            windows: Windows,
            events: &'static [i64],
            sessions: &'static [(i64, i64, u32)],
            late: usize,
        }
        let cases = [
            Case {
                rule: "one event makes a session [t, t]",
                windows: W,
                events: &[10],
                sessions: &[(10, 10, 1)],
                late: 0,
            },
            Case {
                rule: "an event exactly at the gap joins the session",
                windows: W,
                events: &[0, 30 * MIN],
                sessions: &[(0, 30 * MIN, 2)],
                late: 0,
            },
            Case {
                rule: "an event one ms past the gap starts a new session",
                windows: W,
                events: &[0, 30 * MIN + 1],
                sessions: &[(0, 0, 1), (30 * MIN + 1, 30 * MIN + 1, 1)],
                late: 0,
            },
            Case {
                rule: "an earlier event within the gap extends the start",
                windows: W,
                events: &[40 * MIN, 15 * MIN],
                sessions: &[(15 * MIN, 40 * MIN, 2)],
                late: 0,
            },
            Case {
                // Two sessions 33 minutes apart; the first closes at 35 min,
                // so a late event at 16 min still bridges them.
                rule: "late event within grace merges two sessions",
                windows: W,
                events: &[0, 33 * MIN, 16 * MIN],
                sessions: &[(0, 33 * MIN, 3)],
                late: 0,
            },
            Case {
                rule: "an event arriving when stream time is its session's close time still joins",
                windows: W,
                events: &[0, 35 * MIN, MIN],
                sessions: &[(0, MIN, 2), (35 * MIN, 35 * MIN, 1)],
                late: 0,
            },
            Case {
                rule: "late event after grace is late",
                windows: W,
                events: &[0, 100 * MIN, 10 * MIN],
                sessions: &[(0, 0, 1), (100 * MIN, 100 * MIN, 1)],
                late: 1,
            },
            Case {
                rule: "a new session older than gap plus grace is late",
                windows: W,
                events: &[100 * MIN, 100 * MIN - 35 * MIN - 1],
                sessions: &[(100 * MIN, 100 * MIN, 1)],
                late: 1,
            },
            Case {
                rule: "activity longer than max_session is split at the event past it",
                windows: SHORT,
                events: &[0, 30 * MIN, 60 * MIN, 90 * MIN, 120 * MIN, 150 * MIN],
                sessions: &[(0, 90 * MIN, 4), (120 * MIN, 150 * MIN, 2)],
                late: 0,
            },
            Case {
                rule: "a session may last exactly max_session",
                windows: SHORT,
                events: &[0, 30 * MIN, 60 * MIN, 90 * MIN],
                sessions: &[(0, 90 * MIN, 4)],
                late: 0,
            },
            Case {
                // 75 min is within the gap of both; joining both would last 95 min.
                rule: "two sessions that together outlast max_session do not merge",
                windows: SHORT,
                events: &[0, 30 * MIN, 60 * MIN, 91 * MIN, 95 * MIN, 75 * MIN],
                sessions: &[(0, 75 * MIN, 4), (91 * MIN, 95 * MIN, 2)],
                late: 0,
            },
        ];
        for case in cases {
            let outcome = run(case.windows, case.events);
            assert_eq!(outcome.sessions, case.sessions, "{}", case.rule);
            assert_eq!(outcome.late, case.late, "{}", case.rule);
        }
    }

    #[test]
    fn open_sessions_encode_as_the_vector_earlier_builds_stored() {
        for n in 0..3 {
            let sessions: Vec<Session> = (0..n).map(|i| at(i * 60 * MIN)).collect();
            let open: OpenSessions = sessions.iter().cloned().collect();
            let stored = postcard::to_stdvec(&Some(&sessions)).unwrap();
            assert_eq!(postcard::to_stdvec(&Some(&open)).unwrap(), stored);
            assert_eq!(
                postcard::from_bytes::<Option<OpenSessions>>(&stored).unwrap(),
                Some(open)
            );
        }
    }

    #[test]
    fn a_session_is_final_only_once_stream_time_passes_end_gap_grace() {
        let mut open = smallvec![at(0)];
        assert!(W.take_final(&mut open, 35 * MIN).is_empty());
        assert_eq!(W.take_final(&mut open, 35 * MIN + 1).len(), 1);
        assert!(open.is_empty());
    }

    #[test]
    fn a_late_event_reports_when_its_session_closed() {
        let mut open = smallvec![at(0)];
        assert_eq!(
            W.place_event(&mut open, &event(10 * MIN, "late"), 50 * MIN),
            Placement::Late {
                close_time: 45 * MIN
            }
        );
    }

    #[test]
    fn a_repeated_event_id_is_dropped() {
        let mut open = OpenSessions::new();
        W.place_event(&mut open, &event(0, "a"), 0);
        W.place_event(&mut open, &event(MIN, "b"), MIN);
        assert_eq!(
            W.place_event(&mut open, &event(0, "a"), MIN),
            Placement::Duplicate
        );
        assert_eq!(open[0].event_count, 2);
    }

    #[test]
    fn a_folded_session_merges_with_sessions_within_the_gap() {
        let mut open = smallvec![at(0), at(50 * MIN)];
        let mut folded = at(20 * MIN);
        folded.merge(at(25 * MIN));
        let placed = W.place_session(&mut open, folded);
        assert_eq!(spans(&open), vec![(0, 50 * MIN)]);
        assert_eq!(placed.index, 0);
        assert_eq!(open[0].event_count, 4);
    }

    #[test]
    fn an_out_of_order_bridge_past_max_session_keeps_the_later_run_whole() {
        // In time order the 70-min event joins the first session, 89 min
        // still fits in it, and 91 min starts the next. Arriving last, the
        // 70-min event bridges two sessions that together outlast 90 min: it
        // joins the first, and the second, an aggregate, stays whole. This
        // is the documented exception to reordering.
        let arrival = [0, 29, 58, 89, 91, 93, 70].map(|m| m * MIN);
        let outcome = run(SHORT, &arrival);
        assert!(outcome.capped_out_of_order);
        assert_eq!(outcome.late, 0);
        assert_eq!(
            outcome.sessions,
            vec![(0, 70 * MIN, 4), (89 * MIN, 93 * MIN, 3)]
        );
        assert_eq!(
            reference(SHORT, &arrival),
            vec![(0, 89 * MIN, 5), (91 * MIN, 93 * MIN, 2)]
        );
    }

    /// Events over a few hours, each arriving up to `grace` after it occurred.
    fn arrivals() -> impl Strategy<Value = Vec<(i64, i64)>> {
        proptest::collection::vec((0i64..(6 * 60 * MIN), 0i64..=(5 * MIN)), 1..40)
    }

    fn arrival_order(events: &[(i64, i64)]) -> Vec<i64> {
        let mut arrivals = events.to_vec();
        arrivals.sort_by_key(|(t, delay)| (t + delay, *t));
        arrivals.iter().map(|(t, _)| *t).collect()
    }

    proptest! {
        #[test]
        fn in_time_order_the_sessions_are_the_reference_ones(
            events in proptest::collection::vec(0i64..(6 * 60 * MIN), 1..60),
            max_minutes in 30i64..300,
        ) {
            let windows = Windows { max_session: max_minutes * MIN, ..W };
            let mut sorted = events.clone();
            sorted.sort_unstable();
            prop_assert_eq!(run(windows, &sorted).sessions, reference(windows, &events));
        }

        #[test]
        fn an_event_folded_in_place_gives_what_merging_in_its_session_gives(
            events in arrivals(),
            short in any::<bool>(),
        ) {
            let windows = if short { SHORT } else { W };
            let (mut in_place, mut merged) = (OpenSessions::new(), OpenSessions::new());
            let mut stream_time = i64::MIN;
            for (i, t) in arrival_order(&events).into_iter().enumerate() {
                stream_time = stream_time.max(t);
                let event = event(t, &format!("e{i}"));
                if let Placement::Placed(_) = windows.place_event(&mut in_place, &event, stream_time) {
                    windows.place_session(&mut merged, Session::of(&event));
                }
                prop_assert!(
                    in_place.windows(2).all(|w| w[0].start <= w[1].start),
                    "open sessions stay sorted by start"
                );
                let mut closed_in_place = windows.take_final(&mut in_place, stream_time);
                let mut closed_merged = windows.take_final(&mut merged, stream_time);
                let by_span = |s: &Session| (s.start, s.end, s.event_ids.clone());
                for sessions in [
                    &mut in_place[..],
                    &mut merged[..],
                    &mut closed_in_place[..],
                    &mut closed_merged[..],
                ] {
                    sessions.sort_by_key(by_span);
                }
                prop_assert_eq!(&in_place, &merged);
                prop_assert_eq!(closed_in_place, closed_merged);
            }
        }

        #[test]
        fn any_reordering_within_grace_yields_the_same_sessions(events in arrivals()) {
            let in_order = {
                let mut t: Vec<i64> = events.iter().map(|(t, _)| *t).collect();
                t.sort_unstable();
                t
            };
            let outcome = run(W, &arrival_order(&events));
            prop_assert_eq!(outcome.late, 0);
            prop_assert_eq!(outcome.sessions, run(W, &in_order).sessions);
        }

        #[test]
        fn reordering_within_grace_keeps_max_session_splits_unless_a_bridge_is_capped(
            events in arrivals(),
        ) {
            let outcome = run(SHORT, &arrival_order(&events));
            prop_assert_eq!(outcome.late, 0);
            let times: Vec<i64> = events.iter().map(|(t, _)| *t).collect();
            if !outcome.capped_out_of_order {
                prop_assert_eq!(outcome.sessions.clone(), reference(SHORT, &times));
            }
            for (start, end, _) in outcome.sessions {
                prop_assert!(end - start <= SHORT.max_session);
            }
        }
    }
}
