//! `ApiError`: every error the API answers, rendered exactly in the spec's error format
//! `{"error": {"code": …, "message": …, …}}` ([`ErrorBody`], whose schema the OpenAPI document
//! shows). Internals never reach the body; they go to the log inside the request's span,
//! which carries the request id.

use crate::domain::InputError;
use crate::metering::Meter;
use crate::metering::rules::Refusal;
use crate::store::StoreError;
use crate::stripe::StripeFailure;
use crate::stripe::webhook::SignatureError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// 400: a missing, malformed or out-of-range input; `field` names it.
    InvalidRequest { field: String, message: String },
    /// 401: no `Authorization: Bearer …` header.
    MissingApiKey,
    /// 401: a key that is malformed, unknown, revoked, or of the other mode.
    InvalidApiKey(String),
    /// 404: no such resource (or route) for this account.
    NotFound(String),
    /// 405: the path exists, the method does not (axum adds the `Allow` header).
    MethodNotAllowed,
    /// 413: the body is larger than the API accepts.
    PayloadTooLarge { limit_bytes: usize },
    /// 400: the spec's `invalid_tier`, for a tier that is not a paid one.
    InvalidTier(String),
    /// 404: the spec's `no_subscription`.
    NoSubscription,
    /// 402: the spec's `payment_failed`, with Stripe's own words.
    PaymentFailed { stripe_error: String },
    /// 402: the spec's `limit_exceeded`, for a meter (`analyses`, `chat_messages`): its body
    /// carries `<meter>_used` and `<meter>_limit`.
    LimitExceeded {
        message: String,
        meter: Meter,
        used: u64,
        limit: u64,
    },
    /// 402: the spec's `no_subscription` body, when a paid plan is what it takes.
    PlanRequired,
    /// 400: a webhook whose `Stripe-Signature` is missing, wrong or too old.
    InvalidSignature(String),
    /// 429: the API key's rate limit: retry after this many seconds.
    RateLimited { retry_after_seconds: u64 },
    /// 409: a request with this Idempotency-Key is still being processed.
    RequestInProgress,
    /// 422: this Idempotency-Key was used with a different request.
    IdempotencyKeyReused,
    /// 502: Stripe (or another upstream) is unreachable or failing. Details are logged.
    UpstreamUnavailable(String),
    /// 500: our fault. The detail is logged, never rendered.
    Internal(String),
}

/// How an adapter's failure is answered.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            // The retry holding the claim answers; this request made no effect.
            StoreError::ClaimLost => ApiError::RequestInProgress,
            e => ApiError::internal(e),
        }
    }
}

impl From<StripeFailure> for ApiError {
    fn from(f: StripeFailure) -> Self {
        match f {
            StripeFailure::Card(message) => ApiError::PaymentFailed {
                stripe_error: message,
            },
            StripeFailure::NotFound(_) => ApiError::NotFound("No such object.".into()),
            StripeFailure::Refused(detail) => {
                ApiError::internal(format!("Stripe refused a request: {detail}"))
            }
            StripeFailure::InvalidInput { param, message } => ApiError::invalid(param, message),
            StripeFailure::Unavailable(detail) => ApiError::UpstreamUnavailable(detail),
        }
    }
}

impl From<SignatureError> for ApiError {
    fn from(e: SignatureError) -> Self {
        match e {
            SignatureError::BadSecret => ApiError::internal(e),
            e => ApiError::InvalidSignature(e.to_string()),
        }
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        match e {
            InputError::Invalid { field, message } => ApiError::InvalidRequest { field, message },
            InputError::Tier(tier) => ApiError::InvalidTier(tier),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::PlanRequired => ApiError::PlanRequired,
            Refusal::LimitReached { meter, used, limit } => ApiError::LimitExceeded {
                message: match meter {
                    Meter::Analyses => format!(
                        "Monthly analysis limit reached ({used}/{limit}). Upgrade to Enterprise for unlimited analyses."
                    ),
                    Meter::ChatMessages => format!(
                        "Monthly chat message limit reached ({used}/{limit}). Upgrade to Pro for unlimited chat messages."
                    ),
                },
                meter,
                used,
                limit,
            },
        }
    }
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidRequest {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        ApiError::Internal(detail.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::MissingApiKey | ApiError::InvalidApiKey(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::InvalidTier(_) | ApiError::InvalidSignature(_) => StatusCode::BAD_REQUEST,
            ApiError::NoSubscription => StatusCode::NOT_FOUND,
            ApiError::PaymentFailed { .. }
            | ApiError::LimitExceeded { .. }
            | ApiError::PlanRequired => StatusCode::PAYMENT_REQUIRED,
            ApiError::RequestInProgress => StatusCode::CONFLICT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        self.error_code().as_str()
    }

    pub fn error_code(&self) -> ErrorCode {
        match self {
            ApiError::InvalidRequest { .. } => ErrorCode::InvalidRequest,
            ApiError::MissingApiKey => ErrorCode::MissingApiKey,
            ApiError::InvalidApiKey(_) => ErrorCode::InvalidApiKey,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            ApiError::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            ApiError::InvalidTier(_) => ErrorCode::InvalidTier,
            ApiError::InvalidSignature(_) => ErrorCode::InvalidSignature,
            ApiError::NoSubscription | ApiError::PlanRequired => ErrorCode::NoSubscription,
            ApiError::PaymentFailed { .. } => ErrorCode::PaymentFailed,
            ApiError::LimitExceeded { .. } => ErrorCode::LimitExceeded,
            ApiError::RequestInProgress => ErrorCode::RequestInProgress,
            ApiError::RateLimited { .. } => ErrorCode::RateLimited,
            ApiError::IdempotencyKeyReused => ErrorCode::IdempotencyKeyReused,
            ApiError::UpstreamUnavailable(_) => ErrorCode::UpstreamUnavailable,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The whole body, `{"error": {...}}`.
    pub fn error_body(&self) -> ErrorBody {
        let message = match self {
            ApiError::InvalidRequest { message, .. } => message.clone(),
            ApiError::MissingApiKey => {
                "Missing API key. Send it as `Authorization: Bearer hi_live_…` (or `hi_test_…`).".into()
            }
            ApiError::InvalidApiKey(message) | ApiError::NotFound(message) | ApiError::InvalidSignature(message) => {
                message.clone()
            }
            ApiError::MethodNotAllowed => "This path does not accept that method; the Allow header lists the ones it does.".into(),
            ApiError::PayloadTooLarge { limit_bytes } => {
                format!("Request body is larger than the {limit_bytes}-byte limit.")
            }
            ApiError::InvalidTier(given) => format!("Invalid tier '{given}'. Valid tiers: pro, enterprise"),
            ApiError::NoSubscription | ApiError::PlanRequired => {
                "No active subscription found. Please subscribe to a plan.".into()
            }
            ApiError::PaymentFailed { .. } => {
                "Payment could not be processed. Please update your payment method.".into()
            }
            ApiError::LimitExceeded { message, .. } => message.clone(),
            ApiError::RequestInProgress => {
                "A request with this Idempotency-Key is still being processed; retry later.".into()
            }
            ApiError::RateLimited { retry_after_seconds } => format!(
                "Too many requests for this API key's plan; retry in {retry_after_seconds} s. The RateLimit headers show the budget."
            ),
            ApiError::IdempotencyKeyReused => {
                "This Idempotency-Key was already used with a different request.".into()
            }
            ApiError::UpstreamUnavailable(_) => {
                "The payment provider did not answer; the request may or may not have taken effect. Retry with the same Idempotency-Key.".into()
            }
            ApiError::Internal(_) => {
                "An internal error occurred. Quote the x-request-id response header if you contact support."
                    .into()
            }
        };
        let mut error = ErrorDetail {
            code: self.error_code(),
            message,
            field: None,
            suggested_action: None,
            stripe_error: None,
            analyses_used: None,
            analyses_limit: None,
            chat_messages_used: None,
            chat_messages_limit: None,
            retry_after_seconds: None,
        };
        match self {
            ApiError::InvalidRequest { field, .. } => error.field = Some(field.clone()),
            ApiError::NoSubscription | ApiError::PlanRequired => {
                error.suggested_action = Some(SuggestedAction::RedirectToPricing);
            }
            ApiError::PaymentFailed { stripe_error } => {
                error.stripe_error = Some(stripe_error.clone());
            }
            ApiError::RateLimited {
                retry_after_seconds,
            } => error.retry_after_seconds = Some(*retry_after_seconds),
            ApiError::LimitExceeded {
                meter, used, limit, ..
            } => {
                let (used_at, limit_at) = match meter {
                    Meter::Analyses => (&mut error.analyses_used, &mut error.analyses_limit),
                    Meter::ChatMessages => (
                        &mut error.chat_messages_used,
                        &mut error.chat_messages_limit,
                    ),
                };
                *used_at = Some(*used);
                *limit_at = Some(*limit);
                error.suggested_action = Some(SuggestedAction::UpgradeTier);
            }
            _ => {}
        }
        ErrorBody { error }
    }

    /// The body as JSON.
    pub fn body(&self) -> Value {
        serde_json::to_value(self.error_body()).unwrap_or_default()
    }
}

/// Every error's body: `{"error": {"code": …, "message": …}}`, with the extra keys some codes
/// carry.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "invalid_tier", "message": "Invalid tier 'premium'. Valid tiers: pro, enterprise"}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The `error` object.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// For people: what went wrong and what to do.
    pub message: String,
    /// `invalid_request`: the input at fault (a body field such as `success_url` or
    /// `analysis_ids[3]`, a query parameter, a header such as `Idempotency-Key`, or `body`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
    /// `no_subscription` and `limit_exceeded`: where to send the user.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub suggested_action: Option<SuggestedAction>,
    /// `payment_failed`: Stripe's own words, e.g. "Your card was declined."
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub stripe_error: Option<String>,
    /// `limit_exceeded` on the analyses meter.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub analyses_used: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub analyses_limit: Option<u64>,
    /// `limit_exceeded` on the chat messages meter.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub chat_messages_used: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub chat_messages_limit: Option<u64>,
    /// `rate_limited`: when to retry (the `Retry-After` header says the same).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub retry_after_seconds: Option<u64>,
}

/// Machine-readable error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    MissingApiKey,
    InvalidApiKey,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    InvalidTier,
    InvalidSignature,
    NoSubscription,
    PaymentFailed,
    LimitExceeded,
    RateLimited,
    RequestInProgress,
    IdempotencyKeyReused,
    UpstreamUnavailable,
    #[serde(rename = "internal_error")]
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::MissingApiKey => "missing_api_key",
            ErrorCode::InvalidApiKey => "invalid_api_key",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::InvalidTier => "invalid_tier",
            ErrorCode::InvalidSignature => "invalid_signature",
            ErrorCode::NoSubscription => "no_subscription",
            ErrorCode::PaymentFailed => "payment_failed",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::RequestInProgress => "request_in_progress",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::UpstreamUnavailable => "upstream_unavailable",
            ErrorCode::Internal => "internal_error",
        }
    }
}

/// What the client should offer the user next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SuggestedAction {
    RedirectToPricing,
    UpgradeTier,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.code())
    }
}

/// Marks a response that says the request did not run and should be retried (a 409 while
/// another request holds what it needs): an Idempotency-Key must not keep it as the
/// request's answer, or the retry would replay it instead of running.
#[derive(Debug, Clone, Copy)]
pub struct NotFinal;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(detail) => tracing::error!(detail = %detail, "internal error"),
            ApiError::UpstreamUnavailable(detail) => {
                tracing::error!(detail = %detail, "upstream unavailable")
            }
            _ => {}
        }
        let mut response = (self.status(), axum::Json(self.error_body())).into_response();
        if self == ApiError::RequestInProgress {
            response.extensions_mut().insert(NotFinal);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_codes_serialize_as_their_names() {
        for e in [
            ApiError::invalid("f", "m"),
            ApiError::MissingApiKey,
            ApiError::Internal("x".into()),
            ApiError::IdempotencyKeyReused,
            ApiError::PlanRequired,
        ] {
            assert_eq!(e.body()["error"]["code"], e.code());
        }
    }

    #[test]
    fn invalid_request_names_the_field() {
        let e = ApiError::invalid("tier", "tier must be a string");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            e.body(),
            json!({"error": {"code": "invalid_request", "message": "tier must be a string", "field": "tier"}})
        );
    }

    #[test]
    fn internal_errors_hide_their_detail() {
        let e = ApiError::internal("ResourceNotFoundException: table billing-api-keys");
        let rendered = e.body().to_string();
        assert!(!rendered.contains("billing-api-keys"), "{rendered}");
        assert_eq!(e.body()["error"]["code"], "internal_error");
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn the_specs_error_bodies_key_for_key() {
        assert_eq!(
            ApiError::NoSubscription.body(),
            json!({"error": {"code": "no_subscription",
                "message": "No active subscription found. Please subscribe to a plan.",
                "suggested_action": "redirect_to_pricing"}})
        );
        assert_eq!(
            ApiError::LimitExceeded {
                message: "Monthly analysis limit reached (100/100). Upgrade to Enterprise for unlimited analyses.".into(),
                meter: Meter::Analyses,
                used: 100,
                limit: 100,
            }
            .body(),
            json!({"error": {"code": "limit_exceeded",
                "message": "Monthly analysis limit reached (100/100). Upgrade to Enterprise for unlimited analyses.",
                "analyses_used": 100, "analyses_limit": 100, "suggested_action": "upgrade_tier"}})
        );
        assert_eq!(
            ApiError::PaymentFailed {
                stripe_error: "Your card was declined.".into()
            }
            .body(),
            json!({"error": {"code": "payment_failed",
                "message": "Payment could not be processed. Please update your payment method.",
                "stripe_error": "Your card was declined."}})
        );
        assert_eq!(
            ApiError::InvalidTier("premium".into()).body(),
            json!({"error": {"code": "invalid_tier", "message": "Invalid tier 'premium'. Valid tiers: pro, enterprise"}})
        );
        assert_eq!(
            ApiError::PaymentFailed {
                stripe_error: String::new()
            }
            .status(),
            StatusCode::PAYMENT_REQUIRED
        );
        assert_eq!(ApiError::NoSubscription.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn upstream_errors_hide_their_detail() {
        let e = ApiError::UpstreamUnavailable("connect error: 10.0.0.1:443".into());
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        assert!(!e.body().to_string().contains("10.0.0.1"));
    }

    #[test]
    fn each_error_has_its_status_and_code() {
        let cases = [
            (ApiError::MissingApiKey, 401, "missing_api_key"),
            (ApiError::InvalidApiKey("x".into()), 401, "invalid_api_key"),
            (ApiError::NotFound("x".into()), 404, "not_found"),
            (ApiError::MethodNotAllowed, 405, "method_not_allowed"),
            (
                ApiError::PayloadTooLarge { limit_bytes: 10 },
                413,
                "payload_too_large",
            ),
        ];
        for (e, status, code) in cases {
            assert_eq!(e.status().as_u16(), status);
            assert_eq!(e.body()["error"]["code"], code);
            assert!(
                e.body()["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }
    }

    #[test]
    fn refusals_render_with_their_numbers() {
        let e = ApiError::from(Refusal::LimitReached {
            meter: Meter::Analyses,
            used: 100,
            limit: 100,
        });
        assert_eq!(
            e.body()["error"]["message"],
            "Monthly analysis limit reached (100/100). Upgrade to Enterprise for unlimited analyses."
        );
        let c = ApiError::from(Refusal::LimitReached {
            meter: Meter::ChatMessages,
            used: 50,
            limit: 50,
        })
        .body();
        assert_eq!(
            (
                c["error"]["chat_messages_used"].as_u64(),
                c["error"]["chat_messages_limit"].as_u64()
            ),
            (Some(50), Some(50))
        );
        assert_eq!(
            ApiError::from(Refusal::PlanRequired),
            ApiError::PlanRequired
        );
    }
}
