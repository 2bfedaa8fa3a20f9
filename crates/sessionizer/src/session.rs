//! A session's running aggregate: built from events, merged, summarised.
//!
//! Every field merges associatively and commutatively, so the same events in
//! any order give the same aggregate.
//!
//! An open session is read from state and written back on every event, so
//! its sets are sorted vectors and a bit set rather than B-trees: no node to
//! allocate, fill and free per event. They encode exactly as the `BTreeSet`s
//! and `BTreeMap` earlier builds wrote, so state and folds in flight read the
//! same across an upgrade.

use std::collections::BTreeSet;
use std::fmt;

use journey_core::contract::{Channel, CustomerEvent, EventType, FunnelStep, SessionSummary};
use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A session is engaged if it lasts longer than this (GA4).
const ENGAGED_AFTER_MS: i64 = 10_000;

/// The aggregate of one open session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub start: i64,
    pub end: i64,
    pub event_count: u32,
    pub channels: Channels,
    /// The earliest event (time, then id): it gives the entry channel and campaign.
    pub entry: Entry,
    pub page_views: u32,
    /// Sorted, each once.
    pub products_viewed: Vec<String>,
    pub cart_adds: u32,
    pub cart_removes: u32,
    pub checkout_started: bool,
    /// (order id, (revenue, currency)), sorted by order id, each id once.
    pub orders: Vec<(String, (f64, String))>,
    /// (time, score) pairs.
    pub nps: Vec<(i64, i32)>,
    pub csat: Vec<(i64, i32)>,
    pub furthest_step: FunnelStep,
    /// Hashes of the session's event ids ([`event_hash`]), sorted: a repeat is dropped.
    pub event_ids: Vec<u64>,
    /// Stream time of the session's last interim summary, if one went out.
    pub last_update: Option<i64>,
}

/// The event a session started with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub at: i64,
    pub event_id: String,
    pub channel: Channel,
    pub campaign_source: Option<String>,
}

impl Session {
    /// A session of one event.
    pub fn of(event: &CustomerEvent) -> Self {
        let t = event.occurred_at;
        let is = |types: &[EventType]| types.contains(&event.event_type);
        let scores = |score: Option<i32>| score.map(|s| vec![(t, s)]).unwrap_or_default();
        let feedback = event.feedback.as_ref();
        Session {
            start: t,
            end: t,
            event_count: 1,
            channels: Channels::of(event.channel),
            entry: Entry::of(event),
            page_views: u32::from(is(&[EventType::PageView, EventType::ScreenView])),
            products_viewed: event
                .product
                .iter()
                .filter(|_| is(&[EventType::ProductView]))
                .map(|p| p.product_id.clone())
                .collect(),
            cart_adds: u32::from(is(&[EventType::AddToCart])),
            cart_removes: u32::from(is(&[EventType::RemoveFromCart])),
            checkout_started: is(&[EventType::CheckoutStarted]),
            orders: event
                .order
                .iter()
                .filter(|_| is(&[EventType::Purchase]))
                .map(|o| (o.order_id.clone(), (o.revenue, o.currency.clone())))
                .collect(),
            nps: scores(feedback.and_then(|f| f.nps)),
            csat: scores(feedback.and_then(|f| f.csat)),
            furthest_step: step(event.event_type),
            event_ids: vec![event_hash(&event.event_id)],
            last_update: None,
        }
    }

    /// Folds in `event`, whose id hashes to `hash` ([`event_hash`]): what
    /// merging in [`Session::of`] the event does, without building that
    /// session and taking it apart again (an event joining the one session
    /// within its gap is the common case).
    pub fn absorb(&mut self, event: &CustomerEvent, hash: u64) {
        let t = event.occurred_at;
        self.start = self.start.min(t);
        self.end = self.end.max(t);
        self.event_count += 1;
        self.channels.extend(Channels::of(event.channel));
        if (t, event.event_id.as_str()) < (self.entry.at, self.entry.event_id.as_str()) {
            self.entry = Entry::of(event);
        }
        match event.event_type {
            EventType::PageView | EventType::ScreenView => self.page_views += 1,
            EventType::ProductView => {
                if let Some(product) = &event.product {
                    let id = &product.product_id;
                    if let Err(at) = self.products_viewed.binary_search(id) {
                        self.products_viewed.insert(at, id.clone());
                    }
                }
            }
            EventType::AddToCart => self.cart_adds += 1,
            EventType::RemoveFromCart => self.cart_removes += 1,
            EventType::CheckoutStarted => self.checkout_started = true,
            EventType::Purchase => {
                if let Some(o) = &event.order {
                    self.add_order(o.order_id.clone(), (o.revenue, o.currency.clone()));
                }
            }
            _ => {}
        }
        if let Some(feedback) = &event.feedback {
            for (scores, score) in [
                (&mut self.nps, feedback.nps),
                (&mut self.csat, feedback.csat),
            ] {
                if let Some(score) = score {
                    let at = scores.partition_point(|&held| held <= (t, score));
                    scores.insert(at, (t, score));
                }
            }
        }
        self.furthest_step = self.furthest_step.max(step(event.event_type));
        if let Err(at) = self.event_ids.binary_search(&hash) {
            self.event_ids.insert(at, hash);
        }
    }

    /// Whether the event with this [`event_hash`] is already in the session.
    pub fn has_event(&self, hash: u64) -> bool {
        self.event_ids.binary_search(&hash).is_ok()
    }

    /// Folds `other` into `self`.
    pub fn merge(&mut self, other: Session) {
        self.start = self.start.min(other.start);
        self.end = self.end.max(other.end);
        self.event_count += other.event_count;
        self.channels.extend(other.channels);
        if (other.entry.at, &other.entry.event_id) < (self.entry.at, &self.entry.event_id) {
            self.entry = other.entry;
        }
        self.page_views += other.page_views;
        union_sorted(&mut self.products_viewed, other.products_viewed);
        self.cart_adds += other.cart_adds;
        self.cart_removes += other.cart_removes;
        self.checkout_started |= other.checkout_started;
        for (id, order) in other.orders {
            self.add_order(id, order);
        }
        self.nps.extend(other.nps);
        self.nps.sort_unstable();
        self.csat.extend(other.csat);
        self.csat.sort_unstable();
        self.furthest_step = self.furthest_step.max(other.furthest_step);
        union_sorted(&mut self.event_ids, other.event_ids);
        self.last_update = self.last_update.max(other.last_update);
    }

    /// Adds order `id` of (revenue, currency) `order`.
    fn add_order(&mut self, id: String, order: (f64, String)) {
        match self.orders.binary_search_by(|(held, _)| held.cmp(&id)) {
            // Two purchases with one order id: the larger figures stay,
            // whichever came first.
            Ok(at) => {
                let held = &mut self.orders[at].1;
                if order
                    .0
                    .total_cmp(&held.0)
                    .then_with(|| order.1.cmp(&held.1))
                    .is_gt()
                {
                    *held = order;
                }
            }
            Err(at) => self.orders.insert(at, (id, order)),
        }
    }

    /// The session's summary: the final one, or an early update of a session still open.
    pub fn summary(&self, session_id: String, customer_id: &str, interim: bool) -> SessionSummary {
        let duration_ms = self.end - self.start;
        let currencies: BTreeSet<&str> = self.orders.iter().map(|(_, (_, c))| c.as_str()).collect();
        SessionSummary {
            session_id,
            customer_id: customer_id.to_string(),
            start: self.start,
            end: self.end,
            duration_ms,
            event_count: self.event_count as i32,
            channels: self
                .channels
                .iter()
                .map(|c| c.as_str().to_string())
                .collect(),
            entry_channel: self.entry.channel.as_str().to_string(),
            campaign_source: self.entry.campaign_source.clone(),
            page_views: self.page_views as i32,
            products_viewed: self.products_viewed.clone(),
            cart_adds: self.cart_adds as i32,
            cart_removes: self.cart_removes as i32,
            checkout_started: self.checkout_started,
            order_ids: self.orders.iter().map(|(id, _)| id.clone()).collect(),
            revenue: self.orders.iter().map(|(_, (r, _))| r).sum(),
            currency: match currencies.len() {
                1 => currencies.first().map(|c| c.to_string()),
                _ => None,
            },
            nps_scores: self.nps.iter().map(|(_, s)| *s).collect(),
            csat_scores: self.csat.iter().map(|(_, s)| *s).collect(),
            furthest_step: self.furthest_step,
            engaged: duration_ms > ENGAGED_AFTER_MS
                || !self.orders.is_empty()
                || self.page_views >= 2,
            interim,
        }
    }
}

impl Entry {
    /// The entry of a session that starts with `event`.
    fn of(event: &CustomerEvent) -> Self {
        Entry {
            at: event.occurred_at,
            event_id: event.event_id.clone(),
            channel: event.channel,
            campaign_source: event.campaign.as_ref().map(|c| c.source.clone()),
        }
    }
}

/// The furthest funnel step an event of `event_type` reaches.
fn step(event_type: EventType) -> FunnelStep {
    match event_type {
        EventType::Purchase => FunnelStep::Purchase,
        EventType::CheckoutStarted => FunnelStep::Checkout,
        EventType::AddToCart => FunnelStep::Cart,
        EventType::ProductView => FunnelStep::ProductView,
        _ => FunnelStep::Visit,
    }
}

/// A stable 64-bit hash of an event id (FNV-1a): state written by one build
/// must read the same in the next, which `std`'s hasher does not promise.
pub fn event_hash(event_id: &str) -> u64 {
    event_id.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Adds the sorted, distinct `other` to the sorted, distinct `into`.
fn union_sorted<T: Ord>(into: &mut Vec<T>, other: Vec<T>) {
    match <[T; 1]>::try_from(other) {
        // The common case: one event's item joins a session.
        Ok([item]) => {
            if let Err(at) = into.binary_search(&item) {
                into.insert(at, item);
            }
        }
        Err(other) => {
            into.extend(other);
            into.sort_unstable();
            into.dedup();
        }
    }
}

/// The set of channels a session touched, a bit per channel. It encodes as
/// a `BTreeSet<Channel>` does: the channels in order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Channels(u16);

impl Channels {
    /// The set of `channel` alone.
    pub fn of(channel: Channel) -> Self {
        Channels(bit(channel))
    }

    /// Adds every channel of `other`.
    pub fn extend(&mut self, other: Channels) {
        self.0 |= other.0;
    }

    /// The channels, in order.
    pub fn iter(self) -> impl Iterator<Item = Channel> {
        Channel::ALL
            .into_iter()
            .filter(move |&channel| self.0 & bit(channel) != 0)
    }
}

fn bit(channel: Channel) -> u16 {
    1 << channel as u16
}

impl Serialize for Channels {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.count_ones() as usize))?;
        for channel in self.iter() {
            seq.serialize_element(&channel)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Channels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ChannelList;

        impl<'de> Visitor<'de> for ChannelList {
            type Value = Channels;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sequence of channels")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Channels, A::Error> {
                let mut channels = Channels::default();
                while let Some(channel) = seq.next_element::<Channel>()? {
                    channels.extend(Channels::of(channel));
                }
                Ok(channels)
            }
        }

        deserializer.deserialize_seq(ChannelList)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use journey_core::contract::{Campaign, Feedback, Order, Product};
    use proptest::prelude::*;

    use super::*;

    /// A session as builds before this one stored it, in B-trees.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Stored {
        start: i64,
        end: i64,
        event_count: u32,
        channels: BTreeSet<Channel>,
        entry: Entry,
        page_views: u32,
        products_viewed: BTreeSet<String>,
        cart_adds: u32,
        cart_removes: u32,
        checkout_started: bool,
        orders: BTreeMap<String, (f64, String)>,
        nps: Vec<(i64, i32)>,
        csat: Vec<(i64, i32)>,
        furthest_step: FunnelStep,
        event_ids: Vec<u64>,
        last_update: Option<i64>,
    }

    impl From<&Session> for Stored {
        fn from(s: &Session) -> Self {
            Stored {
                start: s.start,
                end: s.end,
                event_count: s.event_count,
                channels: s.channels.iter().collect(),
                entry: s.entry.clone(),
                page_views: s.page_views,
                products_viewed: s.products_viewed.iter().cloned().collect(),
                cart_adds: s.cart_adds,
                cart_removes: s.cart_removes,
                checkout_started: s.checkout_started,
                orders: s.orders.iter().cloned().collect(),
                nps: s.nps.clone(),
                csat: s.csat.clone(),
                furthest_step: s.furthest_step,
                event_ids: s.event_ids.clone(),
                last_update: s.last_update,
            }
        }
    }

    /// Event `i` of a session: its type, channel, campaign, product, order
    /// and scores vary with `i`.
    fn event(i: u8) -> CustomerEvent {
        let event_type = [
            EventType::ProductView,
            EventType::Purchase,
            EventType::PageView,
            EventType::Feedback,
            EventType::AddToCart,
            EventType::RemoveFromCart,
            EventType::CheckoutStarted,
            EventType::ScreenView,
        ][usize::from(i % 8)];
        CustomerEvent {
            event_id: format!("e{i}"),
            event_type,
            occurred_at: 1_000 * i64::from(i % 7),
            channel: Channel::ALL[usize::from(i) % Channel::ALL.len()],
            product: Some(Product {
                product_id: format!("sku-{}", i % 5),
                ..Product::default()
            }),
            order: Some(Order {
                // Events 3 apart share an order id, with other figures.
                order_id: format!("order-{}", i % 3),
                revenue: f64::from(i),
                currency: "EUR".into(),
                ..Order::default()
            }),
            feedback: Some(Feedback {
                nps: Some(i32::from(i % 11)),
                csat: (i % 2 == 0).then(|| i32::from(i % 5) + 1),
                ..Feedback::default()
            }),
            campaign: (i % 3 == 0).then(|| Campaign {
                source: format!("source-{}", i % 4),
                ..Campaign::default()
            }),
            ..CustomerEvent::default()
        }
    }

    fn merged(events: &[u8]) -> Session {
        let mut sessions = events.iter().map(|&i| Session::of(&event(i)));
        let mut session = sessions.next().expect("at least one event");
        sessions.for_each(|other| session.merge(other));
        session
    }

    #[test]
    fn a_session_encodes_as_the_b_trees_of_earlier_builds() {
        let session = merged(&[8, 4, 12, 1, 9, 6, 3, 0, 13]);
        assert!(session.channels.iter().count() > 2);
        assert!(session.products_viewed.len() > 1 && session.orders.len() > 1);
        let bytes = postcard::to_stdvec(&session).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&Stored::from(&session)).unwrap());
        assert_eq!(postcard::from_bytes::<Session>(&bytes).unwrap(), session);
    }

    proptest! {
        #[test]
        fn events_merged_in_any_order_give_the_same_session(
            (events, shuffled) in proptest::collection::vec(0u8..40, 1..12)
                .prop_flat_map(|events| (Just(events.clone()), Just(events).prop_shuffle())),
        ) {
            let (a, b) = (merged(&events), merged(&shuffled));
            prop_assert_eq!(Stored::from(&a), Stored::from(&b));
            prop_assert_eq!(a.summary("s".into(), "c", false), b.summary("s".into(), "c", false));
        }

        #[test]
        fn absorbing_an_event_is_merging_in_its_session(
            events in proptest::collection::vec(0u8..40, 1..12),
        ) {
            let mut absorbed = Session::of(&event(events[0]));
            for &i in &events[1..] {
                let event = event(i);
                absorbed.absorb(&event, event_hash(&event.event_id));
            }
            prop_assert_eq!(absorbed, merged(&events));
        }
    }
}
