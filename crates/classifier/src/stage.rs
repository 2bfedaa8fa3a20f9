//! The journey-stage rules: which stage an event moves a customer to.

use journey_core::contract::{CustomerEvent, EventType, Stage};

/// A stage reached and the rule that put the customer there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub to: Stage,
    pub rule: &'static str,
}

const CONSIDERATION: [EventType; 5] = [
    EventType::ProductView,
    EventType::Search,
    EventType::AddToCart,
    EventType::RemoveFromCart,
    EventType::CheckoutStarted,
];

/// The transition `event` causes from `current`, or `None` if the stage stays.
pub fn next_stage(current: Option<Stage>, event: &CustomerEvent) -> Option<Transition> {
    let bought = matches!(current, Some(Stage::Purchase | Stage::PostPurchase));
    let transition = if event.event_type == EventType::Purchase {
        Transition {
            to: Stage::Purchase,
            rule: "order_completed",
        }
    } else if bought {
        Transition {
            to: Stage::PostPurchase,
            rule: "after_purchase",
        }
    } else if CONSIDERATION.contains(&event.event_type) {
        Transition {
            to: Stage::Consideration,
            rule: "consideration_signal",
        }
    } else if current.is_none() {
        Transition {
            to: Stage::Awareness,
            rule: "first_touch",
        }
    } else {
        return None;
    };
    (Some(transition.to) != current).then_some(transition)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: EventType) -> CustomerEvent {
        CustomerEvent {
            event_type,
            ..CustomerEvent::default()
        }
    }

    #[test]
    fn transitions_table() {
        use EventType as E;
        use Stage as S;
        let cases: [(Option<Stage>, EventType, Option<Stage>); 12] = [
            (None, E::AdClick, Some(S::Awareness)),
            (None, E::PageView, Some(S::Awareness)),
            (None, E::ProductView, Some(S::Consideration)),
            (None, E::Purchase, Some(S::Purchase)),
            (Some(S::Awareness), E::PageView, None),
            (Some(S::Awareness), E::AddToCart, Some(S::Consideration)),
            (Some(S::Consideration), E::CheckoutStarted, None),
            (Some(S::Consideration), E::Purchase, Some(S::Purchase)),
            (Some(S::Purchase), E::SupportContact, Some(S::PostPurchase)),
            (Some(S::Purchase), E::Feedback, Some(S::PostPurchase)),
            (Some(S::PostPurchase), E::PageView, None),
            (Some(S::PostPurchase), E::Purchase, Some(S::Purchase)),
        ];
        for (from, event_type, to) in cases {
            assert_eq!(
                next_stage(from, &event(event_type)).map(|t| t.to),
                to,
                "{from:?} + {event_type:?}"
            );
        }
    }

    #[test]
    fn no_transition_when_the_stage_stays() {
        assert_eq!(
            next_stage(Some(Stage::Consideration), &event(EventType::ProductView)),
            None
        );
    }
}
