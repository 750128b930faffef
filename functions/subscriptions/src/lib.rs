//! The subscriptions function: a subject's plan, `/v1/subscriptions[/{id}[/reactivate|/upgrade]]`.
//! Every change goes to Stripe first; our item then records Stripe's answer at once (the
//! webhook keeps it in sync afterwards). Subscription ids in paths are looked up within the
//! calling account: another account's id is 404.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::catalog::{Tier, dollars};
use shared::domain::{ExternalUserId, Subject, paid_tier};
use shared::error::ErrorBody;
use shared::http::{ApiRouter, JsonBody, PathId};
use shared::idempotency::{IdempotencyKey, stripe_key_for};
use shared::metering::{Meter, UsageKey, subscription_period_key};
use shared::metering::{Plan, plan_of};
use shared::openapi::{
    BadRequest, IdempotencyKeyHeader, IdempotencyKeyReused, InternalError, NotFound, PaidTier,
    PayloadTooLarge, RequestInProgress, SubscriptionStatus, Unauthorized, UpstreamUnavailable,
};
use shared::query::Query;
use shared::stripe::checkout::{Order, Owner, PriceChange, Purpose};
use shared::stripe::{Proration, SubscriptionSnapshot};
use shared::subscriptions::{SubscriptionRecord, SubscriptionView, timestamp};
use shared::sync;
use shared::{ApiError, AppState, auth::Account};
use utoipa::{IntoParams, OpenApi, ToSchema};

pub fn api() -> ApiRouter {
    ApiRouter::new()
        .get("/v1/subscriptions", status)
        .post("/v1/subscriptions", create)
        .delete("/v1/subscriptions/{id}", cancel)
        .post("/v1/subscriptions/{id}/reactivate", reactivate)
        .put("/v1/subscriptions/{id}/upgrade", upgrade)
}

pub fn router(state: AppState) -> axum::Router {
    api().into_router(state)
}

#[derive(OpenApi)]
#[openapi(paths(status, create, cancel, reactivate, upgrade))]
struct Doc;

/// This function's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SubjectQuery {
    /// An end user of yours (B2B2C); without it, your account's own subscription.
    #[param(value_type = Option<ExternalUserId>)]
    external_user_id: Option<String>,
}

/// Get subscription status
///
/// The current subscription of the authenticated account (or of one of its end users), with
/// the analyses used in its current billing period.
#[utoipa::path(
    get,
    path = "/v1/subscriptions",
    tag = "subscriptions",
    operation_id = "get_subscription",
    security(("api_key" = [])),
    params(SubjectQuery),
    responses(
        (status = 200, description = "The subscription", body = SubscriptionView, example = json!({
            "subscription_id": "sub_1abc123xyz", "status": "active", "tier": "pro",
            "current_period_start": "2025-11-01T00:00:00Z", "current_period_end": "2025-12-01T00:00:00Z",
            "cancel_at_period_end": false, "analyses_used": 8, "analyses_limit": 100,
            "created_at": "2025-11-01T00:00:00Z", "stripe_customer_id": "cus_abc123xyz"})),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`no_subscription`: the subject has never subscribed", body = ErrorBody,
            example = json!({"error": {"code": "no_subscription",
                "message": "No active subscription found. Please subscribe to a plan.",
                "suggested_action": "redirect_to_pricing"}})),
        (status = 500, response = InternalError),
    )
)]
async fn status(
    State(state): State<AppState>,
    account: Account,
    Query(q): Query<SubjectQuery>,
) -> Result<Json<SubscriptionView>, ApiError> {
    let subject = Subject::from_input("external_user_id", q.external_user_id.as_deref())?;
    let record = account.subscription(&state.store, &subject.key()).await?;
    let now = state.clock.now().unix_timestamp();
    let used = match plan_of(record.as_ref(), now, state.store.access_grace_secs()) {
        Plan::Paid { period_start, .. } => {
            let key = UsageKey {
                account_id: account.id.to_string(),
                subject: subject.key(),
            };
            state
                .store
                .usage_count(
                    &key,
                    Meter::Analyses,
                    &subscription_period_key(period_start),
                )
                .await?
        }
        Plan::Free => 0,
    };
    record
        .as_ref()
        .and_then(|r| SubscriptionView::of(r, used))
        .map(Json)
        .ok_or(ApiError::NoSubscription)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateSubscriptionRequest, example = json!({"tier": "pro", "stripe_customer_id": "cus_abc123xyz"}))]
struct CreateBody {
    #[schema(value_type = PaidTier)]
    tier: String,
    /// A Stripe customer that your account's checkouts created, with a default payment
    /// method: `cus_` and letters, digits or `_`, at most 255 characters.
    #[schema(
        pattern = "^cus_[A-Za-z0-9_]{0,251}$",
        max_length = 255,
        example = "cus_abc123xyz"
    )]
    stripe_customer_id: String,
    /// The end user (B2B2C) the customer belongs to; when given, it must be the customer's.
    #[schema(value_type = Option<ExternalUserId>)]
    external_user_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CreatedSubscription)]
struct Created {
    subscription_id: String,
    status: SubscriptionStatus,
    #[schema(required = true)]
    tier: Option<Tier>,
    #[schema(required = true, format = DateTime)]
    current_period_start: Option<String>,
    #[schema(required = true, format = DateTime)]
    current_period_end: Option<String>,
    /// The same as `subscription_id`.
    stripe_subscription_id: String,
}

/// Stores Stripe's answer to a call sent at `read_at` ([`sync::read_started`]): the same
/// forward-only tail as every sync.
async fn record(
    state: &AppState,
    account: &str,
    subject: &str,
    snapshot: &SubscriptionSnapshot,
    read_at: i64,
) -> Result<(), ApiError> {
    sync::store_snapshot(state, account, subject, snapshot, None, read_at).await?;
    Ok(())
}

/// Create a subscription (server-side)
///
/// Subscribes a Stripe customer directly, without a checkout page, charging its default
/// payment method at once. The customer must be one your account's checkouts created; a
/// subject with a live subscription gets 400 (change tiers with upgrade), and a concurrent
/// creation for the same subject 409.
#[utoipa::path(
    post,
    path = "/v1/subscriptions",
    tag = "subscriptions",
    operation_id = "create_subscription",
    security(("api_key" = [])),
    params(IdempotencyKeyHeader),
    request_body = CreateBody,
    responses(
        (status = 200, description = "The subscription", body = Created, example = json!({
            "subscription_id": "sub_1abc123xyz", "status": "active", "tier": "pro",
            "current_period_start": "2025-11-27T12:00:00Z", "current_period_end": "2025-12-27T12:00:00Z",
            "stripe_subscription_id": "sub_1abc123xyz"})),
        (status = 400, description = "`invalid_tier`, or `invalid_request` (`field` names the input at fault)",
            body = ErrorBody, examples(
            ("invalid_tier" = (value = json!({"error": {"code": "invalid_tier",
                "message": "Invalid tier 'premium'. Valid tiers: pro, enterprise"}}))),
            ("invalid_request" = (value = json!({"error": {"code": "invalid_request",
                "message": "`stripe_customer_id` must be a Stripe customer id (cus_…).",
                "field": "stripe_customer_id"}}))),
        )),
        (status = 401, response = Unauthorized),
        (status = 402, description = "`payment_failed`: no default payment method, or the charge was declined",
            body = ErrorBody, example = json!({"error": {"code": "payment_failed",
                "message": "Payment could not be processed. Please update your payment method.",
                "stripe_error": "Your card was declined."}})),
        (status = 404, description = "`not_found`: no such customer for this account", body = ErrorBody,
            example = json!({"error": {"code": "not_found", "message": "No such customer: 'cus_abc123xyz'."}})),
        (status = 409, response = RequestInProgress),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = IdempotencyKeyReused),
        (status = 500, response = InternalError),
        (status = 502, response = UpstreamUnavailable),
    )
)]
async fn create(
    State(state): State<AppState>,
    account: Account,
    idem: Option<IdempotencyKey>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Json<Created>, ApiError> {
    let tier = paid_tier(&body.tier)?;
    let requested = body
        .external_user_id
        .as_deref()
        .map(|raw| Subject::from_input("external_user_id", Some(raw)))
        .transpose()?;
    let not_ours = || {
        ApiError::NotFound(format!(
            "No such customer: '{}'.",
            body.stripe_customer_id.chars().take(64).collect::<String>()
        ))
    };
    let plausible = body.stripe_customer_id.starts_with("cus_")
        && body.stripe_customer_id.len() <= 255
        && body
            .stripe_customer_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !plausible {
        return Err(ApiError::invalid(
            "stripe_customer_id",
            "`stripe_customer_id` must be a Stripe customer id (cus_…).",
        ));
    }
    let owner = state
        .store
        .subscription_by_customer(&body.stripe_customer_id)
        .await?
        .ok_or_else(not_ours)?;
    if owner.account_id != account.id.as_str() {
        return Err(not_ours());
    }
    if let Some(requested) = requested
        && requested.key() != owner.subject
    {
        return Err(ApiError::invalid(
            "external_user_id",
            "This customer belongs to another external user.",
        ));
    }
    // One decision that may create a charge per subject at a time.
    let created = sync::hold_subject(
        &state,
        &owner.account_id,
        &owner.subject,
        create_locked(&state, idem.as_ref(), tier, &owner),
    )
    .await;
    let snapshot = created?;
    Ok(Json(Created {
        subscription_id: snapshot.id.clone(),
        status: snapshot.status,
        tier: snapshot.tier,
        current_period_start: snapshot.current_period_start.and_then(timestamp),
        current_period_end: snapshot.current_period_end.and_then(timestamp),
        stripe_subscription_id: snapshot.id,
    }))
}

/// Creates the subscription while holding the subject's lease, deciding on Stripe's view:
/// no live subscription (unless an earlier attempt of this very request made it: then that
/// one is the answer), no open Checkout that could start a second one, a default payment
/// method, then Stripe.
async fn create_locked(
    state: &AppState,
    idem: Option<&IdempotencyKey>,
    tier: Tier,
    owner: &SubscriptionRecord,
) -> Result<SubscriptionSnapshot, ApiError> {
    let (account, subject) = (owner.account_id.as_str(), owner.subject.as_str());
    let customer = owner.stripe_customer_id.as_str();
    let request = stripe_key_for(idem, "create_subscription");
    let already = |live: &SubscriptionSnapshot| {
        ApiError::invalid(
            "stripe_customer_id",
            format!(
                "This customer already has subscription {0}; change its tier with PUT /v1/subscriptions/{0}/upgrade.",
                live.id
            ),
        )
    };
    let synced = sync::sync_subject(state, account, subject, customer, None).await?;
    if let Some(live) = synced.live() {
        if Order::from_metadata(&live.metadata).is_ok_and(|o| o.created_by == Some(request.clone()))
        {
            return Ok(live.clone());
        }
        return Err(already(live));
    }
    // No open Checkout may start a second subscription; one paid first is the plan.
    if let Some(live) = sync::close_open_checkout(state, account, subject, customer, None).await? {
        return Err(already(&live));
    }
    // The customer's default card; else the card of its newest subscription that has one
    // (what its subscription Checkout collected, should the webhook that makes it the
    // customer's default never have come).
    let card = match state.stripe.default_payment_method(customer).await? {
        Some(_) => None,
        None => Some(
            synced
                .subscriptions
                .iter()
                .find_map(|s| s.default_payment_method.clone())
                .ok_or_else(|| ApiError::PaymentFailed {
                    stripe_error: "The customer has no default payment method.".into(),
                })?,
        ),
    };
    let prices = state.prices.get().await?;
    let price = prices
        .tier(tier)
        .ok_or_else(|| ApiError::internal("paid tier without a price"))?;
    let order = Order {
        created_by: Some(request.clone()),
        ..Order::new(
            Owner {
                account_id: account.to_string(),
                subject: subject.to_string(),
            },
            Purpose::Subscription(tier),
        )
    };
    let sent = sync::read_started(state);
    let snapshot = state
        .stripe
        .create_subscription(customer, price, card.as_deref(), &order, &request)
        .await?;
    record(state, account, subject, &snapshot, sent).await?;
    Ok(snapshot)
}

/// The caller's subscription with this id, or 404 (also for another account's).
async fn owned(
    state: &AppState,
    account: &Account,
    id: &str,
) -> Result<SubscriptionRecord, ApiError> {
    let not_found = || {
        ApiError::NotFound(format!(
            "No such subscription: '{}'.",
            id.chars().take(64).collect::<String>()
        ))
    };
    let plausible = id.starts_with("sub_")
        && id.len() <= 255
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !plausible {
        return Err(not_found());
    }
    match state.store.subscription_by_stripe_id(id).await? {
        Some(r)
            if r.account_id == account.id.as_str()
                && r.stripe_subscription_id.as_deref() == Some(id) =>
        {
            Ok(r)
        }
        _ => Err(not_found()),
    }
}

fn ended(id: &str) -> ApiError {
    ApiError::invalid(
        "subscription_id",
        format!("Subscription {id} has ended; subscribe again through /v1/billing/checkout."),
    )
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CancellationState)]
struct CancelState {
    subscription_id: String,
    status: SubscriptionStatus,
    cancel_at_period_end: bool,
    #[schema(required = true, format = DateTime)]
    current_period_end: Option<String>,
    message: String,
}

fn cancel_state(
    id: &str,
    status: SubscriptionStatus,
    cancel_at_period_end: bool,
    period_end: Option<i64>,
    message: String,
) -> Json<CancelState> {
    Json(CancelState {
        subscription_id: id.to_string(),
        status,
        cancel_at_period_end,
        current_period_end: period_end.and_then(timestamp),
        message,
    })
}

fn cancel_message(period_end: Option<i64>) -> String {
    match period_end.and_then(timestamp) {
        Some(at) => format!("Subscription will be canceled on {at}"),
        None => "Subscription will be canceled at the end of the current period".to_string(),
    }
}

/// Cancel subscription
///
/// Cancels the subscription at the end of the current billing period: access continues until
/// `current_period_end`, no refunds for partial months. Cancelling again answers the same; a
/// subscription that has ended is 400.
#[utoipa::path(
    delete,
    path = "/v1/subscriptions/{id}",
    tag = "subscriptions",
    operation_id = "cancel_subscription",
    security(("api_key" = [])),
    params(
        ("id" = String, Path, description = "The subscription id (`sub_…`)", example = "sub_1abc123xyz"),
        IdempotencyKeyHeader,
    ),
    responses(
        (status = 200, description = "Set to cancel at the period's end", body = CancelState, example = json!({
            "subscription_id": "sub_1abc123xyz", "status": "active", "cancel_at_period_end": true,
            "current_period_end": "2025-12-01T00:00:00Z",
            "message": "Subscription will be canceled on 2025-12-01T00:00:00Z"})),
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
async fn cancel(
    State(state): State<AppState>,
    account: Account,
    idem: Option<IdempotencyKey>,
    PathId(id): PathId,
) -> Result<Json<CancelState>, ApiError> {
    set_cancel_at_period_end(&state, &account, idem, &id, true).await
}

/// Reactivate subscription
///
/// Undoes a pending cancellation before the end of the current period. A subscription that
/// is not set to cancel answers 200 with `"message": "Subscription is already active"`; one
/// that has ended is 400.
#[utoipa::path(
    post,
    path = "/v1/subscriptions/{id}/reactivate",
    tag = "subscriptions",
    operation_id = "reactivate_subscription",
    security(("api_key" = [])),
    params(
        ("id" = String, Path, description = "The subscription id (`sub_…`)", example = "sub_1abc123xyz"),
        IdempotencyKeyHeader,
    ),
    responses(
        (status = 200, description = "Reactivated", body = CancelState, example = json!({
            "subscription_id": "sub_1abc123xyz", "status": "active", "cancel_at_period_end": false,
            "current_period_end": "2025-12-01T00:00:00Z", "message": "Subscription reactivated successfully"})),
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
async fn reactivate(
    State(state): State<AppState>,
    account: Account,
    idem: Option<IdempotencyKey>,
    PathId(id): PathId,
) -> Result<Json<CancelState>, ApiError> {
    set_cancel_at_period_end(&state, &account, idem, &id, false).await
}

/// Cancel (`cancel`) or reactivate a subscription of the caller's. When Stripe already has
/// it in the asked state nothing is changed and the answer is the same: retries are harmless.
async fn set_cancel_at_period_end(
    state: &AppState,
    account: &Account,
    idem: Option<IdempotencyKey>,
    id: &str,
    cancel: bool,
) -> Result<Json<CancelState>, ApiError> {
    let r = owned(state, account, id).await?;
    // Whether it renews decides a charge: decide on Stripe's view, and keep it.
    let sent = sync::read_started(state);
    let current = state.stripe.subscription(id).await?;
    let message = |period_end: Option<i64>, changed: bool| match (cancel, changed) {
        (true, _) => cancel_message(period_end),
        (false, true) => "Subscription reactivated successfully".to_string(),
        (false, false) => "Subscription is already active".to_string(),
    };
    // Nothing to change: our copy keeps what Stripe said, and that is the answer.
    let unchanged = if !current.is_live() {
        Some(Err(ended(id)))
    } else if current.cancel_at_period_end == cancel {
        Some(Ok(cancel_state(
            id,
            current.status,
            cancel,
            current.current_period_end,
            message(current.current_period_end, false),
        )))
    } else {
        None
    };
    if let Some(answer) = unchanged {
        record(state, account.id.as_str(), &r.subject, &current, sent).await?;
        return answer;
    }
    let key = stripe_key_for(idem.as_ref(), if cancel { "cancel" } else { "reactivate" });
    let sent = sync::read_started(state);
    let snap = state
        .stripe
        .set_cancel_at_period_end(id, cancel, &key)
        .await?;
    record(state, account.id.as_str(), &r.subject, &snap, sent).await?;
    Ok(cancel_state(
        id,
        snap.status,
        snap.cancel_at_period_end,
        snap.current_period_end,
        message(snap.current_period_end, true),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpgradeRequest, example = json!({"new_tier": "enterprise"}))]
struct UpgradeBody {
    #[schema(value_type = PaidTier)]
    new_tier: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = UpgradedSubscription)]
struct Upgraded {
    subscription_id: String,
    status: SubscriptionStatus,
    tier: Tier,
    #[schema(required = true)]
    previous_tier: Option<Tier>,
    /// Dollars, as the spec shows them; negative for a downgrade's credit.
    #[schema(value_type = f64, example = 900)]
    proration_amount: Value,
    /// ISO 4217, always `USD`.
    #[schema(value_type = String, example = "USD")]
    proration_currency: &'static str,
    #[schema(required = true, format = DateTime)]
    current_period_end: Option<String>,
    message: String,
}

/// Cents as a JSON number of dollars: `900` for 90000, `-450.5` for -45050.
fn dollars_number(cents: i64) -> Value {
    if cents % 100 == 0 {
        Value::from(cents / 100)
    } else {
        serde_json::Number::from_f64(cents as f64 / 100.0)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// Upgrade or downgrade a subscription
///
/// Changes the subscription's tier, with prorated billing: an upgrade is charged at once
/// for the prorated difference; a downgrade's credit goes to the next invoice and
/// `proration_amount` is negative. The same tier again is 400.
#[utoipa::path(
    put,
    path = "/v1/subscriptions/{id}/upgrade",
    tag = "subscriptions",
    operation_id = "change_subscription_tier",
    security(("api_key" = [])),
    params(
        ("id" = String, Path, description = "The subscription id (`sub_…`)", example = "sub_1abc123xyz"),
        IdempotencyKeyHeader,
    ),
    request_body = UpgradeBody,
    responses(
        (status = 200, description = "The tier changed", body = Upgraded, example = json!({
            "subscription_id": "sub_1abc123xyz", "status": "active", "tier": "enterprise",
            "previous_tier": "pro", "proration_amount": 900, "proration_currency": "USD",
            "current_period_end": "2025-12-01T00:00:00Z",
            "message": "Subscription upgraded to enterprise. Prorated amount: $900.00"})),
        (status = 400, description = "`invalid_tier`, or `invalid_request` (`field` names the input at fault)",
            body = ErrorBody, examples(
            ("invalid_tier" = (value = json!({"error": {"code": "invalid_tier",
                "message": "Invalid tier 'premium'. Valid tiers: pro, enterprise"}}))),
            ("invalid_request" = (value = json!({"error": {"code": "invalid_request",
                "message": "The subscription is already on enterprise.", "field": "new_tier"}}))),
        )),
        (status = 401, response = Unauthorized),
        (status = 402, description = "`payment_failed`: the upgrade's charge was declined", body = ErrorBody,
            example = json!({"error": {"code": "payment_failed",
                "message": "Payment could not be processed. Please update your payment method.",
                "stripe_error": "Your card was declined."}})),
        (status = 404, response = NotFound),
        (status = 409, response = RequestInProgress),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = IdempotencyKeyReused),
        (status = 500, response = InternalError),
        (status = 502, response = UpstreamUnavailable),
    )
)]
async fn upgrade(
    State(state): State<AppState>,
    account: Account,
    idem: Option<IdempotencyKey>,
    PathId(id): PathId,
    JsonBody(body): JsonBody<UpgradeBody>,
) -> Result<Json<Upgraded>, ApiError> {
    let new_tier = paid_tier(&body.new_tier)?;
    let r = owned(&state, &account, &id).await?;
    // This request's change has one identity; Stripe's copy of the subscription carries it.
    let change = stripe_key_for(idem.as_ref(), "change_price");
    let sent = sync::read_started(&state);
    let current = state.stripe.subscription(&id).await?;
    // Nothing to change: our copy keeps what Stripe said, and that decides the answer.
    let made = PriceChange::from_metadata(&current.metadata).filter(|c| c.changed_by == change);
    let unchanged = if let Some(made) = made {
        // An earlier attempt of this request made the change and lost its answer: answer
        // what it would have, from what it recorded with the change.
        Some(Ok(upgraded(
            &current,
            new_tier,
            made.previous_tier,
            made.proration_cents,
        )))
    } else if !current.is_live() {
        Some(Err(ended(&id)))
    } else if current.tier == Some(new_tier) {
        Some(Err(ApiError::invalid(
            "new_tier",
            format!("The subscription is already on {}.", new_tier.as_str()),
        )))
    } else {
        None
    };
    if let Some(answer) = unchanged {
        record(&state, account.id.as_str(), &r.subject, &current, sent).await?;
        return answer;
    }
    let item = current
        .item_id
        .clone()
        .ok_or_else(|| ApiError::internal(format!("{id} has no item")))?;
    let prices = state.prices.get().await?;
    let price = prices
        .tier(new_tier)
        .ok_or_else(|| ApiError::internal("paid tier without a price"))?;
    let proration_cents = state
        .stripe
        .preview_price_change(&current, &item, price)
        .await?;
    let proration = if is_upgrade(current.tier, new_tier) {
        Proration::ChargeNow
    } else {
        Proration::CreditNextInvoice
    };
    let made = PriceChange {
        changed_by: change.clone(),
        previous_tier: current.tier,
        proration_cents,
    };
    let sent = sync::read_started(&state);
    let snap = state
        .stripe
        .change_price(&id, &item, price, proration, &made, &change)
        .await?;
    record(&state, account.id.as_str(), &r.subject, &snap, sent).await?;
    Ok(upgraded(&snap, new_tier, current.tier, proration_cents))
}

fn is_upgrade(from: Option<Tier>, to: Tier) -> bool {
    to.info().price_cents > from.map(|t| t.info().price_cents).unwrap_or(0)
}

/// The answer to a tier change, from the subscription after it.
fn upgraded(
    snap: &SubscriptionSnapshot,
    new_tier: Tier,
    previous: Option<Tier>,
    proration_cents: i64,
) -> Json<Upgraded> {
    let verb = if is_upgrade(previous, new_tier) {
        "upgraded"
    } else {
        "downgraded"
    };
    Json(Upgraded {
        subscription_id: snap.id.clone(),
        status: snap.status,
        tier: new_tier,
        previous_tier: previous,
        proration_amount: dollars_number(proration_cents),
        proration_currency: shared::catalog::CURRENCY,
        current_period_end: snap.current_period_end.and_then(timestamp),
        message: format!(
            "Subscription {verb} to {}. Prorated amount: {}",
            new_tier.as_str(),
            dollars(proration_cents)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proration_amounts_are_dollars_as_the_spec_shows() {
        assert_eq!(dollars_number(90000).to_string(), "900");
        assert_eq!(dollars_number(-45050).to_string(), "-450.5");
        assert_eq!(dollars_number(0).to_string(), "0");
    }
}
