//! The webhook's own body bound: wider than the API's 64 KiB (Stripe's events carry whole
//! objects), answered in the spec's error format past it.

use devkit::TestApp;
use serde_json::json;
use webhook::WEBHOOK_BODY_LIMIT_BYTES;

fn event_of_size(bytes: usize) -> serde_json::Value {
    json!({
        "id": "evt_large",
        "object": "event",
        "type": "test.large_event",
        "data": { "object": { "object": "test", "padding": "x".repeat(bytes) } },
    })
}

#[tokio::test]
async fn an_event_larger_than_an_api_body_is_accepted() {
    let app = TestApp::spawn(webhook::router).await;
    let event = event_of_size(shared::http::BODY_LIMIT_BYTES * 3);
    let response = app.deliver_event(&event).await;
    assert_eq!(
        response.status(),
        200,
        "{}",
        response.text().await.unwrap_or_default()
    );
}

#[tokio::test]
async fn an_event_past_the_bound_is_413_in_the_spec_format() {
    let app = TestApp::spawn(webhook::router).await;
    let event = event_of_size(WEBHOOK_BODY_LIMIT_BYTES);
    let response = app.deliver_event(&event).await;
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.expect("a JSON error body");
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
}
