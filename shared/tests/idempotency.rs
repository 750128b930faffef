//! The Idempotency-Key middleware against a real HTTP server and the DynamoDB-compatible
//! engine (devkit): a small router whose handlers count their runs.

use aws_sdk_dynamodb::types::AttributeValue;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use devkit::TestApp;
use serde_json::{Value, json};
use shared::auth::Account;
use shared::clock::ManualClock;
use shared::config::Stage;
use shared::http::ApiRouter;
use shared::idempotency::{IdempotencyKey, record_pk, request_fingerprint};
use shared::tables::Table;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How often each handler ran.
#[derive(Debug, Default)]
struct Runs {
    create: AtomicUsize,
    slow: AtomicUsize,
    flaky: AtomicUsize,
    put: AtomicUsize,
    delete: AtomicUsize,
    list: AtomicUsize,
}

fn count(counter: &AtomicUsize) -> usize {
    counter.fetch_add(1, Ordering::SeqCst) + 1
}

async fn created(
    run: usize,
    account: Account,
    key: Option<IdempotencyKey>,
    body: Bytes,
) -> axum::response::Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "run": run,
            "account": account.id.as_str(),
            "stripe_key": key.map(|k| k.stripe_key("checkout.session.create")),
            "echo": body,
        })),
    )
        .into_response()
}

fn router(runs: Arc<Runs>) -> impl FnOnce(shared::AppState) -> axum::Router {
    move |state| {
        let (r1, r2, r3, r4, r5, r6) = (
            runs.clone(),
            runs.clone(),
            runs.clone(),
            runs.clone(),
            runs.clone(),
            runs,
        );
        ApiRouter::new()
            .post(
                "/v1/things",
                move |account: Account, key: Option<IdempotencyKey>, body: Bytes| {
                    let runs = r1.clone();
                    async move { created(count(&runs.create), account, key, body).await }
                },
            )
            .post(
                "/v1/slow",
                move |account: Account, key: Option<IdempotencyKey>, body: Bytes| {
                    let runs = r2.clone();
                    async move {
                        let run = count(&runs.slow);
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        created(run, account, key, body).await
                    }
                },
            )
            .post(
                "/v1/flaky",
                move |account: Account, key: Option<IdempotencyKey>, body: Bytes| {
                    let runs = r3.clone();
                    async move {
                        let run = count(&runs.flaky);
                        if run == 1 {
                            shared::ApiError::internal("the first run fails").into_response()
                        } else {
                            created(run, account, key, body).await
                        }
                    }
                },
            )
            .put(
                "/v1/things/{id}",
                move |_: Account, Path(id): Path<String>| {
                    let runs = r4.clone();
                    async move {
                        let run = count(&runs.put);
                        axum::Json(json!({"id": id, "run": run}))
                    }
                },
            )
            .delete("/v1/things/{id}", move |_: Account| {
                let runs = r5.clone();
                async move {
                    count(&runs.delete);
                    StatusCode::NO_CONTENT
                }
            })
            .get("/v1/things", move |_: Account| {
                let runs = r6.clone();
                async move { axum::Json(json!({"run": count(&runs.list)})) }
            })
            .into_router(state)
    }
}

async fn spawn() -> (TestApp, Arc<Runs>) {
    let runs = Arc::new(Runs::default());
    (TestApp::spawn_with(router(runs.clone())).await, runs)
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    api_key: Option<&str>,
    idempotency_key: Option<&str>,
    body: Option<&str>,
) -> reqwest::Response {
    let mut request = app.http.request(method, app.url(path));
    if let Some(api_key) = api_key {
        request = request.bearer_auth(api_key);
    }
    if let Some(key) = idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body.to_string());
    }
    request.send().await.expect("request reaches the test app")
}

async fn post(app: &TestApp, path: &str, key: Option<&str>, body: &str) -> reqwest::Response {
    send(
        app,
        reqwest::Method::POST,
        path,
        Some(&app.api_key),
        key,
        Some(body),
    )
    .await
}

fn replayed(response: &reqwest::Response) -> Option<&str> {
    response
        .headers()
        .get("Idempotent-Replayed")
        .map(|v| v.to_str().expect("ASCII header"))
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

async fn records(app: &TestApp) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    app.state
        .store
        .client()
        .scan()
        .table_name(app.state.store.tables().get(Table::Idempotency))
        .consistent_read(true)
        .send()
        .await
        .expect("scanning the idempotency table")
        .items
        .unwrap_or_default()
}

fn assert_error(body: &Value, code: &str) {
    let error = body["error"].as_object().expect("an error object");
    assert_eq!(error["code"], code, "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
}

#[tokio::test]
async fn the_same_key_and_body_replays_the_stored_response() {
    let (app, runs) = spawn().await;
    let first = post(&app, "/v1/things", Some("order-1"), r#"{"a":1}"#).await;
    assert_eq!(first.status(), 201);
    assert_eq!(replayed(&first), None);
    let first_text = first.text().await.expect("body");

    let second = post(&app, "/v1/things", Some("order-1"), r#"{"a":1}"#).await;
    assert_eq!(second.status(), 201);
    assert_eq!(replayed(&second), Some("true"));
    assert_eq!(
        second.headers()["content-type"].to_str().ok(),
        Some("application/json")
    );
    assert!(second.headers().contains_key("x-request-id"));
    let second_text = second.text().await.expect("body");

    assert_eq!(first_text, second_text);
    assert_eq!(runs.create.load(Ordering::SeqCst), 1);
    let body: Value = serde_json::from_str(&second_text).expect("JSON");
    assert_eq!(body["run"], 1);
    let stripe_key = body["stripe_key"].as_str().expect("the handler got a key");
    assert!(stripe_key.len() <= 255);

    let stored = records(&app).await;
    assert_eq!(stored.len(), 1);
    let record = &stored[0];
    assert_eq!(
        record["pk"].as_s().ok(),
        Some(&record_pk(&app.account, "order-1"))
    );
    assert_eq!(
        record["state"].as_s().ok().map(String::as_str),
        Some("completed")
    );
    assert_eq!(
        record["status"].as_n().ok().map(String::as_str),
        Some("201")
    );
    let created_at = app.state.clock.now().unix_timestamp();
    let expires_at: i64 = record["expires_at"]
        .as_n()
        .ok()
        .and_then(|n| n.parse().ok())
        .expect("expires_at is a number");
    assert!(
        (expires_at - created_at - 24 * 3600).abs() <= 5,
        "{expires_at}"
    );
}

#[tokio::test]
async fn the_same_key_with_another_request_is_refused() {
    let (app, runs) = spawn().await;
    assert_eq!(
        post(&app, "/v1/things", Some("order-2"), r#"{"a":1}"#)
            .await
            .status(),
        201
    );

    let other_body = post(&app, "/v1/things", Some("order-2"), r#"{"a":2}"#).await;
    assert_eq!(other_body.status(), 422);
    assert_error(&json_of(other_body).await, "idempotency_key_reused");

    let other_path = post(&app, "/v1/slow", Some("order-2"), r#"{"a":1}"#).await;
    assert_eq!(other_path.status(), 422);
    assert_error(&json_of(other_path).await, "idempotency_key_reused");

    assert_eq!(runs.create.load(Ordering::SeqCst), 1);
    assert_eq!(runs.slow.load(Ordering::SeqCst), 0);
    // The original request still replays.
    let again = post(&app, "/v1/things", Some("order-2"), r#"{"a":1}"#).await;
    assert_eq!(again.status(), 201);
    assert_eq!(replayed(&again), Some("true"));
}

#[tokio::test]
async fn concurrent_requests_with_one_key_run_the_handler_once() {
    let (app, runs) = spawn().await;
    let app = Arc::new(app);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                let response = post(&app, "/v1/slow", Some("burst"), r#"{"n":20}"#).await;
                let status = response.status().as_u16();
                let replay = replayed(&response).is_some();
                (status, replay, json_of(response).await)
            })
        })
        .collect();
    let mut originals = 0;
    let mut conflicts = 0;
    for task in tasks {
        let (status, replay, body) = task.await.expect("task");
        match (status, replay) {
            (201, false) => originals += 1,
            (201, true) => assert_eq!(body["run"], 1),
            (409, _) => {
                assert_error(&body, "request_in_progress");
                conflicts += 1;
            }
            other => panic!("unexpected answer {other:?}: {body}"),
        }
    }
    assert_eq!(originals, 1);
    assert!(
        conflicts > 0,
        "the 300 ms handler should overlap some requests"
    );
    assert_eq!(runs.slow.load(Ordering::SeqCst), 1);

    let after = post(&app, "/v1/slow", Some("burst"), r#"{"n":20}"#).await;
    assert_eq!(replayed(&after), Some("true"));
    assert_eq!(runs.slow.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_server_error_is_not_kept_and_a_retry_runs_again() {
    let (app, runs) = spawn().await;
    let first = post(&app, "/v1/flaky", Some("flaky-1"), "{}").await;
    assert_eq!(first.status(), 500);
    assert!(records(&app).await.is_empty(), "a 5xx releases the key");

    let retry = post(&app, "/v1/flaky", Some("flaky-1"), "{}").await;
    assert_eq!(retry.status(), 201);
    assert_eq!(replayed(&retry), None);
    assert_eq!(json_of(retry).await["run"], 2);

    let again = post(&app, "/v1/flaky", Some("flaky-1"), "{}").await;
    assert_eq!(replayed(&again), Some("true"));
    assert_eq!(json_of(again).await["run"], 2);
    assert_eq!(runs.flaky.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn keys_are_scoped_per_account() {
    let (app, runs) = spawn().await;
    let other_key = app.issue_key("acct_test_2", Stage::Test).await;

    let mine = post(&app, "/v1/things", Some("shared-key"), r#"{"a":1}"#).await;
    assert_eq!(mine.status(), 201);
    let mine = json_of(mine).await;

    let theirs = send(
        &app,
        reqwest::Method::POST,
        "/v1/things",
        Some(&other_key),
        Some("shared-key"),
        Some(r#"{"a":2}"#),
    )
    .await;
    assert_eq!(theirs.status(), 201);
    assert_eq!(replayed(&theirs), None);
    let theirs = json_of(theirs).await;

    assert_eq!(runs.create.load(Ordering::SeqCst), 2);
    assert_eq!(mine["account"], "acct_test_1");
    assert_eq!(theirs["account"], "acct_test_2");
    assert_ne!(mine["stripe_key"], theirs["stripe_key"]);
    assert_eq!(records(&app).await.len(), 2);
}

#[tokio::test]
async fn requests_without_a_key_are_untouched() {
    let (app, runs) = spawn().await;
    for expected_run in 1..=2 {
        let response = post(&app, "/v1/things", None, r#"{"a":1}"#).await;
        assert_eq!(response.status(), 201);
        assert_eq!(replayed(&response), None);
        let body = json_of(response).await;
        assert_eq!(body["run"], expected_run);
        assert_eq!(body["stripe_key"], Value::Null);
    }
    assert_eq!(runs.create.load(Ordering::SeqCst), 2);
    assert!(records(&app).await.is_empty());
}

#[tokio::test]
async fn a_get_with_a_key_is_untouched() {
    let (app, runs) = spawn().await;
    for expected_run in 1..=2 {
        let response = send(
            &app,
            reqwest::Method::GET,
            "/v1/things",
            Some(&app.api_key),
            Some("get-key"),
            None,
        )
        .await;
        assert_eq!(response.status(), 200);
        assert_eq!(replayed(&response), None);
        assert_eq!(json_of(response).await["run"], expected_run);
    }
    assert_eq!(runs.list.load(Ordering::SeqCst), 2);
    assert!(records(&app).await.is_empty());
}

#[tokio::test]
async fn put_and_delete_are_covered_too() {
    let (app, runs) = spawn().await;
    for _ in 0..2 {
        let response = send(
            &app,
            reqwest::Method::PUT,
            "/v1/things/t1",
            Some(&app.api_key),
            Some("put-1"),
            Some("{}"),
        )
        .await;
        assert_eq!(response.status(), 200);
        assert_eq!(json_of(response).await, json!({"id": "t1", "run": 1}));
    }
    assert_eq!(runs.put.load(Ordering::SeqCst), 1);

    let first = send(
        &app,
        reqwest::Method::DELETE,
        "/v1/things/t1",
        Some(&app.api_key),
        Some("delete-1"),
        None,
    )
    .await;
    assert_eq!(first.status(), 204);
    assert_eq!(replayed(&first), None);
    let second = send(
        &app,
        reqwest::Method::DELETE,
        "/v1/things/t1",
        Some(&app.api_key),
        Some("delete-1"),
        None,
    )
    .await;
    assert_eq!(second.status(), 204);
    assert_eq!(replayed(&second), Some("true"));
    assert_eq!(second.text().await.expect("body"), "");
    assert_eq!(runs.delete.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_malformed_key_is_a_400_naming_the_header() {
    let (app, runs) = spawn().await;
    let too_long = "k".repeat(256);
    for bad in ["", "two words", too_long.as_str()] {
        let response = post(&app, "/v1/things", Some(bad), "{}").await;
        assert_eq!(response.status(), 400, "key {bad:?}");
        let body = json_of(response).await;
        assert_eq!(body["error"]["code"], "invalid_request");
        assert_eq!(body["error"]["field"], "Idempotency-Key");
    }
    // Not visible ASCII.
    let response = app
        .http
        .post(app.url("/v1/things"))
        .bearer_auth(&app.api_key)
        .header(
            "Idempotency-Key",
            reqwest::header::HeaderValue::from_bytes(b"caf\xc3\xa9").expect("header"),
        )
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
    // The longest key is fine.
    let longest = "k".repeat(255);
    assert_eq!(
        post(&app, "/v1/things", Some(&longest), "{}")
            .await
            .status(),
        201
    );
    assert_eq!(runs.create.load(Ordering::SeqCst), 1);

    // Without credentials the handler's own 401 answers, whatever the key.
    let anonymous = send(
        &app,
        reqwest::Method::POST,
        "/v1/things",
        None,
        Some(""),
        Some("{}"),
    )
    .await;
    assert_eq!(anonymous.status(), 401);
    assert_eq!(json_of(anonymous).await["error"]["code"], "missing_api_key");
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413() {
    let (app, runs) = spawn().await;
    let big = format!(
        r#"{{"pad":"{}"}}"#,
        "x".repeat(shared::http::BODY_LIMIT_BYTES)
    );
    let response = post(&app, "/v1/things", Some("big"), &big).await;
    assert_eq!(response.status(), 413);
    assert_error(&json_of(response).await, "payload_too_large");
    assert_eq!(runs.create.load(Ordering::SeqCst), 0);
    assert!(records(&app).await.is_empty());
}

#[tokio::test]
async fn a_key_is_free_again_after_24_hours() {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let runs = Arc::new(Runs::default());
    let app = TestApp::spawn_with_clock(clock.clone(), router(runs.clone())).await;

    assert_eq!(
        post(&app, "/v1/things", Some("daily"), r#"{"a":1}"#)
            .await
            .status(),
        201
    );
    clock.advance(time::Duration::hours(24) - time::Duration::seconds(1));
    let within = post(&app, "/v1/things", Some("daily"), r#"{"a":1}"#).await;
    assert_eq!(replayed(&within), Some("true"));
    let refused = post(&app, "/v1/things", Some("daily"), r#"{"a":2}"#).await;
    assert_eq!(refused.status(), 422);
    assert_eq!(runs.create.load(Ordering::SeqCst), 1);

    // The engine has not deleted the record (TTL deletion is lazy, and real time has not
    // moved): an expired record must count as absent.
    clock.advance(time::Duration::seconds(1));
    let fresh = post(&app, "/v1/things", Some("daily"), r#"{"a":2}"#).await;
    assert_eq!(fresh.status(), 201);
    assert_eq!(replayed(&fresh), None);
    assert_eq!(json_of(fresh).await["run"], 2);
    let replay = post(&app, "/v1/things", Some("daily"), r#"{"a":2}"#).await;
    assert_eq!(replayed(&replay), Some("true"));
    assert_eq!(runs.create.load(Ordering::SeqCst), 2);
}

/// Writes the record a request leaves behind when its instance dies mid-way.
async fn crashed_claim(app: &TestApp, key: &str, body: &str, locked_until: i64) {
    let hash = request_fingerprint(
        &axum::http::Method::POST,
        "/v1/things",
        "",
        &axum::http::HeaderMap::new(),
        body.as_bytes(),
    );
    let now = app.state.clock.now().unix_timestamp();
    app.state
        .store
        .client()
        .put_item()
        .table_name(app.state.store.tables().get(Table::Idempotency))
        .item("pk", AttributeValue::S(record_pk(&app.account, key)))
        .item("request_hash", AttributeValue::S(hash))
        .item("state", AttributeValue::S("in_progress".into()))
        .item("owner", AttributeValue::S("a-dead-instance".into()))
        .item("locked_until", AttributeValue::N(locked_until.to_string()))
        .item(
            "created_at",
            AttributeValue::S("2020-01-01T00:00:00Z".into()),
        )
        .item("expires_at", AttributeValue::N((now + 86_400).to_string()))
        .send()
        .await
        .expect("writing a crashed claim");
}

#[tokio::test]
async fn a_crashed_claim_is_taken_over_once_its_lease_ran_out() {
    let (app, runs) = spawn().await;
    let now = app.state.clock.now().unix_timestamp();

    // Lease still running: the first request may be alive.
    crashed_claim(&app, "live-lease", r#"{"a":1}"#, now + 60).await;
    let busy = post(&app, "/v1/things", Some("live-lease"), r#"{"a":1}"#).await;
    assert_eq!(busy.status(), 409);
    assert_error(&json_of(busy).await, "request_in_progress");
    let other = post(&app, "/v1/things", Some("live-lease"), r#"{"a":9}"#).await;
    assert_eq!(other.status(), 422);

    // Lease over: a retry of the same request takes the key over, and its handler gets the
    // Stripe key the dead attempt used. The dead attempt: a real run whose completion is
    // lost, i.e. its record is still the claim.
    let dead = post(&app, "/v1/things", Some("dead-lease"), r#"{"a":1}"#).await;
    let dead_stripe_key = json_of(dead).await["stripe_key"].clone();
    crashed_claim(&app, "dead-lease", r#"{"a":1}"#, now - 1).await;
    let other = post(&app, "/v1/things", Some("dead-lease"), r#"{"a":9}"#).await;
    assert_eq!(other.status(), 422, "only the same request may take over");
    let retry = post(&app, "/v1/things", Some("dead-lease"), r#"{"a":1}"#).await;
    assert_eq!(retry.status(), 201);
    assert_eq!(replayed(&retry), None);
    let retry = json_of(retry).await;
    assert_eq!(retry["run"], 2);
    assert_eq!(retry["stripe_key"], dead_stripe_key);
    assert!(dead_stripe_key.is_string());

    let again = post(&app, "/v1/things", Some("dead-lease"), r#"{"a":1}"#).await;
    assert_eq!(replayed(&again), Some("true"));
    assert_eq!(json_of(again).await["run"], 2);
    assert_eq!(runs.create.load(Ordering::SeqCst), 2);
}
