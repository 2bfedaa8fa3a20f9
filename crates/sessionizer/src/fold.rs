//! Identity folds: when ingest links an anonymous visitor to a customer, the
//! visitor's open sessions (on the anonymous id's partition) move to the
//! customer's partition and merge into the customer's sessions there.
//!
//! The anonymous partition takes its open sessions out of state (their close
//! timer, left behind, finds nothing when it fires) and sends them, as one
//! [`Fold`], over the sessionizer's own repartition topic keyed by the
//! customer id; the customer's partition places each session by the usual
//! window rules and arms a close timer where one is needed.
//! Both steps go through the runtime's state and outputs, so they survive a
//! crash like everything else. A crash after the fold was sent but before the
//! anonymous partition committed sends it again: the customer's partition
//! remembers applied merge ids for [`FOLD_MEMORY_MS`] and ignores a repeat.
//!
//! Events and identity merges come on different topics, so an anonymous event
//! sent before the merge may be read after it. The anonymous partition
//! remembers where each folded id went (for [`FOLD_MEMORY_MS`]) and forwards
//! such an event the same way, as a fold of its one-event session, instead of
//! opening a session under the anonymous id that no fold would ever move.

use journey_core::contract::{CustomerEvent, IdentityMerge};
use journey_core::ids;
use journey_core::runtime::{
    decode_fold, encode_fold, Context, FoldedInto, InputRecord, ProcessError, Rejection,
};
use serde::{Deserialize, Serialize};

use crate::processor::{tagged, Sessionizer, FOLDED, FOLDS, SESSIONS};
use crate::session::Session;
use crate::window::OpenSessions;

/// How long (wall clock) an applied fold is remembered, and where a folded
/// anonymous id went: a repeat comes from the anonymous partition
/// re-processing after a crash, and an anonymous event overtaken by its
/// merge comes from the same producer moments earlier, both within minutes.
pub const FOLD_MEMORY_MS: i64 = journey_core::runtime::REPEAT_MEMORY_MS;

/// An anonymous visitor's open sessions on their way to the customer's partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fold {
    pub merge_id: String,
    pub customer_id: String,
    pub sessions: Vec<Session>,
}

impl Sessionizer {
    /// On the anonymous id's partition: remembers where the id went and sends
    /// its open sessions to the customer.
    pub(crate) fn on_identity(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let merge: IdentityMerge = ctx.codec().decode(record.payload.unwrap_or_default())?;
        if merge.customer_id.is_empty() {
            return Err(
                Rejection::semantic("customer_id", "identity merge without a customer id").into(),
            );
        }
        if merge.anonymous_id == merge.customer_id {
            return Ok(());
        }
        FOLDED.remember(
            ctx,
            &merge.anonymous_id,
            &merge.merge_id,
            &merge.customer_id,
        );
        let key = tagged(SESSIONS, merge.anonymous_id.as_bytes());
        let Some(sessions) = ctx.state().get::<OpenSessions>(&key)? else {
            return Ok(());
        };
        // Their close timer stays: it finds no sessions when it fires.
        ctx.state().delete(&key);
        self.open_count.adjust(ctx, -(sessions.len() as i64))?;
        let fold = Fold {
            merge_id: merge.merge_id,
            customer_id: merge.customer_id,
            sessions: sessions.into_vec(),
        };
        self.send_fold(ctx, &fold, record.timestamp)?;
        self.metrics.folds_sent.inc();
        Ok(())
    }

    /// On the anonymous id's partition: sends the one-event session of
    /// `event`, read after its id was folded, to the customer it went to.
    /// Its fold id derives from the merge and the event, so a repeat of the
    /// event is ignored there like a repeated fold.
    pub(crate) fn forward(
        &mut self,
        ctx: &mut Context<'_>,
        event: &CustomerEvent,
        folded: FoldedInto,
        timestamp: i64,
    ) -> Result<(), ProcessError> {
        let fold = Fold {
            merge_id: ids::derive(&[folded.merge_id.as_bytes(), event.event_id.as_bytes()]),
            customer_id: folded.customer_id,
            sessions: vec![Session::of(event)],
        };
        self.send_fold(ctx, &fold, timestamp)?;
        self.metrics.forwarded.inc();
        Ok(())
    }

    fn send_fold(
        &self,
        ctx: &mut Context<'_>,
        fold: &Fold,
        timestamp: i64,
    ) -> Result<(), ProcessError> {
        let payload = encode_fold(fold)?;
        ctx.emit_raw(
            &self.topics.folds,
            fold.customer_id.as_bytes(),
            &payload,
            timestamp,
        );
        Ok(())
    }

    /// On the customer's partition: merges the folded sessions into the customer's.
    pub(crate) fn on_fold(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let fold: Fold = decode_fold(record)?;
        if !FOLDS.first_sighting(ctx, &[fold.merge_id.as_bytes()])? {
            self.metrics.folds_repeated.inc();
            return Ok(());
        }
        let key = tagged(SESSIONS, fold.customer_id.as_bytes());
        let mut open: OpenSessions = ctx.state().get(&key)?.unwrap_or_default();
        let before = open.len();
        for session in fold.sessions {
            let earliest_before = self.earliest_close(&open);
            let placed = self.windows.place_session(&mut open, session);
            let close = self.windows.close_time(open[placed.index].end);
            self.arm(ctx, &key, close, earliest_before, placed.capped);
            self.metrics.folds_applied.inc();
        }
        ctx.state().put(&key, &open);
        self.open_count
            .adjust(ctx, open.len() as i64 - before as i64)?;
        Ok(())
    }
}
