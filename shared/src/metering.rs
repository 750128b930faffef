//! Which allowance pays for an analysis or a chat message, and over which period: pure rules
//! over a subject's plan and the time. The counting itself is `crate::usage`.
//!
//! A paid plan (Pro, Enterprise, in a state that grants access) meters by its Stripe billing
//! period; a subject without one is on the free tier, metered by calendar month (UTC). Report
//! credits are counted on a meter of their own, so they never eat a plan's or the free tier's
//! allowance.

use crate::catalog::Tier;
use crate::error::ApiError;
use crate::subscriptions::SubscriptionRecord;
use crate::usage::{Meter, month_bounds, month_period_key, subscription_period_key};

/// What meters a subject's usage now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Paid {
        tier: Tier,
        period_start: i64,
        period_end: i64,
    },
    Free,
}

/// The plan that meters a subject at `now`: a paid plan only while it grants access
/// ([`SubscriptionRecord::grants_access_at`], its grace included).
pub fn plan_of(record: Option<&SubscriptionRecord>, now: i64, grace_secs: i64) -> Plan {
    let Some(r) = record else { return Plan::Free };
    match (r.tier, r.current_period_start, r.current_period_end) {
        (Some(tier @ (Tier::Pro | Tier::Enterprise)), Some(start), Some(end))
            if r.grants_access_at(now, grace_secs) =>
        {
            Plan::Paid {
                tier,
                period_start: start,
                period_end: end,
            }
        }
        _ => Plan::Free,
    }
}

/// A metering period: the counter key and its bounds (unix s, end exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub key: String,
    pub start: i64,
    pub end: i64,
}

impl Plan {
    pub fn tier(&self) -> Tier {
        match self {
            Plan::Paid { tier, .. } => *tier,
            Plan::Free => Tier::Free,
        }
    }

    /// The period a plan's own allowance is counted in.
    pub fn period(&self, now: i64) -> Period {
        match *self {
            Plan::Paid {
                period_start,
                period_end,
                ..
            } => Period {
                key: subscription_period_key(period_start),
                start: period_start,
                end: period_end,
            },
            Plan::Free => {
                let (start, end) = month_bounds(now);
                Period {
                    key: format!("free:{}", month_suffix(now)),
                    start,
                    end,
                }
            }
        }
    }

    pub fn analyses_limit(&self) -> Option<u64> {
        self.tier().info().analyses_limit.map(u64::from)
    }

    pub fn chat_messages_limit(&self) -> Option<u64> {
        self.tier().info().chat_messages_limit.map(u64::from)
    }
}

fn month_suffix(now: i64) -> String {
    let key = month_period_key(now);
    key.split_once(':')
        .map(|(_, m)| m.to_string())
        .unwrap_or(key)
}

/// The counter for analyses and chat paid by report credits, by calendar month.
pub fn report_period_key(now: i64) -> String {
    format!("report:{}", month_suffix(now))
}

pub fn analyses_limit_exceeded(used: u64, limit: u64) -> ApiError {
    ApiError::LimitExceeded {
        message: format!(
            "Monthly analysis limit reached ({used}/{limit}). Upgrade to Enterprise for unlimited analyses."
        ),
        meter: Meter::Analyses,
        used,
        limit,
    }
}

pub fn chat_limit_exceeded(used: u64, limit: u64) -> ApiError {
    ApiError::LimitExceeded {
        message: format!(
            "Monthly chat message limit reached ({used}/{limit}). Upgrade to Pro for unlimited chat messages."
        ),
        meter: Meter::ChatMessages,
        used,
        limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_500;
    const GRACE: i64 = 3 * 86_400;

    fn record(tier: Tier, status: &str) -> SubscriptionRecord {
        SubscriptionRecord {
            account_id: "a".into(),
            subject: "self".into(),
            stripe_customer_id: "cus_1".into(),
            stripe_subscription_id: Some("sub_1".into()),
            stripe_item_id: None,
            tier: Some(tier),
            status: Some(status.into()),
            current_period_start: Some(1_000),
            current_period_end: Some(2_000),
            cancel_at_period_end: false,
            subscription_created: Some(1_000),
            payment_error: None,
            synced_at_ms: None,
        }
    }

    #[test]
    fn paid_plans_meter_by_stripe_period_and_the_free_tier_by_month() {
        let pro = plan_of(Some(&record(Tier::Pro, "active")), NOW, GRACE);
        assert_eq!(
            pro,
            Plan::Paid {
                tier: Tier::Pro,
                period_start: 1_000,
                period_end: 2_000
            }
        );
        assert_eq!(pro.period(1_500).key, subscription_period_key(1_000));
        assert_eq!(pro.analyses_limit(), Some(100));
        assert_eq!(pro.chat_messages_limit(), None);
        assert_eq!(
            plan_of(Some(&record(Tier::Enterprise, "past_due")), NOW, GRACE).analyses_limit(),
            None
        );
        for gone in ["canceled", "incomplete", "unpaid"] {
            assert_eq!(
                plan_of(Some(&record(Tier::Pro, gone)), NOW, GRACE),
                Plan::Free,
                "{gone}"
            );
        }
        // Past the period and its grace, the paid plan meters nothing: the free tier does.
        assert_eq!(
            plan_of(Some(&record(Tier::Pro, "active")), 2_000 + GRACE, GRACE),
            Plan::Free
        );
        let free = plan_of(None, NOW, GRACE);
        assert_eq!(
            (free.analyses_limit(), free.chat_messages_limit()),
            (Some(1), Some(50))
        );
        // 2026-11-15T00:00:00Z
        let p = free.period(1_795_219_200);
        assert!(p.key.starts_with("free:2026-11"), "{}", p.key);
        assert!(p.start <= 1_795_219_200 && 1_795_219_200 < p.end);
        assert_ne!(report_period_key(1_795_219_200), p.key);
    }

    #[test]
    fn limit_messages_carry_the_numbers() {
        let e = analyses_limit_exceeded(100, 100);
        assert_eq!(
            e.body()["error"]["message"],
            "Monthly analysis limit reached (100/100). Upgrade to Enterprise for unlimited analyses."
        );
        let c = chat_limit_exceeded(50, 50).body();
        assert_eq!(
            (
                c["error"]["chat_messages_used"].as_u64(),
                c["error"]["chat_messages_limit"].as_u64()
            ),
            (Some(50), Some(50))
        );
    }
}
