//! A session's running aggregate: built from events, merged, summarised.
//!
//! Every field merges associatively and commutatively, so the same events in
//! any order give the same aggregate.

use std::collections::{BTreeMap, BTreeSet};

use journey_core::contract::{Channel, CustomerEvent, EventType, FunnelStep, SessionSummary};
use serde::{Deserialize, Serialize};

/// A session is engaged if it lasts longer than this (GA4).
const ENGAGED_AFTER_MS: i64 = 10_000;

/// The aggregate of one open session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub start: i64,
    pub end: i64,
    pub event_count: u32,
    pub channels: BTreeSet<Channel>,
    /// The earliest event (time, then id): it gives the entry channel and campaign.
    pub entry: Entry,
    pub page_views: u32,
    pub products_viewed: BTreeSet<String>,
    pub cart_adds: u32,
    pub cart_removes: u32,
    pub checkout_started: bool,
    /// Order id to (revenue, currency).
    pub orders: BTreeMap<String, (f64, String)>,
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
        let step = match event.event_type {
            EventType::Purchase => FunnelStep::Purchase,
            EventType::CheckoutStarted => FunnelStep::Checkout,
            EventType::AddToCart => FunnelStep::Cart,
            EventType::ProductView => FunnelStep::ProductView,
            _ => FunnelStep::Visit,
        };
        let scores = |score: Option<i32>| score.map(|s| vec![(t, s)]).unwrap_or_default();
        let feedback = event.feedback.as_ref();
        Session {
            start: t,
            end: t,
            event_count: 1,
            channels: BTreeSet::from([event.channel]),
            entry: Entry {
                at: t,
                event_id: event.event_id.clone(),
                channel: event.channel,
                campaign_source: event.campaign.as_ref().map(|c| c.source.clone()),
            },
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
            furthest_step: step,
            event_ids: vec![event_hash(&event.event_id)],
            last_update: None,
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
        self.products_viewed.extend(other.products_viewed);
        self.cart_adds += other.cart_adds;
        self.cart_removes += other.cart_removes;
        self.checkout_started |= other.checkout_started;
        self.orders.extend(other.orders);
        self.nps.extend(other.nps);
        self.nps.sort_unstable();
        self.csat.extend(other.csat);
        self.csat.sort_unstable();
        self.furthest_step = self.furthest_step.max(other.furthest_step);
        if let [hash] = other.event_ids[..] {
            if let Err(at) = self.event_ids.binary_search(&hash) {
                self.event_ids.insert(at, hash);
            }
        } else {
            self.event_ids.extend(other.event_ids);
            self.event_ids.sort_unstable();
            self.event_ids.dedup();
        }
        self.last_update = self.last_update.max(other.last_update);
    }

    /// The session's summary: the final one, or an early update of a session still open.
    pub fn summary(&self, session_id: String, customer_id: &str, interim: bool) -> SessionSummary {
        let duration_ms = self.end - self.start;
        let currencies: BTreeSet<&str> = self.orders.values().map(|(_, c)| c.as_str()).collect();
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
            products_viewed: self.products_viewed.iter().cloned().collect(),
            cart_adds: self.cart_adds as i32,
            cart_removes: self.cart_removes as i32,
            checkout_started: self.checkout_started,
            order_ids: self.orders.keys().cloned().collect(),
            revenue: self.orders.values().map(|(r, _)| r).sum(),
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

/// A stable 64-bit hash of an event id (FNV-1a): state written by one build
/// must read the same in the next, which `std`'s hasher does not promise.
pub fn event_hash(event_id: &str) -> u64 {
    event_id.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
