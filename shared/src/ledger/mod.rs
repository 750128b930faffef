//! The credit ledger: per (account, subject) balances of credits on the `CreditLedger`
//! table, changed only by conditioned `TransactWriteItems` that write the balance and its
//! append-only entry together. Each credit has a [`CreditKind`], what it was sold for, and
//! pays for that only: document credits (the packs) unlock documents, analysis credits (the
//! report) pay analyses.
//!
//! Item layout (pk `"{account_id}#{subject_key}"`):
//! - `BALANCE`: `balance`, `pool` (document credits that never expire), `total_purchased`,
//!   `total_spent`, `total_expired`, and `lots`, a map from a grant's source id to
//!   `{remaining, expires_at, kind}` for credits that expire (a lot written before kinds
//!   existed gets its kind from its grant once), and `analysis_purchased`,
//!   `analysis_spent`, `analysis_expired`: the analysis credits' part of the totals (added up
//!   once from the entries on an item written before they were kept). `balance == pool +
//!   Σ lots.remaining`, `balance == total_purchased − total_spent − total_expired`, and the
//!   analysis totals add up to the analysis lots.
//! - `ENTRY#<ulid>`: `{id, kind: grant|spend|expiry, amount (±), reason, source_id?,
//!   created_at}`; spends also carry the `analysis_ids` they paid for. Never changed.
//!   A spend with reason `analysis` is an analysis paid with a report lot (written through
//!   the ledger's API by [`crate::metering`]): its `source_id` is the lot, and it has no
//!   `DOC#` item.
//! - `GRANT#<source_id>`: the marker that makes a second grant of one source impossible.
//! - `DOC#<analysis_id>`: `{analysis_id, granted_at, entry_id}`: a document bought with a
//!   credit ("already purchased"). A plan's access writes none (it lasts as long as the
//!   plan); items without `entry_id`, written by plan access before, own nothing.
//! - `PURCHASE#<created rfc3339>#<purchase id>`: a credit purchase, pending → completed.
//!
//! The decisions are pure (`rules`); `store` is the DynamoDB adapter (methods on
//! [`crate::store::Store`]).

pub mod rules;
pub(crate) mod store;

use serde::{Deserialize, Serialize};

/// The most distinct documents one access request may name (one transaction holds at most
/// 100 items: the balance, the entry, a document each, and write-offs of expired lots).
pub const MAX_ACCESS_IDS: usize = 50;

/// Whose ledger: an account and a subject (`Subject::key()`: `self` or `user#<id>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LedgerKey {
    pub account_id: String,
    pub subject: String,
}

impl LedgerKey {
    /// The partition key of every item of this ledger.
    pub fn pk(&self) -> String {
        format!("{}#{}", self.account_id, self.subject)
    }
}

/// What a credit pays for: what it was sold as. Each pays for that and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreditKind {
    /// Unlocks one document (`POST /v1/credits/access`): the credit packs.
    Document,
    /// Pays one analysis (`POST /v1/usage/analyses`): the $29 report.
    Analysis,
}

/// Credits to add, keyed by their source (the Stripe Checkout Session id): a source grants
/// once, ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant<'a> {
    pub source_id: &'a str,
    /// What the credits pay for.
    pub kind: CreditKind,
    pub credits: i64,
    pub reason: &'a str,
    /// Unix seconds from which the credits no longer count; `None` never expires.
    pub expires_at: Option<i64>,
    /// The pending purchase this grant completes ([`Purchase::sort_key`]), in the same
    /// transaction.
    pub purchase_sk: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantOutcome {
    /// The credits were added; `balance` is the unexpired balance right after the grant.
    Granted { balance: i64 },
    /// This source was granted before: nothing changed.
    AlreadyGranted,
}

/// Credits that expire, from one grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lot {
    pub source_id: String,
    pub kind: CreditKind,
    pub remaining: i64,
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// Document credits spendable now: expired ones never count (analysis credits are in
    /// `lots`, with their kind).
    pub balance: i64,
    /// Document credits ever granted (the credit packs bought) and spent on documents:
    /// `balance == total_purchased − total_spent` while document credits never expire.
    pub total_purchased: i64,
    pub total_spent: i64,
    /// The unexpired expiring lots with credits left, soonest-expiring first (their
    /// `expires_at` is always set). Credits not in a lot never expire.
    pub lots: Vec<Lot>,
}

/// Whether unlocking documents spends credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    Always,
    /// As for a subject with unlimited access (`has_unlimited` is then true).
    Never,
    /// Unless the subject's plan gives unlimited access: the plan is read in the same
    /// round trip as the ledger.
    UnlessUnlimited,
}

/// What an access did, and whether the subject's plan made it free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub outcome: AccessOutcome,
    pub has_unlimited: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessOutcome {
    Granted {
        /// Every requested id (owned before or bought now), in request order.
        accessible: Vec<String>,
        /// One per newly bought document; 0 when not charged.
        credits_spent: i64,
        remaining_balance: i64,
    },
    /// Nothing was written. `required`: the number of new documents; `available`: the
    /// unexpired balance.
    Insufficient { required: i64, available: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Grant,
    Spend,
    Expiry,
}

/// One append-only ledger line; `amount` is positive for grants, negative otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    pub kind: EntryKind,
    pub amount: i64,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    pub created_at: i64,
}

/// A credit purchase: `pending` until Stripe reports the payment, then `completed`; or
/// `expired` (its Checkout Session expired unpaid) or `failed` (its delayed payment failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PurchaseStatus {
    Pending,
    Completed,
    Expired,
    Failed,
}

impl PurchaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PurchaseStatus::Pending => "pending",
            PurchaseStatus::Completed => "completed",
            PurchaseStatus::Expired => "expired",
            PurchaseStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purchase {
    /// `cp_<ulid>`.
    pub id: String,
    /// The Stripe Checkout Session id: the source of the grant that completes it.
    pub session_id: String,
    pub pack_type: String,
    pub credits: i64,
    pub price_cents: i64,
    pub status: PurchaseStatus,
    /// Unix seconds.
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<i64>,
}

impl Purchase {
    /// The item's sort key, `PURCHASE#<created_at as RFC 3339>#<id>`: the caller puts it in
    /// the Checkout Session's metadata and hands it back as [`Grant::purchase_sk`].
    pub fn sort_key(&self) -> String {
        Self::sort_key_of(self.created_at, &self.id)
    }

    /// The `PURCHASE#…` sort key of a purchase created at `created_at` with this id.
    pub fn sort_key_of(created_at: i64, id: &str) -> String {
        let created = time::OffsetDateTime::from_unix_timestamp(created_at)
            .map(crate::clock::rfc3339)
            .unwrap_or_else(|_| format!("{created_at:020}"));
        format!("{}{created}#{id}", store::PURCHASE_PREFIX)
    }

    /// The id of the purchase paid through this Checkout Session: derived from the session,
    /// so a retried purchase request (which Stripe answers with the same session) records
    /// the same purchase, and the webhook finds it from the session alone.
    pub fn id_for_session(session_id: &str) -> String {
        use sha2::Digest;
        let digest = hex::encode(sha2::Sha256::digest(session_id.as_bytes()));
        format!("cp_{}", &digest[..24])
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchasePage {
    /// Newest first.
    pub purchases: Vec<Purchase>,
    /// Credits of completed purchases (all of them, not just this page).
    pub total_purchased: i64,
    /// Price of completed purchases (all of them), in cents.
    pub total_spent_cents: i64,
}

/// The most purchases one page returns.
pub const MAX_PURCHASE_PAGE: usize = 100;
