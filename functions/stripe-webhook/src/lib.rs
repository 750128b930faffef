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
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use shared::error::ErrorBody;
use shared::events::{self, Event};
use shared::http::{ApiRouter, body_error};
use shared::openapi::{InternalError, NotFound, PayloadTooLarge, UpstreamUnavailable};
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

/// How far a signature's timestamp may be from now (Stripe's default tolerance).
pub const TOLERANCE_SECS: i64 = 300;

/// Checks `Stripe-Signature` as Stripe specifies (<https://docs.stripe.com/webhooks#verify-manually>):
/// the header is `t=<unix time>,v1=<hex>[,v1=<hex>…]`; one `v1` must be the HMAC-SHA256, under
/// the endpoint's secret, of `<t>.<payload>`, compared in constant time; then `t` must be
/// within [`TOLERANCE_SECS`] of now. async-stripe's `construct_event` does the same and then
/// parses the event into its complete types — a parser for every event type Stripe has,
/// which alone would be most of this function's bootstrap. We need only the check (the
/// tests sign with async-stripe's own signer) and read the few fields we use ourselves.
pub fn verify(payload: &str, header: &str, secret: &str, now_unix: i64) -> Result<(), ApiError> {
    let mismatch = || {
        ApiError::InvalidSignature("The Stripe-Signature header does not match the payload.".into())
    };
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for pair in header.split(',') {
        match pair.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t),
            Some(("v1", signature)) => candidates.push(signature),
            _ => {}
        }
    }
    let t = timestamp.ok_or_else(mismatch)?;
    let signed_at: i64 = t.parse().map_err(|_| mismatch())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|_| ApiError::internal("the webhook secret cannot key an HMAC"))?;
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(payload.as_bytes());
    let signed = candidates.iter().any(|candidate| {
        hex::decode(candidate).is_ok_and(|signature| mac.clone().verify_slice(&signature).is_ok())
    });
    if !signed {
        return Err(mismatch());
    }
    if (now_unix - signed_at).abs() > TOLERANCE_SECS {
        return Err(ApiError::InvalidSignature(
            "The signature is older than 300 seconds.".into(),
        ));
    }
    Ok(())
}

/// A Stripe event, as Stripe sends it (only the keys read here are shown).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = StripeEvent, example = json!({"id": "evt_1abc123xyz", "object": "event",
    "type": "customer.subscription.updated", "data": {"object": {"id": "sub_1abc123xyz", "object": "subscription"}}}))]
struct Envelope {
    #[schema(example = "evt_1abc123xyz")]
    id: String,
    #[serde(rename = "type")]
    #[schema(example = "customer.subscription.updated")]
    type_: String,
    /// When Stripe created the event (unix s).
    #[serde(default)]
    #[schema(example = 1764547200)]
    created: i64,
    data: EnvelopeData,
}

#[derive(Debug, Deserialize, ToSchema)]
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
    verify(payload, signature, &state.stripe_keys.webhook_secret, now)?;
    let event: Envelope = serde_json::from_str(payload).map_err(|e| {
        ApiError::invalid(
            "body",
            format!("The event does not have Stripe's shape: {e}"),
        )
    })?;
    if state.store.event_processed(&event.id, now).await? {
        return Ok(Json(Received {
            received: true,
            duplicate: true,
        }));
    }
    let event = Event {
        id: event.id,
        type_: event.type_,
        created: event.created,
        object: event.data.object,
    };
    match events::apply(&state, &event).await {
        Ok(effect) => tracing::debug!(event = %event.id, ?effect, "event applied"),
        // What the event is about no longer exists in Stripe: a retry cannot change that,
        // so the event is acknowledged (Stripe would otherwise retry it for three days and
        // may disable the endpoint).
        Err(ApiError::NotFound(detail)) => {
            tracing::warn!(event = %event.id, event_type = %event.type_, detail, "event about an object Stripe no longer has; acknowledged")
        }
        Err(e) => return Err(e),
    }
    state
        .store
        .mark_event_processed(&event.id, &event.type_, now + DEDUPE_DAYS * 86_400)
        .await?;
    Ok(Json(Received {
        received: true,
        duplicate: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stripe_webhook::Webhook;

    const SECRET: &str = "whsec_test_secret";
    const NOW: i64 = 1_700_000_000;
    const PAYLOAD: &str = r#"{"id":"evt_1","type":"invoice.paid","data":{"object":{}}}"#;

    fn signed(payload: &str, at: i64) -> String {
        Webhook::generate_test_header(payload, SECRET, Some(at))
    }

    fn message(r: Result<(), ApiError>) -> String {
        match r {
            Err(ApiError::InvalidSignature(m)) => m,
            other => panic!("expected invalid_signature, got {other:?}"),
        }
    }

    #[test]
    fn accepts_what_async_stripe_signs() {
        assert!(verify(PAYLOAD, &signed(PAYLOAD, NOW), SECRET, NOW).is_ok());
        assert!(verify(PAYLOAD, &signed(PAYLOAD, NOW - 299), SECRET, NOW).is_ok());
        // Several v1 signatures (a secret being rolled): any one may match.
        let header = signed(PAYLOAD, NOW);
        let rolled = header.replacen(",v1=", ",v1=00ff,v1=", 1);
        assert!(verify(PAYLOAD, &rolled, SECRET, NOW).is_ok(), "{rolled}");
    }

    #[test]
    fn refuses_another_payload_secret_or_signature() {
        let header = signed(PAYLOAD, NOW);
        assert!(
            message(verify(
                &PAYLOAD.replace("evt_1", "evt_2"),
                &header,
                SECRET,
                NOW
            ))
            .contains("does not match")
        );
        assert!(message(verify(PAYLOAD, &header, "whsec_other", NOW)).contains("does not match"));
        for bad in [
            "",
            "t=1700000000",
            "v1=abc",
            "t=x,v1=00",
            "garbage",
            "t=1700000000,v1=zz",
        ] {
            assert!(
                message(verify(PAYLOAD, bad, SECRET, NOW)).contains("does not match"),
                "{bad}"
            );
        }
        // The timestamp is part of what is signed.
        let moved = header.replacen(&format!("t={NOW}"), &format!("t={}", NOW + 1), 1);
        assert!(message(verify(PAYLOAD, &moved, SECRET, NOW)).contains("does not match"));
    }

    #[test]
    fn refuses_a_signature_older_or_newer_than_the_tolerance() {
        let old = signed(PAYLOAD, NOW - TOLERANCE_SECS - 1);
        assert!(message(verify(PAYLOAD, &old, SECRET, NOW)).contains("older than 300"));
        let future = signed(PAYLOAD, NOW + TOLERANCE_SECS + 1);
        assert!(message(verify(PAYLOAD, &future, SECRET, NOW)).contains("older than 300"));
    }
}
