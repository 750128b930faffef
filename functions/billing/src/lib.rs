//! The billing function: plans and payments, `/v1/billing/*`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use shared::auth::Account;
use shared::catalog::{REPORT, TIERS, TierView};
use shared::customers::ensure_customer;
use shared::domain::{RedirectUrl, Subject, paid_tier};
use shared::http::{ApiRouter, JsonBody};
use shared::idempotency::{IdempotencyKey, stripe_key_for};
use shared::stripe::{CheckoutMode, CheckoutRequest};
use shared::subscriptions::{
    META_ACCOUNT, META_PURPOSE, META_SUBJECT, META_TIER, PURPOSE_REPORT, PURPOSE_SUBSCRIPTION,
};
use shared::{ApiError, AppState};
use std::collections::HashMap;

pub fn api() -> ApiRouter {
    ApiRouter::new()
        .get("/v1/billing/tiers", tiers)
        .post("/v1/billing/checkout", checkout)
        .post("/v1/billing/portal", portal)
        .post("/v1/billing/purchase-report", purchase_report)
}

pub fn router(state: AppState) -> axum::Router {
    api().into_router(state)
}

#[derive(Debug, Serialize)]
pub struct TiersResponse {
    pub tiers: Vec<TierView>,
}

/// `GET /v1/billing/tiers`: every plan, free first.
async fn tiers(_: Account) -> Json<TiersResponse> {
    Json(TiersResponse {
        tiers: TIERS.iter().map(TierView::from).collect(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckoutBody {
    tier: String,
    success_url: String,
    cancel_url: String,
    external_user_id: Option<String>,
}

#[derive(Debug, Serialize)]
struct CheckoutResponse {
    checkout_url: String,
    session_id: String,
}

/// `POST /v1/billing/checkout`: a Checkout Session in subscription mode for the tier's
/// price, for the subject's Stripe customer (created once, then reused). The metadata on the
/// session and on the subscription it creates tells the webhook whose plan it is.
async fn checkout(
    State(state): State<AppState>,
    account: Account,
    idem: Option<IdempotencyKey>,
    JsonBody(body): JsonBody<CheckoutBody>,
) -> Result<Json<CheckoutResponse>, ApiError> {
    let tier = paid_tier(&body.tier)?;
    let stage = state.config.stage;
    let success_url = RedirectUrl::parse("success_url", &body.success_url, stage)?;
    let cancel_url = RedirectUrl::parse("cancel_url", &body.cancel_url, stage)?;
    let subject = Subject::from_input("external_user_id", body.external_user_id.as_deref())?;
    let key = subject.key();
    let existing = state.store.subscription(account.id.as_str(), &key).await?;
    if let Some(live) = existing.as_ref().and_then(|r| r.live_subscription_id()) {
        return Err(ApiError::invalid(
            "tier",
            format!(
                "Already subscribed ({live}); change the tier with PUT /v1/subscriptions/{live}/upgrade."
            ),
        ));
    }
    let customer = ensure_customer(&state, &account.id, &subject, existing).await?;
    let price_id = tier
        .info()
        .stripe_price_id
        .ok_or_else(|| ApiError::internal("paid tier without a price"))?;
    let metadata = HashMap::from([
        (META_ACCOUNT.to_string(), account.id.to_string()),
        (META_SUBJECT.to_string(), key.clone()),
        (META_TIER.to_string(), tier.as_str().to_string()),
        (META_PURPOSE.to_string(), PURPOSE_SUBSCRIPTION.to_string()),
    ]);
    let reference = format!("{}:{key}", account.id);
    let link = state
        .stripe
        .create_checkout_session(
            CheckoutRequest {
                customer: Some(&customer),
                customer_email: None,
                price_id,
                mode: CheckoutMode::Subscription,
                success_url: success_url.as_str(),
                cancel_url: cancel_url.as_str(),
                client_reference_id: &reference,
                metadata,
            },
            &stripe_key_for(idem.as_ref(), "checkout_session"),
        )
        .await?;
    // One open subscription Checkout per subject: the one this replaces can no longer be paid,
    // so two tabs cannot start two subscriptions.
    let previous = state
        .store
        .replace_open_checkout(account.id.as_str(), &key, Some(&link.session_id))
        .await?;
    if let Some(previous) = previous.filter(|p| *p != link.session_id) {
        state.stripe.expire_checkout_session(&previous).await?;
    }
    Ok(Json(CheckoutResponse {
        checkout_url: link.url,
        session_id: link.session_id,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortalBody {
    return_url: String,
    external_user_id: Option<String>,
}

#[derive(Debug, Serialize)]
struct PortalResponse {
    portal_url: String,
}

/// `POST /v1/billing/portal`: a Customer Portal session for the subject's Stripe customer;
/// a subject without one has nothing to manage yet (`no_subscription`).
async fn portal(
    State(state): State<AppState>,
    account: Account,
    JsonBody(body): JsonBody<PortalBody>,
) -> Result<Json<PortalResponse>, ApiError> {
    let return_url = RedirectUrl::parse("return_url", &body.return_url, state.config.stage)?;
    let subject = Subject::from_input("external_user_id", body.external_user_id.as_deref())?;
    let record = state
        .store
        .subscription(account.id.as_str(), &subject.key())
        .await?
        .ok_or(ApiError::NoSubscription)?;
    let portal_url = state
        .stripe
        .create_portal_session(&record.stripe_customer_id, return_url.as_str())
        .await?;
    Ok(Json(PortalResponse { portal_url }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportBody {
    success_url: String,
    cancel_url: String,
    external_user_id: Option<String>,
}

/// `POST /v1/billing/purchase-report`: a one-time $29 Checkout; once paid, the webhook grants
/// the subject one analysis credit valid for 30 days.
async fn purchase_report(
    State(state): State<AppState>,
    account: Account,
    idem: Option<IdempotencyKey>,
    JsonBody(body): JsonBody<ReportBody>,
) -> Result<Json<CheckoutResponse>, ApiError> {
    let stage = state.config.stage;
    let success_url = RedirectUrl::parse("success_url", &body.success_url, stage)?;
    let cancel_url = RedirectUrl::parse("cancel_url", &body.cancel_url, stage)?;
    let subject = Subject::from_input("external_user_id", body.external_user_id.as_deref())?;
    let key = subject.key();
    let existing = state.store.subscription(account.id.as_str(), &key).await?;
    let customer = ensure_customer(&state, &account.id, &subject, existing).await?;
    let metadata = HashMap::from([
        (META_ACCOUNT.to_string(), account.id.to_string()),
        (META_SUBJECT.to_string(), key.clone()),
        (META_PURPOSE.to_string(), PURPOSE_REPORT.to_string()),
    ]);
    let reference = format!("{}:{key}", account.id);
    let link = state
        .stripe
        .create_checkout_session(
            CheckoutRequest {
                customer: Some(&customer),
                customer_email: None,
                price_id: REPORT.stripe_price_id,
                mode: CheckoutMode::Payment,
                success_url: success_url.as_str(),
                cancel_url: cancel_url.as_str(),
                client_reference_id: &reference,
                metadata,
            },
            &stripe_key_for(idem.as_ref(), "report_checkout"),
        )
        .await?;
    Ok(Json(CheckoutResponse {
        checkout_url: link.url,
        session_id: link.session_id,
    }))
}
