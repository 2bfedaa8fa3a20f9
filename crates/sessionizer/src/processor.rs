//! The sessionizer processor: open sessions per customer in state, closed by
//! event-time timers.
//!
//! State keys: `s<customer>` holds the customer's open sessions; a timer
//! `t<close time><customer>` exists for each open session, so closing scans
//! only the timers that are due.

use journey_core::contract::CustomerEvent;
use journey_core::ids;
use journey_core::runtime::{Context, InputRecord, ProcessError, Processor};
use prometheus::{IntCounter, Registry};

use crate::session::Session;
use crate::window::{Placement, Windows};

const SESSIONS: u8 = b's';
const TIMERS: u8 = b't';

/// Builds sessions per customer and emits each one's summary when final.
pub struct Sessionizer {
    windows: Windows,
    output_topic: String,
    metrics: Metrics,
}

struct Metrics {
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
            metrics: Metrics {
                closed: counter("sessions_closed_total", "Sessions closed and summarised."),
                late: counter(
                    "late_events_total",
                    "Events that arrived after their session was final.",
                ),
            },
        }
    }
}

fn session_key(customer: &str) -> Vec<u8> {
    [&[SESSIONS], customer.as_bytes()].concat()
}

/// Timer keys sort by close time: the sign bit is flipped so negative times order first.
fn timer_key(close_time: i64, customer: &str) -> Vec<u8> {
    [&[TIMERS][..], &time_bytes(close_time), customer.as_bytes()].concat()
}

fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

impl Processor for Sessionizer {
    fn process(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let event: CustomerEvent = ctx.codec().decode(record.payload.unwrap_or_default())?;
        let Some(customer) = event.customer_key().map(str::to_string) else {
            return Err(journey_core::runtime::Rejection::semantic(
                "customer_id",
                "event has no customer key",
            )
            .into());
        };
        let stream_time = ctx.stream_time();
        let mut state = ctx.state();
        let key = session_key(&customer);
        let mut open: Vec<Session> = state.get(&key)?.unwrap_or_default();
        match self
            .windows
            .place(&mut open, Session::of(&event), stream_time)
        {
            Placement::Late => {
                self.metrics.late.inc();
                tracing::debug!(event_id = %event.event_id, "late event: its session is already final");
            }
            Placement::Placed {
                index,
                replaced_close_times,
            } => {
                for close in replaced_close_times {
                    state.delete(&timer_key(close, &customer));
                }
                state.put(
                    &timer_key(self.windows.close_time(open[index].end), &customer),
                    &(),
                );
                state.put(&key, &open);
            }
        }
        Ok(())
    }

    fn on_stream_time(&mut self, ctx: &mut Context<'_>) -> Result<(), ProcessError> {
        let now = ctx.stream_time();
        let due = ctx
            .state()
            .keys_in(&[TIMERS], &[&[TIMERS][..], &time_bytes(now)].concat())?;
        for timer in due {
            ctx.state().delete(&timer);
            let customer = String::from_utf8_lossy(&timer[9..]).into_owned();
            let key = session_key(&customer);
            let mut open: Vec<Session> = ctx.state().get(&key)?.unwrap_or_default();
            let done = self.windows.take_final(&mut open, now);
            if open.is_empty() {
                ctx.state().delete(&key);
            } else {
                ctx.state().put(&key, &open);
            }
            for session in done {
                let id = ids::derive(&[customer.as_bytes(), &session.start.to_be_bytes()]);
                let summary = session.summary(id, &customer);
                ctx.emit(&self.output_topic, &customer, &summary, session.end)?;
                self.metrics.closed.inc();
            }
        }
        Ok(())
    }
}
