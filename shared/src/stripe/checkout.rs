//! What our flows write in the metadata of the Stripe objects they create, typed both ways:
//! each type's `to_metadata` is what goes to Stripe, its `from_metadata` how the webhook and
//! the reconciler read it back. No other code names a metadata key.
//!
//! - [`Owner`] (every object: customers, Checkout Sessions, subscriptions): whose it is.
//! - [`Order`] (Checkout Sessions and the subscriptions we create): the owner and the
//!   [`Purpose`], what is bought.
//! - [`PriceChange`] (a subscription whose price we changed): the request that changed it
//!   and what that change answered, so a retry whose change already reached Stripe answers
//!   the same.

use crate::catalog::{PackType, Tier};
use crate::domain::Subject;
use std::collections::HashMap;

const ACCOUNT: &str = "account_id";
const SUBJECT: &str = "subject";
const PURPOSE: &str = "purpose";
const TIER: &str = "tier";
const PACK_TYPE: &str = "pack_type";
const CREATED_BY: &str = "created_by";
const CHANGED_BY: &str = "changed_by";
const PREVIOUS_TIER: &str = "previous_tier";
const PRORATION_CENTS: &str = "proration_cents";

/// Stripe metadata: string keys to string values.
pub type Metadata = HashMap<String, String>;

/// Whose a Stripe object is: an account and a subject key (`Subject::key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub account_id: String,
    pub subject: String,
}

impl Owner {
    pub fn to_metadata(&self) -> Metadata {
        HashMap::from([
            (ACCOUNT.to_string(), self.account_id.clone()),
            (SUBJECT.to_string(), self.subject.clone()),
        ])
    }

    /// The owner the metadata names; `None` when it names none, or a subject that is not a
    /// key we make (not ours, or tampered with).
    pub fn from_metadata(metadata: &Metadata) -> Option<Self> {
        let account_id = metadata.get(ACCOUNT)?;
        let subject = metadata.get(SUBJECT)?;
        Subject::is_key(subject).then(|| Self {
            account_id: account_id.clone(),
            subject: subject.clone(),
        })
    }
}

/// What a paid Checkout Session, or a subscription we create, buys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Subscription(Tier),
    /// The $29 report: one analysis credit.
    Report,
    CreditPack(PackType),
}

impl Purpose {
    /// The purpose's name in the metadata, which is also the reason of the ledger grant it
    /// makes.
    pub fn name(self) -> &'static str {
        match self {
            Purpose::Subscription(_) => "subscription",
            Purpose::Report => "report",
            Purpose::CreditPack(_) => "credit_pack",
        }
    }
}

/// Why metadata is not an [`Order`] of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAnOrder {
    /// No owner of ours.
    NoOwner,
    /// A purpose (or its tier or pack) we do not sell, as found (`None`: missing).
    Unknown {
        key: &'static str,
        found: Option<String>,
    },
}

/// The metadata of a Checkout Session or a subscription our flows create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub owner: Owner,
    pub purpose: Purpose,
    /// On a subscription created server-side: the identity of the request that created it
    /// (a derived Stripe key), so a retry of that request finds it instead of refusing a
    /// second subscription.
    pub created_by: Option<String>,
}

impl Order {
    pub fn new(owner: Owner, purpose: Purpose) -> Self {
        Self {
            owner,
            purpose,
            created_by: None,
        }
    }

    pub fn to_metadata(&self) -> Metadata {
        let mut metadata = self.owner.to_metadata();
        metadata.insert(PURPOSE.to_string(), self.purpose.name().to_string());
        match self.purpose {
            Purpose::Subscription(tier) => {
                metadata.insert(TIER.to_string(), tier.as_str().to_string());
            }
            Purpose::CreditPack(pack) => {
                metadata.insert(PACK_TYPE.to_string(), pack.as_str().to_string());
            }
            Purpose::Report => {}
        }
        if let Some(by) = &self.created_by {
            metadata.insert(CREATED_BY.to_string(), by.clone());
        }
        metadata
    }

    pub fn from_metadata(metadata: &Metadata) -> Result<Self, NotAnOrder> {
        let owner = Owner::from_metadata(metadata).ok_or(NotAnOrder::NoOwner)?;
        let unknown = |key: &'static str| NotAnOrder::Unknown {
            key,
            found: metadata.get(key).cloned(),
        };
        let purpose = match metadata.get(PURPOSE).map(String::as_str) {
            Some("subscription") => Purpose::Subscription(
                metadata
                    .get(TIER)
                    .and_then(|t| Tier::parse(t))
                    .ok_or_else(|| unknown(TIER))?,
            ),
            Some("report") => Purpose::Report,
            Some("credit_pack") => Purpose::CreditPack(
                metadata
                    .get(PACK_TYPE)
                    .and_then(|p| PackType::parse(p))
                    .ok_or_else(|| unknown(PACK_TYPE))?,
            ),
            _ => return Err(unknown(PURPOSE)),
        };
        Ok(Self {
            owner,
            purpose,
            created_by: metadata.get(CREATED_BY).cloned(),
        })
    }
}

/// What a price change records on the subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceChange {
    /// The identity of the request that made the change (a derived Stripe key).
    pub changed_by: String,
    /// The tier before the change.
    pub previous_tier: Option<Tier>,
    /// What the change prorated, in cents.
    pub proration_cents: i64,
}

impl PriceChange {
    pub fn to_metadata(&self) -> Metadata {
        HashMap::from([
            (CHANGED_BY.to_string(), self.changed_by.clone()),
            (
                PREVIOUS_TIER.to_string(),
                self.previous_tier.map_or("", Tier::as_str).to_string(),
            ),
            (
                PRORATION_CENTS.to_string(),
                self.proration_cents.to_string(),
            ),
        ])
    }

    /// The last price change recorded on a subscription, if any.
    pub fn from_metadata(metadata: &Metadata) -> Option<Self> {
        Some(Self {
            changed_by: metadata.get(CHANGED_BY)?.clone(),
            previous_tier: metadata.get(PREVIOUS_TIER).and_then(|t| Tier::parse(t)),
            proration_cents: metadata
                .get(PRORATION_CENTS)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner {
            account_id: "acct_1".into(),
            subject: Subject::Account.key(),
        }
    }

    #[test]
    fn every_order_reads_back_as_written() {
        for purpose in [
            Purpose::Subscription(Tier::Pro),
            Purpose::Subscription(Tier::Enterprise),
            Purpose::Report,
            Purpose::CreditPack(PackType::Single),
            Purpose::CreditPack(PackType::Medium),
            Purpose::CreditPack(PackType::Pro),
        ] {
            let mut order = Order::new(owner(), purpose);
            assert_eq!(
                Order::from_metadata(&order.to_metadata()),
                Ok(order.clone())
            );
            order.created_by = Some("req_1".into());
            assert_eq!(Order::from_metadata(&order.to_metadata()), Ok(order));
        }
        // The names Stripe holds, as the flows wrote them before these types.
        let written = Order::new(owner(), Purpose::CreditPack(PackType::Medium)).to_metadata();
        assert_eq!(written["purpose"], "credit_pack");
        assert_eq!(written["pack_type"], "medium");
        assert_eq!(written["account_id"], "acct_1");
        assert_eq!(written["subject"], "self");
    }

    #[test]
    fn metadata_that_is_not_an_order_of_ours_says_why() {
        let mut m = Order::new(owner(), Purpose::Report).to_metadata();
        m.insert("purpose".into(), "gift_card".into());
        assert_eq!(
            Order::from_metadata(&m),
            Err(NotAnOrder::Unknown {
                key: "purpose",
                found: Some("gift_card".into())
            })
        );
        let mut m = Order::new(owner(), Purpose::CreditPack(PackType::Pro)).to_metadata();
        m.insert("pack_type".into(), "huge".into());
        assert!(matches!(
            Order::from_metadata(&m),
            Err(NotAnOrder::Unknown {
                key: "pack_type",
                ..
            })
        ));
        assert_eq!(
            Order::from_metadata(&Metadata::new()),
            Err(NotAnOrder::NoOwner)
        );
        // A subject that is not a key of ours is no owner.
        let mut m = owner().to_metadata();
        m.insert("subject".into(), "user#a#b\u{0}".into());
        assert_eq!(Owner::from_metadata(&m), None);
    }

    #[test]
    fn a_price_change_reads_back_as_written() {
        let change = PriceChange {
            changed_by: "chg_1".into(),
            previous_tier: Some(Tier::Pro),
            proration_cents: 81_000,
        };
        assert_eq!(
            PriceChange::from_metadata(&change.to_metadata()),
            Some(change)
        );
        assert_eq!(PriceChange::from_metadata(&owner().to_metadata()), None);
    }
}
