//! The Billing API's OpenAPI 3.1 document: every function's paths (each crate's `openapi()`,
//! from its handlers' `#[utoipa::path]` annotations) merged under one info block, the
//! servers, the API-key security scheme and the shared error responses. The bin writes it to
//! `openapi.json` at the repository root (`make openapi`), which the billing function serves.

use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder, ServerBuilder};

/// Where the bin writes the document, and what `GET /v1/openapi.json` serves.
pub const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.json");

const DESCRIPTION: &str = "Stripe-powered subscription management and one-time payment \
processing for Home Insight AI: checkout sessions, customer portals and the subscription \
lifecycle; a credit system for B2B2C resale of document access; usage metering of analyses \
and chat messages; and the Stripe webhook that keeps it all in sync.\n\n\
Every error has the same shape, `{\"error\": {\"code\": \"...\", \"message\": \"...\"}}`, with \
extra keys for some codes (`field` for `invalid_request`); the one exception is the 402 of \
`POST /v1/credits/access`, a flat `{\"error\": \"payment_required\", ...}` body. Every POST, \
PUT and DELETE accepts an `Idempotency-Key` header.";

/// The whole document.
pub fn document() -> OpenApi {
    let tag = |name: &str, description: &str| {
        TagBuilder::new()
            .name(name)
            .description(Some(description))
            .build()
    };
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Billing API")
                .version("1.0.0")
                .description(Some(DESCRIPTION))
                .build(),
        )
        .servers(Some([
            ServerBuilder::new()
                .url("https://api.homeinsightai.com")
                .description(Some("Production"))
                .build(),
            ServerBuilder::new()
                .url("http://127.0.0.1:3000")
                .description(Some("The local stack (`make dev`), test mode"))
                .build(),
        ]))
        .components(Some(shared::openapi::components()))
        .tags(Some([
            tag(
                "billing",
                "Plans, Checkout, the customer portal and the $29 report",
            ),
            tag(
                "subscriptions",
                "A subject's subscription and its lifecycle",
            ),
            tag(
                "credits",
                "Credits for your end users' document access (B2B2C)",
            ),
            tag(
                "usage",
                "Metering of analyses and chat messages against plan limits",
            ),
            tag("webhooks", "Stripe's event deliveries"),
            tag("meta", "This document"),
        ]))
        .build();
    for part in [
        billing::openapi(),
        subscriptions::openapi(),
        credits::openapi(),
        usage::openapi(),
        webhook::openapi(),
    ] {
        doc.merge(part);
    }
    limit_keyed_operations(&mut doc);
    doc
}

/// Every operation that takes an API key is rate-limited per key: it may answer 429
/// `rate_limited`, and its responses carry `RateLimit-Policy` and `RateLimit` (the shared
/// responses, by reference, describe their own bodies only).
fn limit_keyed_operations(doc: &mut OpenApi) {
    use utoipa::openapi::{Ref, RefOr};
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in operations.into_iter().flatten() {
            if op.security.as_ref().is_none_or(|s| s.is_empty()) {
                continue;
            }
            for response in op.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    response.headers.extend(
                        shared::openapi::rate_limit_headers()
                            .into_iter()
                            .map(|(name, header)| (name, RefOr::T(header))),
                    );
                }
            }
            op.responses.responses.insert(
                "429".to_string(),
                RefOr::Ref(Ref::from_response_name("RateLimited")),
            );
        }
    }
}

/// The document as the committed file holds it: pretty JSON with a trailing newline.
pub fn to_json(doc: &OpenApi) -> String {
    let mut json = doc
        .to_pretty_json()
        .expect("an OpenAPI document always serializes");
    json.push('\n');
    json
}
