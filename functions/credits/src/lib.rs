//! The credits function: the B2B2C credit system, `/v1/credits/*`. API customers resell
//! per-document access to their end users (`external_user_id`); the ledger in
//! `shared::ledger` keeps every balance change atomic with its entry.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shared::auth::Account;
use shared::catalog::{PACKS, PackType, PackView, Tier, dollars};
use shared::clock::rfc3339;
use shared::domain::{AnalysisIds, ExternalUserId, RedirectUrl, Subject, customer_email};
use shared::http::{ApiRouter, JsonBody};
use shared::idempotency::{IdempotencyKey, stripe_key_for};
use shared::ledger::{AccessOutcome, Charge, LedgerKey, Purchase, PurchaseStatus};
use shared::query::Query;
use shared::store::StoreError;
use shared::stripe::{CheckoutMode, CheckoutRequest};
use shared::subscriptions::{
    META_ACCOUNT, META_PACK_TYPE, META_PURPOSE, META_SUBJECT, PURPOSE_CREDIT_PACK, timestamp,
};
use shared::{ApiError, AppState};
use std::collections::HashMap;

pub fn api() -> ApiRouter {
    ApiRouter::new()
        .get("/v1/credits/packs", packs)
        .get("/v1/credits/balance", balance)
        .post("/v1/credits/purchase", purchase)
        .post("/v1/credits/access", access)
        .get("/v1/credits/history", history)
}

pub fn router(state: AppState) -> axum::Router {
    api().into_router(state)
}

/// `GET /v1/credits/packs`: the packs as a bare array, smallest first.
async fn packs(_: Account) -> Json<Vec<PackView>> {
    Json(PACKS.iter().map(PackView::from).collect())
}

fn user(raw: Option<&str>) -> Result<ExternalUserId, ApiError> {
    let raw = raw
        .ok_or_else(|| ApiError::invalid("external_user_id", "`external_user_id` is required."))?;
    ExternalUserId::parse("external_user_id", raw)
}

fn ledger_key(account: &Account, user: &ExternalUserId) -> LedgerKey {
    LedgerKey {
        account_id: account.id.to_string(),
        subject: Subject::User(user.clone()).key(),
    }
}

fn now(state: &AppState) -> i64 {
    state.clock.now().unix_timestamp()
}

#[derive(Debug, Deserialize)]
struct UserQuery {
    external_user_id: Option<String>,
}

#[derive(Debug, Serialize)]
struct BalanceResponse {
    external_user_id: String,
    balance: i64,
    has_unlimited: bool,
    total_purchased: i64,
    total_spent: i64,
}

/// `GET /v1/credits/balance?external_user_id=`: unexpired credits and the totals.
async fn balance(
    State(state): State<AppState>,
    account: Account,
    Query(q): Query<UserQuery>,
) -> Result<Json<BalanceResponse>, ApiError> {
    let user = user(q.external_user_id.as_deref())?;
    let key = ledger_key(&account, &user);
    let balance = state.store.ledger_balance(&key, now(&state)).await?;
    Ok(Json(BalanceResponse {
        external_user_id: user.as_str().to_string(),
        balance: balance.balance,
        has_unlimited: balance.has_unlimited,
        total_purchased: balance.total_purchased,
        total_spent: balance.total_spent,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurchaseBody {
    external_user_id: Option<String>,
    pack_type: String,
    success_url: String,
    cancel_url: String,
    customer_email: Option<String>,
}

#[derive(Debug, Serialize)]
struct PurchaseResponse {
    checkout_url: String,
    session_id: String,
    external_user_id: String,
    pack_type: PackType,
    credits: u32,
    price_cents: i64,
}

fn pack_type(raw: &str) -> Result<PackType, ApiError> {
    PackType::parse(raw)
        .ok_or_else(|| ApiError::invalid("pack_type", "`pack_type` must be single, medium or pro."))
}

/// `POST /v1/credits/purchase`: a payment-mode Checkout for the pack, and a pending purchase
/// that the webhook completes, granting the credits once.
async fn purchase(
    State(state): State<AppState>,
    account: Account,
    idem: Option<IdempotencyKey>,
    JsonBody(body): JsonBody<PurchaseBody>,
) -> Result<Json<PurchaseResponse>, ApiError> {
    let user = user(body.external_user_id.as_deref())?;
    let pack = pack_type(&body.pack_type)?.pack();
    let stage = state.config.stage;
    let success_url = RedirectUrl::parse("success_url", &body.success_url, stage)?;
    let cancel_url = RedirectUrl::parse("cancel_url", &body.cancel_url, stage)?;
    let email = body
        .customer_email
        .as_deref()
        .map(|e| customer_email("customer_email", e))
        .transpose()?;
    let key = ledger_key(&account, &user);
    // Only what the request says goes to Stripe, so a retry under the same Idempotency-Key
    // sends the same parameters and gets the same session back.
    let metadata = HashMap::from([
        (META_ACCOUNT.to_string(), key.account_id.clone()),
        (META_SUBJECT.to_string(), key.subject.clone()),
        (META_PURPOSE.to_string(), PURPOSE_CREDIT_PACK.to_string()),
        (
            META_PACK_TYPE.to_string(),
            pack.pack_type.as_str().to_string(),
        ),
    ]);
    let reference = format!("{}:{}", key.account_id, key.subject);
    let link = state
        .stripe
        .create_checkout_session(
            CheckoutRequest {
                customer: None,
                customer_email: email.as_deref(),
                price_id: pack.stripe_price_id,
                mode: CheckoutMode::Payment,
                success_url: success_url.as_str(),
                cancel_url: cancel_url.as_str(),
                client_reference_id: &reference,
                metadata,
            },
            &stripe_key_for(idem.as_ref(), "credit_pack_checkout"),
        )
        .await?;
    // The purchase is derived from the session (id and time), recorded before the payer can
    // reach the page; recording it again for the same session changes nothing.
    let purchase = Purchase {
        id: Purchase::id_for_session(&link.session_id),
        session_id: link.session_id.clone(),
        pack_type: pack.pack_type.as_str().to_string(),
        credits: i64::from(pack.credits),
        price_cents: pack.price_cents,
        status: PurchaseStatus::Pending,
        created_at: link.created,
        completed_at: None,
    };
    match state.store.insert_purchase(&key, &purchase).await {
        Ok(()) | Err(StoreError::ConditionFailed(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Json(PurchaseResponse {
        checkout_url: link.url,
        session_id: link.session_id,
        external_user_id: user.as_str().to_string(),
        pack_type: pack.pack_type,
        credits: pack.credits,
        price_cents: pack.price_cents,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessBody {
    external_user_id: Option<String>,
    analysis_ids: Vec<String>,
}

#[derive(Debug, Serialize)]
struct AccessResponse {
    external_user_id: String,
    accessible_documents: Vec<String>,
    credits_spent: i64,
    remaining_balance: i64,
    has_unlimited: bool,
}

/// The spec's 402 for document access: a flat body, unlike the other errors.
#[derive(Debug, Serialize)]
struct PaymentRequired {
    error: &'static str,
    message: String,
    credits_required: i64,
    credits_available: i64,
    credits_needed: i64,
    can_unlock: bool,
    purchase_options: Vec<PackView>,
    subscription_option: SubscriptionOption,
}

#[derive(Debug, Serialize)]
struct SubscriptionOption {
    tier: Tier,
    name: String,
    price_display: String,
    description: &'static str,
}

fn subscription_option() -> SubscriptionOption {
    let pro = Tier::Pro.info();
    let price = dollars(pro.price_cents);
    SubscriptionOption {
        tier: Tier::Pro,
        name: format!("{} Subscription", pro.name),
        price_display: format!(
            "{}/{}",
            price.strip_suffix(".00").unwrap_or(&price),
            pro.interval
        ),
        description: "Unlimited document analyses",
    }
}

/// `POST /v1/credits/access`: unlock documents for an end user. Subscribers pay nothing,
/// documents already bought are free, each new one costs a credit; all or nothing.
async fn access(
    State(state): State<AppState>,
    account: Account,
    headers: HeaderMap,
    JsonBody(body): JsonBody<AccessBody>,
) -> Result<Response, ApiError> {
    let header = match headers.get("x-external-user-id") {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::invalid("X-External-User-ID", "The header is not valid text.")
        })?),
    };
    let raw = match (body.external_user_id.as_deref(), header) {
        (Some(b), Some(h)) if b != h => {
            return Err(ApiError::invalid(
                "X-External-User-ID",
                "X-External-User-ID and external_user_id name different users.",
            ));
        }
        (Some(b), _) => Some(b),
        (None, h) => h,
    };
    let user = user(raw)?;
    let ids = AnalysisIds::parse("analysis_ids", body.analysis_ids)?;
    let key = ledger_key(&account, &user);
    let access = state
        .store
        .ledger_access(&key, ids.as_slice(), Charge::UnlessUnlimited, now(&state))
        .await?;
    let unlimited = access.has_unlimited;
    match access.outcome {
        AccessOutcome::Granted {
            accessible,
            credits_spent,
            remaining_balance,
        } => Ok(Json(AccessResponse {
            external_user_id: user.as_str().to_string(),
            accessible_documents: accessible,
            credits_spent,
            remaining_balance,
            has_unlimited: unlimited,
        })
        .into_response()),
        AccessOutcome::Insufficient {
            required,
            available,
        } => Ok((
            StatusCode::PAYMENT_REQUIRED,
            Json(PaymentRequired {
                error: "payment_required",
                message: format!("Need {required} credits to access {required} documents"),
                credits_required: required,
                credits_available: available,
                credits_needed: (required - available).max(0),
                can_unlock: available >= required,
                purchase_options: PACKS.iter().map(PackView::from).collect(),
                subscription_option: subscription_option(),
            }),
        )
            .into_response()),
    }
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    external_user_id: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[derive(Debug, Serialize)]
struct HistoryResponse {
    external_user_id: String,
    purchases: Vec<PurchaseView>,
    total_purchased: i64,
    total_spent_cents: i64,
}

#[derive(Debug, Serialize)]
struct PurchaseView {
    id: String,
    pack_type: String,
    credits: i64,
    price_cents: i64,
    status: PurchaseStatus,
    created_at: Option<String>,
    completed_at: Option<String>,
}

pub const HISTORY_MAX_LIMIT: i64 = 100;
/// Deep pages cost a read of everything before them; beyond this, narrow the query.
pub const HISTORY_MAX_OFFSET: i64 = 10_000;

/// `GET /v1/credits/history?external_user_id=&limit=&offset=`: purchases, newest first.
async fn history(
    State(state): State<AppState>,
    account: Account,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<HistoryResponse>, ApiError> {
    let user = user(q.external_user_id.as_deref())?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=HISTORY_MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("`limit` must be between 1 and {HISTORY_MAX_LIMIT}."),
        ));
    }
    let offset = q.offset.unwrap_or(0);
    if !(0..=HISTORY_MAX_OFFSET).contains(&offset) {
        return Err(ApiError::invalid(
            "offset",
            format!("`offset` must be between 0 and {HISTORY_MAX_OFFSET}."),
        ));
    }
    let key = ledger_key(&account, &user);
    let page = state
        .store
        .purchases(&key, limit as usize, offset as usize)
        .await?;
    let rfc = |t: i64| {
        timestamp(t).or_else(|| {
            time::OffsetDateTime::from_unix_timestamp(0)
                .ok()
                .map(rfc3339)
        })
    };
    Ok(Json(HistoryResponse {
        external_user_id: user.as_str().to_string(),
        purchases: page
            .purchases
            .into_iter()
            .map(|p| PurchaseView {
                id: p.id,
                pack_type: p.pack_type,
                credits: p.credits,
                price_cents: p.price_cents,
                status: p.status,
                created_at: rfc(p.created_at),
                completed_at: p.completed_at.and_then(timestamp),
            })
            .collect(),
        total_purchased: page.total_purchased,
        total_spent_cents: page.total_spent_cents,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subscription_option_is_the_specs() {
        let o = serde_json::to_value(subscription_option()).unwrap();
        assert_eq!(
            o,
            serde_json::json!({"tier": "pro", "name": "Pro Subscription", "price_display": "$99/month",
                               "description": "Unlimited document analyses"})
        );
    }
}
