//! The billing function: plans and payments, `/v1/billing/*`, and the API's OpenAPI
//! document, `/v1/openapi.json`.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use shared::auth::Account;
use shared::catalog::{REPORT, TIERS, TierView};
use shared::customers::ensure_customer;
use shared::domain::{ExternalUserId, RedirectUrl, Subject, paid_tier};
use shared::http::{ApiRouter, JsonBody};
use shared::idempotency::{IdempotencyKey, stripe_key_for};
use shared::openapi::{
    BadRequest, IdempotencyKeyHeader, IdempotencyKeyReused, InternalError, NotFound, PaidTier,
    PayloadTooLarge, RequestInProgress, Unauthorized, UpstreamUnavailable,
};
use shared::stripe::checkout::{Order, Owner, Purpose};
use shared::stripe::{CheckoutMode, CheckoutRequest};
use shared::sync;
use shared::{ApiError, AppState};
use utoipa::{OpenApi, ToSchema};

/// The path of the OpenAPI document.
pub use shared::http::OPENAPI_PATH;

/// The whole API's OpenAPI document as committed (`make openapi` regenerates it from the
/// handlers' annotations; a test of `tools/openapi` fails when it is stale).
pub const OPENAPI_JSON: &str = include_str!("../../../openapi.json");

pub fn api() -> ApiRouter {
    ApiRouter::new()
        .get("/v1/billing/tiers", tiers)
        .post("/v1/billing/checkout", checkout)
        .post("/v1/billing/portal", portal)
        .post("/v1/billing/purchase-report", purchase_report)
        .get(OPENAPI_PATH, openapi_json)
}

pub fn router(state: AppState) -> axum::Router {
    api().into_router(state)
}

#[derive(OpenApi)]
#[openapi(paths(tiers, checkout, portal, purchase_report, openapi_json))]
struct Doc;

/// This function's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

/// The OpenAPI document
///
/// This API's OpenAPI 3.1 document. It needs no API key.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    operation_id = "get_openapi_document",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", body = Object, content_type = "application/json"),
    )
)]
async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Tiers)]
pub struct TiersResponse {
    /// Free first, then Pro and Enterprise.
    pub tiers: Vec<TierView>,
}

/// Get available tiers
///
/// Every subscription tier with its pricing, free first.
#[utoipa::path(
    get,
    path = "/v1/billing/tiers",
    tag = "billing",
    operation_id = "list_tiers",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The tiers", body = TiersResponse, example = json!({"tiers": [
            {"id": "free", "name": "Free Trial", "price": 0, "currency": "USD", "interval": "month",
             "features": ["1 analysis per month", "50 chat messages", "Basic support"], "analyses_limit": 1},
            {"id": "pro", "name": "Pro", "price": 99, "currency": "USD", "interval": "month",
             "features": ["100 analyses per month", "Unlimited chat messages", "Priority support",
                          "White-label widget", "Advanced cost estimates"],
             "analyses_limit": 100, "stripe_price_id": "price_1SZPUkR9pxNkCCCYoc4jXp56"},
            {"id": "enterprise", "name": "Enterprise", "price": 999, "currency": "USD", "interval": "month",
             "features": ["Unlimited analyses", "Unlimited chat messages", "Dedicated support",
                          "Custom integrations", "SLA guarantee", "On-premise deployment option"],
             "analyses_limit": null, "stripe_price_id": "price_1SZPVCR9pxNkCCCYbRqZFp52"}]})),
        (status = 401, response = Unauthorized),
        (status = 500, response = InternalError),
    )
)]
async fn tiers(State(state): State<AppState>, _: Account) -> Result<Json<TiersResponse>, ApiError> {
    let prices = state.prices.get().await?;
    Ok(Json(TiersResponse {
        tiers: TIERS
            .iter()
            .map(|t| TierView::new(t, prices.tier(t.tier).map(str::to_string)))
            .collect(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CheckoutRequest, example = json!({"tier": "pro",
    "success_url": "https://yourapp.com/billing/success", "cancel_url": "https://yourapp.com/billing/cancel"}))]
struct CheckoutBody {
    #[schema(value_type = PaidTier)]
    tier: String,
    /// Where Stripe sends the payer after a successful payment.
    #[schema(value_type = RedirectUrl)]
    success_url: String,
    /// Where Stripe sends the payer who cancels.
    #[schema(value_type = RedirectUrl)]
    cancel_url: String,
    /// An end user of yours (B2B2C) whose plan this is; without it, your account's own.
    #[schema(value_type = Option<ExternalUserId>)]
    external_user_id: Option<String>,
}

/// A Stripe Checkout Session to send the payer to.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CheckoutSession)]
struct CheckoutResponse {
    /// Stripe's hosted payment page: redirect the user here.
    #[schema(format = "uri")]
    checkout_url: String,
    session_id: String,
}

/// Create a checkout session
///
/// A Stripe Checkout session for the Pro or Enterprise plan. Redirect the user to
/// `checkout_url`; once paid, Stripe redirects to `success_url` and the subscription is
/// activated automatically. A subject that already has a live subscription gets 400 (change
/// tiers with `PUT /v1/subscriptions/{id}/upgrade`); a new Checkout expires the subject's
/// previous open one.
#[utoipa::path(
    post,
    path = "/v1/billing/checkout",
    tag = "billing",
    operation_id = "create_checkout_session",
    security(("api_key" = [])),
    params(IdempotencyKeyHeader),
    request_body = CheckoutBody,
    responses(
        (status = 200, description = "The Checkout session", body = CheckoutResponse, example = json!({
            "checkout_url": "https://checkout.stripe.com/c/pay/cs_test_a1...",
            "session_id": "cs_test_a1F386iivKDFGljBNeU4iBmnUGGw7k0dofurJX8JLC1dZAXMo4mSi3n3aP"})),
        (status = 400, description = "`invalid_tier`, or `invalid_request` (`field` names the input at fault)",
            body = shared::error::ErrorBody, examples(
            ("invalid_tier" = (value = json!({"error": {"code": "invalid_tier",
                "message": "Invalid tier 'premium'. Valid tiers: pro, enterprise"}}))),
            ("invalid_request" = (value = json!({"error": {"code": "invalid_request",
                "message": "`success_url` must be an absolute http(s) URL", "field": "success_url"}}))),
        )),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = RequestInProgress),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = IdempotencyKeyReused),
        (status = 500, response = InternalError),
        (status = 502, response = UpstreamUnavailable),
    )
)]
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
    let customer = ensure_customer(&state, &account.id, &subject, existing).await?;
    let prices = state.prices.get().await?;
    let price_id = prices
        .tier(tier)
        .ok_or_else(|| ApiError::internal("paid tier without a price"))?;
    let order = Order::new(
        Owner {
            account_id: account.id.to_string(),
            subject: key.clone(),
        },
        Purpose::Subscription(tier),
    );
    let reference = format!("{}:{key}", account.id);
    let request = CheckoutRequest {
        customer: Some(&customer),
        customer_email: None,
        price_id,
        mode: CheckoutMode::Subscription,
        success_url: success_url.as_str(),
        cancel_url: cancel_url.as_str(),
        client_reference_id: &reference,
        order: &order,
    };
    let stripe_key = stripe_key_for(idem.as_ref(), "checkout_session");
    let account_id = account.id.as_str();
    // One decision that may start a subscription per subject at a time, on Stripe's view.
    let link = sync::hold_subject(&state, account_id, &key, async {
        let synced = sync::sync_subject(&state, account_id, &key, &customer, None).await?;
        if let Some(live) = synced.live() {
            return Err(already_subscribed(&live.id));
        }
        let link = state
            .stripe
            .create_checkout_session(request, &stripe_key)
            .await?;
        // One open subscription Checkout per subject: the one this replaces can no longer be
        // paid, so two tabs cannot start two subscriptions. If it was paid first, its
        // subscription is the plan: this new session must not be payable either.
        if let Some(live) =
            sync::close_open_checkout(&state, account_id, &key, &customer, Some(&link.session_id))
                .await?
        {
            state
                .stripe
                .expire_checkout_session(&link.session_id)
                .await?;
            return Err(already_subscribed(&live.id));
        }
        Ok(link)
    })
    .await?;
    Ok(Json(CheckoutResponse {
        checkout_url: link.url,
        session_id: link.session_id,
    }))
}

fn already_subscribed(live: &str) -> ApiError {
    ApiError::invalid(
        "tier",
        format!(
            "Already subscribed ({live}); change the tier with PUT /v1/subscriptions/{live}/upgrade."
        ),
    )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PortalRequest, example = json!({"return_url": "https://yourapp.com/settings/billing"}))]
struct PortalBody {
    /// Where the portal's "return" link goes.
    #[schema(value_type = RedirectUrl)]
    return_url: String,
    /// The end user (B2B2C) whose billing to manage; without it, your account's own.
    #[schema(value_type = Option<ExternalUserId>)]
    external_user_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PortalSession)]
struct PortalResponse {
    /// Stripe's hosted portal: redirect the user here.
    #[schema(format = "uri")]
    portal_url: String,
}

/// Create a customer portal session
///
/// A Stripe Customer Portal session for managing the subscription, payment methods and
/// billing history. A subject that has never been through Checkout has nothing to manage
/// yet: 404 `no_subscription`.
#[utoipa::path(
    post,
    path = "/v1/billing/portal",
    tag = "billing",
    operation_id = "create_portal_session",
    security(("api_key" = [])),
    params(IdempotencyKeyHeader),
    request_body = PortalBody,
    responses(
        (status = 200, description = "The portal session", body = PortalResponse, example = json!({
            "portal_url": "https://billing.stripe.com/p/session/test_abc123..."})),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`no_subscription`: no Stripe customer yet, or `not_found`",
            body = shared::error::ErrorBody, examples(
            ("no_subscription" = (value = json!({"error": {"code": "no_subscription",
                "message": "No active subscription found. Please subscribe to a plan.",
                "suggested_action": "redirect_to_pricing"}}))),
        )),
        (status = 409, response = RequestInProgress),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = IdempotencyKeyReused),
        (status = 500, response = InternalError),
        (status = 502, response = UpstreamUnavailable),
    )
)]
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ReportPurchaseRequest, example = json!({
    "success_url": "https://yourapp.com/report/success", "cancel_url": "https://yourapp.com/pricing"}))]
struct ReportBody {
    /// Where Stripe sends the payer after a successful payment.
    #[schema(value_type = RedirectUrl)]
    success_url: String,
    /// Where Stripe sends the payer who cancels.
    #[schema(value_type = RedirectUrl)]
    cancel_url: String,
    /// The end user (B2B2C) who gets the credit; without it, your account.
    #[schema(value_type = Option<ExternalUserId>)]
    external_user_id: Option<String>,
}

/// Purchase a single report
///
/// A one-time $29 Stripe Checkout. Once paid: one analysis credit, valid for 30 days, with
/// unlimited chat messages for that analysis.
#[utoipa::path(
    post,
    path = "/v1/billing/purchase-report",
    tag = "billing",
    operation_id = "purchase_report",
    security(("api_key" = [])),
    params(IdempotencyKeyHeader),
    request_body = ReportBody,
    responses(
        (status = 200, description = "The Checkout session", body = CheckoutResponse, example = json!({
            "checkout_url": "https://checkout.stripe.com/c/pay/cs_test_b2...",
            "session_id": "cs_test_b2G497jjwLEHImoCPfV5jCnoVHHx8l1epgvsKY9NMD2eAYNPp5nTj4o4bQ"})),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = RequestInProgress),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = IdempotencyKeyReused),
        (status = 500, response = InternalError),
        (status = 502, response = UpstreamUnavailable),
    )
)]
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
    let order = Order::new(
        Owner {
            account_id: account.id.to_string(),
            subject: key.clone(),
        },
        Purpose::Report,
    );
    let reference = format!("{}:{key}", account.id);
    let link = state
        .stripe
        .create_checkout_session(
            CheckoutRequest {
                customer: Some(&customer),
                customer_email: None,
                price_id: state.prices.get().await?.id(REPORT.lookup_key)?,
                mode: CheckoutMode::Payment,
                success_url: success_url.as_str(),
                cancel_url: cancel_url.as_str(),
                client_reference_id: &reference,
                order: &order,
            },
            &stripe_key_for(idem.as_ref(), "report_checkout"),
        )
        .await?;
    Ok(Json(CheckoutResponse {
        checkout_url: link.url,
        session_id: link.session_id,
    }))
}
