//! An effect and its answer are one: a request whose answer could not be stored after its
//! effect committed (a completion write that failed, as when the Lambda dies between the two)
//! must not make its effect again when the client retries with the same Idempotency-Key, and
//! must answer what the first attempt answered; and a request must never run without the
//! Idempotency-Key it was sent with. Found by the fault simulation (`make sim`).

use devkit::TestApp;
use reqwest::Method;
use serde_json::{Value, json};
use shared::clock::ManualClock;
use shared::ledger::{Grant, LedgerKey};
use std::sync::Arc;

async fn send_keyed(app: &TestApp, path: &str, key: &str, body: Value) -> (u16, Value) {
    let response = app
        .http
        .request(Method::POST, app.url(path))
        .bearer_auth(&app.api_key)
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .expect("the app answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Sends the request, then, with the record it should have completed failing to store, the
/// client's retries: at once, and past the claim's lease. Every answer after the first.
async fn retried(
    app: &TestApp,
    clock: &ManualClock,
    path: &str,
    body: Value,
) -> ((u16, Value), Vec<(u16, Value)>) {
    let first = send_keyed(app, path, "retry-me", body.clone()).await;
    app.dynamodb_faults.clear();
    let mut retries = vec![send_keyed(app, path, "retry-me", body.clone()).await];
    clock.advance(time::Duration::seconds(61));
    retries.push(send_keyed(app, path, "retry-me", body).await);
    (first, retries)
}

#[tokio::test]
async fn a_chat_message_whose_answer_was_not_stored_is_counted_once() {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let app = TestApp::spawn_with_clock(clock.clone(), local::router).await;
    // Every UpdateItem after the first fails: before this fix, the message's counter was
    // the first and the idempotency record's completion the second.
    app.dynamodb_faults.arm("UpdateItem", 1, 50);
    let (first, retries) = retried(
        &app,
        &clock,
        "/v1/usage/chat-messages",
        json!({"analysis_id": "ana_1"}),
    )
    .await;
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!(first.1["chat_messages_used"], 1, "{}", first.1);
    let usage: Value = app.get("/v1/usage").await.json().await.expect("JSON");
    assert_eq!(usage["chat_messages"]["used"], 1, "counted once: {usage}");
    for retry in retries {
        assert_eq!(
            retry, first,
            "a retry answers what the first attempt answered"
        );
    }
}

#[tokio::test]
async fn an_analysis_whose_answer_was_not_stored_answers_the_same_counted_analysis() {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let app = TestApp::spawn_with_clock(clock.clone(), local::router).await;
    // Every UpdateItem fails: before this fix, the analysis was counted by a transaction and
    // the idempotency record's completion was an UpdateItem after it.
    app.dynamodb_faults.arm("UpdateItem", 0, 50);
    let (first, retries) = retried(
        &app,
        &clock,
        "/v1/usage/analyses",
        json!({"analysis_id": "ana_1"}),
    )
    .await;
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!(
        (
            &first.1["source"],
            &first.1["counted"],
            &first.1["remaining"]
        ),
        (&json!("free_tier"), &json!(true), &json!(0)),
        "{}",
        first.1
    );
    let usage: Value = app.get("/v1/usage").await.json().await.expect("JSON");
    assert_eq!(usage["analyses"]["used"], 1, "counted once: {usage}");
    for retry in retries {
        assert_eq!(
            retry, first,
            "a retry answers what the first attempt answered"
        );
    }
}

#[tokio::test]
async fn an_access_whose_answer_was_not_stored_is_replayed_not_run_again() {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let app = TestApp::spawn_with_clock(clock.clone() as Arc<_>, local::router).await;
    let key = LedgerKey {
        account_id: app.account.to_string(),
        subject: "user#alice".into(),
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    app.state
        .store
        .ledger_grant(
            &key,
            &Grant {
                source_id: "cs_test_pack",
                kind: shared::ledger::CreditKind::Document,
                credits: 5,
                reason: "credit_pack",
                expires_at: None,
                purchase_sk: None,
            },
            now,
        )
        .await
        .expect("granted");
    // The only UpdateItem of a keyed access was the idempotency record's completion.
    app.dynamodb_faults.arm("UpdateItem", 0, 50);
    let (first, retries) = retried(
        &app,
        &clock,
        "/v1/credits/access",
        json!({"analysis_ids": ["doc_1"], "external_user_id": "alice"}),
    )
    .await;
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!(first.1["credits_spent"], 1, "{}", first.1);
    let balance: Value = app
        .get("/v1/credits/balance?external_user_id=alice")
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(balance["balance"], 4, "spent once: {balance}");
    for retry in retries {
        assert_eq!(
            retry, first,
            "a retry answers what the first attempt answered"
        );
    }
}

#[tokio::test]
async fn a_key_that_could_not_be_checked_never_runs_a_request_without_its_idempotency_key() {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let app = TestApp::spawn_with_clock(clock.clone(), local::router).await;
    // The API key's first lookups fail (the keys table unreachable for a moment): the rate
    // limiter's, which lets the request on (a limiter fault fails open), then the
    // idempotency layer's.
    app.dynamodb_faults.arm("GetItem", 0, 2);
    let body = json!({"external_user_id": "alice", "pack_type": "medium",
                      "success_url": "https://yourapp.com/ok", "cancel_url": "https://yourapp.com/no"});
    // A client retries what got no final answer, with the same key.
    let mut first = send_keyed(&app, "/v1/credits/purchase", "buy-once", body.clone()).await;
    if first.0 >= 500 {
        first = send_keyed(&app, "/v1/credits/purchase", "buy-once", body.clone()).await;
    }
    assert_eq!(first.0, 200, "{}", first.1);
    // Its answer lost on the way back, the client sends it once more: the same session.
    let again = send_keyed(&app, "/v1/credits/purchase", "buy-once", body).await;
    assert_eq!(again, first, "one Idempotency-Key, one Checkout Session");
}
