//! Usage metering end to end: plan allowances counted exactly under concurrency, once per
//! analysis id, by Stripe period (renewals restart the count) or calendar month (free tier).

use devkit::TestApp;
use reqwest::Method;
use serde_json::{Value, json};
use shared::clock::ManualClock;
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn consume(app: &TestApp, id: &str, user: Option<&str>) -> (u16, Value) {
    let mut body = json!({"analysis_id": id});
    if let Some(u) = user {
        body["external_user_id"] = json!(u);
    }
    json_of(
        app.send(Method::POST, "/v1/usage/analyses", Some(body))
            .await,
    )
    .await
}

async fn chat(app: &TestApp, analysis: Option<&str>, user: &str) -> (u16, Value) {
    let mut body = json!({"external_user_id": user});
    if let Some(a) = analysis {
        body["analysis_id"] = json!(a);
    }
    json_of(
        app.send(Method::POST, "/v1/usage/chat-messages", Some(body))
            .await,
    )
    .await
}

async fn poll(app: &TestApp, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = json_of(app.send(Method::GET, path, None).await).await;
        if done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting on {path}; last: {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Pays a Checkout (subscription or report) on the emulator's page.
async fn pay(app: &TestApp, path: &str, body: Value) {
    let (status, checkout) = json_of(app.send(Method::POST, path, Some(body)).await).await;
    assert_eq!(status, 200, "{checkout}");
    let paid = app
        .http
        .post(checkout["checkout_url"].as_str().unwrap())
        .form(&[("card_number", "4242 4242 4242 4242")])
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 303);
}

async fn subscribe_pro(app: &TestApp) -> Value {
    pay(app, "/v1/billing/checkout", json!({"tier": "pro", "success_url": "https://a.example/ok", "cancel_url": "https://a.example/no"})).await;
    poll(app, "/v1/subscriptions", |s| s["status"] == "active").await
}

#[tokio::test]
async fn the_pro_quota_is_exact_under_concurrency_and_restarts_with_the_period() {
    let app = Arc::new(TestApp::spawn(local::router).await);
    let sub = subscribe_pro(&app).await;
    assert_eq!(sub["analyses_used"], 0);

    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move { consume(&app, &format!("ana_{i}"), None).await })
        })
        .collect();
    let mut ok = 0;
    let mut refused = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => {
                assert_eq!(
                    (body["source"].as_str(), body["counted"].as_bool()),
                    (Some("subscription"), Some(true)),
                    "{body}"
                );
                ok += 1;
            }
            402 => refused.push(body),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!((ok, refused.len()), (100, 200));
    assert_eq!(
        refused[0],
        json!({"error": {"code": "limit_exceeded",
            "message": "Monthly analysis limit reached (100/100). Upgrade to Enterprise for unlimited analyses.",
            "analyses_used": 100, "analyses_limit": 100, "suggested_action": "upgrade_tier"}})
    );
    let (_, sub) = json_of(app.send(Method::GET, "/v1/subscriptions", None).await).await;
    assert_eq!(
        (
            sub["analyses_used"].as_u64(),
            sub["analyses_limit"].as_u64()
        ),
        (Some(100), Some(100))
    );

    let (_, usage) = json_of(app.send(Method::GET, "/v1/usage", None).await).await;
    assert_eq!(usage["analyses"], json!({"used": 100, "limit": 100}));

    // The renewal starts a new Stripe period: the count restarts at zero.
    let before = sub["current_period_start"].clone();
    app.stripe.advance_clock(31 * 86_400).unwrap();
    let sub = poll(&app, "/v1/subscriptions", |s| {
        s["current_period_start"] != before && s["status"] == "active"
    })
    .await;
    assert_eq!(sub["analyses_used"], 0, "{sub}");
    let (status, body) = consume(&app, "ana_next_period", None).await;
    assert_eq!(
        (status, body["source"].as_str()),
        (200, Some("subscription")),
        "{body}"
    );
}

#[tokio::test]
async fn an_analysis_id_counts_once_whatever_the_retries() {
    let app = Arc::new(TestApp::spawn(local::router).await);
    subscribe_pro(&app).await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { consume(&app, "ana_same", None).await })
        })
        .collect();
    let mut counted = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["analysis_id"], "ana_same");
        counted += usize::from(body["counted"] == true);
    }
    assert_eq!(counted, 1);
    let (_, again) = consume(&app, "ana_same", None).await;
    assert_eq!(again["counted"], false);
    let (_, sub) = json_of(app.send(Method::GET, "/v1/subscriptions", None).await).await;
    assert_eq!(sub["analyses_used"], 1);
    // Paid plans chat without limit.
    for _ in 0..3 {
        let (status, c) = json_of(
            app.send(Method::POST, "/v1/usage/chat-messages", Some(json!({})))
                .await,
        )
        .await;
        assert_eq!(
            (
                status,
                c["chat_messages_limit"].clone(),
                c["unlimited_by"].as_str()
            ),
            (200, Value::Null, Some("subscription")),
            "{c}"
        );
    }
}

#[tokio::test]
async fn the_free_tier_is_one_analysis_and_fifty_messages_a_calendar_month() {
    // 2026-11-15T12:00:00Z
    let clock = ManualClock::new(time::macros::datetime!(2026-11-15 12:00 UTC));
    let app = TestApp::spawn_with_clock(clock.clone(), local::router).await;
    let (status, first) = consume(&app, "free_1", Some("free_user")).await;
    assert_eq!(
        (
            status,
            first["source"].as_str(),
            first["remaining"].as_u64()
        ),
        (200, Some("free_tier"), Some(0)),
        "{first}"
    );
    let (status, second) = consume(&app, "free_2", Some("free_user")).await;
    assert_eq!(status, 402);
    assert_eq!(
        second,
        json!({"error": {"code": "no_subscription", "message": "No active subscription found. Please subscribe to a plan.",
                         "suggested_action": "redirect_to_pricing"}})
    );
    let (_, usage) = json_of(
        app.send(Method::GET, "/v1/usage?external_user_id=free_user", None)
            .await,
    )
    .await;
    assert_eq!(
        (usage["tier"].as_str(), usage["analyses"].clone()),
        (Some("free"), json!({"used": 1, "limit": 1}))
    );
    assert_eq!(
        (usage["period_start"].as_str(), usage["period_end"].as_str()),
        (Some("2026-11-01T00:00:00Z"), Some("2026-12-01T00:00:00Z"))
    );

    for i in 1..=50 {
        let (status, c) = chat(&app, None, "free_user").await;
        assert_eq!(
            (status, c["chat_messages_used"].as_u64()),
            (200, Some(i)),
            "{c}"
        );
    }
    let (status, over) = chat(&app, None, "free_user").await;
    assert_eq!(status, 402);
    assert_eq!(
        over,
        json!({"error": {"code": "limit_exceeded", "message": "Monthly chat message limit reached (50/50). Upgrade to Pro for unlimited chat messages.",
                         "chat_messages_used": 50, "chat_messages_limit": 50, "suggested_action": "upgrade_tier"}})
    );

    // December: a new calendar month, a new free analysis and new messages.
    clock.advance(time::Duration::days(17));
    let (status, december) = consume(&app, "free_3", Some("free_user")).await;
    assert_eq!(
        (status, december["source"].as_str()),
        (200, Some("free_tier")),
        "{december}"
    );
    assert_eq!(chat(&app, None, "free_user").await.0, 200);
}

#[tokio::test]
async fn a_report_credit_pays_one_analysis_with_unlimited_chat_for_thirty_days() {
    let app = TestApp::spawn(local::router).await;
    let user = "reader";
    pay(&app, "/v1/billing/purchase-report", json!({"success_url": "https://a.example/ok", "cancel_url": "https://a.example/no", "external_user_id": user})).await;
    // An analysis credit: listed by GET /v1/usage, not in the document balance.
    poll(&app, &format!("/v1/usage?external_user_id={user}"), |u| {
        u["report_credits"][0]["credits"] == 1
    })
    .await;
    // A report credit comes before the free tier.
    let (status, a) = consume(&app, "ana_report", Some(user)).await;
    assert_eq!(
        (status, a["source"].as_str(), a["remaining"].as_u64()),
        (200, Some("report_credit"), Some(0)),
        "{a}"
    );
    assert!(
        a["report_credit_expires_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let (_, usage) = json_of(
        app.send(
            Method::GET,
            &format!("/v1/usage?external_user_id={user}"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(
        usage["report_credits"],
        json!([]),
        "the credit is used: {usage}"
    );
    for _ in 0..60 {
        let (status, c) = chat(&app, Some("ana_report"), user).await;
        assert_eq!(
            (status, c["unlimited_by"].as_str()),
            (200, Some("report_credit")),
            "{c}"
        );
    }
    // Other chat for that user still meets the free tier's limit, untouched by the 60 above.
    let (status, c) = chat(&app, None, user).await;
    assert_eq!(
        (
            status,
            c["chat_messages_used"].as_u64(),
            c["chat_messages_limit"].as_u64()
        ),
        (200, Some(1), Some(50)),
        "{c}"
    );
    // The next analysis falls to the free tier, then nothing is left.
    assert_eq!(
        consume(&app, "ana_free", Some(user)).await.1["source"],
        "free_tier"
    );
    assert_eq!(consume(&app, "ana_none", Some(user)).await.0, 402);
}
