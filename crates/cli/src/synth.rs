//! Synthetic customer journeys: realistic touchpoint sequences for demos and load.
//!
//! Each visitor walks a funnel (arrive, browse, cart, checkout, buy, give
//! feedback, contact support) and may leave at any step. Visitors arrive
//! anonymous and log in before they buy, as on a real shop.

use std::collections::BTreeMap;

use journey_core::contract::{
    Campaign, Channel, CustomerEvent, Device, EventType, Feedback, Order, Page, Product, Support,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const PRODUCTS: [(&str, &str, f64); 6] = [
    ("sku-1001", "Trail running shoes", 129.0),
    ("sku-1002", "Rain jacket", 89.5),
    ("sku-1003", "Thermal bottle", 24.9),
    ("sku-1004", "Headlamp", 39.0),
    ("sku-1005", "Hiking socks", 14.5),
    ("sku-1006", "Daypack 20L", 74.0),
];
const SOURCES: [&str; 4] = ["google", "newsletter", "instagram", "partner-blog"];
const COMPLAINTS: [&str; 3] = [
    "Delivery was two days late",
    "Item arrived damaged",
    "Nobody answered my chat",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Arrive,
    Browse,
    Cart,
    Checkout,
    Login,
    Purchase,
    Feedback,
    Support,
    Gone,
}

struct Visitor {
    anonymous_id: String,
    customer_id: String,
    logged_in: bool,
    channel: Channel,
    step: Step,
    cart: Vec<usize>,
}

/// Generates an endless, seeded stream of journey events.
pub struct Journeys {
    rng: SmallRng,
    visitors: Vec<Visitor>,
    next_visitor: u64,
    next_event: u64,
    run_id: String,
}

impl Journeys {
    /// `concurrent` visitors at a time; the same seed gives the same journeys.
    pub fn new(seed: u64, concurrent: usize) -> Self {
        let mut journeys = Journeys {
            rng: SmallRng::seed_from_u64(seed),
            visitors: Vec::new(),
            next_visitor: 0,
            next_event: 0,
            run_id: format!("{seed:x}"),
        };
        for _ in 0..concurrent.max(1) {
            let visitor = journeys.new_visitor();
            journeys.visitors.push(visitor);
        }
        journeys
    }

    fn new_visitor(&mut self) -> Visitor {
        self.next_visitor += 1;
        let n = self.next_visitor;
        let channel = match self.rng.gen_range(0..10) {
            0..=5 => Channel::Web,
            6..=8 => Channel::App,
            _ => Channel::Store,
        };
        Visitor {
            anonymous_id: format!("anon-{}-{n}", self.run_id),
            customer_id: format!("cust-{}-{}", self.run_id, n % 50_000),
            logged_in: false,
            channel,
            step: Step::Arrive,
            cart: Vec::new(),
        }
    }

    /// The next event, occurring at `now` (ms since epoch).
    pub fn next_event(&mut self, now: i64) -> CustomerEvent {
        let slot = self.rng.gen_range(0..self.visitors.len());
        if self.visitors[slot].step == Step::Gone {
            self.visitors[slot] = self.new_visitor();
        }
        self.next_event += 1;
        let event_id = format!("evt-{}-{}", self.run_id, self.next_event);
        let rng = &mut self.rng;
        let visitor = &mut self.visitors[slot];
        let mut event = CustomerEvent {
            event_id,
            occurred_at: now,
            anonymous_id: Some(visitor.anonymous_id.clone()),
            customer_id: visitor.logged_in.then(|| visitor.customer_id.clone()),
            channel: visitor.channel,
            device: Some(Device {
                device_type: Some(
                    if visitor.channel == Channel::App {
                        "mobile"
                    } else {
                        "desktop"
                    }
                    .into(),
                ),
                os: None,
                user_agent: None,
            }),
            properties: BTreeMap::new(),
            ..CustomerEvent::default()
        };
        let product = |i: usize| {
            let (id, name, price) = PRODUCTS[i];
            Some(Product {
                product_id: id.into(),
                name: Some(name.into()),
                category: Some("outdoor".into()),
                price: Some(price),
                quantity: Some(1),
            })
        };
        let (event_type, next) = match visitor.step {
            Step::Arrive => {
                event.campaign = Some(Campaign {
                    source: SOURCES[rng.gen_range(0..SOURCES.len())].into(),
                    medium: Some("cpc".into()),
                    name: Some("autumn-sale".into()),
                });
                event.page = Some(Page {
                    url: "/".into(),
                    title: Some("Home".into()),
                    referrer: None,
                });
                let kind = if rng.gen_bool(0.3) {
                    EventType::AdClick
                } else {
                    EventType::PageView
                };
                (kind, Step::Browse)
            }
            Step::Browse => {
                let i = rng.gen_range(0..PRODUCTS.len());
                event.product = product(i);
                let next = match rng.gen_range(0..10) {
                    0..=2 => Step::Browse,
                    3..=6 => {
                        visitor.cart.push(i);
                        Step::Cart
                    }
                    _ => Step::Gone,
                };
                (EventType::ProductView, next)
            }
            Step::Cart => {
                event.product = product(*visitor.cart.last().unwrap_or(&0));
                let next = if rng.gen_bool(0.6) {
                    Step::Checkout
                } else {
                    Step::Gone
                };
                (EventType::AddToCart, next)
            }
            Step::Checkout => {
                let next = if rng.gen_bool(0.7) {
                    Step::Login
                } else {
                    Step::Gone
                };
                (EventType::CheckoutStarted, next)
            }
            Step::Login => {
                visitor.logged_in = true;
                event.customer_id = Some(visitor.customer_id.clone());
                (EventType::Login, Step::Purchase)
            }
            Step::Purchase => {
                let revenue: f64 = visitor.cart.iter().map(|&i| PRODUCTS[i].2).sum();
                event.order = Some(Order {
                    order_id: format!("ord-{}", event.event_id),
                    revenue,
                    currency: "EUR".into(),
                    item_count: Some(visitor.cart.len() as i32),
                });
                let next = match rng.gen_range(0..10) {
                    0..=3 => Step::Feedback,
                    4 => Step::Support,
                    _ => Step::Gone,
                };
                (EventType::Purchase, next)
            }
            Step::Feedback => {
                event.channel = Channel::Survey;
                let nps = if rng.gen_bool(0.2) {
                    rng.gen_range(0..=6)
                } else {
                    rng.gen_range(7..=10)
                };
                event.feedback = Some(Feedback {
                    nps: Some(nps),
                    csat: None,
                    comment: (nps <= 6)
                        .then(|| COMPLAINTS[rng.gen_range(0..COMPLAINTS.len())].into()),
                    survey_id: Some("post-purchase".into()),
                });
                (EventType::Feedback, Step::Gone)
            }
            Step::Support => {
                event.channel = if rng.gen_bool(0.5) {
                    Channel::CallCenter
                } else {
                    Channel::Chat
                };
                event.support = Some(Support {
                    case_id: format!("case-{}", event.event_id),
                    reason: Some("where is my order".into()),
                });
                (EventType::SupportContact, Step::Gone)
            }
            Step::Gone => unreachable!("gone visitors are replaced above"),
        };
        event.event_type = event_type;
        visitor.step = next;
        event
    }
}

#[cfg(test)]
mod tests {
    use journey_ingest::{validate, Limits};

    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_journeys() {
        let a: Vec<_> = (0..50)
            .map({
                let mut j = Journeys::new(7, 10);
                move |i| j.next_event(i)
            })
            .collect();
        let b: Vec<_> = (0..50)
            .map({
                let mut j = Journeys::new(7, 10);
                move |i| j.next_event(i)
            })
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn every_generated_event_passes_ingest_validation() {
        let mut journeys = Journeys::new(1, 100);
        let now = 1_750_000_000_000;
        let limits = Limits {
            max_future_skew_ms: 0,
            min_occurred_at: 0,
        };
        let mut types = std::collections::BTreeSet::new();
        for _ in 0..5_000 {
            let event = journeys.next_event(now);
            validate(&event, now, &limits).unwrap_or_else(|r| panic!("{event:?}: {r:?}"));
            types.insert(format!("{:?}", event.event_type));
        }
        for expected in [
            "Purchase",
            "Feedback",
            "AddToCart",
            "SupportContact",
            "Login",
        ] {
            assert!(
                types.contains(expected),
                "{expected} never generated: {types:?}"
            );
        }
    }
}
