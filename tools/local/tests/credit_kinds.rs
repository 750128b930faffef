//! Each credit pays for what it was sold for, and "already purchased" means paid with a
//! credit: end to end, through the emulator's Checkout and webhooks.

use devkit::TestApp;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const USER: &str = "alice";

async fn call(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let response = app.send(method, path, body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls `GET path` until `done` holds.
async fn wait_for(app: &TestApp, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = call(app, Method::GET, path, None).await;
        if done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting on {path}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Buys `path`'s Checkout (a pack or the report) for the user and pays it.
async fn buy(app: &TestApp, path: &str, extra: Value) {
    let mut body = json!({"external_user_id": USER, "success_url": "https://yourapp.com/ok",
                          "cancel_url": "https://yourapp.com/no"});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let (status, checkout) = call(app, Method::POST, path, Some(body)).await;
    assert_eq!(status, 200, "{checkout}");
    app.pay(checkout["checkout_url"].as_str().expect("a checkout url"))
        .await;
}

async fn access(app: &TestApp, doc: &str) -> Value {
    let (status, body) = call(
        app,
        Method::POST,
        "/v1/credits/access",
        Some(json!({"analysis_ids": [doc], "external_user_id": USER})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn a_report_credit_is_not_spent_on_a_document() {
    let app = TestApp::spawn(local::router).await;
    buy(&app, "/v1/credits/purchase", json!({"pack_type": "medium"})).await;
    buy(&app, "/v1/billing/purchase-report", json!({})).await;
    let usage_path = format!("/v1/usage?external_user_id={USER}");
    wait_for(&app, &usage_path, |u| {
        u["report_credits"][0]["credits"] == 1
    })
    .await;
    let balance_path = format!("/v1/credits/balance?external_user_id={USER}");
    let balance = wait_for(&app, &balance_path, |b| b["total_purchased"].is_number()).await;
    assert_eq!(balance["balance"], 5, "document credits only: {balance}");

    let unlocked = access(&app, "doc_1").await;
    assert_eq!(unlocked["credits_spent"], 1, "{unlocked}");
    assert_eq!(
        unlocked["remaining_balance"], 4,
        "paid from the pack: {unlocked}"
    );
    let (_, usage) = call(&app, Method::GET, &usage_path, None).await;
    assert_eq!(
        usage["report_credits"][0]["credits"], 1,
        "the report credit stays: {usage}"
    );

    // The report credit pays the analysis it was sold for.
    let (status, analysis) = call(
        &app,
        Method::POST,
        "/v1/usage/analyses",
        Some(json!({"analysis_id": "ana_1", "external_user_id": USER})),
    )
    .await;
    assert_eq!(status, 200, "{analysis}");
    assert_eq!(analysis["source"], "report_credit", "{analysis}");
    let (_, balance) = call(&app, Method::GET, &balance_path, None).await;
    assert_eq!(balance["balance"], 4, "{balance}");
    // One meaning of `total_purchased`: document credits bought (the packs), in the balance
    // as in the history; the report's analysis credit is in `GET /v1/usage`. So the balance
    // is what was bought less what was spent on documents.
    assert_eq!(
        (&balance["total_purchased"], &balance["total_spent"]),
        (&json!(5), &json!(1)),
        "{balance}"
    );
    let (_, history) = call(
        &app,
        Method::GET,
        &format!("/v1/credits/history?external_user_id={USER}"),
        None,
    )
    .await;
    assert_eq!(history["total_purchased"], 5, "{history}");
}

#[tokio::test]
async fn a_document_opened_on_a_plan_costs_a_credit_once_the_plan_has_ended() {
    let app = TestApp::spawn(local::router).await;
    buy(&app, "/v1/credits/purchase", json!({"pack_type": "medium"})).await;
    let balance_path = format!("/v1/credits/balance?external_user_id={USER}");
    wait_for(&app, &balance_path, |b| b["balance"] == 5).await;
    // Bought with a credit before the plan.
    assert_eq!(access(&app, "doc_paid").await["credits_spent"], 1);

    // On a plan: free, and not a purchase.
    buy(&app, "/v1/billing/checkout", json!({"tier": "pro"})).await;
    let plan_path = format!("/v1/subscriptions?external_user_id={USER}");
    let plan = wait_for(&app, &plan_path, |s| s["status"] == "active").await;
    let on_plan = access(&app, "doc_plan").await;
    assert_eq!(
        (
            on_plan["credits_spent"].clone(),
            on_plan["has_unlimited"].clone()
        ),
        (json!(0), json!(true)),
        "{on_plan}"
    );

    // The plan ends: canceled at period end, and the period passes.
    let id = plan["subscription_id"].as_str().expect("a subscription id");
    let (status, body) = call(
        &app,
        Method::DELETE,
        &format!("/v1/subscriptions/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    app.stripe
        .advance_clock(32 * 86_400)
        .expect("the clock moves");
    wait_for(&app, &plan_path, |s| s["status"] == "canceled").await;

    let after = access(&app, "doc_plan").await;
    assert_eq!(
        (
            after["credits_spent"].clone(),
            after["has_unlimited"].clone()
        ),
        (json!(1), json!(false)),
        "opened on the plan, it costs a credit now: {after}"
    );
    let again = access(&app, "doc_paid").await;
    assert_eq!(
        again["credits_spent"], 0,
        "bought with a credit, it stays free: {again}"
    );
    assert_eq!(again["remaining_balance"], 3, "{again}");
}
