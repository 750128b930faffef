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

use crate::catalog::REPORT;
use crate::error::ApiError;
use crate::ledger::{CreditKind, Grant, GrantOutcome, LedgerKey, Purchase, PurchaseStatus};
use crate::state::AppState;
use crate::stripe::checkout::{NotAnOrder, Order, Purpose};
pub use crate::stripe::webhook::Event;
use crate::stripe::webhook::SessionView;
use crate::sync::{SubjectSync, sync_subject};

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

/// Applies `event`. A Stripe object that no longer exists is `ApiError::NotFound`: the
/// webhook acknowledges it (a retry cannot bring it back) and the reconciler reports it.
pub async fn apply(state: &AppState, event: &Event) -> Result<Effect, ApiError> {
    match event.type_.as_str() {
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted"
        | "customer.subscription.paused"
        | "customer.subscription.resumed"
        | "invoice.payment_succeeded"
        | "invoice.paid" => sync_customer_of(state, event, None).await,
        "invoice.payment_failed" => {
            // The failure's message is a courtesy: when it cannot be read, the state change
            // still lands (a 5xx here would hold `past_due` back for Stripe's retries).
            let message = match event.object.get("id").and_then(|id| id.as_str()) {
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
            sync_customer_of(state, event, Some(message)).await
        }
        "checkout.session.completed" => match event.session().and_then(|s| s.mode).as_deref() {
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
    event: &Event,
    customer: &str,
) -> Result<Option<(String, String)>, ApiError> {
    if let Some(owner) = event.owner() {
        return Ok(Some((owner.account_id, owner.subject)));
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
    event: &Event,
    payment_error: Option<String>,
) -> Result<Effect, ApiError> {
    let Some(customer) = event.customer() else {
        return Ok(Effect::Ignored("no customer"));
    };
    let customer = customer.as_str();
    let Some((account, subject)) = owner_of(state, event, customer).await? else {
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
    let effect = sync_customer_of(state, event, None).await?;
    let Some(SessionView {
        id: session,
        customer: Some(customer),
        subscription: Some(subscription),
        ..
    }) = event.session()
    else {
        return Ok(effect);
    };
    let (customer, subscription) = (customer.as_str(), subscription.as_str());
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
    let Some(session) = event.session().filter(SessionView::is_payment) else {
        return Ok(None);
    };
    let Ok(order) = &session.order else {
        return Ok(None);
    };
    let owner = SessionOwner::of(&session, order);
    match event.type_.as_str() {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded"
            if session.paid && grant_of(order, &session.id, 0, &owner).is_some() =>
        {
            let granted = state.store.ledger_granted(&owner.key, &session.id).await?;
            Ok((!granted).then(|| "paid, never granted".to_string()))
        }
        "checkout.session.expired" | "checkout.session.async_payment_failed"
            if matches!(order.purpose, Purpose::CreditPack(_)) =>
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

/// The ledger and purchase item a one-time Checkout Session is for.
struct SessionOwner {
    key: LedgerKey,
    purchase_sk: String,
}

impl SessionOwner {
    fn of(session: &SessionView, order: &Order) -> Self {
        Self {
            key: LedgerKey {
                account_id: order.owner.account_id.clone(),
                subject: order.owner.subject.clone(),
            },
            // The purchase of a credit pack is derived from its session (see the credits
            // function).
            purchase_sk: Purchase::sort_key_of(
                session.created,
                &Purchase::id_for_session(&session.id),
            ),
        }
    }
}

/// The grant a paid one-time order makes: the report's analysis credit (expiring
/// `REPORT.valid_days` after `paid_at`) or a pack's document credits (completing its
/// purchase); `None` for what is not sold that way.
fn grant_of<'a>(
    order: &Order,
    session: &'a str,
    paid_at: i64,
    owner: &'a SessionOwner,
) -> Option<Grant<'a>> {
    match order.purpose {
        Purpose::Report => Some(Grant {
            source_id: session,
            kind: CreditKind::Analysis,
            credits: i64::from(REPORT.credits),
            reason: order.purpose.name(),
            expires_at: Some(paid_at + i64::from(REPORT.valid_days) * 86_400),
            purchase_sk: None,
        }),
        Purpose::CreditPack(pack) => Some(Grant {
            source_id: session,
            kind: CreditKind::Document,
            credits: i64::from(pack.pack().credits),
            reason: order.purpose.name(),
            expires_at: None,
            purchase_sk: Some(&owner.purchase_sk),
        }),
        Purpose::Subscription(_) => None,
    }
}

/// What an event about a session whose metadata is not an order of ours did: nothing.
fn ignored(session: &SessionView, why: &NotAnOrder) -> Effect {
    match why {
        NotAnOrder::NoOwner => Effect::Ignored("a session without our metadata"),
        NotAnOrder::Unknown { key, found } => {
            tracing::warn!(session = %session.id, key, ?found, "a paid session of something we do not sell; ignored");
            Effect::Ignored("a purpose we do not sell")
        }
    }
}

/// A paid one-time Checkout (a credit pack or the $29 report): its credits, granted once,
/// keyed by the session id; a pack's pending purchase is completed in the same transaction.
async fn grant_purchase(state: &AppState, event: &Event) -> Result<Effect, ApiError> {
    let Some(session) = event.session() else {
        return Ok(Effect::Ignored("not a Checkout Session"));
    };
    if !session.paid {
        return Ok(Effect::Ignored("an unpaid session"));
    }
    let order = match &session.order {
        Ok(order) => order,
        Err(why) => return Ok(ignored(&session, why)),
    };
    let owner = SessionOwner::of(&session, order);
    let now = state.clock.now().unix_timestamp();
    // The customer paid when Stripe emitted the event; a late delivery does not move that.
    let paid_at = if event.created > 0 {
        event.created
    } else {
        now
    };
    let Some(grant) = grant_of(order, &session.id, paid_at, &owner) else {
        return Ok(Effect::Ignored("a purpose we do not sell"));
    };
    let outcome = state.store.ledger_grant(&owner.key, &grant, now).await?;
    tracing::info!(
        session = %session.id,
        reason = grant.reason,
        ?outcome,
        "credits granted"
    );
    Ok(Effect::Granted {
        account: owner.key.account_id.clone(),
        subject: owner.key.subject.clone(),
        session: session.id.clone(),
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
    let Some(session) = event.session().filter(SessionView::is_payment) else {
        return Ok(Effect::Ignored("not a credit-pack purchase"));
    };
    let order = match &session.order {
        Ok(order) if matches!(order.purpose, Purpose::CreditPack(_)) => order,
        Ok(_) => return Ok(Effect::Ignored("not a credit-pack purchase")),
        Err(why) => return Ok(ignored(&session, why)),
    };
    let owner = SessionOwner::of(&session, order);
    let now = state.clock.now().unix_timestamp();
    let changed = state
        .store
        .close_purchase(&owner.key, &owner.purchase_sk, &session.id, status, now)
        .await?;
    tracing::info!(
        session = %session.id,
        status = status.as_str(),
        changed,
        "purchase closed"
    );
    Ok(Effect::PurchaseClosed {
        account: owner.key.account_id.clone(),
        subject: owner.key.subject.clone(),
        session: session.id.clone(),
        status,
        changed,
    })
}
