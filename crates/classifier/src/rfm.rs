//! RFM scores (recency, frequency, monetary; 1-5 each) and the segment they put a customer in.

use serde::{Deserialize, Serialize};

use crate::profile::Profile;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Score thresholds, from the `[rfm]` table of the rule file.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RfmThresholds {
    /// Days since the last order: at most `[0]` scores 5, ..., more than `[3]` scores 1.
    pub recency_days: [u32; 4],
    /// Lifetime orders: at least `[0]` scores 2, ..., at least `[3]` scores 5.
    pub frequency_orders: [u32; 4],
    /// Lifetime revenue: at least `[0]` scores 2, ..., at least `[3]` scores 5.
    pub monetary: [f64; 4],
}

/// A customer's RFM scores and segment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rfm {
    pub recency: u8,
    pub frequency: u8,
    pub monetary: u8,
    pub segment: &'static str,
}

impl RfmThresholds {
    /// Thresholds must be strictly increasing (and revenue ones positive).
    pub fn validate(&self) -> Result<(), String> {
        let increasing = |name: &str, v: [f64; 4]| {
            if v.windows(2).all(|w| w[0] < w[1]) && v[0] > 0.0 {
                Ok(())
            } else {
                Err(format!(
                    "field `{name}`: thresholds must be positive and strictly increasing"
                ))
            }
        };
        increasing("recency_days", self.recency_days.map(f64::from))?;
        increasing("frequency_orders", self.frequency_orders.map(f64::from))?;
        increasing("monetary", self.monetary)
    }

    /// The scores of `profile` at `now`.
    pub fn score(&self, profile: &Profile, now: i64) -> Rfm {
        let recency = match profile.last_order_at {
            None => 1,
            Some(at) => {
                let days = (now - at).max(0) / DAY_MS;
                5 - self
                    .recency_days
                    .iter()
                    .filter(|limit| days > i64::from(**limit))
                    .count() as u8
            }
        };
        let frequency = 1 + self
            .frequency_orders
            .iter()
            .filter(|n| profile.orders >= **n)
            .count() as u8;
        let monetary = 1 + self
            .monetary
            .iter()
            .filter(|m| profile.revenue >= **m)
            .count() as u8;
        Rfm {
            recency,
            frequency,
            monetary,
            segment: segment(profile.orders, recency, frequency, monetary),
        }
    }
}

/// The segment of a customer with `orders` and the given scores.
pub fn segment(orders: u32, r: u8, f: u8, m: u8) -> &'static str {
    match (r, f, m) {
        _ if orders == 0 => "prospect",
        (4.., 4.., 4..) => "champions",
        (3.., 3.., _) => "loyal",
        (4.., 1, _) => "new",
        (3.., _, _) => "promising",
        (_, 3.., _) => "at_risk",
        _ => "hibernating",
    }
}

#[cfg(test)]
mod tests {
    use journey_core::contract::Channel;

    use super::*;

    fn thresholds() -> RfmThresholds {
        RfmThresholds {
            recency_days: [7, 30, 90, 180],
            frequency_orders: [2, 3, 5, 10],
            monetary: [50.0, 200.0, 500.0, 1000.0],
        }
    }

    fn customer(orders: u32, revenue: f64, days_since_order: i64) -> (Profile, i64) {
        let mut p = Profile::new(0, Channel::Web);
        p.orders = orders;
        p.revenue = revenue;
        p.last_order_at = (orders > 0).then_some(0);
        (p, days_since_order * DAY_MS)
    }

    #[test]
    fn scores_and_segments_follow_the_thresholds() {
        let cases = [
            ((0, 0.0, 0), (1, 1, 1, "prospect")),
            ((1, 30.0, 2), (5, 1, 1, "new")),
            ((1, 60.0, 8), (4, 1, 2, "new")),
            ((2, 120.0, 40), (3, 2, 2, "promising")),
            ((5, 600.0, 7), (5, 4, 4, "champions")),
            ((12, 5000.0, 1), (5, 5, 5, "champions")),
            ((3, 100.0, 60), (3, 3, 2, "loyal")),
            ((6, 900.0, 200), (1, 4, 4, "at_risk")),
            ((2, 80.0, 120), (2, 2, 2, "hibernating")),
        ];
        for ((orders, revenue, days), (r, f, m, segment)) in cases {
            let (p, now) = customer(orders, revenue, days);
            let rfm = thresholds().score(&p, now);
            assert_eq!(
                (rfm.recency, rfm.frequency, rfm.monetary, rfm.segment),
                (r, f, m, segment),
                "{orders} orders, {revenue}, {days} days"
            );
        }
    }

    #[test]
    fn thresholds_must_increase() {
        let mut t = thresholds();
        assert!(t.validate().is_ok());
        t.monetary = [50.0, 50.0, 500.0, 1000.0];
        assert!(t.validate().unwrap_err().contains("monetary"));
    }
}
