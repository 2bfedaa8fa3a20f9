//! The alerting processor: routes each input to the rules, keeps customer
//! context and rule state per partition, and hands drafts to the lifecycle.

use journey_core::config::TopicsConfig;
use journey_core::contract::{CustomerEvent, EventType, SessionSummary, StageChange};
use journey_core::erasure::{self, ErasureTopics};
use journey_core::runtime::{
    now_millis, Context, InputRecord, KeyFilter, ProcessError, Processor, RecentIds,
    REPEAT_MEMORY_MS,
};
use journey_core::state::Clock;
use prometheus::IntCounter;

use crate::customer::CustomerContext;
use crate::fold::{FOLDED, FOLDED_PREFIX, FOLDS};
use crate::lifecycle::{Lifecycle, EXPIRY_TIMER};
use crate::retention::{customer_key, ContextRetention};
use crate::rules::cart::{CartEvent, OpenCart};
use crate::rules::detractor::{detractor_feedback, is_detractor};
use crate::rules::funnel::{converted, drop_draft, drop_subject, FunnelWindows};
use crate::rules::window::{threshold_draft, threshold_verdict, window_start, WindowCount};
use crate::rules::{self, churn, Verdict};
use crate::ruleset::{RuleSet, ThresholdRule};

/// The topics alerting reads and writes.
#[derive(Debug, Clone)]
pub struct Topics {
    pub events: String,
    pub sessions: String,
    pub stage_changes: String,
    pub dead_letters: String,
    /// Identity merges keyed by anonymous id.
    pub identities: String,
    /// Alerting's own input: what is kept of visitors, keyed by the customer
    /// they were folded into.
    pub folds: String,
    pub alerts: String,
    /// Erasure tasks (input) and steps (output).
    pub erasure: ErasureTopics,
}

impl Topics {
    /// The pipeline's `topics` and the internal topic of consumer group `group_id`.
    pub fn new(topics: &TopicsConfig, group_id: &str) -> Self {
        Topics {
            events: topics.events.clone(),
            sessions: topics.sessions.clone(),
            stage_changes: topics.stage_changes.clone(),
            dead_letters: topics.dead_letters.clone(),
            identities: topics.identities.clone(),
            folds: format!("{group_id}-merge-repartition"),
            alerts: topics.alerts.clone(),
            erasure: ErasureTopics::new(topics),
        }
    }
}

/// The processor's counters beside the lifecycle's.
pub struct Counters {
    /// Ids whose state was erased.
    pub erased: IntCounter,
    /// Purchases, complaints and folds re-sent by an upstream service (or
    /// alerting itself) after a crash, not applied twice.
    pub repeats: IntCounter,
    /// Visitors' carts and purchases sent to the customer they were folded into.
    pub folds_sent: IntCounter,
    /// Visitors' carts and purchases folded into a customer's.
    pub folds_applied: IntCounter,
    /// Visitors' events read after their id was folded, sent on to the customer.
    pub forwarded: IntCounter,
}

/// Prefix of cart timers and state, followed by the customer key.
const CART: &[u8] = b"cart/";
/// Prefix of the time of a customer's latest purchase, followed by the
/// customer key. A cart opened by an event that happened before it but
/// arrived after it (out of order, or re-sent by a crashed upstream) comes due
/// without an alert, which would otherwise be for a customer who bought. Kept
/// like the customer's context, one small key per buying customer.
const BOUGHT: &[u8] = b"bought/";
/// Prefix of window timers and state, followed by `<rule>/<scope>`.
const WINDOW: &[u8] = b"window/";
/// Orders added to lifetime values, by customer and order id: one re-sent
/// by an upstream service after a crash is not added again.
const ORDERS: RecentIds = RecentIds::new(b"order/", REPEAT_MEMORY_MS);
/// Complaints counted towards a surge, by event id: one re-sent by an
/// upstream service after a crash is not counted again.
const COMPLAINTS: RecentIds = RecentIds::new(b"complaint/", REPEAT_MEMORY_MS);

pub(crate) fn cart_key(customer: &str) -> Vec<u8> {
    [CART, customer.as_bytes()].concat()
}

pub(crate) fn bought_key(customer: &str) -> Vec<u8> {
    [BOUGHT, customer.as_bytes()].concat()
}

fn window_key(rule: &str, scope: &str) -> Vec<u8> {
    [WINDOW, rule.as_bytes(), b"/", scope.as_bytes()].concat()
}

fn millis(d: std::time::Duration) -> i64 {
    d.as_millis() as i64
}

/// Evaluates the rules over events, sessions, stage changes and dead letters.
pub struct Alerting {
    rules: RuleSet,
    pub(crate) topics: Topics,
    lifecycle: Lifecycle,
    /// The customers whose latest purchase may be in state: most are not,
    /// and a read of an absent key probes every level of RocksDB.
    pub(crate) bought: KeyFilter,
    /// The anonymous ids that may have been folded within the hour: most
    /// visitors' events need no read to know they were not.
    pub(crate) folded: KeyFilter,
    retention: ContextRetention,
    pub(crate) counters: Counters,
}

impl Alerting {
    /// A processor evaluating `rules` over `topics`, raising alerts through
    /// `lifecycle`, forgetting quiet contexts by `retention`, counting in
    /// `counters`.
    pub fn new(
        rules: RuleSet,
        topics: Topics,
        lifecycle: Lifecycle,
        retention: ContextRetention,
        counters: Counters,
    ) -> Self {
        Alerting {
            rules,
            topics,
            lifecycle,
            bought: KeyFilter::new(BOUGHT),
            folded: KeyFilter::new(FOLDED_PREFIX),
            retention,
            counters,
        }
    }

    /// Forgets an erased id: what is known of the customer, an open cart,
    /// and its alerts (resolved first if firing) with their timers.
    fn erase(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let task = erasure::task(ctx, record)?;
        let customer = task.subject.as_str();
        ctx.state().delete(&customer_key(customer));
        let cart = cart_key(customer);
        ctx.state().delete(&cart);
        ctx.cancel_timers(&cart)?;
        ctx.state().delete(&bought_key(customer));
        FOLDED.erase(ctx, customer)?;
        let now = now_millis();
        for rule in rules::PER_CUSTOMER {
            self.lifecycle.erase(ctx, rule, customer, now)?;
        }
        self.counters.erased.inc();
        erasure::report_erased(ctx, &self.topics.erasure, crate::NAME, &task)
    }

    fn on_event(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let (event, customer) = ctx.customer_event(record)?;
        if event.customer_id.is_none() {
            if let Some(folded) = self.folded_into(ctx, &customer)? {
                return self.forward(ctx, event, folded, record.timestamp);
            }
        }
        self.observe_event(ctx, &event, &customer, record.timestamp)
    }

    /// Applies `customer`'s `event`, read at `timestamp`, to the rules.
    pub(crate) fn observe_event(
        &mut self,
        ctx: &mut Context<'_>,
        event: &CustomerEvent,
        customer: &str,
        timestamp: i64,
    ) -> Result<(), ProcessError> {
        let key = customer_key(customer);
        // Most events (browsing, carts) neither change what is known of the
        // customer nor raise an alert that shows it: it is read only for those
        // that do. Purchases are the only events that change it.
        if let Some(order) = event.purchase() {
            let id: [&[u8]; 2] = [customer.as_bytes(), order.order_id.as_bytes()];
            if !ORDERS.first_sighting(ctx, &id)? {
                self.counters.repeats.inc();
                return Ok(());
            }
            let mut known: CustomerContext = ctx.state().get(&key)?.unwrap_or_default();
            known.observe_purchase(order);
            ctx.state().put(&key, &known);
        }
        let rules = &self.rules;
        let mut complaint = event.event_type == EventType::SupportContact;
        if let Some(feedback) = &event.feedback {
            let detractor = is_detractor(feedback, &rules.detractor_feedback);
            complaint |= detractor;
            if rules.detractor_feedback.enabled {
                let known: CustomerContext = ctx.state().get(&key)?.unwrap_or_default();
                if let Some(draft) =
                    detractor_feedback(event, customer, &known, &rules.detractor_feedback)
                {
                    let cooldown = millis(rules.detractor_feedback.cooldown);
                    self.lifecycle.fire(ctx, draft, Some(cooldown))?;
                } else if !detractor {
                    self.lifecycle.resolve(
                        ctx,
                        rules::DETRACTOR_FEEDBACK,
                        customer,
                        event.occurred_at,
                        "later feedback was not a detractor's",
                    )?;
                }
            }
        }
        if complaint && self.rules.complaint_surge.enabled {
            if COMPLAINTS.first_sighting(ctx, &[event.event_id.as_bytes()])? {
                self.count(ctx, rules::COMPLAINT_SURGE, timestamp)?;
            } else {
                self.counters.repeats.inc();
            }
        }
        if self.rules.cart_abandonment.enabled {
            self.track_cart(ctx, event, customer)?;
        }
        Ok(())
    }

    fn track_cart(
        &mut self,
        ctx: &mut Context<'_>,
        event: &CustomerEvent,
        customer: &str,
    ) -> Result<(), ProcessError> {
        let key = cart_key(customer);
        match CartEvent::of(event) {
            CartEvent::Touch => {
                let cart = match ctx.state().get::<OpenCart>(&key)? {
                    Some(mut cart) => {
                        cart.touch(event);
                        cart
                    }
                    None => {
                        let cart = OpenCart::open(event, &self.rules.cart_abandonment);
                        ctx.set_timer(Clock::Wall, cart.deadline, &key);
                        cart
                    }
                };
                ctx.state().put(&key, &cart);
            }
            CartEvent::Purchase => {
                if let Some(cart) = ctx.state().get::<OpenCart>(&key)? {
                    ctx.cancel_timer(Clock::Wall, cart.deadline, &key);
                    ctx.cancel_timer(Clock::Event, cart.deadline, &key);
                    ctx.state().delete(&key);
                }
                self.remember_purchase(ctx, customer, event.occurred_at)?;
                self.lifecycle.resolve(
                    ctx,
                    rules::CART_ABANDONMENT,
                    customer,
                    event.occurred_at,
                    "the customer bought",
                )?;
            }
            CartEvent::Other => {}
        }
        Ok(())
    }

    /// Forgets what is kept in memory of `partition` (see
    /// [`Lifecycle::forget_partition`]).
    fn forget_partition(&mut self, partition: i32) {
        self.bought.forget(partition);
        self.folded.forget(partition);
        self.report_filter_bytes();
        self.lifecycle.forget_partition(partition);
    }

    /// Reports the memory of the purchase and fold filters.
    pub(crate) fn report_filter_bytes(&mut self) {
        let bytes = self.bought.bytes() + self.folded.bytes();
        self.lifecycle.report_other_filter_bytes(bytes);
    }

    /// Keeps the time of `customer`'s latest purchase, now one at `at`.
    pub(crate) fn remember_purchase(
        &mut self,
        ctx: &mut Context<'_>,
        customer: &str,
        at: i64,
    ) -> Result<(), ProcessError> {
        if self.bought_since(ctx, customer, at)? {
            return Ok(());
        }
        ctx.state().put(&bought_key(customer), &at);
        self.bought.insert(ctx, customer.as_bytes())?;
        self.report_filter_bytes();
        Ok(())
    }

    /// Whether `customer`'s latest purchase is at or after `at`. Most
    /// customers have none remembered, and their filter spares the read.
    pub(crate) fn bought_since(
        &mut self,
        ctx: &mut Context<'_>,
        customer: &str,
        at: i64,
    ) -> Result<bool, ProcessError> {
        if !self.bought.may_hold(ctx, customer.as_bytes())? {
            return Ok(false);
        }
        let bought = ctx.state().get::<i64>(&bought_key(customer))?;
        Ok(bought.is_some_and(|latest| at <= latest))
    }

    fn on_cart_due(
        &mut self,
        ctx: &mut Context<'_>,
        at: i64,
        key: &[u8],
    ) -> Result<(), ProcessError> {
        let Some(cart) = ctx.state().get::<OpenCart>(key)? else {
            return Ok(());
        };
        if cart.deadline != at {
            return Ok(());
        }
        if !cart.due(ctx.stream_time()) {
            // Behind on this partition: a purchase may still be in the backlog.
            ctx.set_timer(Clock::Event, at, key);
            return Ok(());
        }
        ctx.state().delete(key);
        let customer = String::from_utf8_lossy(&key[CART.len()..]).into_owned();
        // A purchase processed before a cart event that happened earlier: the
        // customer bought after opening the cart.
        if self.bought_since(ctx, &customer, cart.opened_at)? {
            return Ok(());
        }
        let known: CustomerContext = ctx
            .state()
            .get(&customer_key(&customer))?
            .unwrap_or_default();
        let rule = &self.rules.cart_abandonment;
        let draft = cart.draft(&customer, &known, rule);
        let cooldown = millis(rule.cooldown);
        self.lifecycle.fire(ctx, draft, Some(cooldown))?;
        Ok(())
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
        let key = customer_key(&session.customer_id);
        let mut known: CustomerContext = ctx.state().get(&key)?.unwrap_or_default();
        known.observe_session(&session);
        ctx.state().put(&key, &known);
        let rule = &self.rules.funnel_conversion_drop;
        if !rule.enabled {
            return Ok(());
        }
        let window = millis(rule.window);
        let at = record.timestamp;
        let key = window_key(rules::FUNNEL_CONVERSION_DROP, &session.entry_channel);
        let stored = ctx.state().get::<FunnelWindows>(&key)?;
        // The timer of a stored window is armed at its end.
        let armed = stored.as_ref().map(|windows| windows.start + window);
        let mut windows = stored.unwrap_or_else(|| FunnelWindows::new(window_start(at, window)));
        if let Some(end) = armed.filter(|end| at >= *end) {
            ctx.cancel_timer(Clock::Event, end, &key);
        }
        while at >= windows.start + window {
            self.close_funnel_window(ctx, &session.entry_channel, &mut windows)?;
            if windows.is_empty() {
                windows.start = window_start(at, window);
            }
        }
        windows.record(converted(&session));
        if armed != Some(windows.start + window) {
            ctx.set_timer(Clock::Event, windows.start + window, &key);
        }
        ctx.state().put(&key, &windows);
        Ok(())
    }

    fn close_funnel_window(
        &mut self,
        ctx: &mut Context<'_>,
        channel: &str,
        windows: &mut FunnelWindows,
    ) -> Result<(), ProcessError> {
        let rule = &self.rules.funnel_conversion_drop;
        let end = windows.start + millis(rule.window);
        let (verdict, current, baseline) = windows.close(rule);
        let partition = ctx.partition();
        let resolution = match verdict {
            Verdict::Fire => {
                let draft = drop_draft(rule, partition, channel, end, current, baseline);
                self.lifecycle.fire(ctx, draft, None)?;
                None
            }
            Verdict::Clear => Some("conversion back above the threshold"),
            // No session for the whole baseline: the channel's windows are
            // dropped, and nothing else would ever clear its alert.
            Verdict::Quiet if windows.is_empty() => {
                Some("no sessions on the channel for the whole baseline")
            }
            Verdict::Quiet => None,
        };
        if let Some(reason) = resolution {
            let subject = drop_subject(partition, channel);
            self.lifecycle
                .resolve(ctx, rules::FUNNEL_CONVERSION_DROP, &subject, end, reason)?;
        }
        Ok(())
    }

    fn on_funnel_due(
        &mut self,
        ctx: &mut Context<'_>,
        at: i64,
        key: &[u8],
        channel: &str,
    ) -> Result<(), ProcessError> {
        let Some(mut windows) = ctx.state().get::<FunnelWindows>(key)? else {
            return Ok(());
        };
        let window = millis(self.rules.funnel_conversion_drop.window);
        if windows.start + window != at {
            return Ok(());
        }
        self.close_funnel_window(ctx, channel, &mut windows)?;
        if windows.is_empty() {
            ctx.state().delete(key);
        } else {
            ctx.set_timer(Clock::Event, windows.start + window, key);
            ctx.state().put(key, &windows);
        }
        Ok(())
    }

    fn threshold_rule(&self, name: &str) -> &ThresholdRule {
        if name == rules::COMPLAINT_SURGE {
            &self.rules.complaint_surge
        } else {
            &self.rules.dead_letter_rate
        }
    }

    /// Counts one record at `at` in the open window of threshold rule `name`.
    fn count(
        &mut self,
        ctx: &mut Context<'_>,
        name: &'static str,
        at: i64,
    ) -> Result<(), ProcessError> {
        let window = millis(self.threshold_rule(name).window);
        let key = window_key(name, "");
        let stored = ctx.state().get::<WindowCount>(&key)?;
        // The timer of a stored window is armed at its end.
        let armed = stored.as_ref().map(|open| open.end(window));
        let mut open = stored.unwrap_or_else(|| WindowCount::holding(at, window));
        if at >= open.end(window) {
            ctx.cancel_timer(Clock::Event, open.end(window), &key);
            self.close_threshold_window(ctx, name, &open)?;
            open = WindowCount::holding(at, window);
        }
        open.count += 1;
        if armed != Some(open.end(window)) {
            ctx.set_timer(Clock::Event, open.end(window), &key);
        }
        ctx.state().put(&key, &open);
        Ok(())
    }

    /// Judges a closed window; returns whether the rule's alert fires.
    fn close_threshold_window(
        &mut self,
        ctx: &mut Context<'_>,
        name: &'static str,
        closed: &WindowCount,
    ) -> Result<bool, ProcessError> {
        let rule = self.threshold_rule(name);
        let partition = ctx.partition();
        let what = if name == rules::COMPLAINT_SURGE {
            "complaints"
        } else {
            "dead letters"
        };
        match threshold_verdict(closed.count, rule) {
            Verdict::Fire => {
                let draft = threshold_draft(name, rule, what, partition, closed);
                self.lifecycle.fire(ctx, draft, None)?;
                Ok(true)
            }
            _ => {
                let end = closed.end(millis(rule.window));
                let subject = format!("partition {partition}");
                let reason = "back at or below the threshold";
                self.lifecycle.resolve(ctx, name, &subject, end, reason)?;
                Ok(false)
            }
        }
    }

    fn on_threshold_due(
        &mut self,
        ctx: &mut Context<'_>,
        name: &'static str,
        at: i64,
        key: &[u8],
    ) -> Result<(), ProcessError> {
        let Some(open) = ctx.state().get::<WindowCount>(key)? else {
            return Ok(());
        };
        let window = millis(self.threshold_rule(name).window);
        if open.end(window) != at {
            return Ok(());
        }
        if self.close_threshold_window(ctx, name, &open)? {
            // Keep a window open, even empty, so a quiet one resolves the alert.
            let next = WindowCount::holding(at, window);
            ctx.set_timer(Clock::Event, next.end(window), key);
            ctx.state().put(key, &next);
        } else {
            ctx.state().delete(key);
        }
        Ok(())
    }

    fn on_stage_change(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let change: StageChange = ctx.codec().decode(record.payload.unwrap_or_default())?;
        // A visitor's change read after the visitor was folded: the classifier
        // folded the visitor too, and sends the customer's own changes. Kept,
        // it would make a context with no session to date it, never forgotten.
        if self.folded_into(ctx, &change.customer_id)?.is_some() {
            return Ok(());
        }
        let key = customer_key(&change.customer_id);
        let mut known: CustomerContext = ctx.state().get(&key)?.unwrap_or_default();
        let rule = &self.rules.valued_customer_churn_risk;
        if rule.enabled {
            if let Some(draft) = churn::valued_customer_churn_risk(&change, &known, rule) {
                let cooldown = millis(rule.cooldown);
                self.lifecycle.fire(ctx, draft, Some(cooldown))?;
            } else if churn::leaves_churn_risk(&change) {
                let reason = format!("moved to {}", change.to_stage.as_str());
                self.lifecycle.resolve(
                    ctx,
                    rules::VALUED_CUSTOMER_CHURN_RISK,
                    &change.customer_id,
                    change.changed_at,
                    &reason,
                )?;
            }
        }
        known.observe_stage(&change);
        ctx.state().put(&key, &known);
        Ok(())
    }
}

impl Processor for Alerting {
    fn process(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        self.lifecycle.observe_partition(ctx)?;
        let topic = record.topic;
        if topic == self.topics.events {
            self.on_event(record, ctx)
        } else if topic == self.topics.sessions {
            self.on_session(record, ctx)
        } else if topic == self.topics.stage_changes {
            self.on_stage_change(record, ctx)
        } else if topic == self.topics.identities {
            self.on_identity(record, ctx)
        } else if topic == self.topics.folds {
            self.on_fold(record, ctx)
        } else if topic == self.topics.erasure.tasks {
            self.erase(record, ctx)
        } else if topic == self.topics.dead_letters {
            // Counted as they are: a dead letter that does not decode is still one.
            if self.rules.dead_letter_rate.enabled {
                self.count(ctx, rules::DEAD_LETTER_RATE, record.timestamp)?;
            }
            Ok(())
        } else {
            Err(anyhow::anyhow!("record from unexpected topic {topic}").into())
        }
    }

    fn on_timer(
        &mut self,
        _clock: Clock,
        at: i64,
        key: &[u8],
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        self.lifecycle.observe_partition(ctx)?;
        if key.starts_with(CART) {
            return self.on_cart_due(ctx, at, key);
        }
        if ContextRetention::owns(key) {
            return self.retention.sweep(ctx, at, key);
        }
        if FOLDED.owns(key) {
            return Ok(FOLDED.forget(ctx, key, at)?);
        }
        if let Some(ids) = [ORDERS, COMPLAINTS, FOLDS]
            .into_iter()
            .find(|ids| ids.owns(key))
        {
            ids.forget(ctx, key);
            return Ok(());
        }
        let (kind, rest) = if let Some(rest) = key.strip_prefix(EXPIRY_TIMER) {
            ("expire", rest)
        } else if let Some(rest) = key.strip_prefix(WINDOW) {
            ("window", rest)
        } else {
            return Err(anyhow::anyhow!("unknown timer {}", String::from_utf8_lossy(key)).into());
        };
        let rest = String::from_utf8_lossy(rest);
        let (rule, scope) = rest.split_once('/').unwrap_or((rest.as_ref(), ""));
        let Some(rule) = rules::ALL.into_iter().find(|r| *r == rule) else {
            return Err(anyhow::anyhow!("timer of unknown rule {rule}").into());
        };
        match (kind, rule) {
            ("expire", _) => self.lifecycle.expire(ctx, rule, scope, at),
            (_, rules::FUNNEL_CONVERSION_DROP) => self.on_funnel_due(ctx, at, key, scope),
            _ => self.on_threshold_due(ctx, rule, at, key),
        }
    }

    fn on_assigned(&mut self, partition: i32, ctx: &mut Context<'_>) -> Result<(), ProcessError> {
        self.forget_partition(partition);
        self.retention.arm(ctx);
        Ok(())
    }

    fn on_revoked(&mut self, partition: i32) {
        self.forget_partition(partition);
    }
}
