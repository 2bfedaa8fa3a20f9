//! Identity folds: when ingest links an anonymous visitor to a customer, what
//! alerting keeps of the visitor (on the anonymous id's partition) moves to
//! the customer's partition: an open cart, so that the customer's purchase
//! cancels it (a visitor who fills a cart, logs in and buys abandoned
//! nothing), and guest purchases, which count towards the customer's
//! lifetime value.
//!
//! The anonymous partition takes them out of state and sends them over
//! alerting's own repartition topic keyed by the customer id, the way the
//! sessionizer and the classifier move theirs. A crash after the fold was
//! sent but before the anonymous partition committed sends it again: the
//! customer's partition remembers applied folds for an hour and ignores a
//! repeat.
//!
//! Events and identity merges come on different topics, so a visitor's event
//! sent before the merge may be read after it. The anonymous partition
//! remembers where each folded id went (for an hour) and forwards such an
//! event to the customer, instead of opening a cart under the anonymous id
//! that no purchase would ever cancel.

use journey_core::contract::CustomerEvent;
use journey_core::ids;
use journey_core::runtime::{
    decode_fold, encode_fold, folded_customer, Context, FoldedIds, FoldedInto, InputRecord,
    ProcessError, RecentIds, REPEAT_MEMORY_MS,
};
use journey_core::state::Clock;
use serde::{Deserialize, Serialize};

use crate::customer::CustomerContext;
use crate::processor::{bought_key, cart_key, Alerting};
use crate::retention::customer_key;
use crate::rules::cart::OpenCart;

/// State key prefix of where folded anonymous ids went, followed by the id.
pub(crate) const FOLDED_PREFIX: &[u8] = b"folded/";

/// Where folded anonymous ids went, on their partitions.
pub(crate) const FOLDED: FoldedIds = FoldedIds::new(FOLDED_PREFIX, REPEAT_MEMORY_MS);

/// Folds and forwarded events applied on the customer's side, by fold id.
pub(crate) const FOLDS: RecentIds = RecentIds::new(b"fold/", REPEAT_MEMORY_MS);

/// What the visitor's partition sends the customer's (postcard, keyed by the
/// customer id).
#[derive(Debug, Serialize, Deserialize)]
enum Fold {
    /// What was kept of the visitor, taken out at the merge.
    Visitor {
        merge_id: String,
        cart: Option<OpenCart>,
        /// Guest purchases: their revenue and count.
        lifetime_value: f64,
        orders: u32,
        /// The time of the visitor's latest purchase.
        bought: Option<i64>,
    },
    /// An event of the visitor read after the merge; its fold id derives
    /// from the merge and the event.
    Event {
        fold_id: String,
        event: Box<CustomerEvent>,
    },
}

impl Alerting {
    /// On the anonymous id's partition: remembers where the id went and sends
    /// what is kept of the visitor to the customer.
    pub(crate) fn on_identity(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let Some(merge) = FOLDED.on_merge(ctx, record)? else {
            return Ok(());
        };
        let visitor = merge.anonymous_id.as_str();
        self.folded.insert(ctx, visitor.as_bytes())?;
        self.report_filter_bytes();
        let key = cart_key(visitor);
        let cart = ctx.state().get::<OpenCart>(&key)?;
        if let Some(cart) = &cart {
            ctx.cancel_timer(Clock::Wall, cart.deadline, &key);
            ctx.cancel_timer(Clock::Event, cart.deadline, &key);
            ctx.state().delete(&key);
        }
        // The visitor is the customer now: their context goes too.
        let key = customer_key(visitor);
        let known = ctx.state().get::<CustomerContext>(&key)?;
        if known.is_some() {
            ctx.state().delete(&key);
        }
        let known = known.unwrap_or_default();
        let bought = if self.bought.may_hold(ctx, visitor.as_bytes())? {
            let key = bought_key(visitor);
            let at = ctx.state().get::<i64>(&key)?;
            ctx.state().delete(&key);
            at
        } else {
            None
        };
        if cart.is_none() && known.orders == 0 && bought.is_none() {
            return Ok(());
        }
        let fold = Fold::Visitor {
            merge_id: merge.merge_id,
            cart,
            lifetime_value: known.lifetime_value,
            orders: known.orders,
            bought,
        };
        self.send(ctx, &merge.customer_id, &fold, record.timestamp)?;
        self.counters.folds_sent.inc();
        Ok(())
    }

    /// On the anonymous id's partition: whether `visitor`'s id was folded
    /// within the hour, and where to. Most visitors were not, and their
    /// filter spares the read.
    pub(crate) fn folded_into(
        &mut self,
        ctx: &mut Context<'_>,
        visitor: &str,
    ) -> Result<Option<FoldedInto>, ProcessError> {
        if !self.folded.may_hold(ctx, visitor.as_bytes())? {
            return Ok(None);
        }
        Ok(FOLDED.get(ctx, visitor)?)
    }

    /// On the anonymous id's partition: sends `event`, of a visitor read
    /// after the visitor was folded, to the customer.
    pub(crate) fn forward(
        &mut self,
        ctx: &mut Context<'_>,
        event: CustomerEvent,
        folded: FoldedInto,
        timestamp: i64,
    ) -> Result<(), ProcessError> {
        let fold = Fold::Event {
            fold_id: ids::derive(&[folded.merge_id.as_bytes(), event.event_id.as_bytes()]),
            event: Box::new(event),
        };
        self.send(ctx, &folded.customer_id, &fold, timestamp)?;
        self.counters.forwarded.inc();
        Ok(())
    }

    fn send(
        &self,
        ctx: &mut Context<'_>,
        customer: &str,
        fold: &Fold,
        timestamp: i64,
    ) -> Result<(), ProcessError> {
        let payload = encode_fold(fold)?;
        ctx.emit_raw(&self.topics.folds, customer.as_bytes(), &payload, timestamp);
        Ok(())
    }

    /// On the customer's partition: folds a visitor's cart and purchases, or
    /// a forwarded event, in once.
    pub(crate) fn on_fold(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let fold: Fold = decode_fold(record)?;
        let customer = folded_customer(record, "fold record")?;
        let fold_id = match &fold {
            Fold::Visitor { merge_id, .. } => merge_id,
            Fold::Event { fold_id, .. } => fold_id,
        };
        if !FOLDS.first_sighting(ctx, &[fold_id.as_bytes()])? {
            // A repeat: the visitor's side re-sent it after a crash.
            self.counters.repeats.inc();
            return Ok(());
        }
        match fold {
            Fold::Visitor {
                cart,
                lifetime_value,
                orders,
                bought,
                ..
            } => {
                if orders > 0 {
                    let key = customer_key(&customer);
                    let mut known: CustomerContext = ctx.state().get(&key)?.unwrap_or_default();
                    known.lifetime_value += lifetime_value;
                    known.orders += orders;
                    ctx.state().put(&key, &known);
                }
                if let Some(at) = bought {
                    self.remember_purchase(ctx, &customer, at)?;
                }
                if let Some(cart) = cart {
                    self.adopt_cart(ctx, &customer, cart)?;
                }
                self.counters.folds_applied.inc();
                Ok(())
            }
            Fold::Event { event, .. } => {
                self.observe_event(ctx, &event, &customer, record.timestamp)
            }
        }
    }

    /// Makes the visitor's open `cart` the customer's, merged into theirs if
    /// they have one; dropped if the customer bought since it opened.
    fn adopt_cart(
        &mut self,
        ctx: &mut Context<'_>,
        customer: &str,
        cart: OpenCart,
    ) -> Result<(), ProcessError> {
        if self.bought_since(ctx, customer, cart.opened_at)? {
            return Ok(());
        }
        let key = cart_key(customer);
        let merged = match ctx.state().get::<OpenCart>(&key)? {
            Some(mut own) => {
                let armed = own.deadline;
                own.absorb(cart);
                if own.deadline != armed {
                    ctx.cancel_timer(Clock::Wall, armed, &key);
                    ctx.cancel_timer(Clock::Event, armed, &key);
                    ctx.set_timer(Clock::Wall, own.deadline, &key);
                }
                own
            }
            None => {
                ctx.set_timer(Clock::Wall, cart.deadline, &key);
                cart
            }
        };
        ctx.state().put(&key, &merged);
        Ok(())
    }
}
