//! The one sync path: Stripe's view of a subject's plan, stored as our copy.
//!
//! Stripe is the source of truth for money; the subject's Subscriptions item is our fast copy,
//! read in one round trip by everything that gates access. Whatever may create or change a
//! charge (checkout, server-side create, a tier change), every webhook event about a
//! subscription, and the reconciler come through [`sync_subject`]: read all of the subject's
//! customer's subscriptions from Stripe (`status=all`), pick the one that is the subject's
//! plan ([`current`]), store it forward-only (a write carries the time of its read and loses
//! to a newer one, `Store::sync_subscription`). A handler that has just changed a subscription
//! stores Stripe's answer through the same tail, [`store_snapshot`].
//!
//! Decisions that create a charge also hold the subject's lease ([`hold_subject`]), so two of
//! them cannot both decide "not subscribed yet".

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::SyncedState;
use crate::stripe::{SessionEnd, SubscriptionSnapshot};
use crate::subscriptions::SubscriptionRecord;
use std::future::Future;
use std::time::Duration;

/// What a sync found in Stripe and did to our copy.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectSync {
    /// Every subscription Stripe has for the customer, newest first.
    pub subscriptions: Vec<SubscriptionSnapshot>,
}

impl SubjectSync {
    /// The subscription that is the subject's plan now, per Stripe.
    pub fn current(&self) -> Option<&SubscriptionSnapshot> {
        current(&self.subscriptions)
    }

    /// The subject's live subscription (not ended), per Stripe.
    pub fn live(&self) -> Option<&SubscriptionSnapshot> {
        self.current().filter(|s| s.is_live())
    }

    /// How many live subscriptions Stripe has for the customer: more than one is a double
    /// charge to report.
    pub fn live_count(&self) -> usize {
        self.subscriptions.iter().filter(|s| s.is_live()).count()
    }
}

/// Whether our item says what Stripe's subscription says (the time of the read aside).
pub fn reflects(record: &SubscriptionRecord, snapshot: &SubscriptionSnapshot) -> bool {
    record.stripe_subscription_id.as_deref() == Some(snapshot.id.as_str())
        && record.tier == snapshot.tier
        && record.status == Some(snapshot.status)
        && record.current_period_start == snapshot.current_period_start
        && record.current_period_end == snapshot.current_period_end
        && record.cancel_at_period_end == snapshot.cancel_at_period_end
}

/// The subscription that is the subject's plan among a customer's: the newest live one,
/// else the newest (ended) one; `None` when the customer has never subscribed.
pub fn current(subscriptions: &[SubscriptionSnapshot]) -> Option<&SubscriptionSnapshot> {
    let newest = |live: bool| {
        subscriptions
            .iter()
            .filter(|s| !live || s.is_live())
            .max_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)))
    };
    newest(true).or_else(|| newest(false))
}

/// Reads the customer's subscriptions from Stripe and stores the subject's plan from them;
/// `payment_error` is recorded with the state (a failed invoice's message).
pub async fn sync_subject(
    state: &AppState,
    account: &str,
    subject: &str,
    customer_id: &str,
    payment_error: Option<String>,
) -> Result<SubjectSync, ApiError> {
    let read_at = read_started(state);
    let subscriptions = state.stripe.subscriptions_of(customer_id).await?;
    if let Some(snapshot) = current(&subscriptions) {
        store_snapshot(state, account, subject, snapshot, payment_error, read_at).await?;
    }
    let synced = SubjectSync { subscriptions };
    if synced.live_count() > 1 {
        tracing::error!(
            account,
            subject,
            customer = customer_id,
            live = synced.live_count(),
            "more than one live Stripe subscription for one subject"
        );
    }
    Ok(synced)
}

/// The time to stamp a Stripe read with, taken before the request is sent (unix ms): a
/// read sent later sees Stripe no earlier than one sent before it, however long either
/// took to come back — so a slow read of an older state cannot overwrite a newer one.
pub fn read_started(state: &AppState) -> i64 {
    (state.clock.now().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Stores one Stripe read of the subject's plan, forward-only: the item as written, or
/// `None` when a read sent later was stored first. `read_at` is [`read_started`] of the
/// Stripe call that answered `snapshot`.
pub async fn store_snapshot(
    state: &AppState,
    account: &str,
    subject: &str,
    snapshot: &SubscriptionSnapshot,
    payment_error: Option<String>,
    read_at: i64,
) -> Result<Option<SubscriptionRecord>, ApiError> {
    let synced_at_ms = read_at;
    let synced = SyncedState {
        snapshot,
        synced_at_ms,
        payment_error,
    };
    Ok(state
        .store
        .sync_subscription(account, subject, &synced)
        .await?)
}

/// Makes `keep` (a Checkout Session just created, or none) the subject's only open
/// subscription Checkout: the one recorded before is expired first, and only then replaced,
/// so a failure in between leaves it recorded for the retry to expire. If that one had been
/// paid, Stripe made its subscription when it completed: when that subscription is live it is
/// returned (the caller refuses to start another) and nothing is replaced; when it has ended
/// it is no obstacle. Call it holding the subject's lease.
pub async fn close_open_checkout(
    state: &AppState,
    account: &str,
    subject: &str,
    customer_id: &str,
    keep: Option<&str>,
) -> Result<Option<SubscriptionSnapshot>, ApiError> {
    let previous = state.store.open_checkout(account, subject).await?;
    if previous.as_deref() == keep {
        return Ok(None);
    }
    if let Some(open) = previous.as_deref()
        && state.stripe.expire_checkout_session(open).await? == SessionEnd::Completed
    {
        let synced = sync_subject(state, account, subject, customer_id, None).await?;
        if let Some(live) = synced.live() {
            return Ok(Some(live.clone()));
        }
    }
    if !state
        .store
        .set_open_checkout(account, subject, previous.as_deref(), keep)
        .await?
    {
        return Err(ApiError::RequestInProgress);
    }
    Ok(None)
}

/// How long a decision may hold the subject (far above the function's timeout, so a live
/// request never loses it; a dead one blocks the subject this long at most).
pub const SUBJECT_LEASE_SECS: i64 = 60;
/// How long a request waits for another's lease before answering 409 (which is not kept
/// under its Idempotency-Key, so its retry runs).
pub const LEASE_WAIT: Duration = Duration::from_secs(3);

/// Runs `work` holding the subject's lease: one decision that may create a charge at a time
/// per subject (two tabs, a retry racing its original, a server-side create racing a
/// checkout). Waits up to [`LEASE_WAIT`] for another holder, then 409 `request_in_progress`.
/// The subject's item must exist (a customer was attached first).
pub async fn hold_subject<T>(
    state: &AppState,
    account: &str,
    subject: &str,
    work: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let give_up = tokio::time::Instant::now() + LEASE_WAIT;
    loop {
        let now = state.clock.now().unix_timestamp();
        if state
            .store
            .lock_subject(account, subject, now, SUBJECT_LEASE_SECS)
            .await?
        {
            break;
        }
        if tokio::time::Instant::now() >= give_up {
            return Err(ApiError::RequestInProgress);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let result = work.await;
    if let Err(e) = state.store.unlock_subject(account, subject).await {
        // The lease runs out by itself.
        tracing::warn!(error = %e, account, subject, "releasing the subject's lease failed");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn sub(id: &str, status: &str, created: i64) -> SubscriptionSnapshot {
        SubscriptionSnapshot {
            id: id.into(),
            customer_id: "cus_1".into(),
            status: crate::subscriptions::SubscriptionStatus::parse(status).unwrap(),
            tier: None,
            item_id: None,
            price_id: None,
            current_period_start: None,
            current_period_end: None,
            cancel_at_period_end: false,
            created,
            metadata: HashMap::new(),
            default_payment_method: None,
        }
    }

    #[test]
    fn the_plan_is_the_newest_live_subscription_else_the_newest() {
        assert_eq!(current(&[]), None);
        let old_live = sub("sub_a", "active", 10);
        let new_ended = sub("sub_b", "canceled", 20);
        let subs = [new_ended.clone(), old_live.clone()];
        assert_eq!(current(&subs), Some(&old_live));
        let ended = [sub("sub_c", "canceled", 5), new_ended.clone()];
        assert_eq!(current(&ended).map(|s| s.id.as_str()), Some("sub_b"));
        let two_live = [old_live, sub("sub_d", "past_due", 30)];
        assert_eq!(current(&two_live).map(|s| s.id.as_str()), Some("sub_d"));
    }
}
