//! The sessionizer processor: open sessions per customer in state, closed by
//! event-time timers.
//!
//! State: `s<customer>` holds the customer's open sessions, sorted by start;
//! `f<merge id>` remembers an identity fold already applied, and
//! `a<anonymous id>` where a folded anonymous id went (see [`crate::fold`]).
//!
//! Close timers: a customer with open sessions has an event-time timer keyed
//! `s<customer>` due no later than one millisecond after the earliest close
//! time among them. Extending a session (the common event) moves its close
//! time later and leaves the timer where it is: when it fires, the sessions
//! final by then are emitted and the timer is re-armed at the new earliest
//! close. Only an event that opens a session closing before every other one
//! sets a timer of its own. So a timer may fire early, never late, and one
//! may fire for a key without open sessions (they moved away in an identity
//! fold): it then does nothing.
//!
//! Repeats: the runtime never applies an input record twice (records whose
//! offsets the state already reflects are skipped), but an upstream service
//! that crashes re-sends its outputs, so the events topic may hold an event
//! twice at two offsets. Each open session therefore keeps the hashes of its
//! event ids and drops a repeat; a repeat of an event whose session already
//! closed is late, and goes to the late-events topic.

use journey_core::config::TopicsConfig;
use journey_core::contract::{CustomerEvent, SessionSummary};
use journey_core::erasure::{self, ErasureTopics};
use journey_core::ids;
use journey_core::runtime::{Context, FoldedIds, InputRecord, ProcessError, Processor, RecentIds};
use journey_core::state::Clock;
use prometheus::Registry;

use crate::fold::FOLD_MEMORY_MS;
use crate::metrics::Metrics;
use crate::open_count::OpenCount;
use crate::session::Session;
use crate::window::{OpenSessions, Placement, Windows};

/// State key and timer key tag of a customer's open sessions.
pub(crate) const SESSIONS: u8 = b's';
/// Applied folds, by merge id (state and timer keys tagged `f`).
pub(crate) const FOLDS: RecentIds = RecentIds::new(b"f", FOLD_MEMORY_MS);
/// Where folded anonymous ids went (state and timer keys tagged `a`).
pub(crate) const FOLDED: FoldedIds = FoldedIds::new(b"a", FOLD_MEMORY_MS);

/// Header of a late event: close time (ms) of the final session it belonged to.
pub const LATE_CLOSE_TIME_HEADER: &str = "journey.late.close_time";
/// Header of a late event: the partition's stream time (ms) when it arrived.
pub const LATE_STREAM_TIME_HEADER: &str = "journey.late.stream_time";

/// The topics the sessionizer reads and writes.
#[derive(Debug, Clone)]
pub struct SessionizerTopics {
    /// Validated events keyed by customer (input).
    pub events: String,
    /// Identity merges keyed by anonymous id (input).
    pub identities: String,
    /// The sessionizer's own repartition topic: anonymous open sessions keyed
    /// by the customer they fold into (input and output).
    pub folds: String,
    /// Session summaries (output).
    pub sessions: String,
    /// Late events as they came (output).
    pub late_events: String,
    /// Erasure tasks (input) and steps (output).
    pub erasure: ErasureTopics,
}

impl SessionizerTopics {
    /// The pipeline's `topics` and the internal topics of consumer group `group_id`.
    pub fn new(topics: &TopicsConfig, group_id: &str) -> Self {
        SessionizerTopics {
            events: topics.events.clone(),
            identities: topics.identities.clone(),
            folds: format!("{group_id}-merge-repartition"),
            sessions: topics.sessions.clone(),
            late_events: topics.late_events.clone(),
            erasure: ErasureTopics::new(topics),
        }
    }
}

/// Builds sessions per customer and emits each one's summary when final.
pub struct Sessionizer {
    pub(crate) windows: Windows,
    /// Least stream time between two interim summaries of a session, if they are on.
    early_updates: Option<i64>,
    pub(crate) topics: SessionizerTopics,
    pub(crate) metrics: Metrics,
    pub(crate) open_count: OpenCount,
}

/// `tag` followed by `id`: a state key and a timer key.
pub(crate) fn tagged(tag: u8, id: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(id.len() + 1);
    key.push(tag);
    key.extend_from_slice(id);
    key
}

/// The deterministic id of the session of `customer` starting at `start`.
pub fn session_id(customer: &str, start: i64) -> String {
    ids::derive(&[customer.as_bytes(), &start.to_be_bytes()])
}

impl Sessionizer {
    /// A sessionizer over `topics`; `early_updates` is the least stream time
    /// between two interim summaries of a session, `None` for final ones only.
    pub fn new(
        windows: Windows,
        early_updates: Option<i64>,
        topics: SessionizerTopics,
        registry: &Registry,
    ) -> Self {
        let metrics = Metrics::new(registry);
        Sessionizer {
            windows,
            early_updates,
            topics,
            open_count: OpenCount::new(metrics.open.clone()),
            metrics,
        }
    }

    /// The earliest close time among `open`, if any.
    pub(crate) fn earliest_close(&self, open: &[Session]) -> Option<i64> {
        open.iter().map(|s| self.windows.close_time(s.end)).min()
    }

    /// Keeps a close timer of `key` (tagged customer) due by the earliest
    /// close time of its open sessions after a session was placed that
    /// closes at `close`; `earliest_before` is the earliest close time before.
    /// A merged or extended session closes no earlier than the sessions it
    /// replaced, so only a session that joined none and closes first needs a
    /// timer of its own. `capped`: the placement split a run of activity.
    pub(crate) fn arm(
        &self,
        ctx: &mut Context<'_>,
        key: &[u8],
        close: i64,
        earliest_before: Option<i64>,
        capped: bool,
    ) {
        if earliest_before.is_none_or(|earliest| close < earliest) {
            ctx.set_timer(Clock::Event, close.saturating_add(1), key);
        }
        if capped {
            self.metrics.split.inc();
        }
    }

    fn on_event(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let (event, customer) = ctx.customer_event(record)?;
        let stream_time = ctx.stream_time();
        let key = tagged(SESSIONS, customer.as_bytes());
        // The open sessions are updated in place in the record cache: a busy
        // customer's are decoded and encoded once per commit, not per event.
        let anonymous = event.customer_id.is_none();
        let decided = ctx
            .state()
            .update(&key, |open: &mut Option<OpenSessions>| {
                // An anonymous id without open sessions may have been folded.
                (!anonymous || open.is_some())
                    .then(|| self.decide(open, &event, &customer, stream_time))
            })?;
        let decision = match decided {
            Some(decision) => decision,
            None => {
                if let Some(folded) = FOLDED.get(ctx, &customer)? {
                    if let Some(close_time) = self.windows.final_at(event.occurred_at, stream_time)
                    {
                        self.send_late(ctx, record, &customer, close_time);
                        return Ok(());
                    }
                    return self.forward(ctx, &event, folded, record.timestamp);
                }
                ctx.state().update(&key, |open| {
                    self.decide(open, &event, &customer, stream_time)
                })?
            }
        };
        match decision {
            Decision::Late { close_time } => self.send_late(ctx, record, &customer, close_time),
            Decision::Duplicate => self.metrics.duplicates.inc(),
            Decision::Placed {
                close,
                earliest_before,
                capped,
                opened,
                interim,
            } => {
                self.arm(ctx, &key, close, earliest_before, capped);
                if let Some(interim) = interim {
                    let (summary, end) = *interim;
                    ctx.emit(&self.topics.sessions, &customer, &summary, end)?;
                    self.metrics.interim.inc();
                }
                self.open_count.adjust(ctx, opened)?;
            }
        }
        Ok(())
    }

    /// Places `event` of `customer` among the customer's `open` sessions at
    /// `stream_time` (leaving `None` if none stay open), and says what the
    /// processor is to do about it.
    fn decide(
        &self,
        open: &mut Option<OpenSessions>,
        event: &CustomerEvent,
        customer: &str,
        stream_time: i64,
    ) -> Decision {
        let sessions = open.get_or_insert_with(OpenSessions::new);
        let before = sessions.len();
        let earliest_before = self.earliest_close(sessions);
        let decision = match self.windows.place_event(sessions, event, stream_time) {
            Placement::Late { close_time } => Decision::Late { close_time },
            Placement::Duplicate => Decision::Duplicate,
            Placement::Placed(placed) => {
                let opened = sessions.len() as i64 - before as i64;
                let session = &mut sessions[placed.index];
                let due = |every: i64| {
                    let last = session.last_update.unwrap_or(session.start);
                    stream_time >= last.saturating_add(every)
                };
                let interim = self.early_updates.filter(|&every| due(every)).map(|_| {
                    session.last_update = Some(stream_time);
                    let id = session_id(customer, session.start);
                    Box::new((session.summary(id, customer, true), session.end))
                });
                Decision::Placed {
                    close: self.windows.close_time(session.end),
                    earliest_before,
                    capped: placed.capped,
                    opened,
                    interim,
                }
            }
        };
        if sessions.is_empty() {
            *open = None;
        }
        decision
    }

    /// Writes `record`, late for the session of `customer` final at
    /// `close_time`, to the late-events topic as it came.
    fn send_late(
        &self,
        ctx: &mut Context<'_>,
        record: &InputRecord<'_>,
        customer: &str,
        close_time: i64,
    ) {
        self.metrics.late.inc();
        let stream_time = ctx.stream_time();
        ctx.emit_raw_with_headers(
            &self.topics.late_events,
            customer.as_bytes(),
            record.payload.unwrap_or_default(),
            record.timestamp,
            &[
                (LATE_CLOSE_TIME_HEADER, close_time.to_string().as_bytes()),
                (LATE_STREAM_TIME_HEADER, stream_time.to_string().as_bytes()),
            ],
        );
    }

    /// Forgets the open sessions of an erased id, where it was folded into,
    /// and their timers; nothing of them is emitted.
    fn erase(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let task = erasure::task(ctx, record)?;
        let key = tagged(SESSIONS, task.subject.as_bytes());
        let erased = ctx
            .state()
            .update(&key, |open: &mut Option<OpenSessions>| open.take())?;
        if let Some(open) = erased {
            self.open_count.adjust(ctx, -(open.len() as i64))?;
        }
        ctx.cancel_timers(&key)?;
        FOLDED.erase(ctx, &task.subject)?;
        self.metrics.erased.inc();
        erasure::report_erased(ctx, &self.topics.erasure, crate::NAME, &task)
    }

    /// Emits the sessions of the customer under `key` that are final, and
    /// re-arms the close timer for those still open.
    fn close_final(&mut self, key: &[u8], ctx: &mut Context<'_>) -> Result<(), ProcessError> {
        let stream_time = ctx.stream_time();
        let closed = ctx.state().update(key, |open: &mut Option<OpenSessions>| {
            // None: the sessions moved away in an identity fold.
            let sessions = open.as_mut()?;
            let done = self.windows.take_final(sessions, stream_time);
            let earliest = self.earliest_close(sessions);
            if sessions.is_empty() {
                *open = None;
            }
            Some((done, earliest))
        })?;
        let Some((done, earliest)) = closed else {
            return Ok(());
        };
        if let Some(earliest) = earliest {
            // Still open (extended since the timer was set): wait for the new close.
            ctx.set_timer(Clock::Event, earliest.saturating_add(1), key);
        }
        if done.is_empty() {
            return Ok(());
        }
        self.open_count.adjust(ctx, -(done.len() as i64))?;
        let customer = String::from_utf8_lossy(&key[1..]).into_owned();
        for session in done {
            let summary = session.summary(session_id(&customer, session.start), &customer, false);
            ctx.emit(&self.topics.sessions, &customer, &summary, session.end)?;
            self.metrics.closed.inc();
        }
        Ok(())
    }
}

/// What placing an event among a customer's open sessions came to.
enum Decision {
    /// Too late: the session it belongs to became final at `close_time`.
    Late { close_time: i64 },
    /// An open session already holds the event.
    Duplicate,
    /// Placed in a session that now closes at `close`.
    Placed {
        close: i64,
        /// The earliest close time among the open sessions before.
        earliest_before: Option<i64>,
        /// A session within the gap was left apart to respect the maximum length.
        capped: bool,
        /// Open sessions added (negative: merged away).
        opened: i64,
        /// An early update due (they are off by default): the session's
        /// interim summary and its end.
        interim: Option<Box<(SessionSummary, i64)>>,
    },
}

impl Processor for Sessionizer {
    fn process(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        if record.topic == self.topics.identities {
            self.on_identity(record, ctx)
        } else if record.topic == self.topics.folds {
            self.on_fold(record, ctx)
        } else if record.topic == self.topics.erasure.tasks {
            self.erase(record, ctx)
        } else {
            self.on_event(record, ctx)
        }
    }

    fn on_timer(
        &mut self,
        _: Clock,
        at: i64,
        key: &[u8],
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        if FOLDS.owns(key) {
            FOLDS.forget(ctx, key);
            Ok(())
        } else if FOLDED.owns(key) {
            Ok(FOLDED.forget(ctx, key, at)?)
        } else if key.first() == Some(&SESSIONS) {
            self.close_final(key, ctx)
        } else {
            Err(anyhow::anyhow!("timer with an unknown key {key:?}").into())
        }
    }

    fn on_assigned(&mut self, _partition: i32, ctx: &mut Context<'_>) -> Result<(), ProcessError> {
        self.open_count.load(ctx)
    }

    fn on_revoked(&mut self, partition: i32) {
        self.open_count.drop_partition(partition);
    }
}
