//! What every function's part of the OpenAPI document shares: the API-key security scheme,
//! the `Idempotency-Key` header, the error responses (all in [`ErrorBody`]'s format) and the
//! schemas of values whose rules live elsewhere in code (tiers, Stripe statuses, ids).
//! `tools/openapi` merges the functions' documents and adds [`components`].

use crate::error::ErrorBody;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, ToResponse, ToSchema};

/// The name of the API-key security scheme, for `security((API_KEY = []))`.
pub const API_KEY: &str = "api_key";

/// `Authorization: Bearer hi_live_…` (or `hi_test_…` on the test stage), see `crate::auth`.
pub fn api_key_scheme() -> SecurityScheme {
    SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("hi_live_… or hi_test_…")
            .description(Some(
                "An API key, `Authorization: Bearer hi_live_…` (live) or `hi_test_…` (test \
                 stage). A key of the other mode, an unknown or a revoked key is 401.",
            ))
            .build(),
    )
}

/// The components every function's operations refer to: the security scheme, the error
/// body and the shared error responses.
pub fn components() -> utoipa::openapi::Components {
    let mut schemas = Vec::new();
    <ErrorBody as ToSchema>::schemas(&mut schemas);
    utoipa::openapi::ComponentsBuilder::new()
        .security_scheme(API_KEY, api_key_scheme())
        .schema_from::<ErrorBody>()
        .schemas_from_iter(schemas)
        .response_from::<BadRequest>()
        .response_from::<Unauthorized>()
        .response_from::<NotFound>()
        .response_from::<PayloadTooLarge>()
        .response_from::<RequestInProgress>()
        .response_from::<IdempotencyKeyReused>()
        .response_from::<UpstreamUnavailable>()
        .response_from::<InternalError>()
        .response_from::<RateLimited>()
        .build()
}

/// The optional `Idempotency-Key` header of every POST, PUT and DELETE (see
/// `crate::http::idempotency`).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKeyHeader {
    /// Makes a retry safe: the same key with the same request within 24 h replays the stored
    /// response (`Idempotent-Replayed: true`); the same key with another request is 422
    /// `idempotency_key_reused`; while the first is in flight, 409 `request_in_progress`.
    /// 1-255 visible ASCII characters (a UUID works).
    #[param(
        rename = "Idempotency-Key",
        nullable = false,
        min_length = 1,
        max_length = 255,
        pattern = "^[!-~]{1,255}$",
        example = "7f1c3b7e-5d2a-4b8e-9c61-0a4f2e8d9b13"
    )]
    pub idempotency_key: Option<String>,
}

/// A tier that can be bought: the spec's `"pro"` or `"enterprise"` (anything else is 400
/// `invalid_tier`).
#[derive(Debug, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PaidTier {
    Pro,
    Enterprise,
}

pub use crate::subscriptions::SubscriptionStatus;

/// A document (analysis) id: 1-128 characters of `A-Z a-z 0-9 . _ - :`.
#[derive(Debug, ToSchema)]
#[schema(
    min_length = 1,
    max_length = 128,
    pattern = "^[A-Za-z0-9._:-]{1,128}$",
    example = "ana_abc123"
)]
pub struct AnalysisId(pub String);

/// 400 `invalid_request` (`field` names the input at fault) or another 400 of this operation.
#[derive(ToResponse)]
#[response(
    description = "Invalid input: `invalid_request`, `field` names the input at fault",
    examples(
        ("invalid_request" = (value = json!({"error": {"code": "invalid_request",
            "message": "`success_url` must be an absolute http(s) URL", "field": "success_url"}}))),
    )
)]
pub struct BadRequest(pub ErrorBody);

/// 401: no API key, or one that is malformed, unknown, revoked or of the other mode.
#[derive(ToResponse)]
#[response(
    description = "`missing_api_key` or `invalid_api_key`",
    examples(
        ("missing_api_key" = (value = json!({"error": {"code": "missing_api_key",
            "message": "Missing API key. Send it as `Authorization: Bearer hi_live_…` (or `hi_test_…`)."}}))),
        ("invalid_api_key" = (value = json!({"error": {"code": "invalid_api_key",
            "message": "Invalid API key."}}))),
    )
)]
pub struct Unauthorized(pub ErrorBody);

/// 404 `not_found`.
#[derive(ToResponse)]
#[response(
    description = "`not_found`: no such object for this account",
    examples(
        ("not_found" = (value = json!({"error": {"code": "not_found",
            "message": "No such subscription: 'sub_1abc123xyz'."}}))),
    )
)]
pub struct NotFound(pub ErrorBody);

/// 413 `payload_too_large`.
#[derive(ToResponse)]
#[response(
    description = "`payload_too_large`: the body is over the API's limit",
    examples(
        ("payload_too_large" = (value = json!({"error": {"code": "payload_too_large",
            "message": "Request body is larger than the 65536-byte limit."}}))),
    )
)]
pub struct PayloadTooLarge(pub ErrorBody);

/// 409 `request_in_progress`.
#[derive(ToResponse)]
#[response(
    description = "`request_in_progress`: a request with this Idempotency-Key is still running",
    examples(
        ("request_in_progress" = (value = json!({"error": {"code": "request_in_progress",
            "message": "A request with this Idempotency-Key is still being processed; retry later."}}))),
    )
)]
pub struct RequestInProgress(pub ErrorBody);

/// 422 `idempotency_key_reused`.
#[derive(ToResponse)]
#[response(
    description = "`idempotency_key_reused`: this Idempotency-Key was used with another request",
    examples(
        ("idempotency_key_reused" = (value = json!({"error": {"code": "idempotency_key_reused",
            "message": "This Idempotency-Key was already used with a different request."}}))),
    )
)]
pub struct IdempotencyKeyReused(pub ErrorBody);

/// 502 `upstream_unavailable`.
#[derive(ToResponse)]
#[response(
    description = "`upstream_unavailable`: Stripe did not answer; nothing was changed",
    examples(
        ("upstream_unavailable" = (value = json!({"error": {"code": "upstream_unavailable",
            "message": "The payment provider did not answer; the request may or may not have taken effect. Retry with the same Idempotency-Key."}}))),
    )
)]
pub struct UpstreamUnavailable(pub ErrorBody);

/// 429 `rate_limited`: the API key's plan allows no more requests in this window.
#[derive(ToResponse)]
#[response(
    description = "`rate_limited`: this API key's plan allows no more requests until the window ends",
    headers(
        ("Retry-After" = u64, description = "Seconds until the key may call again"),
        ("RateLimit-Policy" = String, description = "The key's policy: `\"<plan>\";q=<requests per window>;w=<window seconds>`"),
        ("RateLimit" = String, description = "What is left: `\"<plan>\";r=<remaining>;t=<seconds to the window's end>`"),
    ),
    examples(
        ("rate_limited" = (value = json!({"error": {"code": "rate_limited",
            "message": "Too many requests for this API key's plan; retry in 3 s. The RateLimit headers show the budget.",
            "retry_after_seconds": 3}}))),
    )
)]
pub struct RateLimited(pub ErrorBody);

/// The rate-limit headers every response of a limited operation carries.
pub fn rate_limit_headers() -> Vec<(String, utoipa::openapi::header::Header)> {
    use utoipa::openapi::header::HeaderBuilder;
    [
        (
            "RateLimit-Policy",
            "The API key's policy (IETF httpapi ratelimit-headers): `\"<plan>\";q=<requests per window>;w=<window seconds>`, e.g. `\"free\";q=20;w=4`",
        ),
        (
            "RateLimit",
            "What is left of the window: `\"<plan>\";r=<remaining>;t=<seconds to its end>`, e.g. `\"free\";r=13;t=3`",
        ),
    ]
    .into_iter()
    .map(|(name, description)| {
        (
            name.to_string(),
            HeaderBuilder::new()
                .schema(Some(utoipa::openapi::Object::with_type(
                    utoipa::openapi::Type::String,
                )))
                .description(Some(description))
                .build(),
        )
    })
    .collect()
}

/// 500 `internal_error`.
#[derive(ToResponse)]
#[response(
    description = "`internal_error`: details are only in the log, under the `x-request-id`",
    examples(
        ("internal_error" = (value = json!({"error": {"code": "internal_error",
            "message": "An internal error occurred. Quote the x-request-id response header if you contact support."}}))),
    )
)]
pub struct InternalError(pub ErrorBody);
