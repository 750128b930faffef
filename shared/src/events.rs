//! What a Stripe event does to our copy: one function, [`apply`], for the webhook and for the
//! reconciler that replays Stripe's event list. Applying an event twice, late, or out of
//! order changes nothing more than applying it once in order:
//!
//! - subscription and invoice events sync the subject from Stripe ([`crate::sync`]), reading
//!   Stripe's current state rather than trusting the event's copy;
//! - a paid one-time Checkout grants its credits in one ledger transaction keyed by the session
//!   id; the grant's expiry counts from when the customer paid (the event's time), not from
//!   when we processed it;
//! - a Checkout that expired or whose delayed payment failed closes its pending purchase;
//! - anything else is acknowledged and ignored.

use crate::catalog::{PackType, REPORT};
use crate::domain::Subject;
use crate::error::ApiError;
use crate::ledger::{CreditKind, Grant, GrantOutcome, LedgerKey, Purchase, PurchaseStatus};
use crate::state::AppState;
use crate::subscriptions::{
    META_ACCOUNT, META_PACK_TYPE, META_PURPOSE, META_SUBJECT, PURPOSE_CREDIT_PACK, PURPOSE_REPORT,
};
use crate::sync::{SubjectSync, sync_subject};
use serde_json::Value;

/// A Stripe event, reduced to what we read.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub type_: String,
    /// When Stripe created the event (unix s): when what it reports happened.
    pub created: i64,
    pub object: Value,
}

impl Event {
    /// Reads an event as Stripe sends it (webhook body or `GET /v1/events` item).
    pub fn from_json(value: &Value) -> Option<Self> {
        Some(Self {
            id: value.get("id")?.as_str()?.to_string(),
            type_: value.get("type")?.as_str()?.to_string(),
            created: value.get("created").and_then(Value::as_i64).unwrap_or(0),
            object: value.get("data")?.get("object")?.clone(),
        })
    }
}

/// What applying an event did.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A subject was synced with Stripe.
    Synced {
        account: String,
        subject: String,
        sync: Box<SubjectSync>,
    },
    /// A paid session's credits: `new` when this application granted them.
    Granted {
        account: String,
        subject: String,
        session: String,
        new: bool,
    },
    /// A pending purchase was closed (`changed` when this application closed it).
    PurchaseClosed {
        account: String,
        subject: String,
        session: String,
        status: PurchaseStatus,
        changed: bool,
    },
    /// Nothing of ours: why.
    Ignored(&'static str),
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
}

/// An id field that Stripe sends as an id, or as the object when expanded.
fn id_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    let field = v.get(key)?;
    field.as_str().or_else(|| str_at(field, &["id"]))
}

/// Applies `event`. A Stripe object that no longer exists is `ApiError::NotFound`: the
/// webhook acknowledges it (a retry cannot bring it back) and the reconciler reports it.
pub async fn apply(state: &AppState, event: &Event) -> Result<Effect, ApiError> {
    let object = &event.object;
    match event.type_.as_str() {
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted"
        | "customer.subscription.paused"
        | "customer.subscription.resumed"
        | "invoice.payment_succeeded"
        | "invoice.paid" => sync_customer_of(state, object, None).await,
        "invoice.payment_failed" => {
            // The failure's message is a courtesy: when it cannot be read, the state change
            // still lands (a 5xx here would hold `past_due` back for Stripe's retries).
            let message = match str_at(object, &["id"]) {
                Some(invoice) => state
                    .stripe
                    .invoice_payment_error(invoice)
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!(error = %e, invoice, "reading the payment failure's message");
                        None
                    }),
                None => None,
            };
            let message = message.unwrap_or_else(|| "The payment failed.".into());
            sync_customer_of(state, object, Some(message)).await
        }
        "checkout.session.completed" => match str_at(object, &["mode"]) {
            Some("subscription") => subscription_checkout_completed(state, event).await,
            Some("payment") => grant_purchase(state, event).await,
            _ => Ok(Effect::Ignored("a Checkout mode we do not sell")),
        },
        // A delayed payment method settles later: the session completes unpaid, then this.
        "checkout.session.async_payment_succeeded" => grant_purchase(state, event).await,
        "checkout.session.expired" => close_purchase(state, event, PurchaseStatus::Expired).await,
        "checkout.session.async_payment_failed" => {
            close_purchase(state, event, PurchaseStatus::Failed).await
        }
        _ => Ok(Effect::Ignored("an event type we do not handle")),
    }
}

/// The account and subject a Stripe object belongs to: from the metadata our flows put on
/// it, else from the customer's item.
async fn owner_of(
    state: &AppState,
    object: &Value,
    customer: &str,
) -> Result<Option<(String, String)>, ApiError> {
    if let (Some(account), Some(subject)) = (
        str_at(object, &["metadata", META_ACCOUNT]),
        str_at(object, &["metadata", META_SUBJECT]),
    ) && Subject::is_key(subject)
    {
        return Ok(Some((account.to_string(), subject.to_string())));
    }
    Ok(state
        .store
        .subscription_by_customer(customer)
        .await?
        .map(|r| (r.account_id, r.subject)))
}

/// Syncs the subject whose Stripe customer `object` (a subscription, an invoice or a
/// Checkout Session) names.
async fn sync_customer_of(
    state: &AppState,
    object: &Value,
    payment_error: Option<String>,
) -> Result<Effect, ApiError> {
    let Some(customer) = id_at(object, "customer") else {
        return Ok(Effect::Ignored("no customer"));
    };
    let Some((account, subject)) = owner_of(state, object, customer).await? else {
        tracing::warn!(customer, "an object of a customer no account owns; ignored");
        return Ok(Effect::Ignored("a customer no account owns"));
    };
    let sync = sync_subject(state, &account, &subject, customer, payment_error).await?;
    tracing::info!(
        account,
        subject,
        status = sync.current().map(|s| s.status.as_str()),
        "subject synced"
    );
    Ok(Effect::Synced {
        account,
        subject,
        sync: Box::new(sync),
    })
}

/// A paid subscription Checkout: sync the subject, and make the card Checkout collected the
/// customer's default when it has none — Checkout sets it on the subscription only, and a
/// later server-side subscription charges the customer's default.
async fn subscription_checkout_completed(
    state: &AppState,
    event: &Event,
) -> Result<Effect, ApiError> {
    let effect = sync_customer_of(state, &event.object, None).await?;
    let (Some(customer), Some(subscription), Some(session)) = (
        id_at(&event.object, "customer"),
        id_at(&event.object, "subscription"),
        str_at(&event.object, &["id"]),
    ) else {
        return Ok(effect);
    };
    let card = match &effect {
        Effect::Synced { sync, .. } => sync
            .subscriptions
            .iter()
            .find(|s| s.id == subscription)
            .and_then(|s| s.default_payment_method.clone()),
        _ => None,
    };
    // A convenience (a server-side create also falls back to the subscription's card):
    // when it cannot be done, the event still counts as applied.
    if let Some(card) = card {
        let key = format!("default_pm:{session}");
        let set = async {
            if state
                .stripe
                .default_payment_method(customer)
                .await?
                .is_none()
            {
                state
                    .stripe
                    .set_default_payment_method(customer, &card, &key)
                    .await?;
            }
            Ok::<(), crate::stripe::StripeFailure>(())
        };
        if let Err(e) = set.await {
            tracing::warn!(error = %e, customer, "making the Checkout's card the customer's default");
        }
    }
    Ok(effect)
}

/// What applying a one-time Checkout event would still change, read without writing: a
/// paid session whose credits were never granted, or an unpaid one whose purchase is still
/// pending. `None` when our copy already reflects the event (or it is not such an event).
pub async fn missing_effect(state: &AppState, event: &Event) -> Result<Option<String>, ApiError> {
    let object = &event.object;
    if str_at(object, &["mode"]) != Some("payment") {
        return Ok(None);
    }
    let Some(owner) = session_owner(object) else {
        return Ok(None);
    };
    let purpose = str_at(object, &["metadata", META_PURPOSE]);
    match event.type_.as_str() {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded"
            if str_at(object, &["payment_status"]) == Some("paid")
                && matches!(purpose, Some(PURPOSE_REPORT | PURPOSE_CREDIT_PACK)) =>
        {
            let granted = state
                .store
                .ledger_granted(&owner.key, owner.session)
                .await?;
            Ok((!granted).then(|| "paid, never granted".to_string()))
        }
        "checkout.session.expired" | "checkout.session.async_payment_failed"
            if purpose == Some(PURPOSE_CREDIT_PACK) =>
        {
            let status = state
                .store
                .purchase_status(&owner.key, &owner.purchase_sk)
                .await?;
            Ok((status == Some(PurchaseStatus::Pending)).then(|| {
                format!(
                    "{}, purchase still pending",
                    event.type_.trim_start_matches("checkout.session.")
                )
            }))
        }
        _ => Ok(None),
    }
}

/// The account, subject and purchase item a one-time Checkout Session is for.
struct SessionOwner<'a> {
    session: &'a str,
    key: LedgerKey,
    purchase_sk: String,
}

fn session_owner(object: &Value) -> Option<SessionOwner<'_>> {
    let session = str_at(object, &["id"])?;
    let account = str_at(object, &["metadata", META_ACCOUNT])?;
    let subject = str_at(object, &["metadata", META_SUBJECT])?;
    if !Subject::is_key(subject) {
        tracing::warn!(session, "a session with an unusable subject; ignored");
        return None;
    }
    // The purchase of a credit pack is derived from its session (see the credits function).
    let created = object
        .get("created")
        .and_then(Value::as_i64)
        .unwrap_or_default();
    Some(SessionOwner {
        session,
        key: LedgerKey {
            account_id: account.to_string(),
            subject: subject.to_string(),
        },
        purchase_sk: Purchase::sort_key_of(created, &Purchase::id_for_session(session)),
    })
}

/// A paid one-time Checkout (a credit pack or the $29 report): its credits, granted once,
/// keyed by the session id; a pack's pending purchase is completed in the same transaction.
async fn grant_purchase(state: &AppState, event: &Event) -> Result<Effect, ApiError> {
    let object = &event.object;
    if str_at(object, &["payment_status"]) != Some("paid") {
        return Ok(Effect::Ignored("an unpaid session"));
    }
    let Some(owner) = session_owner(object) else {
        return Ok(Effect::Ignored("a session without our metadata"));
    };
    let now = state.clock.now().unix_timestamp();
    // The customer paid when Stripe emitted the event; a late delivery does not move that.
    let paid_at = if event.created > 0 {
        event.created
    } else {
        now
    };
    let grant = match str_at(object, &["metadata", META_PURPOSE]) {
        Some(PURPOSE_REPORT) => Grant {
            source_id: owner.session,
            kind: CreditKind::Analysis,
            credits: i64::from(REPORT.credits),
            reason: PURPOSE_REPORT,
            expires_at: Some(paid_at + i64::from(REPORT.valid_days) * 86_400),
            purchase_sk: None,
        },
        Some(PURPOSE_CREDIT_PACK) => {
            let pack = str_at(object, &["metadata", META_PACK_TYPE])
                .and_then(PackType::parse)
                .map(PackType::pack);
            let Some(pack) = pack else {
                tracing::warn!(
                    session = owner.session,
                    "paid credit-pack session of an unknown pack; ignored"
                );
                return Ok(Effect::Ignored("an unknown pack"));
            };
            Grant {
                source_id: owner.session,
                kind: CreditKind::Document,
                credits: i64::from(pack.credits),
                reason: PURPOSE_CREDIT_PACK,
                expires_at: None,
                purchase_sk: Some(&owner.purchase_sk),
            }
        }
        _ => return Ok(Effect::Ignored("a purpose we do not sell")),
    };
    let outcome = state.store.ledger_grant(&owner.key, &grant, now).await?;
    tracing::info!(
        session = owner.session,
        reason = grant.reason,
        ?outcome,
        "credits granted"
    );
    Ok(Effect::Granted {
        account: owner.key.account_id.clone(),
        subject: owner.key.subject.clone(),
        session: owner.session.to_string(),
        new: matches!(outcome, GrantOutcome::Granted { .. }),
    })
}

/// A one-time Checkout that ended unpaid: its pending credit-pack purchase is closed, so the
/// history stops showing it as pending.
async fn close_purchase(
    state: &AppState,
    event: &Event,
    status: PurchaseStatus,
) -> Result<Effect, ApiError> {
    let object = &event.object;
    if str_at(object, &["mode"]) != Some("payment")
        || str_at(object, &["metadata", META_PURPOSE]) != Some(PURPOSE_CREDIT_PACK)
    {
        return Ok(Effect::Ignored("not a credit-pack purchase"));
    }
    let Some(owner) = session_owner(object) else {
        return Ok(Effect::Ignored("a session without our metadata"));
    };
    let now = state.clock.now().unix_timestamp();
    let changed = state
        .store
        .close_purchase(&owner.key, &owner.purchase_sk, owner.session, status, now)
        .await?;
    tracing::info!(
        session = owner.session,
        status = status.as_str(),
        changed,
        "purchase closed"
    );
    Ok(Effect::PurchaseClosed {
        account: owner.key.account_id.clone(),
        subject: owner.key.subject.clone(),
        session: owner.session.to_string(),
        status,
        changed,
    })
}
