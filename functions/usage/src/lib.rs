//! The usage function: metering of analyses and chat messages against plan limits,
//! `/v1/usage/*`. The analysis service calls it before it runs an analysis or answers a
//! chat message.
//!
//! Each handler parses its input, asks the metering engine (`shared::metering`: its rules
//! decide what pays, its store writes the decision as one transaction) and renders the
//! answer. What pays an analysis, in order, and where a chat message counts: see
//! `shared::metering::rules`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shared::auth::Account;
use shared::catalog::Tier;
use shared::domain::{ExternalUserId, Subject};
use shared::error::ErrorBody;
use shared::http::{ApiRouter, JsonBody};
use shared::idempotency::{IdempotencyKey, answered_with_effect};
use shared::ledger::CreditKind;
use shared::metering::rules::{UnlimitedBy, chat_refusal, decide_chat};
use shared::metering::store::{Counted, Metered};
use shared::metering::{AnalysisRecord, AnalysisSource, MeterKeys, Plan, plan_of};
use shared::openapi::{
    AnalysisId, BadRequest, IdempotencyKeyHeader, IdempotencyKeyReused, InternalError,
    PayloadTooLarge, RequestInProgress, Unauthorized,
};
use shared::query::Query;
use shared::store::StoreError;
use shared::subscriptions::timestamp;
use shared::{ApiError, AppState};
use utoipa::{IntoParams, OpenApi, ToSchema};

pub fn api() -> ApiRouter {
    ApiRouter::new()
        .post("/v1/usage/analyses", analyses)
        .post("/v1/usage/chat-messages", chat_messages)
        .get("/v1/usage", usage)
}

pub fn router(state: AppState) -> axum::Router {
    api().into_router(state)
}

#[derive(OpenApi)]
#[openapi(paths(analyses, chat_messages, usage))]
struct Doc;

/// This function's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

/// An analysis id: 1–128 characters of `A–Z a–z 0–9 . _ - :`.
fn analysis_id(raw: &str) -> Result<String, ApiError> {
    let ok = !raw.is_empty()
        && raw.len() <= 128
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b));
    if ok {
        Ok(raw.to_string())
    } else {
        Err(ApiError::invalid(
            "analysis_id",
            "`analysis_id` must be 1-128 characters of A-Z a-z 0-9 . _ - :",
        ))
    }
}

/// The subject a request names, and the keys its metering touches.
struct Who {
    subject: Subject,
    keys: MeterKeys,
}

fn who(account: &Account, external_user_id: Option<&str>) -> Result<Who, ApiError> {
    let subject = Subject::from_input("external_user_id", external_user_id)?;
    Ok(Who {
        keys: MeterKeys::new(account.id.as_str(), &subject),
        subject,
    })
}

impl Who {
    fn external_user_id(&self) -> Option<String> {
        self.subject.external_user_id().map(str::to_string)
    }
}

/// The plan that meters the subject now (1 consistent read, or none when the request read
/// it already: [`Account::subscription`]).
async fn plan(state: &AppState, account: &Account, who: &Who, now: i64) -> Result<Plan, ApiError> {
    let record = account
        .subscription(&state.store, &who.keys.subject.subject)
        .await?;
    Ok(plan_of(
        record.as_ref(),
        now,
        state.store.access_grace_secs(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AnalysisRequest, example = json!({"analysis_id": "ana_abc123"}))]
struct AnalysisBody {
    /// The analysis about to run; each id counts once.
    #[schema(value_type = AnalysisId)]
    analysis_id: String,
    /// The end user (B2B2C) it runs for; without it, your account.
    #[schema(value_type = Option<ExternalUserId>)]
    external_user_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AnalysisUsage)]
struct AnalysisResponse {
    analysis_id: String,
    #[schema(required = true)]
    external_user_id: Option<String>,
    /// What paid: `subscription`, `report_credit` or `free_tier`.
    source: AnalysisSource,
    /// False when this analysis id had been counted before (a retry): nothing was counted now.
    counted: bool,
    /// What remains of the allowance that paid, when it is limited (report credits: credits).
    #[schema(required = true)]
    remaining: Option<u64>,
    /// Until when a report credit's analysis has unlimited chat.
    #[schema(required = true, format = DateTime)]
    report_credit_expires_at: Option<String>,
}

fn render(
    who: &Who,
    record: &AnalysisRecord,
    counted: bool,
    remaining: Option<u64>,
) -> AnalysisResponse {
    AnalysisResponse {
        analysis_id: record.analysis_id.clone(),
        external_user_id: who.external_user_id(),
        source: record.source,
        counted,
        remaining,
        report_credit_expires_at: record.report_expires_at.and_then(timestamp),
    }
}

fn json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Invalid(format!("rendering the answer: {e}")))
}

/// A 200 JSON answer, marked as stored with its effect when it rode the transaction.
fn ok_json(body: String, answered: bool) -> Response {
    if answered {
        answered_with_effect(StatusCode::OK, body)
    } else {
        (StatusCode::OK, [(CONTENT_TYPE, "application/json")], body).into_response()
    }
}

/// Record an analysis
///
/// Asks before an analysis runs, and counts it once per `analysis_id`. It is paid, in order,
/// by the paid plan's allowance for its current period (Pro: 100; Enterprise: unlimited),
/// then an unexpired report credit, then, without a paid plan, the free tier (1 per calendar
/// month, shared by the account's end users). Nothing left: 402.
#[utoipa::path(
    post,
    path = "/v1/usage/analyses",
    tag = "usage",
    operation_id = "record_analysis",
    security(("api_key" = [])),
    params(IdempotencyKeyHeader),
    request_body = AnalysisBody,
    responses(
        (status = 200, description = "Counted (or counted before: `counted` is false)", body = AnalysisResponse,
            example = json!({"analysis_id": "ana_abc123", "external_user_id": null, "source": "subscription",
                "counted": true, "remaining": 91, "report_credit_expires_at": null})),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 402, description = "`limit_exceeded` on a paid plan, `no_subscription` without one", body = ErrorBody,
            examples(
            ("limit_exceeded" = (value = json!({"error": {"code": "limit_exceeded",
                "message": "Monthly analysis limit reached (100/100). Upgrade to Enterprise for unlimited analyses.",
                "analyses_used": 100, "analyses_limit": 100, "suggested_action": "upgrade_tier"}}))),
            ("no_subscription" = (value = json!({"error": {"code": "no_subscription",
                "message": "No active subscription found. Please subscribe to a plan.",
                "suggested_action": "redirect_to_pricing"}}))),
        )),
        (status = 409, response = RequestInProgress),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = IdempotencyKeyReused),
        (status = 500, response = InternalError),
    )
)]
async fn analyses(
    State(state): State<AppState>,
    account: Account,
    idem: Option<IdempotencyKey>,
    JsonBody(body): JsonBody<AnalysisBody>,
) -> Result<Response, ApiError> {
    let id = analysis_id(&body.analysis_id)?;
    let who = who(&account, body.external_user_id.as_deref())?;
    let now = state.clock.now().unix_timestamp();
    // With an Idempotency-Key, the answer is stored in the transaction that counts the
    // analysis: a retry after a crash replays it rather than finding the analysis counted.
    let completion = |c: &Counted| {
        let body = json(&render(&who, &c.record, true, c.remaining))?;
        match &idem {
            Some(idem) => idem.completion(StatusCode::OK, &body),
            None => Err(StoreError::Invalid("no Idempotency-Key to answer".into())),
        }
    };
    let answer: Option<shared::store::AnswerWith<'_, Counted>> =
        idem.as_ref().map(|_| &completion as _);
    match state
        .store
        .meter_analysis(&who.keys, &id, now, answer)
        .await?
    {
        Metered::Counted { counted, answered } => Ok(ok_json(
            json(&render(&who, &counted.record, true, counted.remaining))?,
            answered,
        )),
        Metered::Earlier(record) => Ok(ok_json(json(&render(&who, &record, false, None))?, false)),
        Metered::Refused(refusal) => Err(refusal.into()),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ChatMessageRequest, example = json!({"analysis_id": "ana_abc123"}))]
struct ChatBody {
    /// The analysis the message is about: one paid with a report credit chats without limit
    /// while the credit lasts.
    #[schema(value_type = Option<AnalysisId>)]
    analysis_id: Option<String>,
    /// The end user (B2B2C) chatting; without it, your account.
    #[schema(value_type = Option<ExternalUserId>)]
    external_user_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ChatMessageUsage)]
struct ChatResponse {
    #[schema(required = true)]
    external_user_id: Option<String>,
    chat_messages_used: u64,
    /// The monthly limit; `null` when unlimited.
    #[schema(required = true)]
    chat_messages_limit: Option<u64>,
    /// Why this message was free of the monthly limit, if it was.
    #[schema(required = true)]
    unlimited_by: Option<UnlimitedBy>,
}

/// Record a chat message
///
/// Counts one chat message. Unlimited on a paid plan, and for an analysis paid with a report
/// credit while the credit's 30 days last; otherwise 50 per calendar month (then 402
/// `limit_exceeded`).
#[utoipa::path(
    post,
    path = "/v1/usage/chat-messages",
    tag = "usage",
    operation_id = "record_chat_message",
    security(("api_key" = [])),
    params(IdempotencyKeyHeader),
    request_body = ChatBody,
    responses(
        (status = 200, description = "Counted", body = ChatResponse, example = json!({
            "external_user_id": null, "chat_messages_used": 12, "chat_messages_limit": 50, "unlimited_by": null})),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 402, description = "`limit_exceeded`: the month's free chat messages are used", body = ErrorBody,
            example = json!({"error": {"code": "limit_exceeded",
                "message": "Monthly chat message limit reached (50/50). Upgrade to Pro for unlimited chat messages.",
                "chat_messages_used": 50, "chat_messages_limit": 50, "suggested_action": "upgrade_tier"}})),
        (status = 409, response = RequestInProgress),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = IdempotencyKeyReused),
        (status = 500, response = InternalError),
    )
)]
async fn chat_messages(
    State(state): State<AppState>,
    account: Account,
    idem: Option<IdempotencyKey>,
    JsonBody(body): JsonBody<ChatBody>,
) -> Result<Response, ApiError> {
    let id = body.analysis_id.as_deref().map(analysis_id).transpose()?;
    let who = who(&account, body.external_user_id.as_deref())?;
    let now = state.clock.now().unix_timestamp();
    let plan = plan(&state, &account, &who, now).await?;
    // Only a free subject's message depends on the analysis it is about.
    let analysis = match (&plan, &id) {
        (Plan::Free, Some(id)) => state.store.analysis_record(&who.keys.subject, id).await?,
        _ => None,
    };
    let meter = decide_chat(&plan, analysis.as_ref(), now);
    let counter = who.keys.counter(meter.counter);
    let render = |used: u64| {
        json(&ChatResponse {
            external_user_id: who.external_user_id(),
            chat_messages_used: used,
            chat_messages_limit: meter.limit,
            unlimited_by: meter.unlimited_by,
        })
    };
    // With an Idempotency-Key, the answer is stored in the transaction that counts the
    // message: a retry after a crash replays it rather than counting the message again.
    let (counted, answered) = match &idem {
        Some(idem) => {
            let answer = |used: &u64| idem.completion(StatusCode::OK, &render(*used)?);
            state
                .store
                .count_chat_message_answered(counter, &meter.period_key, meter.limit, now, &answer)
                .await?
        }
        None => (
            state
                .store
                .count_chat_message(counter, &meter.period_key, meter.limit, now)
                .await?,
            false,
        ),
    };
    match counted {
        Ok(used) => Ok(ok_json(render(used)?, answered)),
        Err(used) => Err(chat_refusal(used, meter.limit.unwrap_or(used)).into()),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct UsageQuery {
    /// An end user of yours (B2B2C); without it, your account.
    #[param(value_type = Option<ExternalUserId>)]
    external_user_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = MeterUsage)]
struct MeterView {
    used: u64,
    /// `null` when unlimited.
    #[schema(required = true)]
    limit: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ReportCredit)]
struct ReportCreditView {
    credits: i64,
    #[schema(required = true, format = DateTime)]
    expires_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Usage)]
struct UsageResponse {
    #[schema(required = true)]
    external_user_id: Option<String>,
    /// The plan that meters now (`free` without an active paid plan).
    tier: Tier,
    #[schema(required = true, format = DateTime)]
    period_start: Option<String>,
    #[schema(required = true, format = DateTime)]
    period_end: Option<String>,
    analyses: MeterView,
    chat_messages: MeterView,
    /// Unexpired report credits, soonest-expiring first.
    report_credits: Vec<ReportCreditView>,
}

/// Get usage
///
/// The current metering period, each meter's use and limit, and the report credits with their
/// expiry.
#[utoipa::path(
    get,
    path = "/v1/usage",
    tag = "usage",
    operation_id = "get_usage",
    security(("api_key" = [])),
    params(UsageQuery),
    responses(
        (status = 200, description = "The usage", body = UsageResponse, example = json!({
            "external_user_id": null, "tier": "pro",
            "period_start": "2025-11-01T00:00:00Z", "period_end": "2025-12-01T00:00:00Z",
            "analyses": {"used": 8, "limit": 100}, "chat_messages": {"used": 120, "limit": null},
            "report_credits": []})),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 500, response = InternalError),
    )
)]
async fn usage(
    State(state): State<AppState>,
    account: Account,
    Query(q): Query<UsageQuery>,
) -> Result<Json<UsageResponse>, ApiError> {
    let who = who(&account, q.external_user_id.as_deref())?;
    let now = state.clock.now().unix_timestamp();
    let plan = plan(&state, &account, &who, now).await?;
    let period = plan.period(now);
    let read = state.store.usage_now(&who.keys, &plan, now).await?;
    Ok(Json(UsageResponse {
        external_user_id: who.external_user_id(),
        tier: plan.tier(),
        period_start: timestamp(period.start),
        period_end: timestamp(period.end),
        analyses: MeterView {
            used: read.analyses,
            limit: plan.analyses_limit(),
        },
        chat_messages: MeterView {
            used: read.chat_messages,
            limit: plan.chat_messages_limit(),
        },
        report_credits: read
            .ledger
            .map(|l| l.live_lots(now))
            .unwrap_or_default()
            .into_iter()
            .filter(|l| l.kind == CreditKind::Analysis)
            .map(|l| ReportCreditView {
                credits: l.remaining,
                expires_at: l.expires_at.and_then(timestamp),
            })
            .collect(),
    }))
}
