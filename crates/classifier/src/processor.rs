//! The classifier processor: a profile and a stage per customer, a stage
//! change out per transition, identity merges folded in.

use std::collections::HashMap;
use std::sync::Arc;

use journey_core::config::TopicsConfig;
use journey_core::contract::{Channel, CustomerEvent, SessionSummary, Stage, StageChange};
use journey_core::erasure::{self, ErasureTopics};
use journey_core::ids;
use journey_core::runtime::{
    Context, InputRecord, ProcessError, Processor, RecentIds, Rejection, REPEAT_MEMORY_MS,
};
use journey_core::state::Clock;
use prometheus::Registry;

use crate::instances::LocalPartitions;
use crate::metrics::ClassifierMetrics;
use crate::profile::{Contribution, Profile};
use crate::rules::{Rules, Signal, Trigger};
use crate::stats::{Stats, STATS_KEY};

/// Rule name of stage changes caused by an identity merge.
pub const MERGE_RULE: &str = "identity_merge";

/// First byte of the keys kept beside the profiles: never the first byte of
/// UTF-8 text, so never a customer id.
const MARK: u8 = 0xFF;

/// Orders applied, by customer and order id: a repeat is not counted again.
const ORDERS: RecentIds = RecentIds::new(&[MARK, b'o'], REPEAT_MEMORY_MS);

/// Closed sessions applied, by session id: a repeat is not counted again.
const SESSIONS: RecentIds = RecentIds::new(&[MARK, b's'], REPEAT_MEMORY_MS);

/// Beside an anonymous visitor's profile: the profile is forgotten once the
/// visitor has been inactive for the retention (written when its timer is
/// armed by the visitor's own events).
fn visitor_key(key: &[u8]) -> Vec<u8> {
    [&[MARK, b'v'][..], key].concat()
}

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

/// Keeps each customer's profile and stage, emitting a record per transition.
pub struct Classifier {
    rules: Arc<Rules>,
    topics: ClassifierTopics,
    metrics: ClassifierMetrics,
    /// Counts of the partitions this instance owns, as in state.
    stats: HashMap<i32, Stats>,
    local: LocalPartitions,
    /// How long an anonymous visitor's profile outlives its last activity.
    visitor_retention_ms: i64,
}

/// A stage a profile moves to, why, and on what evidence.
struct Move<'a> {
    to: Stage,
    rule: &'a str,
    evidence: &'a str,
    at: i64,
}

impl Classifier {
    /// A classifier applying `rules`, telling `local` which partitions it
    /// owns, forgetting visitors inactive for `visitor_retention_ms`.
    pub fn new(
        rules: Arc<Rules>,
        topics: ClassifierTopics,
        local: LocalPartitions,
        visitor_retention_ms: i64,
        registry: &Registry,
    ) -> Self {
        Classifier {
            rules,
            topics,
            metrics: ClassifierMetrics::new(registry),
            stats: HashMap::new(),
            local,
            visitor_retention_ms,
        }
    }

    fn on_event(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let (event, customer) = ctx.customer_event(record)?;
        let stored: Option<Profile> = ctx.state().get(customer.as_bytes())?;
        // An anonymous id with a profile was not folded since it was made.
        if stored.is_none() && event.customer_id.is_none() {
            if let Some(folded) = fold::FOLDED.get(ctx, &customer)? {
                return self.forward(ctx, event, folded, record.timestamp);
            }
        }
        let visitor = event.customer_id.is_none();
        self.observe_event(ctx, &customer, &event, stored, visitor)
    }

    /// Folds `event` into `customer`'s profile (`stored`, if any; of an
    /// anonymous `visitor`, or not) and applies the rules; a purchase of an
    /// order already applied is not.
    fn observe_event(
        &mut self,
        ctx: &mut Context<'_>,
        customer: &str,
        event: &CustomerEvent,
        stored: Option<Profile>,
        visitor: bool,
    ) -> Result<(), ProcessError> {
        if let Some(order) = event.purchase() {
            let id: [&[u8]; 2] = [customer.as_bytes(), order.order_id.as_bytes()];
            if !ORDERS.first_sighting(ctx, &id)? {
                self.metrics.repeats.inc();
                return Ok(());
            }
        }
        let before = stored.as_ref().map(Profile::contribution);
        let mut profile = stored.unwrap_or_else(|| Profile::new(event.occurred_at, event.channel));
        let rules = Arc::clone(&self.rules);
        profile.observe(event, &rules.feedback, rules.order_history);
        if let Some(rule) = rules.evaluate(&profile, Signal::Event(event), event.occurred_at) {
            let to = Move {
                to: rule.to,
                rule: &rule.name,
                evidence: &event.event_id,
                at: event.occurred_at,
            };
            self.change(ctx, customer, &mut profile, to)?;
        }
        self.save(ctx, customer, before, profile, i64::MIN, visitor)
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
        if !SESSIONS.first_sighting(ctx, &[session.session_id.as_bytes()])? {
            self.metrics.repeats.inc();
            return Ok(());
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
        self.save(ctx, customer, before, profile, i64::MIN, false)
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
            self.remove(ctx, key, &profile)?;
        }
        ctx.cancel_timers(key)?;
        fold::FOLDED.erase(ctx, &task.subject)?;
        self.metrics.erased.inc();
        erasure::report_erased(ctx, &self.topics.erasure, crate::NAME, &task)
    }

    /// Takes the profile under `key` (`profile`) out of state, with its
    /// visitor mark, and out of the partition's counts; its timer is the
    /// caller's to cancel.
    fn remove(
        &mut self,
        ctx: &mut Context<'_>,
        key: &[u8],
        profile: &Profile,
    ) -> Result<(), ProcessError> {
        ctx.state().delete(key);
        ctx.state().delete(&visitor_key(key));
        self.account(ctx, Some(profile.contribution()), None)
    }

    /// Emits the stage change of `customer` to `to` and moves the profile
    /// there; never dated before the stage it leaves was entered (a late
    /// event's move is dated when the customer entered the stage it leaves).
    fn change(
        &mut self,
        ctx: &mut Context<'_>,
        customer: &str,
        profile: &mut Profile,
        to: Move<'_>,
    ) -> Result<(), ProcessError> {
        let from = profile.stage;
        let at = match from {
            Some(_) => to.at.max(profile.stage_since),
            None => to.at,
        };
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
            changed_at: at,
        };
        ctx.emit(&self.topics.stage_changes, customer, &change, at)?;
        self.metrics.transition(from, to.to);
        profile.enter(to.to, at);
        Ok(())
    }

    /// Arms the customer's next timer (not earlier than `after`; for an
    /// anonymous `visitor`, no later than when the profile is to be
    /// forgotten), updates the partition's counts and writes the profile.
    fn save(
        &mut self,
        ctx: &mut Context<'_>,
        customer: &str,
        before: Option<Contribution>,
        mut profile: Profile,
        after: i64,
        visitor: bool,
    ) -> Result<(), ProcessError> {
        let key = customer.as_bytes();
        let forget_at = visitor
            .then(|| profile.last_seen.saturating_add(self.visitor_retention_ms))
            .filter(|at| *at > after);
        let rule_deadline = self.rules.next_deadline(&profile, after);
        // A later deadline than the armed one waits for that timer to fire
        // and re-arm: activity costs no timer write.
        if let Some(deadline) = rule_deadline.into_iter().chain(forget_at).min() {
            if profile.timer_at.is_none_or(|armed| deadline < armed) {
                if let Some(armed) = profile.timer_at {
                    ctx.cancel_timer(Clock::Wall, armed, key);
                }
                ctx.set_timer(Clock::Wall, deadline, key);
                profile.timer_at = Some(deadline);
                if visitor {
                    ctx.state().put(&visitor_key(key), &true);
                }
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
        if let Some(recent) = [ORDERS, SESSIONS, fold::FORWARDED]
            .iter()
            .find(|recent| recent.owns(key))
        {
            recent.forget(ctx, key);
            return Ok(());
        }
        if fold::FOLDED.owns(key) {
            return Ok(fold::FOLDED.forget(ctx, key, at)?);
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
        let visitor = ctx.state().get::<bool>(&visitor_key(key))?.is_some();
        let rules = Arc::clone(&self.rules);
        let rule = rules.evaluate(&profile, Signal::Timer, at);
        if rule.is_none()
            && visitor
            && profile.last_seen.saturating_add(self.visitor_retention_ms) <= at
        {
            self.remove(ctx, key, &profile)?;
            self.metrics.visitors_forgotten.inc();
            return Ok(());
        }
        if let Some(rule) = rule {
            if matches!(rule.trigger, Trigger::Detractor { .. }) {
                // The score is acted on: won back, the customer is not moved
                // again for it; a later detractor score starts its own clock.
                profile.detractor_since = None;
            }
            let evidence = format!("{}@{at}", rule.name);
            let to = Move {
                to: rule.to,
                rule: &rule.name,
                evidence: &evidence,
                at,
            };
            self.change(ctx, &customer, &mut profile, to)?;
        }
        self.save(ctx, &customer, before, profile, at, visitor)
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

mod fold;
#[cfg(test)]
mod tests;
