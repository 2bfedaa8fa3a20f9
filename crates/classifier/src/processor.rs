//! The classifier processor: a profile and a stage per customer, a stage
//! change out per transition, identity merges folded in.

use std::collections::HashMap;
use std::sync::Arc;

use journey_core::config::TopicsConfig;
use journey_core::contract::{
    Channel, ErrorKind, IdentityMerge, SessionSummary, Stage, StageChange,
};
use journey_core::erasure::{self, ErasureTopics};
use journey_core::ids;
use journey_core::runtime::{Context, InputRecord, ProcessError, Processor, Rejection};
use journey_core::state::Clock;
use prometheus::Registry;
use serde::{Deserialize, Serialize};

use crate::instances::LocalPartitions;
use crate::metrics::ClassifierMetrics;
use crate::profile::{Contribution, Profile};
use crate::rules::{Rules, Signal};
use crate::stats::{Stats, STATS_KEY};

/// Rule name of stage changes caused by an identity merge.
pub const MERGE_RULE: &str = "identity_merge";

/// The topics the classifier reads and writes.
#[derive(Debug, Clone)]
pub struct ClassifierTopics {
    /// Validated events keyed by customer.
    pub events: String,
    /// Closed sessions keyed by customer.
    pub sessions: String,
    /// Identity merges keyed by anonymous id.
    pub identities: String,
    /// The classifier's own input: anonymous profiles keyed by the customer they merge into.
    pub repartition: String,
    /// Where stage changes go.
    pub stage_changes: String,
    /// Erasure tasks (input) and steps (output).
    pub erasure: ErasureTopics,
}

impl ClassifierTopics {
    /// The pipeline's `topics` and the internal topics of consumer group `group_id`.
    pub fn new(topics: &TopicsConfig, group_id: &str) -> Self {
        ClassifierTopics {
            events: topics.events.clone(),
            sessions: topics.sessions.clone(),
            identities: topics.identities.clone(),
            repartition: format!("{group_id}-merge-repartition"),
            stage_changes: topics.stage_changes.clone(),
            erasure: ErasureTopics::new(topics),
        }
    }
}

/// An anonymous profile on its way to the customer's partition.
#[derive(Debug, Serialize, Deserialize)]
struct Forwarded {
    merge_id: String,
    anonymous_id: String,
    merged_at: i64,
    profile: Profile,
}

/// Keeps each customer's profile and stage, emitting a record per transition.
pub struct Classifier {
    rules: Arc<Rules>,
    topics: ClassifierTopics,
    metrics: ClassifierMetrics,
    /// Counts of the partitions this instance owns, as in state.
    stats: HashMap<i32, Stats>,
    local: LocalPartitions,
}

/// A stage a profile moves to, why, and on what evidence.
struct Move<'a> {
    to: Stage,
    rule: &'a str,
    evidence: &'a str,
    at: i64,
}

impl Classifier {
    /// A classifier applying `rules`, telling `local` which partitions it owns.
    pub fn new(
        rules: Arc<Rules>,
        topics: ClassifierTopics,
        local: LocalPartitions,
        registry: &Registry,
    ) -> Self {
        Classifier {
            rules,
            topics,
            metrics: ClassifierMetrics::new(registry),
            stats: HashMap::new(),
            local,
        }
    }

    fn on_event(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let (event, customer) = ctx.customer_event(record)?;
        let stored: Option<Profile> = ctx.state().get(customer.as_bytes())?;
        let before = stored.as_ref().map(Profile::contribution);
        let mut profile = stored.unwrap_or_else(|| Profile::new(event.occurred_at, event.channel));
        let rules = Arc::clone(&self.rules);
        profile.observe(&event, &rules.feedback, rules.order_history);
        if let Some(rule) = rules.evaluate(&profile, Signal::Event(&event), event.occurred_at) {
            let to = Move {
                to: rule.to,
                rule: &rule.name,
                evidence: &event.event_id,
                at: event.occurred_at,
            };
            self.change(ctx, &customer, &mut profile, to)?;
        }
        self.save(ctx, &customer, before, profile, i64::MIN)
    }

    fn on_session(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let session: SessionSummary = ctx.codec().decode(record.payload.unwrap_or_default())?;
        if session.interim {
            // An early update of a session still open: its final summary follows.
            return Ok(());
        }
        if session.customer_id.is_empty() {
            return Err(Rejection::semantic("customer_id", "session has no customer").into());
        }
        let customer = session.customer_id.as_str();
        let stored: Option<Profile> = ctx.state().get(customer.as_bytes())?;
        let before = stored.as_ref().map(Profile::contribution);
        let mut profile = stored.unwrap_or_else(|| {
            let channel = crate::profile::CHANNELS
                .into_iter()
                .find(|c| c.as_str() == session.entry_channel)
                .unwrap_or(Channel::Other);
            Profile::new(session.start, channel)
        });
        profile.observe_session(&session);
        let rules = Arc::clone(&self.rules);
        if let Some(rule) = rules.evaluate(&profile, Signal::Session(&session), session.end) {
            let to = Move {
                to: rule.to,
                rule: &rule.name,
                evidence: &session.session_id,
                at: session.end,
            };
            self.change(ctx, customer, &mut profile, to)?;
        }
        self.save(ctx, customer, before, profile, i64::MIN)
    }

    /// On the anonymous id's partition: takes the visitor's profile out and
    /// forwards it to the customer's partition.
    fn on_identity(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let merge: IdentityMerge = ctx.codec().decode(record.payload.unwrap_or_default())?;
        if merge.anonymous_id.is_empty() || merge.customer_id.is_empty() {
            return Err(Rejection::semantic("anonymous_id", "merge without both ids").into());
        }
        if merge.anonymous_id == merge.customer_id {
            return Ok(());
        }
        let key = merge.anonymous_id.as_bytes();
        // Already forwarded (or never seen): nothing to move.
        let Some(profile) = ctx.state().get::<Profile>(key)? else {
            return Ok(());
        };
        ctx.state().delete(key);
        if let Some(at) = profile.timer_at {
            ctx.cancel_timer(Clock::Wall, at, key);
        }
        self.account(ctx, Some(profile.contribution()), None)?;
        let forwarded = Forwarded {
            merge_id: merge.merge_id,
            anonymous_id: merge.anonymous_id,
            merged_at: merge.merged_at,
            profile,
        };
        let payload = serde_json::to_vec(&forwarded).map_err(|e| ProcessError::Fatal(e.into()))?;
        ctx.emit_raw(
            &self.topics.repartition,
            merge.customer_id.as_bytes(),
            &payload,
            record.timestamp,
        );
        Ok(())
    }

    /// On the customer's partition: folds a forwarded visitor profile in.
    fn on_forwarded(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let forwarded: Forwarded = serde_json::from_slice(record.payload.unwrap_or_default())
            .map_err(|e| Rejection {
                kind: ErrorKind::SchemaViolation,
                message: format!("forwarded profile does not decode: {e}"),
                field_path: None,
            })?;
        let customer = match record.key.map(std::str::from_utf8) {
            Some(Ok(key)) if !key.is_empty() => key.to_string(),
            _ => {
                return Err(Rejection::semantic(
                    "customer_id",
                    "forwarded profile without a customer key",
                )
                .into())
            }
        };
        let stored: Option<Profile> = ctx.state().get(customer.as_bytes())?;
        let Forwarded {
            merge_id,
            anonymous_id,
            merged_at,
            profile: anonymous,
        } = forwarded;
        if stored
            .as_ref()
            .is_some_and(|p| p.merged.contains(&anonymous_id))
        {
            // A repeat: the visitor's side re-sent it after a crash.
            return Ok(());
        }
        let before = stored.as_ref().map(Profile::contribution);
        let order_history = self.rules.order_history;
        let (mut profile, stage) = match stored {
            Some(mut own) => {
                let stage = own.absorb(anonymous, &anonymous_id, order_history);
                (own, stage)
            }
            None => {
                let mut own = Profile::new(anonymous.first_seen, anonymous.entry_channel);
                let stage = own.absorb(anonymous, &anonymous_id, order_history);
                own.stage_since = merged_at;
                (own, stage)
            }
        };
        if let Some(to) = stage.filter(|s| Some(*s) != profile.stage) {
            let to = Move {
                to,
                rule: MERGE_RULE,
                evidence: &merge_id,
                at: merged_at,
            };
            self.change(ctx, &customer, &mut profile, to)?;
        }
        self.metrics.merges.inc();
        self.save(ctx, &customer, before, profile, i64::MIN)
    }

    /// Deletes the profile of an erased id (with the anonymous ids merged
    /// into it) and its timer; no stage change is emitted.
    fn erase(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let task = erasure::task(ctx, record)?;
        let key = task.subject.as_bytes();
        if let Some(profile) = ctx.state().get::<Profile>(key)? {
            ctx.state().delete(key);
            self.account(ctx, Some(profile.contribution()), None)?;
        }
        ctx.cancel_timers(key)?;
        self.metrics.erased.inc();
        erasure::report_erased(ctx, &self.topics.erasure, crate::NAME, &task)
    }

    /// Emits the stage change of `customer` to `to` and moves the profile there.
    fn change(
        &mut self,
        ctx: &mut Context<'_>,
        customer: &str,
        profile: &mut Profile,
        to: Move<'_>,
    ) -> Result<(), ProcessError> {
        let from = profile.stage;
        let change = StageChange {
            change_id: ids::derive(&[
                customer.as_bytes(),
                from.map_or("NONE", Stage::as_str).as_bytes(),
                to.to.as_str().as_bytes(),
                to.evidence.as_bytes(),
            ]),
            customer_id: customer.to_string(),
            from_stage: from,
            to_stage: to.to,
            rule: to.rule.to_string(),
            evidence_id: to.evidence.to_string(),
            changed_at: to.at,
        };
        ctx.emit(&self.topics.stage_changes, customer, &change, to.at)?;
        self.metrics.transition(from, to.to);
        profile.enter(to.to, to.at);
        Ok(())
    }

    /// Arms the customer's next timer (not earlier than `after`), updates the
    /// partition's counts and writes the profile.
    fn save(
        &mut self,
        ctx: &mut Context<'_>,
        customer: &str,
        before: Option<Contribution>,
        mut profile: Profile,
        after: i64,
    ) -> Result<(), ProcessError> {
        let key = customer.as_bytes();
        // A later deadline than the armed one waits for that timer to fire
        // and re-arm: activity costs no timer write.
        if let Some(deadline) = self.rules.next_deadline(&profile, after) {
            if profile.timer_at.is_none_or(|armed| deadline < armed) {
                if let Some(armed) = profile.timer_at {
                    ctx.cancel_timer(Clock::Wall, armed, key);
                }
                ctx.set_timer(Clock::Wall, deadline, key);
                profile.timer_at = Some(deadline);
            }
        }
        self.account(ctx, before, Some(profile.contribution()))?;
        ctx.state().put(key, &profile);
        Ok(())
    }

    /// Moves one profile's contribution in the partition's counts and the gauges.
    fn account(
        &mut self,
        ctx: &mut Context<'_>,
        before: Option<Contribution>,
        after: Option<Contribution>,
    ) -> Result<(), ProcessError> {
        if before == after {
            return Ok(());
        }
        let mut delta = Stats::default();
        if let Some(before) = &before {
            delta.apply(before, -1);
        }
        if let Some(after) = &after {
            delta.apply(after, 1);
        }
        self.load_stats(ctx)?;
        let stats = self.stats.get_mut(&ctx.partition()).expect("loaded above");
        stats.add(&delta);
        ctx.state().put(STATS_KEY, &*stats);
        self.metrics.add(&delta, 1);
        Ok(())
    }

    /// Loads the counts of the context's partition into memory and the gauges, once.
    fn load_stats(&mut self, ctx: &mut Context<'_>) -> Result<(), ProcessError> {
        let partition = ctx.partition();
        if !self.stats.contains_key(&partition) {
            let stats: Stats = ctx.state().get(STATS_KEY)?.unwrap_or_default();
            self.metrics.add(&stats, 1);
            self.stats.insert(partition, stats);
        }
        Ok(())
    }
}

impl Processor for Classifier {
    fn process(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let topic = record.topic;
        if topic == self.topics.events {
            self.on_event(record, ctx)
        } else if topic == self.topics.sessions {
            self.on_session(record, ctx)
        } else if topic == self.topics.identities {
            self.on_identity(record, ctx)
        } else if topic == self.topics.repartition {
            self.on_forwarded(record, ctx)
        } else if topic == self.topics.erasure.tasks {
            self.erase(record, ctx)
        } else {
            Err(ProcessError::Fatal(anyhow::anyhow!(
                "record from unexpected topic {topic}"
            )))
        }
    }

    fn on_timer(
        &mut self,
        clock: Clock,
        at: i64,
        key: &[u8],
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        if clock != Clock::Wall {
            return Ok(());
        }
        let Some(mut profile) = ctx.state().get::<Profile>(key)? else {
            return Ok(());
        };
        if profile.timer_at != Some(at) {
            return Ok(());
        }
        let customer = String::from_utf8_lossy(key).into_owned();
        let before = Some(profile.contribution());
        profile.timer_at = None;
        let rules = Arc::clone(&self.rules);
        if let Some(rule) = rules.evaluate(&profile, Signal::Timer, at) {
            let evidence = format!("{}@{at}", rule.name);
            let to = Move {
                to: rule.to,
                rule: &rule.name,
                evidence: &evidence,
                at,
            };
            self.change(ctx, &customer, &mut profile, to)?;
        }
        self.save(ctx, &customer, before, profile, at)
    }

    fn on_assigned(&mut self, partition: i32, ctx: &mut Context<'_>) -> Result<(), ProcessError> {
        self.load_stats(ctx)?;
        self.local.claim(partition, ctx.state_reader());
        Ok(())
    }

    fn on_revoked(&mut self, partition: i32) {
        if let Some(stats) = self.stats.remove(&partition) {
            self.metrics.add(&stats, -1);
        }
        self.local.release(partition);
    }
}

#[cfg(test)]
mod tests;
