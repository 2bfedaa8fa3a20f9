//! The sessionizer processor: open sessions per customer in state, closed by
//! event-time timers.
//!
//! State: `s<customer>` holds the customer's open sessions, sorted by start.
//! Each open session has an event-time timer, keyed by customer, due one
//! millisecond after its close time.

use journey_core::ids;
use journey_core::runtime::{Context, InputRecord, ProcessError, Processor};
use journey_core::state::Clock;
use prometheus::{IntCounter, Registry};

use crate::session::Session;
use crate::window::{Placement, Windows};

const SESSIONS: u8 = b's';

/// Builds sessions per customer and emits each one's summary when final.
pub struct Sessionizer {
    windows: Windows,
    output_topic: String,
    closed: IntCounter,
    late: IntCounter,
}

impl Sessionizer {
    /// A sessionizer emitting summaries to `output_topic`.
    pub fn new(windows: Windows, output_topic: String, registry: &Registry) -> Self {
        let counter = |name: &str, help: &str| {
            journey_core::metrics::register(
                registry,
                IntCounter::new(name, help).expect("valid metric"),
            )
        };
        Sessionizer {
            windows,
            output_topic,
            closed: counter("sessions_closed_total", "Sessions closed and summarised."),
            late: counter(
                "late_events_total",
                "Events that arrived after their session was final.",
            ),
        }
    }

    /// The timer that closes a session ending at `end`: due once stream time passes its close time.
    fn timer_at(&self, end: i64) -> i64 {
        self.windows.close_time(end).saturating_add(1)
    }
}

fn session_key(customer: &str) -> Vec<u8> {
    [&[SESSIONS], customer.as_bytes()].concat()
}

impl Processor for Sessionizer {
    fn process(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let (event, customer) = ctx.customer_event(record)?;
        let stream_time = ctx.stream_time();
        let key = session_key(&customer);
        let mut open: Vec<Session> = ctx.state().get(&key)?.unwrap_or_default();
        match self
            .windows
            .place(&mut open, Session::of(&event), stream_time)
        {
            Placement::Late => {
                self.late.inc();
                tracing::debug!(event_id = %event.event_id, "late event: its session is already final");
            }
            Placement::Placed {
                index,
                replaced_close_times,
            } => {
                for close in replaced_close_times {
                    ctx.cancel_timer(Clock::Event, close.saturating_add(1), customer.as_bytes());
                }
                ctx.set_timer(
                    Clock::Event,
                    self.timer_at(open[index].end),
                    customer.as_bytes(),
                );
                ctx.state().put(&key, &open);
            }
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        _: Clock,
        _: i64,
        customer: &[u8],
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let customer = String::from_utf8_lossy(customer).into_owned();
        let key = session_key(&customer);
        let mut open: Vec<Session> = ctx.state().get(&key)?.unwrap_or_default();
        let done = self.windows.take_final(&mut open, ctx.stream_time());
        if open.is_empty() {
            ctx.state().delete(&key);
        } else {
            ctx.state().put(&key, &open);
        }
        for session in done {
            let id = ids::derive(&[customer.as_bytes(), &session.start.to_be_bytes()]);
            let summary = session.summary(id, &customer);
            ctx.emit(&self.output_topic, &customer, &summary, session.end)?;
            self.closed.inc();
        }
        Ok(())
    }
}
