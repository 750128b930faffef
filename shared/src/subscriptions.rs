//! A subject's plan as we keep it (one item per account and subject in the Subscriptions
//! table), how Stripe's answer becomes that item, and how the API shows it.
//!
//! State only moves forward: every write carries the time of the Stripe read it reflects
//! (`synced_at_ms`) and is refused if a newer read was stored, and a subscription created
//! earlier than the stored one never replaces it. Webhooks re-read the subscription from
//! Stripe instead of trusting the event's copy, so delivery order cannot matter.

use crate::catalog::Tier;
use crate::clock::rfc3339;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    pub account_id: String,
    pub subject: String,
    pub stripe_customer_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_subscription_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_item_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SubscriptionStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_period_start: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_period_end: Option<i64>,
    #[serde(default)]
    pub cancel_at_period_end: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_created: Option<i64>,
    /// Why the last payment failed, in Stripe's words; cleared once the subscription is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_at_ms: Option<i64>,
}

/// Stripe's subscription status, as Stripe reports it (its documented set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Active,
    PastDue,
    Canceled,
    Incomplete,
    IncompleteExpired,
    Trialing,
    Unpaid,
    Paused,
}

impl SubscriptionStatus {
    pub const ALL: [SubscriptionStatus; 8] = [
        SubscriptionStatus::Active,
        SubscriptionStatus::PastDue,
        SubscriptionStatus::Canceled,
        SubscriptionStatus::Incomplete,
        SubscriptionStatus::IncompleteExpired,
        SubscriptionStatus::Trialing,
        SubscriptionStatus::Unpaid,
        SubscriptionStatus::Paused,
    ];

    /// Stripe's name of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::PastDue => "past_due",
            SubscriptionStatus::Canceled => "canceled",
            SubscriptionStatus::Incomplete => "incomplete",
            SubscriptionStatus::IncompleteExpired => "incomplete_expired",
            SubscriptionStatus::Trialing => "trialing",
            SubscriptionStatus::Unpaid => "unpaid",
            SubscriptionStatus::Paused => "paused",
        }
    }

    /// The status Stripe names `name`; `None` outside Stripe's set.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether the subject is subscribed (and may not start a second plan): every status but
    /// the two that end a subscription for good.
    pub fn is_live(self) -> bool {
        !matches!(
            self,
            SubscriptionStatus::Canceled | SubscriptionStatus::IncompleteExpired
        )
    }

    /// Whether a paid plan in this status grants access: active and trialing, and past_due
    /// while Stripe retries the payment (access ends when Stripe gives up and cancels).
    pub fn grants_access(self) -> bool {
        matches!(
            self,
            SubscriptionStatus::Active | SubscriptionStatus::Trialing | SubscriptionStatus::PastDue
        )
    }

    /// Whether the first payment went through (a payment error is then behind us).
    pub fn is_paid_up(self) -> bool {
        matches!(
            self,
            SubscriptionStatus::Active | SubscriptionStatus::Trialing
        )
    }
}

impl SubscriptionRecord {
    /// Whether the plan grants access at `now` (unix s): a status that grants access, and a
    /// billing period that ended less than `grace_secs` ago. Past that, our copy is stale —
    /// a renewal would have brought a newer period — so access fails closed, whatever the
    /// stored status, until a sync with Stripe says otherwise.
    pub fn grants_access_at(&self, now: i64, grace_secs: i64) -> bool {
        self.status.is_some_and(SubscriptionStatus::grants_access)
            && self
                .current_period_end
                .is_some_and(|end| now < end.saturating_add(grace_secs))
    }

    /// Whether this plan gives unlimited document access at `now` (Pro or Enterprise,
    /// granting access: [`Self::grants_access_at`]).
    pub fn has_unlimited(&self, now: i64, grace_secs: i64) -> bool {
        matches!(self.tier, Some(Tier::Pro | Tier::Enterprise))
            && self.grants_access_at(now, grace_secs)
    }
}

/// `GET /v1/subscriptions`: the spec's object, every key.
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
#[schema(example = json!({"subscription_id": "sub_1abc123xyz", "status": "active", "tier": "pro",
    "current_period_start": "2025-11-01T00:00:00Z", "current_period_end": "2025-12-01T00:00:00Z",
    "cancel_at_period_end": false, "analyses_used": 8, "analyses_limit": 100,
    "created_at": "2025-11-01T00:00:00Z", "stripe_customer_id": "cus_abc123xyz"}))]
pub struct SubscriptionView {
    #[schema(example = "sub_1abc123xyz")]
    pub subscription_id: String,
    pub status: SubscriptionStatus,
    pub tier: Tier,
    #[schema(required = true, format = DateTime)]
    pub current_period_start: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub current_period_end: Option<String>,
    /// True when the subscription ends at `current_period_end`.
    pub cancel_at_period_end: bool,
    /// Analyses counted in the current billing period.
    pub analyses_used: u64,
    /// The tier's analyses per period; `null` is unlimited.
    #[schema(required = true, minimum = 0)]
    pub analyses_limit: Option<u32>,
    #[schema(required = true, format = DateTime)]
    pub created_at: Option<String>,
    #[schema(example = "cus_abc123xyz")]
    pub stripe_customer_id: String,
}

/// A unix time as the spec's RFC 3339 UTC string.
pub fn timestamp(unix: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .map(rfc3339)
}

impl SubscriptionView {
    /// The view of a record that has a subscription; `None` when it has none.
    pub fn of(record: &SubscriptionRecord, analyses_used: u64) -> Option<Self> {
        let id = record.stripe_subscription_id.clone()?;
        let tier = record.tier.unwrap_or(Tier::Free);
        Some(Self {
            subscription_id: id,
            status: record.status.unwrap_or(SubscriptionStatus::Incomplete),
            tier,
            current_period_start: record.current_period_start.and_then(timestamp),
            current_period_end: record.current_period_end.and_then(timestamp),
            cancel_at_period_end: record.cancel_at_period_end,
            analyses_used,
            analyses_limit: tier.info().analyses_limit,
            created_at: record.subscription_created.and_then(timestamp),
            stripe_customer_id: record.stripe_customer_id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: &str) -> SubscriptionRecord {
        SubscriptionRecord {
            account_id: "a".into(),
            subject: "self".into(),
            stripe_customer_id: "cus_1".into(),
            stripe_subscription_id: Some("sub_1".into()),
            stripe_item_id: Some("si_1".into()),
            tier: Some(Tier::Enterprise),
            status: Some(crate::subscriptions::SubscriptionStatus::parse(status).unwrap()),
            current_period_start: Some(1_761_955_200),
            current_period_end: Some(1_764_547_200),
            cancel_at_period_end: false,
            subscription_created: Some(1_761_955_200),
            payment_error: None,
            synced_at_ms: Some(1),
        }
    }

    #[test]
    fn the_view_has_every_key_of_the_spec() {
        let view = SubscriptionView::of(&record("active"), 8).unwrap();
        let json = serde_json::to_value(&view).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for key in [
            "subscription_id",
            "status",
            "tier",
            "current_period_start",
            "current_period_end",
            "cancel_at_period_end",
            "analyses_used",
            "analyses_limit",
            "created_at",
            "stripe_customer_id",
        ] {
            assert!(keys.contains(&key), "{key} missing from {json}");
        }
        assert_eq!(json["current_period_start"], "2025-11-01T00:00:00Z");
        assert_eq!(json["current_period_end"], "2025-12-01T00:00:00Z");
        assert_eq!(
            json["analyses_limit"],
            serde_json::Value::Null,
            "enterprise is unlimited"
        );
        assert_eq!(json["analyses_used"], 8);
    }

    #[test]
    fn a_customer_without_a_subscription_has_no_view() {
        let r = SubscriptionRecord {
            stripe_subscription_id: None,
            ..record("active")
        };
        assert!(SubscriptionView::of(&r, 0).is_none());
    }

    const NOW: i64 = 1_762_000_000;
    const GRACE: i64 = 3 * 86_400;

    #[test]
    fn paid_plans_in_good_or_grace_standing_are_unlimited() {
        assert!(record("active").has_unlimited(NOW, GRACE));
        assert!(record("trialing").has_unlimited(NOW, GRACE));
        assert!(record("past_due").has_unlimited(NOW, GRACE));
        assert!(!record("canceled").has_unlimited(NOW, GRACE));
        assert!(!record("incomplete").has_unlimited(NOW, GRACE));
        assert!(
            !SubscriptionRecord {
                tier: Some(Tier::Free),
                ..record("active")
            }
            .has_unlimited(NOW, GRACE)
        );
    }

    #[test]
    fn access_fails_closed_once_the_period_and_its_grace_are_over() {
        let active = record("active");
        let end = active.current_period_end.unwrap();
        assert!(active.grants_access_at(end - 1, GRACE));
        assert!(active.grants_access_at(end + GRACE - 1, GRACE));
        assert!(!active.grants_access_at(end + GRACE, GRACE));
        assert!(!active.has_unlimited(end + GRACE, GRACE));
        assert!(!active.grants_access_at(end, 0));
        let no_period = SubscriptionRecord {
            current_period_end: None,
            ..record("active")
        };
        assert!(!no_period.grants_access_at(NOW, GRACE));
    }

    #[test]
    fn the_status_decision_table() {
        use SubscriptionStatus::*;
        // (status, live: blocks a second plan, grants access, paid up)
        let table = [
            (Active, true, true, true),
            (Trialing, true, true, true),
            (PastDue, true, true, false),
            (Incomplete, true, false, false),
            (Unpaid, true, false, false),
            (Paused, true, false, false),
            (Canceled, false, false, false),
            (IncompleteExpired, false, false, false),
        ];
        assert_eq!(table.len(), SubscriptionStatus::ALL.len());
        for (status, live, access, paid) in table {
            assert_eq!(
                (
                    status.is_live(),
                    status.grants_access(),
                    status.is_paid_up()
                ),
                (live, access, paid),
                "{status:?}"
            );
            // Stripe's name, the stored one and the API's are one.
            assert_eq!(SubscriptionStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                serde_json::to_string(&status).unwrap(),
                format!("\"{}\"", status.as_str())
            );
        }
        assert_eq!(SubscriptionStatus::parse("Active"), None);
        assert_eq!(SubscriptionStatus::parse("expired"), None);
    }
}
