//! Identity folds: when ingest links an anonymous visitor to a customer, the
//! visitor's profile (on the anonymous id's partition) moves to the
//! customer's partition and is folded into the customer's profile there.
//!
//! The anonymous partition takes the profile out of state (with its timer)
//! and sends it over the classifier's own repartition topic keyed by the
//! customer id. A crash after it was sent but before the anonymous partition
//! committed sends it again: the customer's profile keeps the ids merged into
//! it and ignores a repeat.
//!
//! Events and identity merges come on different topics, so an anonymous event
//! sent before the merge may be read after it. The anonymous partition
//! remembers where each folded id went (for an hour) and forwards
//! such an event to the customer, instead of opening a profile under the
//! anonymous id that no merge would ever move (an event overtaken by its
//! merge comes from the same producer moments earlier). The customer's
//! partition remembers the forwarded events it applied for as long, so a
//! repeat counts once.

use journey_core::contract::CustomerEvent;
use journey_core::ids;
use journey_core::runtime::{
    folded_customer, Context, FoldedIds, FoldedInto, InputRecord, ProcessError, RecentIds,
    Rejection, REPEAT_MEMORY_MS,
};
use journey_core::state::Clock;
use serde::{Deserialize, Serialize};

use super::{Classifier, Move, MARK, MERGE_RULE};
use crate::profile::Profile;

/// Where folded anonymous ids went, on their partitions.
pub(super) const FOLDED: FoldedIds = FoldedIds::new(&[MARK, b'a'], REPEAT_MEMORY_MS);

/// Forwarded events applied on the customer's side, by fold id.
pub(super) const FORWARDED: RecentIds = RecentIds::new(&[MARK, b'f'], REPEAT_MEMORY_MS);

/// What the visitor's partition sends the customer's (JSON, keyed by the
/// customer id).
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Forwarded {
    /// The visitor's profile, taken out at the merge.
    Profile {
        merge_id: String,
        anonymous_id: String,
        merged_at: i64,
        profile: Profile,
    },
    /// An event of the visitor read after the merge; its fold id derives
    /// from the merge and the event.
    Event {
        fold_id: String,
        event: Box<CustomerEvent>,
    },
}

impl Classifier {
    /// On the anonymous id's partition: remembers where the id went and sends
    /// the visitor's profile to the customer.
    pub(super) fn on_identity(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let Some(merge) = FOLDED.on_merge(ctx, record)? else {
            return Ok(());
        };
        let key = merge.anonymous_id.as_bytes();
        // Already forwarded (or never seen): nothing to move.
        let Some(profile) = ctx.state().get::<Profile>(key)? else {
            return Ok(());
        };
        self.remove(ctx, key, &profile)?;
        if let Some(at) = profile.timer_at {
            ctx.cancel_timer(Clock::Wall, at, key);
        }
        let forwarded = Forwarded::Profile {
            merge_id: merge.merge_id,
            anonymous_id: merge.anonymous_id,
            merged_at: merge.merged_at,
            profile,
        };
        send(
            ctx,
            &self.topics.repartition,
            &merge.customer_id,
            &forwarded,
            record.timestamp,
        )
    }

    /// On the anonymous id's partition: sends `event`, of a visitor read
    /// after the visitor was folded, to the customer.
    pub(super) fn forward(
        &mut self,
        ctx: &mut Context<'_>,
        event: CustomerEvent,
        folded: FoldedInto,
        timestamp: i64,
    ) -> Result<(), ProcessError> {
        let forwarded = Forwarded::Event {
            fold_id: ids::derive(&[folded.merge_id.as_bytes(), event.event_id.as_bytes()]),
            event: Box::new(event),
        };
        let customer = &folded.customer_id;
        send(
            ctx,
            &self.topics.repartition,
            customer,
            &forwarded,
            timestamp,
        )?;
        self.metrics.forwarded.inc();
        Ok(())
    }

    /// On the customer's partition: folds a forwarded visitor profile or
    /// event in.
    pub(super) fn on_forwarded(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let forwarded: Forwarded = serde_json::from_slice(record.payload.unwrap_or_default())
            .map_err(|e| {
                Rejection::undecodable(format!("forwarded profile or event does not decode: {e}"))
            })?;
        let customer = folded_customer(record, "forwarded record")?;
        match forwarded {
            Forwarded::Profile {
                merge_id,
                anonymous_id,
                merged_at,
                profile,
            } => self.absorb(ctx, &customer, &merge_id, &anonymous_id, merged_at, profile),
            Forwarded::Event { fold_id, event } => {
                if !FORWARDED.first_sighting(ctx, &[fold_id.as_bytes()])? {
                    // A repeat: the visitor's side re-sent it after a crash.
                    self.metrics.repeats.inc();
                    return Ok(());
                }
                let stored = ctx.state().get(customer.as_bytes())?;
                self.observe_event(ctx, &customer, &event, stored, false)
            }
        }
    }

    /// Folds the visitor profile `anonymous` into `customer`'s, once.
    fn absorb(
        &mut self,
        ctx: &mut Context<'_>,
        customer: &str,
        merge_id: &str,
        anonymous_id: &str,
        merged_at: i64,
        anonymous: Profile,
    ) -> Result<(), ProcessError> {
        let stored: Option<Profile> = ctx.state().get(customer.as_bytes())?;
        if stored
            .as_ref()
            .is_some_and(|p| p.merged.iter().any(|id| id == anonymous_id))
        {
            // A repeat: the visitor's side re-sent it after a crash.
            return Ok(());
        }
        let before = stored.as_ref().map(Profile::contribution);
        let order_history = self.rules.order_history;
        let (mut profile, stage) = match stored {
            Some(mut own) => {
                let stage = own.absorb(anonymous, anonymous_id, order_history);
                (own, stage)
            }
            None => {
                let mut own = Profile::new(anonymous.first_seen, anonymous.entry_channel);
                let stage = own.absorb(anonymous, anonymous_id, order_history);
                own.stage_since = merged_at;
                (own, stage)
            }
        };
        if let Some(to) = stage.filter(|s| Some(*s) != profile.stage) {
            let to = Move {
                to,
                rule: MERGE_RULE,
                evidence: merge_id,
                at: merged_at,
            };
            self.change(ctx, customer, &mut profile, to)?;
        }
        self.metrics.merges.inc();
        self.save(ctx, customer, before, profile, i64::MIN, false)
    }
}

/// Emits `forwarded` on the repartition `topic`, keyed by `customer`.
fn send(
    ctx: &mut Context<'_>,
    topic: &str,
    customer: &str,
    forwarded: &Forwarded,
    timestamp: i64,
) -> Result<(), ProcessError> {
    let payload = serde_json::to_vec(forwarded).map_err(|e| ProcessError::Fatal(e.into()))?;
    ctx.emit_raw(topic, customer.as_bytes(), &payload, timestamp);
    Ok(())
}
