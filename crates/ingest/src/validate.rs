//! Semantic rules an event must meet beyond its schema.
//!
//! A rejection names the field and the rule, never the value: reasons end up
//! in logs and on dashboards, while the value may be personal data or free
//! text (the dead-letter record keeps the original bytes for replay).

use journey_core::contract::{CustomerEvent, EventType};
use journey_core::runtime::Rejection;

use crate::config::IngestConfig;

/// Time bounds for `occurred_at`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Latest acceptable `occurred_at` is `now + max_future_skew_ms`.
    pub max_future_skew_ms: i64,
    /// Earliest acceptable `occurred_at`.
    pub min_occurred_at: i64,
}

impl From<&IngestConfig> for Limits {
    fn from(c: &IngestConfig) -> Self {
        Limits {
            max_future_skew_ms: c.max_future_skew.as_millis() as i64,
            min_occurred_at: c.min_occurred_at,
        }
    }
}

/// Checks `event` at wall-clock time `now` (ms); the first broken rule is the reason.
pub fn validate(event: &CustomerEvent, now: i64, limits: &Limits) -> Result<(), Rejection> {
    if event.event_id.trim().is_empty() {
        return Err(Rejection::semantic("event_id", "event_id is empty"));
    }
    if event.customer_key().is_none() {
        return Err(Rejection::semantic(
            "customer_id",
            "neither customer_id nor anonymous_id is set",
        ));
    }
    if event.occurred_at > now + limits.max_future_skew_ms {
        return Err(Rejection::semantic(
            "occurred_at",
            format!(
                "occurred_at is more than {} ms in the future",
                limits.max_future_skew_ms
            ),
        ));
    }
    if event.occurred_at < limits.min_occurred_at {
        return Err(Rejection::semantic(
            "occurred_at",
            format!("occurred_at is before the floor {}", limits.min_occurred_at),
        ));
    }
    if let Some(feedback) = &event.feedback {
        if feedback.nps.is_some_and(|n| !(0..=10).contains(&n)) {
            return Err(Rejection::semantic("feedback.nps", "NPS is outside 0-10"));
        }
        if feedback.csat.is_some_and(|c| !(1..=5).contains(&c)) {
            return Err(Rejection::semantic("feedback.csat", "CSAT is outside 1-5"));
        }
    }
    if event
        .product
        .as_ref()
        .and_then(|p| p.price)
        .is_some_and(|p| p < 0.0 || !p.is_finite())
    {
        return Err(Rejection::semantic(
            "product.price",
            "price is negative or not finite",
        ));
    }
    if let Some(order) = &event.order {
        if order.order_id.trim().is_empty() {
            return Err(Rejection::semantic("order.order_id", "order_id is empty"));
        }
        if order.revenue < 0.0 || !order.revenue.is_finite() {
            return Err(Rejection::semantic(
                "order.revenue",
                "revenue is negative or not finite",
            ));
        }
        if !is_currency_code(&order.currency) {
            return Err(Rejection::semantic(
                "order.currency",
                "currency is not a three-letter ISO 4217 code",
            ));
        }
    }
    required_detail(event)
}

/// Event types that only make sense with their detail record.
fn required_detail(event: &CustomerEvent) -> Result<(), Rejection> {
    let missing = match event.event_type {
        EventType::Purchase | EventType::Refund if event.order.is_none() => Some("order"),
        EventType::ProductView | EventType::AddToCart | EventType::RemoveFromCart
            if event.product.is_none() =>
        {
            Some("product")
        }
        EventType::Feedback
            if event
                .feedback
                .as_ref()
                .is_none_or(|f| f.nps.is_none() && f.csat.is_none()) =>
        {
            Some("feedback")
        }
        EventType::SupportContact if event.support.is_none() => Some("support"),
        _ => None,
    };
    match missing {
        Some(field) => Err(Rejection::semantic(
            field,
            format!("a {:?} event needs {field}", event.event_type),
        )),
        None => Ok(()),
    }
}

fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use journey_core::contract::{Feedback, Order, Product, Support};

    use super::*;

    const NOW: i64 = 1_750_000_000_000;
    const LIMITS: Limits = Limits {
        max_future_skew_ms: 300_000,
        min_occurred_at: 946_684_800_000,
    };

    fn base(event_type: EventType) -> CustomerEvent {
        CustomerEvent {
            event_id: "e1".into(),
            event_type,
            occurred_at: NOW - 1_000,
            anonymous_id: Some("anon-1".into()),
            ..CustomerEvent::default()
        }
    }

    fn order(revenue: f64, currency: &str) -> Option<Order> {
        Some(Order {
            order_id: "o1".into(),
            revenue,
            currency: currency.into(),
            item_count: None,
        })
    }

    fn feedback(nps: Option<i32>, csat: Option<i32>) -> Option<Feedback> {
        Some(Feedback {
            nps,
            csat,
            ..Feedback::default()
        })
    }

    #[test]
    fn rules_table() {
        let product = Some(Product {
            product_id: "p1".into(),
            ..Product::default()
        });
        let cases: Vec<(&str, CustomerEvent, Option<&str>)> = vec![
            ("a plain page view passes", base(EventType::PageView), None),
            (
                "empty event id",
                CustomerEvent {
                    event_id: " ".into(),
                    ..base(EventType::PageView)
                },
                Some("event_id"),
            ),
            (
                "no ids",
                CustomerEvent {
                    anonymous_id: None,
                    ..base(EventType::PageView)
                },
                Some("customer_id"),
            ),
            (
                "empty ids",
                CustomerEvent {
                    anonymous_id: Some(String::new()),
                    ..base(EventType::PageView)
                },
                Some("customer_id"),
            ),
            (
                "far future",
                CustomerEvent {
                    occurred_at: NOW + 300_001,
                    ..base(EventType::PageView)
                },
                Some("occurred_at"),
            ),
            (
                "within skew",
                CustomerEvent {
                    occurred_at: NOW + 300_000,
                    ..base(EventType::PageView)
                },
                None,
            ),
            (
                "before floor",
                CustomerEvent {
                    occurred_at: 0,
                    ..base(EventType::PageView)
                },
                Some("occurred_at"),
            ),
            (
                "nps 11",
                CustomerEvent {
                    feedback: feedback(Some(11), None),
                    ..base(EventType::Feedback)
                },
                Some("feedback.nps"),
            ),
            (
                "nps -1",
                CustomerEvent {
                    feedback: feedback(Some(-1), None),
                    ..base(EventType::Feedback)
                },
                Some("feedback.nps"),
            ),
            (
                "nps 0 and 10 pass",
                CustomerEvent {
                    feedback: feedback(Some(0), Some(5)),
                    ..base(EventType::Feedback)
                },
                None,
            ),
            (
                "csat 0",
                CustomerEvent {
                    feedback: feedback(None, Some(0)),
                    ..base(EventType::Feedback)
                },
                Some("feedback.csat"),
            ),
            (
                "feedback without scores",
                CustomerEvent {
                    feedback: feedback(None, None),
                    ..base(EventType::Feedback)
                },
                Some("feedback"),
            ),
            (
                "purchase without order",
                base(EventType::Purchase),
                Some("order"),
            ),
            (
                "purchase passes",
                CustomerEvent {
                    order: order(10.0, "EUR"),
                    ..base(EventType::Purchase)
                },
                None,
            ),
            (
                "negative revenue",
                CustomerEvent {
                    order: order(-1.0, "EUR"),
                    ..base(EventType::Purchase)
                },
                Some("order.revenue"),
            ),
            (
                "bad currency",
                CustomerEvent {
                    order: order(1.0, "euro"),
                    ..base(EventType::Purchase)
                },
                Some("order.currency"),
            ),
            (
                "cart add without product",
                base(EventType::AddToCart),
                Some("product"),
            ),
            (
                "cart add passes",
                CustomerEvent {
                    product: product.clone(),
                    ..base(EventType::AddToCart)
                },
                None,
            ),
            (
                "negative price",
                CustomerEvent {
                    product: Some(Product {
                        price: Some(-2.0),
                        ..product.clone().unwrap()
                    }),
                    ..base(EventType::ProductView)
                },
                Some("product.price"),
            ),
            (
                "support without case",
                base(EventType::SupportContact),
                Some("support"),
            ),
            (
                "support passes",
                CustomerEvent {
                    support: Some(Support {
                        case_id: "c".into(),
                        reason: None,
                    }),
                    ..base(EventType::SupportContact)
                },
                None,
            ),
        ];
        for (name, event, field) in cases {
            let got = validate(&event, NOW, &LIMITS)
                .err()
                .and_then(|r| r.field_path);
            assert_eq!(got.as_deref(), field, "{name}");
        }
    }

    #[test]
    fn rejection_messages_do_not_echo_values() {
        const MARK: &str = "alice@example.com";
        let weird = 13_579_i32;
        let cases = [
            CustomerEvent {
                occurred_at: NOW + 86_400_000 + 13_579,
                ..base(EventType::PageView)
            },
            CustomerEvent {
                occurred_at: 13_579,
                ..base(EventType::PageView)
            },
            CustomerEvent {
                feedback: feedback(Some(weird), None),
                ..base(EventType::Feedback)
            },
            CustomerEvent {
                feedback: feedback(None, Some(weird)),
                ..base(EventType::Feedback)
            },
            CustomerEvent {
                product: Some(Product {
                    product_id: MARK.into(),
                    price: Some(-13_579.0),
                    ..Product::default()
                }),
                ..base(EventType::ProductView)
            },
            CustomerEvent {
                order: order(-13_579.0, "EUR"),
                ..base(EventType::Purchase)
            },
            CustomerEvent {
                order: order(1.0, MARK),
                ..base(EventType::Purchase)
            },
            CustomerEvent {
                customer_id: Some(MARK.into()),
                anonymous_id: Some(MARK.into()),
                feedback: Some(Feedback {
                    comment: Some(MARK.into()),
                    ..Feedback::default()
                }),
                ..base(EventType::Feedback)
            },
        ];
        for event in cases {
            let rejection = validate(&event, NOW, &LIMITS).expect_err("rejected");
            let text = format!("{} {:?}", rejection.message, rejection.field_path);
            assert!(!text.contains(MARK), "{text}");
            assert!(!text.contains("13579"), "{text}");
        }
    }
}
