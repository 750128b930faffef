//! Per-key rate limits by plan, through the whole stack: the spec's 429 with `Retry-After`
//! and the RateLimit headers, recovery after the window, a paid plan's higher limit, two
//! instances sharing one window, and a limiter whose DynamoDB fails (open, never a 5xx).

use devkit::TestApp;
use reqwest::Method;
use serde_json::Value;
use shared::clock::ManualClock;
use shared::config::Stage;
use shared::ratelimit::Limiter;
use std::collections::HashMap;
use tower::ServiceExt;

const PATH: &str = "/v1/credits/packs";

/// A clock at the start of a 4-second window, so every request of a test falls in it.
fn window_start() -> std::sync::Arc<ManualClock> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let start = now - now.rem_euclid(4) + 4;
    ManualClock::new(time::OffsetDateTime::from_unix_timestamp(start).expect("a time"))
}

struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: Value,
}

async fn call(app: &TestApp, key: &str) -> Answer {
    let response = app.send_as(key, Method::GET, PATH, None).await;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let body = response.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

#[tokio::test]
async fn a_free_key_past_its_burst_gets_429s_in_the_spec_shape_then_recovers() {
    let clock = window_start();
    let app = TestApp::spawn_with_clock(clock.clone(), local::router).await;
    let key = app.issue_key("acct_free_1", Stage::Test).await;
    let mut answers = Vec::new();
    for _ in 0..25 {
        answers.push(call(&app, &key).await);
    }
    let admitted = answers.iter().filter(|a| a.status == 200).count();
    assert_eq!(admitted, 20, "the free plan's burst");
    let first = &answers[0];
    assert_eq!(first.headers["ratelimit-policy"], "\"free\";q=20;w=4");
    assert_eq!(first.headers["ratelimit"], "\"free\";r=19;t=4");
    assert_eq!(answers[19].headers["ratelimit"], "\"free\";r=0;t=4");
    for refused in &answers[20..] {
        assert_eq!(refused.status, 429);
        assert_eq!(refused.headers["retry-after"], "4");
        assert_eq!(refused.headers["ratelimit"], "\"free\";r=0;t=4");
        assert_eq!(refused.headers["ratelimit-policy"], "\"free\";q=20;w=4");
        let error = &refused.body["error"];
        assert_eq!(error["code"], "rate_limited", "{}", refused.body);
        assert_eq!(error["retry_after_seconds"], 4);
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Retry-After later, the key is admitted again.
    clock.advance(time::Duration::seconds(4));
    let again = call(&app, &key).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.headers["ratelimit"], "\"free\";r=19;t=4");
}

#[tokio::test]
async fn a_pro_key_at_the_same_rate_is_not_limited() {
    let clock = window_start();
    let app = TestApp::spawn_with_clock(clock.clone(), local::router).await;
    let key = app.issue_key("acct_pro_1", Stage::Test).await;
    devkit::store_plan(
        &app.state.store,
        "acct_pro_1",
        "self",
        shared::catalog::Tier::Pro,
        clock_now(&app),
    )
    .await
    .expect("the plan is stored");
    for i in 0..25 {
        let a = call(&app, &key).await;
        assert_eq!(a.status, 200, "request {i}: {}", a.body);
        assert_eq!(a.headers["ratelimit-policy"], "\"pro\";q=200;w=4");
    }
}

fn clock_now(app: &TestApp) -> i64 {
    app.state.clock.now().unix_timestamp()
}

#[tokio::test]
async fn two_instances_sharing_one_table_together_admit_no_more_than_the_window() {
    let clock = window_start();
    let app = TestApp::spawn_with_clock(clock.clone(), local::router).await;
    let key = app.issue_key("acct_free_2", Stage::Test).await;
    // A second instance: the same tables, a limiter of its own.
    let other = local::router(shared::AppState {
        limiter: Limiter::default(),
        ..app.state.clone()
    });
    let mut admitted = 0;
    for i in 0..60 {
        let status = if i % 2 == 0 {
            call(&app, &key).await.status
        } else {
            let request = axum::http::Request::get(PATH)
                .header("authorization", format!("Bearer {key}"))
                .body(axum::body::Body::empty())
                .expect("a request");
            other
                .clone()
                .oneshot(request)
                .await
                .expect("an answer")
                .status()
                .as_u16()
        };
        assert!(status == 200 || status == 429, "{status}");
        admitted += usize::from(status == 200);
    }
    // The bound: the window's quota, whatever the instances (README); each may strand fewer
    // than a batch (2 tokens) of leased tokens.
    assert!(admitted <= 20, "{admitted} admitted");
    assert!(admitted >= 18, "{admitted} admitted");
}

#[tokio::test]
async fn a_limiter_whose_dynamodb_fails_never_answers_5xx() {
    let clock = window_start();
    let app = TestApp::spawn_with_clock(clock.clone(), local::router).await;
    let key = app.issue_key("acct_free_3", Stage::Test).await;
    // Every lease fails (the handler of this route makes no DynamoDB call of its own).
    app.dynamodb_faults.arm("UpdateItem", 0, 1_000);
    let mut statuses = Vec::new();
    for _ in 0..25 {
        statuses.push(call(&app, &key).await.status);
    }
    assert!(statuses.iter().all(|s| *s < 500), "{statuses:?}");
    // Open for the window, within one quota of this instance's own.
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 20);
    // DynamoDB back, next window: leases again.
    app.dynamodb_faults.clear();
    clock.advance(time::Duration::seconds(4));
    let a = call(&app, &key).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["ratelimit"], "\"free\";r=19;t=4");
}

#[tokio::test]
async fn concurrent_requests_of_one_key_wait_for_the_lease_in_flight() {
    let clock = window_start();
    let app = std::sync::Arc::new(TestApp::spawn_with_clock(clock, local::router).await);
    // The tests' internal key: 400 000 a window, leased 40 000 at a time. 200 requests at
    // once must each find the tokens another leased, not race it: ten racing leases take the
    // whole window, and the requests whose lease was refused first would be refused too.
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { call(&app, &app.api_key).await.status })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.expect("a task"));
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

/// The order of one request's DynamoDB calls on an instance that has not leased yet.
async fn calls_of_first_request(
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Vec<devkit::calls::CallEvent> {
    let engine = devkit::Engine::memory().await.expect("an engine");
    let log = devkit::CallLog::default();
    let (state, _stripe) = devkit::state_with_emulator(log.local_client(&engine.endpoint))
        .await
        .expect("a state");
    let account = shared::keys::AccountId::parse("acct_free_order").expect("an account");
    let (key, _) = shared::keys::issue(
        &state.store,
        state.clock.as_ref(),
        &account,
        Stage::Test,
        None,
    )
    .await
    .expect("a key");
    let mut request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {}", key.expose()))
        .header("idempotency-key", "order-1");
    let body = match body {
        Some(body) => {
            request = request.header("content-type", "application/json");
            axum::body::Body::from(body.to_string())
        }
        None => axum::body::Body::empty(),
    };
    log.take();
    let response = local::router(state)
        .oneshot(request.body(body).expect("a request"))
        .await
        .expect("an answer");
    assert_eq!(response.status(), 200);
    log.take()
}

fn is_lease(e: &devkit::calls::CallEvent) -> bool {
    e.operation == "UpdateItem" && e.table.ends_with("rate-limits")
}

/// Each call other than the lease, as the positions of its sending and its answer.
fn other_calls(events: &[devkit::calls::CallEvent]) -> Vec<(usize, usize)> {
    events
        .iter()
        .enumerate()
        .filter(|(_, e)| !e.answered && !is_lease(e))
        .map(|(sent, e)| {
            let answered = events[sent..]
                .iter()
                .position(|a| a.answered && a.operation == e.operation && a.table == e.table)
                .map_or(usize::MAX, |offset| sent + offset);
            (sent, answered)
        })
        .collect()
}

/// Where the lease was sent and answered.
fn the_lease(events: &[devkit::calls::CallEvent]) -> (usize, usize) {
    let find = |answered: bool| {
        events
            .iter()
            .position(|e| is_lease(e) && e.answered == answered)
            .unwrap_or_else(|| panic!("no lease (answered: {answered}): {events:#?}"))
    };
    (find(false), find(true))
}

/// Whether another call was in flight with the lease: sent before the lease's answer,
/// answered after the lease's sending.
fn runs_beside_the_lease(events: &[devkit::calls::CallEvent]) -> bool {
    let (lease_sent, lease_answered) = the_lease(events);
    other_calls(events)
        .iter()
        .any(|&(sent, answered)| sent < lease_answered && answered > lease_sent)
}

/// Whether a call in flight with the lease was sent before it.
fn goes_out_ahead_of_the_lease(events: &[devkit::calls::CallEvent]) -> bool {
    let (lease_sent, _) = the_lease(events);
    other_calls(events)
        .iter()
        .any(|&(sent, answered)| sent < lease_sent && answered > lease_sent)
}

#[tokio::test]
async fn a_read_runs_beside_its_lease_and_a_write_waits_for_admission() {
    let read = calls_of_first_request(Method::GET, "/v1/usage", None).await;
    assert!(
        runs_beside_the_lease(&read),
        "the read's own calls wait for the lease: {read:#?}"
    );
    assert!(
        goes_out_ahead_of_the_lease(&read),
        "the read's first call goes out behind the lease's write: {read:#?}"
    );
    let write = calls_of_first_request(
        Method::POST,
        "/v1/usage/analyses",
        Some(serde_json::json!({"analysis_id": "ana_order_1"})),
    )
    .await;
    assert!(
        !runs_beside_the_lease(&write),
        "a write's calls start before its admission: {write:#?}"
    );
}

/// The reads of the subscriptions table a request sent.
fn subscription_reads(events: &[devkit::calls::CallEvent]) -> usize {
    events
        .iter()
        .filter(|e| !e.answered && e.operation == "GetItem" && e.table.ends_with("subscriptions"))
        .count()
}

#[tokio::test]
async fn a_read_takes_the_plan_its_limiter_read_and_a_write_reads_its_own() {
    // A key without a limit of its own: the limiter reads the account's plan (its own
    // subscription item), the item these handlers read too.
    let usage = calls_of_first_request(Method::GET, "/v1/usage", None).await;
    assert_eq!(
        subscription_reads(&usage),
        1,
        "the usage read the item its limiter had read: {usage:#?}"
    );
    // A write decides on what it reads after its admission: its handler reads the item again.
    let chat = calls_of_first_request(
        Method::POST,
        "/v1/usage/chat-messages",
        Some(serde_json::json!({})),
    )
    .await;
    assert_eq!(
        subscription_reads(&chat),
        2,
        "a write decided on the limiter's read: {chat:#?}"
    );
}
