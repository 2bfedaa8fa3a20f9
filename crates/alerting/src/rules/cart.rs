//! Cart abandonment: a cart add or checkout start with no purchase within the
//! rule's `after`, cancelled by a purchase.
//!
//! The deadline is the first open cart event's time plus `after`. The
//! processor waits for it on the wall clock, so a quiet partition still
//! alerts on time; if the partition is behind (its stream time has not
//! reached the deadline, as when catching up on a backlog), it waits on
//! stream time instead, so a purchase further on in the backlog still cancels.

use std::collections::BTreeMap;

use journey_core::contract::{CustomerEvent, EventType};
use serde::{Deserialize, Serialize};

use super::{Draft, CART_ABANDONMENT};
use crate::customer::CustomerContext;
use crate::ruleset::CartAbandonmentRule;

/// A cart waiting for its purchase, kept in state per customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenCart {
    /// The event that opened it: the alert's evidence.
    pub opened_by: String,
    pub opened_at: i64,
    /// When the alert is due without a purchase.
    pub deadline: i64,
    pub cart_adds: u32,
    pub checkout_started: bool,
    /// Products added, in order, without repeats.
    pub products: Vec<String>,
    pub channel: String,
}

/// What a customer's event does to their cart.
#[derive(Debug, Clone, PartialEq)]
pub enum CartEvent {
    /// A cart add or checkout start.
    Touch,
    /// A purchase: cancels the open cart and resolves the alert.
    Purchase,
    /// Anything else.
    Other,
}

impl CartEvent {
    /// Classifies `event`.
    pub fn of(event: &CustomerEvent) -> CartEvent {
        match event.event_type {
            EventType::AddToCart | EventType::CheckoutStarted => CartEvent::Touch,
            EventType::Purchase => CartEvent::Purchase,
            _ => CartEvent::Other,
        }
    }
}

impl OpenCart {
    /// Opens a cart with `event` (a cart add or checkout start).
    pub fn open(event: &CustomerEvent, rule: &CartAbandonmentRule) -> OpenCart {
        let mut cart = OpenCart {
            opened_by: event.event_id.clone(),
            opened_at: event.occurred_at,
            deadline: event.occurred_at + rule.after.as_millis() as i64,
            cart_adds: 0,
            checkout_started: false,
            products: Vec::new(),
            channel: event.channel.as_str().to_string(),
        };
        cart.touch(event);
        cart
    }

    /// Adds a later cart add or checkout start; the deadline stays.
    pub fn touch(&mut self, event: &CustomerEvent) {
        match event.event_type {
            EventType::CheckoutStarted => self.checkout_started = true,
            _ => self.cart_adds += 1,
        }
        if let Some(product) = &event.product {
            if !self.products.contains(&product.product_id) {
                self.products.push(product.product_id.clone());
            }
        }
    }

    /// Merges `other`, another open cart of the same customer (a visitor's
    /// before they logged in), in: the earlier opened one gives the opening
    /// event, deadline and channel; adds, checkout and products add up.
    pub fn absorb(&mut self, mut other: OpenCart) {
        if other.opened_at < self.opened_at {
            std::mem::swap(self, &mut other);
        }
        self.cart_adds += other.cart_adds;
        self.checkout_started |= other.checkout_started;
        for product in other.products {
            if !self.products.contains(&product) {
                self.products.push(product);
            }
        }
    }

    /// Whether the alert is due: the partition has seen the deadline pass.
    pub fn due(&self, stream_time: i64) -> bool {
        stream_time >= self.deadline
    }

    /// The alert for this cart, abandoned by `customer`.
    pub fn draft(
        &self,
        customer: &str,
        known: &CustomerContext,
        rule: &CartAbandonmentRule,
    ) -> Draft {
        let mut context = BTreeMap::from([
            ("cart_adds".to_string(), self.cart_adds.to_string()),
            (
                "checkout_started".to_string(),
                self.checkout_started.to_string(),
            ),
            ("products".to_string(), self.products.join(",")),
            ("channel".to_string(), self.channel.clone()),
            ("cart_opened_at".to_string(), self.opened_at.to_string()),
        ]);
        known.describe(&mut context);
        let what = if self.checkout_started {
            "Checkout"
        } else {
            "Cart"
        };
        Draft {
            rule: CART_ABANDONMENT,
            severity: rule.severity,
            subject: customer.to_string(),
            customer_id: Some(customer.to_string()),
            summary: format!(
                "{what} abandoned: no purchase within {} min",
                rule.after.as_secs() / 60
            ),
            action_plan: rule.action_plan.clone(),
            evidence_id: self.opened_by.clone(),
            at: self.deadline,
            context,
        }
    }
}

#[cfg(test)]
mod tests {
    use journey_core::contract::Product;

    use super::*;
    use crate::ruleset::RuleSet;

    const MINUTE: i64 = 60_000;

    fn event(id: &str, event_type: EventType, at: i64, sku: Option<&str>) -> CustomerEvent {
        CustomerEvent {
            event_id: id.into(),
            event_type,
            occurred_at: at,
            product: sku.map(|s| Product {
                product_id: s.into(),
                ..Product::default()
            }),
            ..CustomerEvent::default()
        }
    }

    #[test]
    fn cart_adds_and_checkouts_open_carts_and_purchases_close_them() {
        let cases = [
            (EventType::AddToCart, CartEvent::Touch),
            (EventType::CheckoutStarted, CartEvent::Touch),
            (EventType::Purchase, CartEvent::Purchase),
            (EventType::ProductView, CartEvent::Other),
            (EventType::RemoveFromCart, CartEvent::Other),
        ];
        for (event_type, expected) in cases {
            assert_eq!(CartEvent::of(&event("e", event_type, 0, None)), expected);
        }
    }

    #[test]
    fn the_deadline_is_the_first_cart_event_plus_after_and_later_touches_keep_it() {
        let rule = RuleSet::default().cart_abandonment;
        let mut cart = OpenCart::open(&event("a1", EventType::AddToCart, 0, Some("sku-1")), &rule);
        cart.touch(&event(
            "a2",
            EventType::AddToCart,
            10 * MINUTE,
            Some("sku-1"),
        ));
        cart.touch(&event("a3", EventType::CheckoutStarted, 20 * MINUTE, None));
        assert_eq!(cart.deadline, 60 * MINUTE);
        assert!(!cart.due(60 * MINUTE - 1));
        assert!(cart.due(60 * MINUTE));
        let draft = cart.draft("alice", &CustomerContext::default(), &rule);
        assert_eq!(draft.evidence_id, "a1");
        assert_eq!(draft.at, 60 * MINUTE);
        assert_eq!(draft.context["cart_adds"], "2");
        assert_eq!(draft.context["checkout_started"], "true");
        assert_eq!(draft.context["products"], "sku-1");
        assert_eq!(
            draft.summary,
            "Checkout abandoned: no purchase within 60 min"
        );
    }

    #[test]
    fn a_tuned_after_moves_the_deadline() {
        let mut rule = RuleSet::default().cart_abandonment;
        rule.after = std::time::Duration::from_secs(5 * 60);
        let cart = OpenCart::open(&event("a1", EventType::AddToCart, MINUTE, None), &rule);
        assert_eq!(cart.deadline, 6 * MINUTE);
    }

    #[test]
    fn a_visitors_cart_merges_into_the_customers_from_the_earlier_opened() {
        let rule = RuleSet::default().cart_abandonment;
        let add = |id, at, sku| event(id, EventType::AddToCart, at, Some(sku));
        let customers = OpenCart::open(&add("c1", 20 * MINUTE, "sku-2"), &rule);
        let mut visitors = OpenCart::open(&add("v1", 0, "sku-1"), &rule);
        visitors.touch(&add("v2", MINUTE, "sku-2"));
        for (mut into, other) in [
            (customers.clone(), visitors.clone()),
            (visitors.clone(), customers.clone()),
        ] {
            into.absorb(other);
            assert_eq!(
                (into.opened_by.as_str(), into.deadline, into.cart_adds),
                ("v1", 60 * MINUTE, 3)
            );
            assert!(!into.checkout_started);
            assert_eq!(into.products, ["sku-1", "sku-2"]);
        }
        let mut checkout = customers.clone();
        checkout.absorb(OpenCart::open(
            &event("v3", EventType::CheckoutStarted, 30 * MINUTE, None),
            &rule,
        ));
        assert!(checkout.checkout_started);
        assert_eq!(checkout.opened_by, "c1");
    }
}
