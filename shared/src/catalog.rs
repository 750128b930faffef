//! The catalog as data: subscription tiers, credit packs and the single report, with prices
//! in integer cents. Handlers render these; nothing else states a price or a limit.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub const CURRENCY: &str = "USD";

/// A plan: the free trial or a paid tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Free,
    Pro,
    Enterprise,
}

#[derive(Debug)]
pub struct TierInfo {
    pub tier: Tier,
    pub name: &'static str,
    pub price_cents: i64,
    pub interval: &'static str,
    pub features: &'static [&'static str],
    /// Analyses per billing period; `None` is unlimited.
    pub analyses_limit: Option<u32>,
    /// Chat messages per billing period; `None` is unlimited.
    pub chat_messages_limit: Option<u32>,
    /// The lookup key of the paid tiers' Stripe price ([`Sellable`]).
    pub lookup_key: Option<&'static str>,
    /// How fast each API key of an account on this plan may call the API.
    pub rate_limit: RateLimit,
}

/// A per-key rate limit: `burst` requests per window of `burst / rate` seconds, so `rate`
/// requests per second sustained (see `crate::ratelimit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Requests per second, sustained.
    pub rate: u32,
    /// Requests admitted in one window; a multiple of `rate`.
    pub burst: u32,
}

/// The limit of internal keys (the local stack's dev key, load tests): far above any plan,
/// so what is measured is the API, with the limiter's code path still run.
pub const INTERNAL_RATE_LIMIT: RateLimit = RateLimit {
    rate: 100_000,
    burst: 400_000,
};

/// In the order the API lists them.
pub const TIERS: [TierInfo; 3] = [
    TierInfo {
        tier: Tier::Free,
        name: "Free Trial",
        price_cents: 0,
        interval: "month",
        features: &["1 analysis per month", "50 chat messages", "Basic support"],
        analyses_limit: Some(1),
        chat_messages_limit: Some(50),
        lookup_key: None,
        rate_limit: RateLimit { rate: 5, burst: 20 },
    },
    TierInfo {
        tier: Tier::Pro,
        name: "Pro",
        price_cents: 9900,
        interval: "month",
        features: &[
            "100 analyses per month",
            "Unlimited chat messages",
            "Priority support",
            "White-label widget",
            "Advanced cost estimates",
        ],
        analyses_limit: Some(100),
        chat_messages_limit: None,
        lookup_key: Some("billing_pro_monthly"),
        rate_limit: RateLimit {
            rate: 50,
            burst: 200,
        },
    },
    TierInfo {
        tier: Tier::Enterprise,
        name: "Enterprise",
        price_cents: 99900,
        interval: "month",
        features: &[
            "Unlimited analyses",
            "Unlimited chat messages",
            "Dedicated support",
            "Custom integrations",
            "SLA guarantee",
            "On-premise deployment option",
        ],
        analyses_limit: None,
        chat_messages_limit: None,
        lookup_key: Some("billing_enterprise_monthly"),
        rate_limit: RateLimit {
            rate: 250,
            burst: 1000,
        },
    },
];

impl Tier {
    pub fn info(self) -> &'static TierInfo {
        &TIERS[self as usize]
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Pro => "pro",
            Tier::Enterprise => "enterprise",
        }
    }

    /// The tier named `raw` (`free`, `pro`, `enterprise`).
    pub fn parse(raw: &str) -> Option<Tier> {
        TIERS.iter().map(|t| t.tier).find(|t| t.as_str() == raw)
    }

    /// The paid tier sold under this lookup key.
    pub fn from_lookup_key(lookup_key: &str) -> Option<Tier> {
        TIERS
            .iter()
            .find(|t| t.lookup_key == Some(lookup_key))
            .map(|t| t.tier)
    }
}

/// A credit pack: `single` (1 credit), `medium` (5) or `pro` (10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PackType {
    Single,
    Medium,
    Pro,
}

#[derive(Debug)]
pub struct Pack {
    pub pack_type: PackType,
    pub name: &'static str,
    pub credits: u32,
    pub price_cents: i64,
    /// The lookup key of the pack's one-time Stripe price.
    pub lookup_key: &'static str,
}

/// In the order the API lists them.
pub const PACKS: [Pack; 3] = [
    Pack {
        pack_type: PackType::Single,
        name: "Single Analysis",
        credits: 1,
        price_cents: 499,
        lookup_key: "billing_credits_single",
    },
    Pack {
        pack_type: PackType::Medium,
        name: "5 Credits Pack",
        credits: 5,
        price_cents: 1999,
        lookup_key: "billing_credits_medium",
    },
    Pack {
        pack_type: PackType::Pro,
        name: "10 Credits Pack",
        credits: 10,
        price_cents: 2999,
        lookup_key: "billing_credits_pro",
    },
];

impl PackType {
    pub fn pack(self) -> &'static Pack {
        &PACKS[self as usize]
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PackType::Single => "single",
            PackType::Medium => "medium",
            PackType::Pro => "pro",
        }
    }

    pub fn parse(raw: &str) -> Option<PackType> {
        PACKS
            .iter()
            .map(|p| p.pack_type)
            .find(|t| t.as_str() == raw)
    }
}

/// The one-time $29 report: one analysis credit valid for 30 days.
#[derive(Debug)]
pub struct Report {
    pub name: &'static str,
    pub price_cents: i64,
    pub credits: u32,
    pub valid_days: u32,
    /// The lookup key of the report's one-time Stripe price.
    pub lookup_key: &'static str,
}

pub const REPORT: Report = Report {
    name: "Single Report",
    price_cents: 2900,
    credits: 1,
    valid_days: 30,
    lookup_key: "billing_report_single",
};

/// Something the catalog sells through Stripe: a product with one active price, named by a
/// lookup key. Stripe chooses price ids (and they differ between test and live mode); code
/// names a price by its key, `admin stripe-sync` creates or moves the key, and the functions
/// resolve keys to ids once per cold start (`shared::stripe::prices`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sellable {
    pub lookup_key: &'static str,
    /// The Stripe product's id: ours, stable (Stripe takes a product id on create).
    pub product_id: &'static str,
    /// The product's name, as Checkout and invoices show it.
    pub name: &'static str,
    pub unit_amount_cents: i64,
    /// `Some("month")` for a subscription's recurring price; `None` for a one-time price.
    pub interval: Option<&'static str>,
}

/// Every sellable thing, paid tiers first (in the API's order), then packs, then the report.
pub fn sellables() -> Vec<Sellable> {
    let tiers = TIERS.iter().filter_map(|t| {
        t.lookup_key.map(|lookup_key| Sellable {
            lookup_key,
            product_id: product_id(lookup_key),
            name: t.name,
            unit_amount_cents: t.price_cents,
            interval: Some(t.interval),
        })
    });
    let packs = PACKS.iter().map(|p| Sellable {
        lookup_key: p.lookup_key,
        product_id: product_id(p.lookup_key),
        name: p.name,
        unit_amount_cents: p.price_cents,
        interval: None,
    });
    let report = std::iter::once(Sellable {
        lookup_key: REPORT.lookup_key,
        product_id: product_id(REPORT.lookup_key),
        name: REPORT.name,
        unit_amount_cents: REPORT.price_cents,
        interval: None,
    });
    tiers.chain(packs).chain(report).collect()
}

/// Every lookup key the functions resolve at start.
pub fn lookup_keys() -> Vec<&'static str> {
    sellables().iter().map(|s| s.lookup_key).collect()
}

/// A product per lookup key: `billing_pro_monthly` is sold as product `billing_pro_monthly`.
/// One product per price keeps a renamed or repriced item one product in Stripe's reports.
const fn product_id(lookup_key: &'static str) -> &'static str {
    lookup_key
}

/// `$4.99` from 499 cents.
pub fn dollars(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}${}.{:02}", cents / 100, cents % 100)
}

/// A tier as `GET /v1/billing/tiers` shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "pro", "name": "Pro", "price": 99, "currency": "USD", "interval": "month",
    "features": ["100 analyses per month", "Unlimited chat messages", "Priority support",
                 "White-label widget", "Advanced cost estimates"],
    "analyses_limit": 100, "stripe_price_id": "price_1SZPUkR9pxNkCCCYoc4jXp56"}))]
pub struct TierView {
    pub id: Tier,
    #[schema(value_type = String, example = "Pro")]
    pub name: &'static str,
    /// Whole dollars, as the spec shows them.
    #[schema(minimum = 0)]
    pub price: i64,
    /// ISO 4217, always `USD`.
    #[schema(value_type = String, example = "USD")]
    pub currency: &'static str,
    /// The billing interval, `month`.
    #[schema(value_type = String, example = "month")]
    pub interval: &'static str,
    #[schema(value_type = Vec<String>)]
    pub features: &'static [&'static str],
    /// Analyses per billing period; `null` is unlimited.
    #[schema(required = true, minimum = 0)]
    pub analyses_limit: Option<u32>,
    /// Stripe's price, for the paid tiers only: the id Stripe gave the price that holds the
    /// tier's lookup key, resolved when the function started.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, nullable = false)]
    pub stripe_price_id: Option<String>,
}

impl TierView {
    /// The tier as shown, with the Stripe price id its lookup key resolved to.
    pub fn new(t: &TierInfo, stripe_price_id: Option<String>) -> Self {
        debug_assert_eq!(t.price_cents % 100, 0, "tier prices are whole dollars");
        Self {
            id: t.tier,
            name: t.name,
            price: t.price_cents / 100,
            currency: CURRENCY,
            interval: t.interval,
            features: t.features,
            analyses_limit: t.analyses_limit,
            stripe_price_id,
        }
    }
}

/// A pack as `GET /v1/credits/packs` (and a 402's `purchase_options`) shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"pack_type": "medium", "name": "5 Credits Pack", "credits": 5,
    "price_cents": 1999, "price_display": "$19.99", "per_credit_display": "$3.99/credit"}))]
pub struct PackView {
    pub pack_type: PackType,
    #[schema(value_type = String, example = "5 Credits Pack")]
    pub name: &'static str,
    #[schema(minimum = 1)]
    pub credits: u32,
    #[schema(minimum = 0)]
    pub price_cents: i64,
    #[schema(example = "$19.99")]
    pub price_display: String,
    #[schema(example = "$3.99/credit")]
    pub per_credit_display: String,
}

impl From<&Pack> for PackView {
    fn from(p: &Pack) -> Self {
        // Per-credit prices are shown rounded down to the cent ($19.99 / 5 → $3.99).
        let per_credit = p.price_cents / i64::from(p.credits.max(1));
        Self {
            pack_type: p.pack_type,
            name: p.name,
            credits: p.credits,
            price_cents: p.price_cents,
            price_display: dollars(p.price_cents),
            per_credit_display: format!("{}/credit", dollars(per_credit)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_formats_cents() {
        assert_eq!(dollars(499), "$4.99");
        assert_eq!(dollars(2900), "$29.00");
        assert_eq!(dollars(5), "$0.05");
        assert_eq!(dollars(-90000), "-$900.00");
    }

    #[test]
    fn catalog_order_matches_discriminants() {
        for (i, t) in TIERS.iter().enumerate() {
            assert_eq!(t.tier as usize, i);
        }
        for (i, p) in PACKS.iter().enumerate() {
            assert_eq!(p.pack_type as usize, i);
        }
    }

    #[test]
    fn paid_tiers_map_back_from_their_lookup_key() {
        assert_eq!(
            Tier::from_lookup_key("billing_pro_monthly"),
            Some(Tier::Pro)
        );
        assert_eq!(
            Tier::from_lookup_key("billing_enterprise_monthly"),
            Some(Tier::Enterprise)
        );
        assert_eq!(Tier::from_lookup_key("billing_credits_pro"), None);
    }

    #[test]
    fn every_sellable_has_its_own_lookup_key() {
        let keys = lookup_keys();
        let unique: std::collections::BTreeSet<_> = keys.iter().collect();
        assert_eq!(keys.len(), 6);
        assert_eq!(unique.len(), keys.len());
        // Stripe lists at most 10 lookup keys per call: the functions resolve them in one.
        assert!(keys.len() <= 10);
    }

    #[test]
    fn per_credit_prices_match_the_spec() {
        let shown: Vec<String> = PACKS
            .iter()
            .map(|p| PackView::from(p).per_credit_display)
            .collect();
        assert_eq!(shown, ["$4.99/credit", "$3.99/credit", "$2.99/credit"]);
    }
}
