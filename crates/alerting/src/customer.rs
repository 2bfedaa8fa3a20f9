//! What alerting remembers of each customer, so that alerts carry the
//! customer's context without asking the classifier: stage, lifetime value,
//! last session.

use std::collections::BTreeMap;

use journey_core::contract::{FunnelStep, Order, SessionSummary, Stage, StageChange};
use serde::{Deserialize, Serialize};

/// The context of one customer, kept in state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomerContext {
    /// Latest stage from the classifier's stage changes.
    pub stage: Option<Stage>,
    /// Sum of the revenue of the customer's purchases (in the orders' currencies as sent).
    pub lifetime_value: f64,
    /// Purchases seen.
    pub orders: u32,
    /// The customer's latest closed session.
    pub last_session: Option<LastSession>,
}

/// The parts of a session summary an alert shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastSession {
    pub session_id: String,
    pub end: i64,
    pub duration_ms: i64,
    pub event_count: i32,
    pub entry_channel: String,
    pub furthest_step: FunnelStep,
    pub revenue: f64,
}

impl CustomerContext {
    /// Takes in a purchase's order.
    pub fn observe_purchase(&mut self, order: &Order) {
        self.lifetime_value += order.revenue;
        self.orders += 1;
    }

    /// Takes in a closed session, if it is newer than the last one seen.
    pub fn observe_session(&mut self, session: &SessionSummary) {
        if self
            .last_session
            .as_ref()
            .is_some_and(|s| s.end > session.end)
        {
            return;
        }
        self.last_session = Some(LastSession {
            session_id: session.session_id.clone(),
            end: session.end,
            duration_ms: session.duration_ms,
            event_count: session.event_count,
            entry_channel: session.entry_channel.clone(),
            furthest_step: session.furthest_step,
            revenue: session.revenue,
        });
    }

    /// Takes in a stage change.
    pub fn observe_stage(&mut self, change: &StageChange) {
        self.stage = Some(change.to_stage);
    }

    /// Whether the context may be forgotten as inactive since `cutoff`: the
    /// customer never bought, and their last session ended at or before it.
    /// A context with no session yet has no date to judge, and is kept.
    pub fn forgettable(&self, cutoff: i64) -> bool {
        self.orders == 0 && self.last_session.as_ref().is_some_and(|s| s.end <= cutoff)
    }

    /// Adds the context to an alert's context map.
    pub fn describe(&self, context: &mut BTreeMap<String, String>) {
        let stage = self.stage.map_or("UNKNOWN", Stage::as_str);
        context.insert("stage".into(), stage.into());
        context.insert(
            "lifetime_value".into(),
            format!("{:.2}", self.lifetime_value),
        );
        context.insert("orders".into(), self.orders.to_string());
        if let Some(s) = &self.last_session {
            context.insert("last_session_id".into(), s.session_id.clone());
            context.insert(
                "last_session".into(),
                format!(
                    "{} events over {} s from {}, reached {:?}, revenue {:.2}",
                    s.event_count,
                    s.duration_ms / 1000,
                    s.entry_channel,
                    s.furthest_step,
                    s.revenue
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use journey_core::contract::{CustomerEvent, EventType};

    use super::*;

    #[test]
    fn purchases_add_up_to_the_lifetime_value() {
        let mut context = CustomerContext::default();
        for revenue in [100.0, 250.5] {
            let purchase = CustomerEvent {
                event_type: EventType::Purchase,
                order: Some(Order {
                    revenue,
                    ..Order::default()
                }),
                ..CustomerEvent::default()
            };
            let order = purchase.purchase().expect("a purchase");
            context.observe_purchase(order);
        }
        assert_eq!(context.lifetime_value, 350.5);
        assert_eq!(context.orders, 2);
    }

    #[test]
    fn only_purchases_with_an_order_change_the_context() {
        let order = Some(Order::default());
        let event = |event_type| CustomerEvent {
            event_type,
            order: order.clone(),
            ..CustomerEvent::default()
        };
        assert!(event(EventType::Purchase).purchase().is_some());
        assert!(event(EventType::AddToCart).purchase().is_none());
        let no_order = CustomerEvent {
            event_type: EventType::Purchase,
            ..CustomerEvent::default()
        };
        assert!(no_order.purchase().is_none());
    }

    #[test]
    fn an_older_session_does_not_replace_the_last_one() {
        let mut context = CustomerContext::default();
        let session = |id: &str, end| SessionSummary {
            session_id: id.into(),
            end,
            ..SessionSummary::default()
        };
        context.observe_session(&session("new", 2_000));
        context.observe_session(&session("old", 1_000));
        assert_eq!(context.last_session.unwrap().session_id, "new");
    }

    #[test]
    fn only_a_context_without_orders_and_with_an_old_last_session_is_forgettable() {
        let session = SessionSummary {
            end: 1_000,
            ..SessionSummary::default()
        };
        let mut visitor = CustomerContext::default();
        assert!(!visitor.forgettable(5_000), "no session yet: no date");
        visitor.observe_session(&session);
        assert!(visitor.forgettable(1_000));
        assert!(!visitor.forgettable(999));
        let mut buyer = visitor.clone();
        buyer.observe_purchase(&Order::default());
        assert!(!buyer.forgettable(5_000));
    }

    #[test]
    fn the_described_context_names_stage_value_and_last_session() {
        let mut context = CustomerContext {
            stage: Some(Stage::Loyal),
            lifetime_value: 1234.5,
            orders: 3,
            last_session: None,
        };
        context.observe_session(&SessionSummary {
            session_id: "s1".into(),
            event_count: 4,
            duration_ms: 61_000,
            entry_channel: "WEB".into(),
            furthest_step: FunnelStep::Cart,
            ..SessionSummary::default()
        });
        let mut map = BTreeMap::new();
        context.describe(&mut map);
        assert_eq!(map["stage"], "LOYAL");
        assert_eq!(map["lifetime_value"], "1234.50");
        assert_eq!(map["last_session_id"], "s1");
        assert_eq!(
            map["last_session"],
            "4 events over 61 s from WEB, reached Cart, revenue 0.00"
        );
    }
}
