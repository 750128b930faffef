//! The credits function: the B2B2C credit system, `/v1/credits/*`. API customers resell
//! per-document access to their end users (`external_user_id`); the ledger in
//! `shared::ledger` keeps every balance change atomic with its entry.

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shared::auth::Account;
use shared::catalog::{PACKS, PackType, PackView, Tier, dollars};
use shared::clock::rfc3339;
use shared::domain::{AnalysisIds, ExternalUserId, RedirectUrl, Subject, customer_email};
use shared::http::{ApiRouter, JsonBody};
use shared::idempotency::{IdempotencyKey, answered_with_effect, stripe_key_for};
use shared::ledger::{Access, AccessOutcome, Charge, LedgerKey, Purchase, PurchaseStatus};
use shared::openapi::{
    AnalysisId, BadRequest, IdempotencyKeyHeader, IdempotencyKeyReused, InternalError,
    PayloadTooLarge, RequestInProgress, Unauthorized, UpstreamUnavailable,
};
use shared::query::Query;
use shared::store::{AnswerWith, StoreError};
use shared::stripe::checkout::{Order, Owner, Purpose};
use shared::stripe::{CheckoutMode, CheckoutRequest};
use shared::subscriptions::timestamp;
use shared::{ApiError, AppState};
use utoipa::{IntoParams, OpenApi, ToSchema};

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

#[derive(OpenApi)]
#[openapi(paths(packs, balance, purchase, access, history))]
struct Doc;

/// This function's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

/// List credit packs
///
/// The credit packs on sale, as a bare array, smallest first.
#[utoipa::path(
    get,
    path = "/v1/credits/packs",
    tag = "credits",
    operation_id = "list_credit_packs",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The packs", body = Vec<PackView>, example = json!([
            {"pack_type": "single", "name": "Single Analysis", "credits": 1, "price_cents": 499,
             "price_display": "$4.99", "per_credit_display": "$4.99/credit"},
            {"pack_type": "medium", "name": "5 Credits Pack", "credits": 5, "price_cents": 1999,
             "price_display": "$19.99", "per_credit_display": "$3.99/credit"},
            {"pack_type": "pro", "name": "10 Credits Pack", "credits": 10, "price_cents": 2999,
             "price_display": "$29.99", "per_credit_display": "$2.99/credit"}])),
        (status = 401, response = Unauthorized),
        (status = 500, response = InternalError),
    )
)]
async fn packs(_: Account) -> Json<Vec<PackView>> {
    Json(PACKS.iter().map(PackView::from).collect())
}

fn user(raw: Option<&str>) -> Result<ExternalUserId, ApiError> {
    let raw = raw
        .ok_or_else(|| ApiError::invalid("external_user_id", "`external_user_id` is required."))?;
    Ok(ExternalUserId::parse("external_user_id", raw)?)
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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct UserQuery {
    /// Your user's unique identifier.
    #[param(required = true, value_type = ExternalUserId)]
    external_user_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CreditBalance)]
struct BalanceResponse {
    #[schema(example = "user_123")]
    external_user_id: String,
    /// Spendable credits now; expired ones never count.
    balance: i64,
    /// True when the user's Pro or Enterprise plan makes documents free.
    has_unlimited: bool,
    /// Credits ever granted (packs and report credits).
    total_purchased: i64,
    total_spent: i64,
}

/// Get credit balance
///
/// The current credit balance of an end user: unexpired credits, and the totals.
#[utoipa::path(
    get,
    path = "/v1/credits/balance",
    tag = "credits",
    operation_id = "get_credit_balance",
    security(("api_key" = [])),
    params(UserQuery),
    responses(
        (status = 200, description = "The balance", body = BalanceResponse, example = json!({
            "external_user_id": "user_123", "balance": 5, "has_unlimited": false,
            "total_purchased": 10, "total_spent": 5})),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 500, response = InternalError),
    )
)]
async fn balance(
    State(state): State<AppState>,
    account: Account,
    Query(q): Query<UserQuery>,
) -> Result<Json<BalanceResponse>, ApiError> {
    let user = user(q.external_user_id.as_deref())?;
    let key = ledger_key(&account, &user);
    let (balance, has_unlimited) = state
        .store
        .ledger_balance_and_plan(&key, now(&state))
        .await?;
    Ok(Json(BalanceResponse {
        external_user_id: user.as_str().to_string(),
        balance: balance.balance,
        has_unlimited,
        total_purchased: balance.total_purchased,
        total_spent: balance.total_spent,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreditPurchaseRequest, example = json!({"external_user_id": "user_123", "pack_type": "medium",
    "success_url": "https://yourapp.com/billing/success", "cancel_url": "https://yourapp.com/billing/cancel",
    "customer_email": "user@example.com"}))]
struct PurchaseBody {
    /// Your user's unique identifier.
    #[schema(value_type = ExternalUserId)]
    external_user_id: Option<String>,
    #[schema(value_type = PackType)]
    pack_type: String,
    /// Where Stripe sends the payer after a successful payment.
    #[schema(value_type = RedirectUrl)]
    success_url: String,
    /// Where Stripe sends the payer who cancels.
    #[schema(value_type = RedirectUrl)]
    cancel_url: String,
    /// The user's email, prefilled on Stripe Checkout: at most 254 characters; ASCII letters,
    /// digits and ``!#$%&'*+/=?^_`{|}~-`` in dot-separated runs, `@`, DNS labels and a
    /// top-level domain of letters (what Stripe takes).
    #[schema(
        value_type = Option<String>,
        max_length = 254,
        pattern = "^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z]{2,63}$",
        example = "user@example.com"
    )]
    customer_email: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CreditPurchase)]
struct PurchaseResponse {
    /// Stripe's hosted payment page: redirect the user here.
    #[schema(format = "uri")]
    checkout_url: String,
    session_id: String,
    external_user_id: String,
    pack_type: PackType,
    /// Credits the pack grants once paid.
    credits: u32,
    price_cents: i64,
}

fn pack_type(raw: &str) -> Result<PackType, ApiError> {
    PackType::parse(raw)
        .ok_or_else(|| ApiError::invalid("pack_type", "`pack_type` must be single, medium or pro."))
}

/// Purchase credits
///
/// A Stripe Checkout session for a credit pack. Once paid, the pack's credits are added to
/// the user's balance, once; until then the purchase is `pending` in the history.
#[utoipa::path(
    post,
    path = "/v1/credits/purchase",
    tag = "credits",
    operation_id = "purchase_credits",
    security(("api_key" = [])),
    params(IdempotencyKeyHeader),
    request_body = PurchaseBody,
    responses(
        (status = 200, description = "The Checkout session", body = PurchaseResponse, example = json!({
            "checkout_url": "https://checkout.stripe.com/c/pay/cs_test_a1...", "session_id": "cs_test_a1...",
            "external_user_id": "user_123", "pack_type": "medium", "credits": 5, "price_cents": 1999})),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 409, response = RequestInProgress),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = IdempotencyKeyReused),
        (status = 500, response = InternalError),
        (status = 502, response = UpstreamUnavailable),
    )
)]
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
    let order = Order::new(
        Owner {
            account_id: key.account_id.clone(),
            subject: key.subject.clone(),
        },
        Purpose::CreditPack(pack.pack_type),
    );
    let reference = format!("{}:{}", key.account_id, key.subject);
    let link = state
        .stripe
        .create_checkout_session(
            CheckoutRequest {
                customer: None,
                customer_email: email.as_deref(),
                price_id: state.prices.get().await?.id(pack.lookup_key)?,
                mode: CheckoutMode::Payment,
                success_url: success_url.as_str(),
                cancel_url: cancel_url.as_str(),
                client_reference_id: &reference,
                order: &order,
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AccessRequest, example = json!({"external_user_id": "user_123",
    "analysis_ids": ["ana_abc123", "ana_def456"]}))]
struct AccessBody {
    /// Your user's unique identifier. May instead come in the `X-External-User-ID` header;
    /// when both are sent they must name the same user.
    #[schema(value_type = Option<ExternalUserId>)]
    external_user_id: Option<String>,
    /// The documents to access: 1-50 distinct ids (duplicates are ignored).
    #[schema(value_type = Vec<AnalysisId>, min_items = 1)]
    analysis_ids: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AccessGranted)]
struct AccessResponse {
    external_user_id: String,
    /// Every requested document, in request order.
    accessible_documents: Vec<String>,
    /// One per newly unlocked document; 0 with `has_unlimited`.
    credits_spent: i64,
    remaining_balance: i64,
    has_unlimited: bool,
}

/// The spec's 402 for document access: a flat body, unlike the other errors.
#[derive(Debug, Serialize, ToSchema)]
struct PaymentRequired {
    #[schema(value_type = PaymentRequiredCode)]
    error: &'static str,
    message: String,
    credits_required: i64,
    credits_available: i64,
    credits_needed: i64,
    can_unlock: bool,
    /// The credit packs on sale.
    purchase_options: Vec<PackView>,
    subscription_option: SubscriptionOption,
}

/// The headers of `POST /v1/credits/access` (read from the `HeaderMap`; only documented here).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct AccessHeaders {
    /// Your user's unique identifier, instead of (or equal to) the body's `external_user_id`.
    #[param(rename = "X-External-User-ID", value_type = Option<ExternalUserId>, nullable = false)]
    external_user_id: Option<String>,
}

/// The `error` of the document-access 402.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // only its schema is used: `PaymentRequired::error` is always this
enum PaymentRequiredCode {
    PaymentRequired,
}

/// The plan that makes every document free.
#[derive(Debug, Serialize, ToSchema)]
struct SubscriptionOption {
    tier: Tier,
    name: String,
    price_display: String,
    #[schema(value_type = String)]
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

/// Request document access
///
/// Unlocks documents for an end user, deducting credits: users on a Pro or Enterprise plan
/// pay nothing, documents already unlocked are free, each new one costs one credit. All or
/// nothing: with too few credits nothing is spent and the answer is the 402 below.
#[utoipa::path(
    post,
    path = "/v1/credits/access",
    tag = "credits",
    operation_id = "request_document_access",
    security(("api_key" = [])),
    params(IdempotencyKeyHeader, AccessHeaders),
    request_body = AccessBody,
    responses(
        (status = 200, description = "Access granted", body = AccessResponse, example = json!({
            "external_user_id": "user_123", "accessible_documents": ["ana_abc123", "ana_def456"],
            "credits_spent": 2, "remaining_balance": 3, "has_unlimited": false})),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 402, description = "Insufficient credits: nothing was spent", body = PaymentRequired, example = json!({
            "error": "payment_required", "message": "Need 2 credits to access 2 documents",
            "credits_required": 2, "credits_available": 0, "credits_needed": 2, "can_unlock": false,
            "purchase_options": [
                {"pack_type": "single", "name": "Single Analysis", "credits": 1, "price_cents": 499,
                 "price_display": "$4.99", "per_credit_display": "$4.99/credit"},
                {"pack_type": "medium", "name": "5 Credits Pack", "credits": 5, "price_cents": 1999,
                 "price_display": "$19.99", "per_credit_display": "$3.99/credit"},
                {"pack_type": "pro", "name": "10 Credits Pack", "credits": 10, "price_cents": 2999,
                 "price_display": "$29.99", "per_credit_display": "$2.99/credit"}],
            "subscription_option": {"tier": "pro", "name": "Pro Subscription",
                "price_display": "$99/month", "description": "Unlimited document analyses"}})),
        (status = 409, response = RequestInProgress),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = IdempotencyKeyReused),
        (status = 500, response = InternalError),
    )
)]
async fn access(
    State(state): State<AppState>,
    account: Account,
    idem: Option<IdempotencyKey>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<AccessBody>,
) -> Result<Response, ApiError> {
    let header = match headers.get(shared::http::EXTERNAL_USER_HEADER) {
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
    // A granted access's answer; `None` for a refusal.
    let render = |access: &Access| -> Result<Option<String>, StoreError> {
        let AccessOutcome::Granted {
            accessible,
            credits_spent,
            remaining_balance,
        } = &access.outcome
        else {
            return Ok(None);
        };
        serde_json::to_string(&AccessResponse {
            external_user_id: user.as_str().to_string(),
            accessible_documents: accessible.clone(),
            credits_spent: *credits_spent,
            remaining_balance: *remaining_balance,
            has_unlimited: access.has_unlimited,
        })
        .map(Some)
        .map_err(|e| StoreError::Invalid(format!("rendering the answer: {e}")))
    };
    // With an Idempotency-Key, the answer is stored in the transaction that spends: a retry
    // after a crash replays what was spent rather than finding the documents owned.
    let answer = |access: &Access| match (&idem, render(access)?) {
        (Some(idem), Some(body)) => idem.completion(StatusCode::OK, &body),
        _ => Err(StoreError::Invalid(
            "only a granted access with a key is answered".into(),
        )),
    };
    let (access, answered) = state
        .store
        .ledger_access_answered(
            &key,
            ids.as_slice(),
            Charge::UnlessUnlimited,
            now(&state),
            idem.is_some().then_some(&answer as AnswerWith<'_, Access>),
        )
        .await?;
    if let Some(body) = render(&access)? {
        return Ok(if answered {
            answered_with_effect(StatusCode::OK, body)
        } else {
            (StatusCode::OK, [(CONTENT_TYPE, "application/json")], body).into_response()
        });
    }
    let AccessOutcome::Insufficient {
        required,
        available,
    } = access.outcome
    else {
        return Err(ApiError::internal("a granted access always renders"));
    };
    Ok((
        StatusCode::PAYMENT_REQUIRED,
        Json(PaymentRequired {
            error: "payment_required",
            message: need_message(required),
            credits_required: required,
            credits_available: available,
            credits_needed: (required - available).max(0),
            can_unlock: available >= required,
            purchase_options: PACKS.iter().map(PackView::from).collect(),
            subscription_option: subscription_option(),
        }),
    )
        .into_response())
}

/// The 402's message: "Need 1 credit to access 1 document", "Need 3 credits to access 3
/// documents".
fn need_message(documents: i64) -> String {
    let s = if documents == 1 { "" } else { "s" };
    format!("Need {documents} credit{s} to access {documents} document{s}")
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct HistoryQuery {
    /// Your user's unique identifier.
    #[param(required = true, value_type = ExternalUserId)]
    external_user_id: Option<String>,
    /// Max results to return.
    #[param(minimum = 1, maximum = 100, default = 50)]
    limit: Option<i64>,
    /// Pagination offset.
    #[param(minimum = 0, maximum = 10000, default = 0)]
    offset: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PurchaseHistory)]
struct HistoryResponse {
    external_user_id: String,
    /// Credit-pack purchases, newest first.
    purchases: Vec<PurchaseView>,
    /// Credits of the completed purchases.
    total_purchased: i64,
    /// What the completed purchases cost.
    total_spent_cents: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CreditPackPurchase)]
struct PurchaseView {
    #[schema(example = "cp_123")]
    id: String,
    #[schema(value_type = PackType)]
    pack_type: String,
    credits: i64,
    price_cents: i64,
    status: PurchaseStatus,
    #[schema(required = true, format = DateTime)]
    created_at: Option<String>,
    /// When the payment arrived; `null` while pending.
    #[schema(required = true, format = DateTime)]
    completed_at: Option<String>,
}

pub const HISTORY_MAX_LIMIT: i64 = 100;
/// Deep pages cost a read of everything before them; beyond this, narrow the query.
pub const HISTORY_MAX_OFFSET: i64 = 10_000;

/// Get purchase history
///
/// An end user's credit-pack purchases, newest first, with the totals of the completed ones.
#[utoipa::path(
    get,
    path = "/v1/credits/history",
    tag = "credits",
    operation_id = "get_purchase_history",
    security(("api_key" = [])),
    params(HistoryQuery),
    responses(
        (status = 200, description = "The purchases", body = HistoryResponse, example = json!({
            "external_user_id": "user_123",
            "purchases": [{"id": "cp_123", "pack_type": "medium", "credits": 5, "price_cents": 1999,
                "status": "completed", "created_at": "2024-12-27T10:30:00Z", "completed_at": "2024-12-27T10:32:00Z"}],
            "total_purchased": 5, "total_spent_cents": 1999})),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 500, response = InternalError),
    )
)]
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

    #[test]
    fn the_402_message_is_singular_for_one_document() {
        assert_eq!(need_message(1), "Need 1 credit to access 1 document");
        assert_eq!(need_message(3), "Need 3 credits to access 3 documents");
    }
}
