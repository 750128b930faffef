//! A subject's Stripe customer: created once, on first need, and reused.

use crate::ApiError;
use crate::domain::Subject;
use crate::keys::AccountId;
use crate::state::AppState;
use crate::stripe::checkout::Owner;
use crate::subscriptions::SubscriptionRecord;
use sha2::{Digest, Sha256};

/// The Stripe customer of `subject`, creating it if it has none. `existing` is the subject's
/// plan item as the caller has just read it (callers read it anyway; this saves a second
/// read). Two racing first calls send Stripe the same idempotency key and store the same id.
pub async fn ensure_customer(
    state: &AppState,
    account: &AccountId,
    subject: &Subject,
    existing: Option<SubscriptionRecord>,
) -> Result<String, ApiError> {
    let key = subject.key();
    if let Some(record) = existing {
        return Ok(record.stripe_customer_id);
    }
    let owner = Owner {
        account_id: account.to_string(),
        subject: key.clone(),
    };
    let idempotency = hex::encode(Sha256::digest(format!(
        "customer:{}:{key}",
        account.as_str()
    )));
    let created = state.stripe.create_customer(&owner, &idempotency).await?;
    Ok(state
        .store
        .attach_customer(account.as_str(), &key, &created)
        .await?)
}
