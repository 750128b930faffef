//! Subscriptions end to end through real sockets: the API, its DynamoDB engine, and the Stripe
//! emulator's Checkout and Portal pages, webhooks and clock.

use devkit::TestApp;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DAY: i64 = 86_400;

/// The plan as stored, less the time of the Stripe read it reflects (every re-read moves it).
async fn stored(app: &TestApp) -> Option<shared::subscriptions::SubscriptionRecord> {
    let record = app
        .state
        .store
        .subscription(app.account.as_str(), "self")
        .await
        .unwrap();
    record.map(|r| shared::subscriptions::SubscriptionRecord {
        synced_at_ms: None,
        ..r
    })
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls `GET /v1/subscriptions` (as `key`) until `done` holds; webhooks are asynchronous.
async fn wait_for(app: &TestApp, key: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = json_of(
            app.send_as(key, Method::GET, "/v1/subscriptions", None)
                .await,
        )
        .await;
        if done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting; last state: {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Checkout for `tier`, paid on the emulator's page with the prefilled card; the subscription id.
async fn subscribe(app: &TestApp, key: &str, tier: &str) -> String {
    let body = json!({"tier": tier, "success_url": "https://yourapp.com/ok?session={CHECKOUT_SESSION_ID}",
                      "cancel_url": "https://yourapp.com/pricing"});
    let (status, checkout) = json_of(
        app.send_as(key, Method::POST, "/v1/billing/checkout", Some(body))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{checkout}");
    let session = checkout["session_id"].as_str().unwrap();
    assert!(session.starts_with("cs_test_"), "{checkout}");
    let url = checkout["checkout_url"].as_str().unwrap();
    let paid = app
        .http
        .post(url)
        .form(&[("card_number", "4242 4242 4242 4242")])
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 303);
    assert_eq!(
        paid.headers()["location"].to_str().unwrap(),
        format!("https://yourapp.com/ok?session={session}")
    );
    let sub = wait_for(app, key, |s| s["status"] == "active" && s["tier"] == tier).await;
    sub["subscription_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn checkout_upgrade_cancel_reactivate_portal_and_a_failed_renewal() {
    let app = TestApp::spawn(local::router).await;
    let key = app.api_key.clone();

    let (status, none) = json_of(app.send(Method::GET, "/v1/subscriptions", None).await).await;
    assert_eq!(status, 404);
    assert_eq!(
        none,
        json!({"error": {"code": "no_subscription", "message": "No active subscription found. Please subscribe to a plan.",
                         "suggested_action": "redirect_to_pricing"}})
    );

    let id = subscribe(&app, &key, "pro").await;
    let (_, sub) = json_of(app.send(Method::GET, "/v1/subscriptions", None).await).await;
    assert!(id.starts_with("sub_"));
    assert_eq!(sub["analyses_limit"], 100);
    assert_eq!(sub["analyses_used"], 0);
    assert_eq!(sub["cancel_at_period_end"], false);
    assert!(
        sub["stripe_customer_id"]
            .as_str()
            .unwrap()
            .starts_with("cus_")
    );
    for k in ["current_period_start", "current_period_end", "created_at"] {
        assert!(
            sub[k]
                .as_str()
                .is_some_and(|t| t.ends_with('Z') && t.len() == 20),
            "{k}: {sub}"
        );
    }

    // A second checkout for a subscribed subject is refused rather than double-billing.
    let again = json!({"tier": "enterprise", "success_url": "https://a.example/ok", "cancel_url": "https://a.example/no"});
    assert_eq!(
        app.send(Method::POST, "/v1/billing/checkout", Some(again))
            .await
            .status(),
        400
    );

    // Upgrade: Stripe's own proration preview, in dollars.
    let path = format!("/v1/subscriptions/{id}/upgrade");
    let (status, up) = json_of(
        app.send(Method::PUT, &path, Some(json!({"new_tier": "enterprise"})))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(
        (up["tier"].as_str(), up["previous_tier"].as_str()),
        (Some("enterprise"), Some("pro"))
    );
    let amount = up["proration_amount"].as_f64().unwrap();
    assert!(amount > 0.0 && amount <= 900.0, "{up}");
    assert_eq!(up["proration_currency"], "USD");
    assert_eq!(
        up["message"],
        format!("Subscription upgraded to enterprise. Prorated amount: ${amount:.2}")
    );
    let (status, same) = json_of(
        app.send(Method::PUT, &path, Some(json!({"new_tier": "enterprise"})))
            .await,
    )
    .await;
    assert_eq!(
        (status, same["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, bad) = json_of(
        app.send(Method::PUT, &path, Some(json!({"new_tier": "premium"})))
            .await,
    )
    .await;
    assert_eq!(
        (status, bad["error"]["message"].as_str()),
        (
            400,
            Some("Invalid tier 'premium'. Valid tiers: pro, enterprise")
        )
    );
    let sub = wait_for(&app, &key, |s| s["tier"] == "enterprise").await;
    assert_eq!(sub["analyses_limit"], Value::Null);

    // Cancel at period end, twice: the same answer.
    let sub_path = format!("/v1/subscriptions/{id}");
    for _ in 0..2 {
        let (status, c) = json_of(app.send(Method::DELETE, &sub_path, None).await).await;
        assert_eq!(status, 200, "{c}");
        assert_eq!(c["cancel_at_period_end"], true);
        assert_eq!(c["status"], "active");
        assert_eq!(
            c["message"],
            format!(
                "Subscription will be canceled on {}",
                c["current_period_end"].as_str().unwrap()
            )
        );
    }
    wait_for(&app, &key, |s| s["cancel_at_period_end"] == true).await;
    let (status, r) = json_of(
        app.send(Method::POST, &format!("{sub_path}/reactivate"), None)
            .await,
    )
    .await;
    assert_eq!(
        (
            status,
            r["message"].as_str(),
            r["cancel_at_period_end"].as_bool()
        ),
        (
            200,
            Some("Subscription reactivated successfully"),
            Some(false)
        )
    );
    wait_for(&app, &key, |s| s["cancel_at_period_end"] == false).await;

    // The same through Stripe's Customer Portal.
    let (status, portal) = json_of(
        app.send(
            Method::POST,
            "/v1/billing/portal",
            Some(json!({"return_url": "https://yourapp.com/settings"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{portal}");
    let portal_url = portal["portal_url"].as_str().unwrap().to_string();
    let act = |action: &'static str, form: Vec<(&'static str, String)>| {
        let url = format!("{portal_url}/{action}");
        let http = app.http.clone();
        async move { http.post(url).form(&form).send().await.unwrap() }
    };
    assert!(
        act("cancel", vec![("subscription", id.clone())])
            .await
            .status()
            .as_u16()
            < 400
    );
    wait_for(&app, &key, |s| s["cancel_at_period_end"] == true).await;
    assert!(
        act("reactivate", vec![("subscription", id.clone())])
            .await
            .status()
            .as_u16()
            < 400
    );
    wait_for(&app, &key, |s| s["cancel_at_period_end"] == false).await;

    // A card that attaches and then fails every charge: the renewal fails → past_due with
    // Stripe's message kept; after the last retry → canceled.
    assert!(
        act("card", vec![("card_number", "4000 0000 0000 0341".into())])
            .await
            .status()
            .as_u16()
            < 400
    );
    app.stripe.advance_clock(31 * DAY).unwrap();
    wait_for(&app, &key, |s| s["status"] == "past_due").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while stored(&app).await.and_then(|r| r.payment_error).is_none() {
        assert!(
            Instant::now() < deadline,
            "the failure message was not kept: {:?}",
            stored(&app).await
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        stored(&app)
            .await
            .and_then(|r| r.payment_error)
            .is_some_and(|m| m.contains("declined"))
    );
    for _ in 0..4 {
        app.stripe.advance_clock(8 * DAY).unwrap();
    }
    let sub = wait_for(&app, &key, |s| s["status"] == "canceled").await;
    assert_eq!(sub["subscription_id"], id.as_str());

    replaying_every_event_changes_nothing(&app).await;
}

/// Every event Stripe sent, delivered again (twice, in reverse order), and again after the
/// dedupe records are lost: the final state does not move.
async fn replaying_every_event_changes_nothing(app: &TestApp) {
    // Let the emulator's own deliveries finish first.
    let deadline = Instant::now() + Duration::from_secs(15);
    while app.stripe.deliveries().iter().any(|d| d.will_retry) || app.stripe.deliveries().len() < 5
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = stored(app).await;
    let events = app.stripe_events().await;
    assert!(events.len() > 10, "the flow emitted its events");
    let deliver = |event: Value| async move {
        let response = app.deliver_event(&event).await;
        assert_eq!(
            response.status(),
            200,
            "{}",
            response.text().await.unwrap_or_default()
        );
    };
    // Newest first as listed is the reverse of how they happened: the worst order.
    for event in events.iter().chain(events.iter()) {
        deliver(event.clone()).await;
    }
    assert_eq!(stored(app).await, before);

    // Without the dedupe records every event is processed again, still to the same state.
    assert!(app.forget_idempotency_records("evt#").await > 0);
    for event in events.iter().rev().chain(events.iter()) {
        deliver(event.clone()).await;
    }
    assert_eq!(stored(app).await, before);
}

#[tokio::test]
async fn bad_missing_and_stale_signatures_are_refused_and_change_nothing() {
    let app = TestApp::spawn(local::router).await;
    let id = subscribe(&app, &app.api_key, "pro").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = stored(&app).await;
    let event = json!({"id": "evt_forged", "object": "event", "api_version": "2026-09-30.endive", "created": 1,
        "data": {"object": {"id": id, "object": "subscription"}}, "livemode": false, "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null}, "type": "customer.subscription.deleted"});
    let payload = event.to_string();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let secret = app.webhook_secret();
    let cases = [
        None,
        Some("t=1,v1=deadbeef".to_string()),
        Some(stripe_webhook::Webhook::generate_test_header(
            &payload,
            "whsec_someone_else",
            Some(now),
        )),
        Some(stripe_webhook::Webhook::generate_test_header(
            &payload,
            secret,
            Some(now - 301),
        )),
    ];
    for signature in cases {
        let mut request = app
            .http
            .post(app.url("/v1/webhooks/stripe"))
            .body(payload.clone());
        if let Some(s) = &signature {
            request = request.header("stripe-signature", s);
        }
        let (status, body) = json_of(request.send().await.unwrap()).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_signature")),
            "{signature:?}"
        );
    }
    assert_eq!(stored(&app).await, before);
}

#[tokio::test]
async fn another_accounts_subscription_is_404_on_every_route() {
    let app = TestApp::spawn(local::router).await;
    let id = subscribe(&app, &app.api_key, "pro").await;
    let customer = app
        .state
        .store
        .subscription(app.account.as_str(), "self")
        .await
        .unwrap()
        .unwrap()
        .stripe_customer_id;
    let other = app
        .issue_key("acct_other", shared::config::Stage::Test)
        .await;
    let routes = [
        (Method::DELETE, format!("/v1/subscriptions/{id}"), None),
        (
            Method::POST,
            format!("/v1/subscriptions/{id}/reactivate"),
            None,
        ),
        (
            Method::PUT,
            format!("/v1/subscriptions/{id}/upgrade"),
            Some(json!({"new_tier": "enterprise"})),
        ),
        (
            Method::POST,
            "/v1/subscriptions".to_string(),
            Some(json!({"tier": "pro", "stripe_customer_id": customer})),
        ),
        (Method::GET, "/v1/subscriptions".to_string(), None),
        (
            Method::POST,
            "/v1/billing/portal".to_string(),
            Some(json!({"return_url": "https://b.example/"})),
        ),
    ];
    for (method, path, body) in routes {
        let (status, error) = json_of(app.send_as(&other, method.clone(), &path, body).await).await;
        assert_eq!(status, 404, "{method} {path}: {error}");
        assert!(error["error"]["code"].is_string(), "{error}");
    }
    // An undecodable id is a 404 in the spec's format too.
    let (status, e) = json_of(
        app.send(Method::DELETE, "/v1/subscriptions/%FF", None)
            .await,
    )
    .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{e}"
    );
    // Nothing changed for the owner.
    let (_, sub) = json_of(app.send(Method::GET, "/v1/subscriptions", None).await).await;
    assert_eq!(
        (
            sub["status"].as_str(),
            sub["cancel_at_period_end"].as_bool()
        ),
        (Some("active"), Some(false))
    );
}

#[tokio::test]
async fn server_side_subscriptions_need_a_payment_method_and_a_good_card() {
    let app = TestApp::spawn(local::router).await;
    // A customer this account's flows created (an abandoned checkout), without a card.
    let body = json!({"tier": "pro", "success_url": "https://a.example/ok", "cancel_url": "https://a.example/no", "external_user_id": "user_123"});
    assert_eq!(
        app.send(Method::POST, "/v1/billing/checkout", Some(body))
            .await
            .status(),
        200
    );
    let record = app
        .state
        .store
        .subscription(app.account.as_str(), "user#user_123")
        .await
        .unwrap()
        .unwrap();
    let create = json!({"tier": "pro", "stripe_customer_id": record.stripe_customer_id, "external_user_id": "user_123"});
    let (status, e) = json_of(
        app.send(Method::POST, "/v1/subscriptions", Some(create.clone()))
            .await,
    )
    .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (402, Some("payment_failed")),
        "{e}"
    );
    assert_eq!(
        e["error"]["message"],
        "Payment could not be processed. Please update your payment method."
    );

    // Give the customer a card that fails charges: Stripe's decline message comes through.
    let stripe = |path: String, form: Vec<(&'static str, String)>| {
        let http = app.http.clone();
        let url = format!("{}{path}", app.stripe.base_url());
        async move {
            http.post(url)
                .bearer_auth("sk_test_local")
                .form(&form)
                .send()
                .await
                .unwrap()
        }
    };
    let cus = record.stripe_customer_id.clone();
    assert!(
        stripe(
            "/v1/payment_methods/pm_card_chargeCustomerFail/attach".into(),
            vec![("customer", cus.clone())]
        )
        .await
        .status()
        .is_success()
    );
    let methods: Value = app
        .http
        .get(format!(
            "{}/v1/payment_methods?customer={cus}",
            app.stripe.base_url()
        ))
        .bearer_auth("sk_test_local")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pm_id = methods["data"][0]["id"].as_str().unwrap().to_string();
    assert!(
        stripe(
            format!("/v1/customers/{cus}"),
            vec![("invoice_settings[default_payment_method]", pm_id)]
        )
        .await
        .status()
        .is_success()
    );
    let (status, e) = json_of(
        app.send(Method::POST, "/v1/subscriptions", Some(create.clone()))
            .await,
    )
    .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (402, Some("payment_failed")),
        "{e}"
    );
    assert!(
        e["error"]["stripe_error"]
            .as_str()
            .unwrap()
            .contains("declined"),
        "{e}"
    );

    // With a good card it is created and active at once.
    let (_, good) = json_of(
        stripe(
            "/v1/payment_methods/pm_card_visa/attach".into(),
            vec![("customer", cus.clone())],
        )
        .await,
    )
    .await;
    let good_id = good["id"].as_str().unwrap().to_string();
    assert!(
        stripe(
            format!("/v1/customers/{cus}"),
            vec![("invoice_settings[default_payment_method]", good_id)]
        )
        .await
        .status()
        .is_success()
    );
    let (status, created) = json_of(
        app.send(Method::POST, "/v1/subscriptions", Some(create))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(
        (created["status"].as_str(), created["tier"].as_str()),
        (Some("active"), Some("pro"))
    );
    assert_eq!(
        created["subscription_id"],
        created["stripe_subscription_id"]
    );
    let (_, sub) = json_of(
        app.send(
            Method::GET,
            "/v1/subscriptions?external_user_id=user_123",
            None,
        )
        .await,
    )
    .await;
    assert_eq!(sub["subscription_id"], created["subscription_id"]);
    let (status, _) = json_of(
        app.send(
            Method::GET,
            "/v1/subscriptions?external_user_id=bad%07id",
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
}

/// The app's router over the same state, but with Stripe unreachable.
fn with_stripe_down(app: &TestApp) -> axum::Router {
    let dead = shared::stripe::StripeApi::new("http://127.0.0.1:9", "sk_test_local").unwrap();
    local::router(shared::AppState {
        stripe: dead,
        ..app.state.clone()
    })
}

async fn call(
    router: &axum::Router,
    request: axum::http::Request<axum::body::Body>,
) -> (u16, Value) {
    use tower::ServiceExt;
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn stripe_down_is_502_and_changes_nothing() {
    let app = TestApp::spawn(local::router).await;
    let router = with_stripe_down(&app);
    let body = json!({"tier": "pro", "success_url": "https://a.example/ok", "cancel_url": "https://a.example/no"});
    let request = axum::http::Request::post("/v1/billing/checkout")
        .header("authorization", format!("Bearer {}", app.api_key))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let (status, error) = call(&router, request).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (502, Some("upstream_unavailable")),
        "{error}"
    );
    assert!(
        !error.to_string().contains("127.0.0.1"),
        "no internals: {error}"
    );
    assert_eq!(
        app.state
            .store
            .subscription(app.account.as_str(), "self")
            .await
            .unwrap(),
        None
    );

    // A webhook we cannot process answers 5xx (Stripe retries) and is not marked processed.
    let id = subscribe(&app, &app.api_key, "pro").await;
    let customer = stored(&app).await.unwrap().stripe_customer_id;
    let event = json!({"id": "evt_retry_me", "object": "event", "api_version": "2026-09-30.endive", "created": 1,
        "data": {"object": {"id": id, "object": "subscription", "customer": customer}}, "livemode": false, "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null}, "type": "customer.subscription.updated"});
    let payload = event.to_string();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let signed = |payload: &str| {
        stripe_webhook::Webhook::generate_test_header(payload, app.webhook_secret(), Some(now))
    };
    let request = axum::http::Request::post("/v1/webhooks/stripe")
        .header("stripe-signature", signed(&payload))
        .body(axum::body::Body::from(payload.clone()))
        .unwrap();
    let (status, _) = call(&router, request).await;
    assert_eq!(status, 502);
    assert!(
        !app.state
            .store
            .event_processed("evt_retry_me", now)
            .await
            .unwrap()
    );
    // Stripe's retry, once Stripe answers again, is processed.
    let retried = app.deliver_event(&event).await;
    assert_eq!(retried.status(), 200);
    assert!(
        app.state
            .store
            .event_processed("evt_retry_me", now)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_retried_checkout_never_creates_a_second_session() {
    let app = TestApp::spawn(local::router).await;
    let body = json!({"tier": "pro", "success_url": "https://a.example/ok", "cancel_url": "https://a.example/no"});
    let post = |key: &'static str| {
        let request = app
            .http
            .post(app.url("/v1/billing/checkout"))
            .bearer_auth(&app.api_key)
            .header("idempotency-key", key)
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    let first = post("order-42").await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    let replay = post("order-42").await;
    assert_eq!(
        replay
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap()),
        Some("true")
    );
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay, first);

    // As if we crashed after Stripe answered but before storing the response: the retry runs
    // again, and Stripe's idempotency (a key derived from the client's) returns the same session.
    assert!(app.forget_idempotency_records("").await > 0);
    let rerun = post("order-42").await;
    assert!(
        rerun.headers().get("idempotent-replayed").is_none(),
        "it really ran again"
    );
    let rerun: Value = rerun.json().await.unwrap();
    assert_eq!(rerun["session_id"], first["session_id"]);

    let other = post("order-43").await.json::<Value>().await.unwrap();
    assert_ne!(
        other["session_id"], first["session_id"],
        "another key is another session"
    );
    let reused = app.http.post(app.url("/v1/billing/checkout")).bearer_auth(&app.api_key).header("idempotency-key", "order-42")
        .json(&json!({"tier": "enterprise", "success_url": "https://a.example/ok", "cancel_url": "https://a.example/no"}))
        .send().await.unwrap();
    assert_eq!(reused.status(), 422);
}

#[tokio::test]
async fn a_downgrade_shows_its_credit_as_a_negative_amount() {
    let app = TestApp::spawn(local::router).await;
    let id = subscribe(&app, &app.api_key, "enterprise").await;
    let (status, down) = json_of(
        app.send(
            Method::PUT,
            &format!("/v1/subscriptions/{id}/upgrade"),
            Some(json!({"new_tier": "pro"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{down}");
    let amount = down["proration_amount"].as_f64().unwrap();
    assert!((-900.0..0.0).contains(&amount), "{down}");
    assert_eq!(
        down["message"],
        format!(
            "Subscription downgraded to pro. Prorated amount: -${:.2}",
            -amount
        )
    );
    assert_eq!(
        (down["tier"].as_str(), down["previous_tier"].as_str()),
        (Some("pro"), Some("enterprise"))
    );
    wait_for(&app, &app.api_key, |s| {
        s["tier"] == "pro" && s["analyses_limit"] == 100
    })
    .await;
}

#[tokio::test]
async fn bad_input_is_400_naming_the_field() {
    let app = TestApp::spawn(local::router).await;
    let cases = [
        (
            "/v1/billing/checkout",
            json!({"success_url": "https://a.example/", "cancel_url": "https://a.example/"}),
            "tier",
        ),
        (
            "/v1/billing/checkout",
            json!({"tier": "pro", "success_url": "/relative", "cancel_url": "https://a.example/"}),
            "success_url",
        ),
        (
            "/v1/billing/checkout",
            json!({"tier": "pro", "success_url": "https://a.example/", "cancel_url": 5}),
            "cancel_url",
        ),
        (
            "/v1/billing/checkout",
            json!({"tier": "pro", "success_url": "https://a.example/", "cancel_url": "https://a.example/", "external_user_id": "no\u{7}bell"}),
            "external_user_id",
        ),
        ("/v1/billing/portal", json!({}), "return_url"),
        (
            "/v1/subscriptions",
            json!({"tier": "pro"}),
            "stripe_customer_id",
        ),
    ];
    for (path, body, field) in cases {
        let (status, e) = json_of(app.send(Method::POST, path, Some(body.clone())).await).await;
        assert_eq!(
            (
                status,
                e["error"]["code"].as_str(),
                e["error"]["field"].as_str()
            ),
            (400, Some("invalid_request"), Some(field)),
            "{path} {body}: {e}"
        );
    }
    let (status, e) = json_of(app.send(Method::POST, "/v1/billing/checkout", Some(json!({"tier": "premium", "success_url": "https://a.example/", "cancel_url": "https://a.example/"}))).await).await;
    assert_eq!(
        (status, e),
        (
            400,
            json!({"error": {"code": "invalid_tier", "message": "Invalid tier 'premium'. Valid tiers: pro, enterprise"}})
        )
    );
    let raw = app
        .http
        .post(app.url("/v1/billing/checkout"))
        .bearer_auth(&app.api_key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let huge = app
        .http
        .post(app.url("/v1/billing/checkout"))
        .bearer_auth(&app.api_key)
        .header("content-type", "application/json")
        .body(vec![b' '; 70 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
}

async fn stripe_subscriptions_of(app: &TestApp, customer: &str) -> usize {
    let list: Value = app
        .http
        .get(format!(
            "{}/v1/subscriptions?customer={customer}&status=all",
            app.stripe.base_url()
        ))
        .bearer_auth("sk_test_local")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["data"].as_array().map(Vec::len).unwrap_or_default()
}

#[tokio::test]
async fn two_checkouts_for_one_subject_cannot_both_be_paid() {
    let app = TestApp::spawn(local::router).await;
    let body = json!({"tier": "pro", "success_url": "https://a.example/ok", "cancel_url": "https://a.example/no"});
    let (_, first) = json_of(
        app.send(Method::POST, "/v1/billing/checkout", Some(body.clone()))
            .await,
    )
    .await;
    let (_, second) = json_of(
        app.send(Method::POST, "/v1/billing/checkout", Some(body))
            .await,
    )
    .await;
    assert_ne!(first["session_id"], second["session_id"]);
    let pay = |url: String| {
        let http = app.http.clone();
        async move {
            http.post(url)
                .form(&[("card_number", "4242 4242 4242 4242")])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_ne!(
        pay(first["checkout_url"].as_str().unwrap().to_string()).await,
        303,
        "the replaced checkout is expired"
    );
    assert_eq!(
        pay(second["checkout_url"].as_str().unwrap().to_string()).await,
        303
    );
    wait_for(&app, &app.api_key, |s| s["status"] == "active").await;
    let customer = app
        .state
        .store
        .subscription(app.account.as_str(), "self")
        .await
        .unwrap()
        .unwrap()
        .stripe_customer_id;
    assert_eq!(stripe_subscriptions_of(&app, &customer).await, 1);
}

#[tokio::test]
async fn concurrent_server_side_creates_make_one_subscription() {
    let app = Arc::new(TestApp::spawn(local::router).await);
    // A subject with a customer (from an open checkout) and a good default card.
    let body = json!({"tier": "pro", "success_url": "https://a.example/ok", "cancel_url": "https://a.example/no", "external_user_id": "u_race"});
    let (_, open) = json_of(
        app.send(Method::POST, "/v1/billing/checkout", Some(body))
            .await,
    )
    .await;
    let cus = app
        .state
        .store
        .subscription(app.account.as_str(), "user#u_race")
        .await
        .unwrap()
        .unwrap()
        .stripe_customer_id;
    let stripe = |path: String, form: Vec<(&'static str, String)>| {
        let http = app.http.clone();
        let url = format!("{}{path}", app.stripe.base_url());
        async move {
            http.post(url)
                .bearer_auth("sk_test_local")
                .form(&form)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let pm = stripe(
        "/v1/payment_methods/pm_card_visa/attach".into(),
        vec![("customer", cus.clone())],
    )
    .await;
    stripe(
        format!("/v1/customers/{cus}"),
        vec![(
            "invoice_settings[default_payment_method]",
            pm["id"].as_str().unwrap().to_string(),
        )],
    )
    .await;

    let create = json!({"tier": "pro", "stripe_customer_id": cus, "external_user_id": "u_race"});
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let app = app.clone();
            let create = create.clone();
            tokio::spawn(async move {
                app.send(Method::POST, "/v1/subscriptions", Some(create))
                    .await
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [200, 400, 409].contains(s)),
        "{statuses:?}"
    );
    assert_eq!(stripe_subscriptions_of(&app, &cus).await, 1);
    // The checkout that was open for that subject can no longer start a second one.
    let paid = app
        .http
        .post(open["checkout_url"].as_str().unwrap())
        .form(&[("card_number", "4242 4242 4242 4242")])
        .send()
        .await
        .unwrap();
    assert_ne!(paid.status().as_u16(), 303);
    assert_eq!(stripe_subscriptions_of(&app, &cus).await, 1);
}
