//! The live profile kept per customer, and the facts events and sessions add to it.

use journey_core::contract::{Channel, CustomerEvent, SessionSummary, Stage};
use serde::{Deserialize, Serialize};

use crate::rules::FeedbackThresholds;

/// Every channel, in contract order (bit `i` of a channel set).
pub const CHANNELS: [Channel; 8] = Channel::ALL;

/// Position of `channel` in [`CHANNELS`].
pub fn channel_index(channel: Channel) -> usize {
    CHANNELS.iter().position(|c| *c == channel).unwrap_or(7)
}

/// Funnel steps a customer has reached, as bits: awareness, consideration, purchase.
pub const FUNNEL_STEPS: [&str; 3] = ["AWARENESS", "CONSIDERATION", "PURCHASE"];

/// One customer's profile as stored in state. Times are event time, ms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub first_seen: i64,
    /// Latest activity: event or session end.
    pub last_seen: i64,
    /// Channels used, a bit per `CHANNELS` entry.
    pub channels: u8,
    /// Channel of the first touch; the funnel metrics are per entry channel.
    pub entry_channel: Channel,
    pub sessions: u32,
    pub orders: u32,
    /// Lifetime value: revenue of every order.
    pub revenue: f64,
    pub last_order_at: Option<i64>,
    /// Times of the latest orders, oldest first (as many as the rules look back on).
    pub recent_orders: Vec<i64>,
    pub last_nps: Option<i32>,
    pub last_csat: Option<i32>,
    /// Event time of the latest score, to keep the latest across identity merges.
    pub last_feedback_at: Option<i64>,
    /// When a detractor's score came without a positive signal since.
    pub detractor_since: Option<i64>,
    pub stage: Option<Stage>,
    pub stage_since: i64,
    /// Funnel steps reached, a bit per `FUNNEL_STEPS` entry.
    pub reached: u8,
    /// The wall-clock timer armed for this customer, if any.
    pub timer_at: Option<i64>,
    /// Anonymous ids folded into this profile by identity merges.
    pub merged: Vec<String>,
}

/// What a profile adds to its partition's per-stage and funnel counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contribution {
    pub stage: Option<Stage>,
    pub entry_channel: Channel,
    pub reached: u8,
}

impl Profile {
    /// A profile first seen at `at` through `channel`.
    pub fn new(at: i64, channel: Channel) -> Self {
        Profile {
            first_seen: at,
            last_seen: at,
            channels: 0,
            entry_channel: channel,
            sessions: 0,
            orders: 0,
            revenue: 0.0,
            last_order_at: None,
            recent_orders: Vec::new(),
            last_nps: None,
            last_csat: None,
            last_feedback_at: None,
            detractor_since: None,
            stage: None,
            stage_since: at,
            reached: 0,
            timer_at: None,
            merged: Vec::new(),
        }
    }

    /// Folds an event's facts into the profile (not its stage), keeping the
    /// times of the latest `order_history` orders.
    pub fn observe(
        &mut self,
        event: &CustomerEvent,
        feedback: &FeedbackThresholds,
        order_history: usize,
    ) {
        let at = event.occurred_at;
        if at < self.first_seen {
            self.first_seen = at;
            self.entry_channel = event.channel;
        }
        self.last_seen = self.last_seen.max(at);
        self.channels |= 1 << channel_index(event.channel);
        if let Some(order) = event.purchase() {
            self.orders += 1;
            self.revenue += order.revenue;
            self.add_order_time(at, order_history);
            self.detractor_since = None;
        }
        if let Some(f) = &event.feedback {
            if f.nps.is_some() || f.csat.is_some() {
                if self.last_feedback_at.is_none_or(|last| at >= last) {
                    self.last_nps = f.nps.or(self.last_nps);
                    self.last_csat = f.csat.or(self.last_csat);
                    self.last_feedback_at = Some(at);
                }
                if feedback.is_detractor(f.nps, f.csat) {
                    self.detractor_since.get_or_insert(at);
                } else {
                    self.detractor_since = None;
                }
            }
        }
    }

    /// Folds a closed session into the profile.
    pub fn observe_session(&mut self, session: &SessionSummary) {
        self.sessions += 1;
        self.first_seen = self.first_seen.min(session.start);
        self.last_seen = self.last_seen.max(session.end);
    }

    fn add_order_time(&mut self, at: i64, order_history: usize) {
        self.last_order_at = Some(self.last_order_at.map_or(at, |last| last.max(at)));
        let position = self.recent_orders.partition_point(|t| *t <= at);
        self.recent_orders.insert(position, at);
        let excess = self
            .recent_orders
            .len()
            .saturating_sub(order_history.max(1));
        self.recent_orders.drain(..excess);
    }

    /// Orders at or after `since` among the remembered ones.
    pub fn orders_since(&self, since: i64) -> usize {
        self.recent_orders.iter().filter(|t| **t >= since).count()
    }

    /// Moves the profile to `stage` at `at`, marking the funnel steps it implies.
    pub fn enter(&mut self, stage: Stage, at: i64) {
        self.stage = Some(stage);
        self.stage_since = at;
        self.reached |= match stage {
            Stage::Awareness => 0b001,
            Stage::Consideration => 0b011,
            Stage::Purchase | Stage::PostPurchase | Stage::Loyal => 0b111,
            Stage::ChurnRisk | Stage::WinBack => 0,
        };
        if self.orders > 0 {
            self.reached |= 0b111;
        }
    }

    /// What this profile adds to the per-partition counts.
    pub fn contribution(&self) -> Contribution {
        Contribution {
            stage: self.stage,
            entry_channel: self.entry_channel,
            reached: self.reached,
        }
    }

    /// The channels used, by name.
    pub fn channel_names(&self) -> Vec<&'static str> {
        CHANNELS
            .iter()
            .enumerate()
            .filter(|(i, _)| self.channels & (1 << i) != 0)
            .map(|(_, c)| c.as_str())
            .collect()
    }

    /// Folds `anonymous`, the profile of a visitor since identified as this
    /// customer, into this one. Returns the stage the merged profile should
    /// take: the customer's own, unless the visitor got further down the
    /// funnel (churn risk and win-back of the customer stay).
    pub fn absorb(
        &mut self,
        anonymous: Profile,
        anonymous_id: &str,
        order_history: usize,
    ) -> Option<Stage> {
        if anonymous.first_seen < self.first_seen {
            self.first_seen = anonymous.first_seen;
            self.entry_channel = anonymous.entry_channel;
        }
        self.last_seen = self.last_seen.max(anonymous.last_seen);
        self.channels |= anonymous.channels;
        self.sessions += anonymous.sessions;
        self.orders += anonymous.orders;
        self.revenue += anonymous.revenue;
        for at in &anonymous.recent_orders {
            self.add_order_time(*at, order_history);
        }
        if let Some(at) = anonymous.last_order_at {
            self.last_order_at = Some(self.last_order_at.map_or(at, |last| last.max(at)));
        }
        if anonymous.last_feedback_at > self.last_feedback_at {
            self.last_nps = anonymous.last_nps.or(self.last_nps);
            self.last_csat = anonymous.last_csat.or(self.last_csat);
            self.last_feedback_at = anonymous.last_feedback_at;
            self.detractor_since = anonymous.detractor_since;
        }
        self.reached |= anonymous.reached;
        self.merged.push(anonymous_id.to_string());
        self.merged.extend(anonymous.merged);
        let keep_own = matches!(self.stage, Some(Stage::ChurnRisk | Stage::WinBack));
        if !keep_own && funnel_rank(anonymous.stage) > funnel_rank(self.stage) {
            anonymous.stage
        } else {
            self.stage
        }
    }
}

/// How far down the funnel a stage is; churn risk and win-back are off it.
pub fn funnel_rank(stage: Option<Stage>) -> u8 {
    match stage {
        Some(Stage::Awareness) => 1,
        Some(Stage::Consideration) => 2,
        Some(Stage::Purchase) => 3,
        Some(Stage::PostPurchase) => 4,
        Some(Stage::Loyal) => 5,
        None | Some(Stage::ChurnRisk | Stage::WinBack) => 0,
    }
}
