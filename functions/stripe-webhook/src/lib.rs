//! The Stripe webhook, `POST /v1/webhooks/stripe`. No API key: the raw body is verified
//! against `Stripe-Signature` (300 s tolerance) before anything is parsed or stored.
//!
//! Exactly-once effect, whatever the number and order of deliveries: what an event does is
//! `shared::events::apply` (subscription events sync the subject from Stripe and store it only
//! if no newer read was stored, so a duplicate or a late event changes nothing); processed
//! event ids are remembered for 30 days (longer than Stripe's 3 days of retries) to spare
//! Stripe the re-read. Unknown event types are acknowledged and ignored. A failure of ours
//! answers 5xx, so Stripe retries; nothing is half-applied, as each event makes one write.
//! Paid one-time sessions (credit packs, the $29 report) grant credits in one ledger
//! transaction keyed by the session id, so a grant can never happen twice.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::handler::Handler;
use axum::http::HeaderMap;
use serde::Serialize;
use serde_json::Value;
use shared::error::ErrorBody;
use shared::events;
use shared::http::{ApiRouter, body_error};
use shared::openapi::{InternalError, NotFound, PayloadTooLarge, UpstreamUnavailable};
use shared::stripe::webhook::{Event, verify};
use shared::{ApiError, AppState};
use utoipa::{OpenApi, ToSchema};

/// How long a processed event id is remembered.
pub const DEDUPE_DAYS: i64 = 30;

/// Largest event the webhook reads. Stripe's events carry whole objects (an invoice with many
/// lines runs to tens of KiB), so the bound is wider than the API's 64 KiB, and still far
/// below what Lambda accepts (6 MB).
pub const WEBHOOK_BODY_LIMIT_BYTES: usize = 1024 * 1024;

pub fn api() -> ApiRouter {
    ApiRouter::new().post(
        shared::stripe::WEBHOOK_PATH,
        receive.layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT_BYTES)),
    )
}

pub fn router(state: AppState) -> axum::Router {
    api().into_router(state)
}

#[derive(OpenApi)]
#[openapi(paths(receive))]
struct Doc;

/// This function's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

/// A Stripe event, as Stripe sends it (only the keys read here are shown).
// The body's schema only: `shared::stripe::webhook::Event` reads it.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
#[schema(as = StripeEvent, example = json!({"id": "evt_1abc123xyz", "object": "event",
    "type": "customer.subscription.updated", "data": {"object": {"id": "sub_1abc123xyz", "object": "subscription"}}}))]
struct Envelope {
    #[schema(example = "evt_1abc123xyz")]
    id: String,
    #[schema(rename = "type", example = "customer.subscription.updated")]
    type_: String,
    /// When Stripe created the event (unix s).
    #[schema(required = false, example = 1764547200)]
    created: i64,
    data: EnvelopeData,
}

#[allow(dead_code)]
#[derive(Debug, ToSchema)]
#[schema(as = StripeEventData)]
struct EnvelopeData {
    /// The Stripe object the event is about.
    #[schema(value_type = Object)]
    object: Value,
}

/// The acknowledgement Stripe gets.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookReceived)]
struct Received {
    /// Always true.
    received: bool,
    /// Present (true) when this event id had been processed before: nothing was done again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[schema(required = false)]
    duplicate: bool,
}

/// Receive a Stripe webhook event
///
/// Stripe's event deliveries, for `checkout.session.completed|async_payment_succeeded`,
/// `customer.subscription.created|updated|deleted` and `invoice.payment_succeeded|failed`. No
/// API key: the raw body (at most 1 MiB) must be signed with the webhook secret
/// (`Stripe-Signature`, 300 s tolerance), else 400 `invalid_signature`. Unknown event types are acknowledged and
/// ignored; a failure of ours is 5xx, so Stripe retries.
#[utoipa::path(
    post,
    path = "/v1/webhooks/stripe",
    tag = "webhooks",
    operation_id = "receive_stripe_webhook",
    params(
        ("Stripe-Signature" = String, Header,
            description = "Stripe's signature of the raw body: `t=<unix time>,v1=<hex HMAC-SHA256>`",
            example = "t=1764547200,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd"),
    ),
    request_body = Envelope,
    responses(
        (status = 200, description = "Acknowledged", body = Received, example = json!({"received": true})),
        (status = 400, description = "`invalid_signature`: the signature is missing, wrong or too old; \
            or `invalid_request`: a signed body that is not a Stripe event", body = ErrorBody, examples(
            ("invalid_signature" = (value = json!({"error": {"code": "invalid_signature",
                "message": "The Stripe-Signature header does not match the payload."}}))),
        )),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 500, response = InternalError),
        (status = 502, response = UpstreamUnavailable),
    )
)]
async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Received>, ApiError> {
    let body = body.map_err(|rejection| body_error(&rejection, WEBHOOK_BODY_LIMIT_BYTES))?;
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::InvalidSignature("Missing Stripe-Signature header.".into()))?;
    let payload = std::str::from_utf8(&body)
        .map_err(|_| ApiError::InvalidSignature("The payload is not UTF-8.".into()))?;
    let now = state.clock.now().unix_timestamp();
    let keys = state
        .stripe_keys
        .as_deref()
        .ok_or_else(|| ApiError::internal(shared::stripe::NO_KEY))?;
    verify(payload, signature, &keys.webhook_secret, now)?;
    let event = Event::parse(payload).map_err(|e| {
        ApiError::invalid(
            "body",
            format!("The event does not have Stripe's shape: {e}"),
        )
    })?;
    let outcome = process(&state, &event, now).await;
    shared::metrics::webhook_event(
        &event.type_,
        match &outcome {
            Ok(outcome) => outcome,
            Err(_) => "failed",
        },
    );
    Ok(Json(Received {
        received: true,
        duplicate: outcome? == "duplicate",
    }))
}

/// Applies a verified event once: `duplicate` when it was processed before, `ignored` when
/// nothing of ours is about it, else `processed`.
async fn process(state: &AppState, event: &Event, now: i64) -> Result<&'static str, ApiError> {
    if state.store.event_processed(&event.id, now).await? {
        return Ok("duplicate");
    }
    let outcome = match events::apply(state, event).await {
        Ok(events::Effect::Ignored(why)) => {
            tracing::debug!(event = %event.id, why, "event ignored");
            "ignored"
        }
        Ok(effect) => {
            tracing::debug!(event = %event.id, ?effect, "event applied");
            "processed"
        }
        // What the event is about no longer exists in Stripe: a retry cannot change that,
        // so the event is acknowledged (Stripe would otherwise retry it for three days and
        // may disable the endpoint).
        Err(ApiError::NotFound(detail)) => {
            tracing::warn!(event = %event.id, event_type = %event.type_, detail, "event about an object Stripe no longer has; acknowledged");
            "ignored"
        }
        Err(e) => return Err(e),
    };
    state
        .store
        .mark_event_processed(&event.id, &event.type_, now + DEDUPE_DAYS * 86_400)
        .await?;
    Ok(outcome)
}
