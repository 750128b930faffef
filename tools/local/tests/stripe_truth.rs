//! Stripe is the truth: what the API does when the world is not polite — a webhook that is
//! late or lost, a Stripe answer that never arrives, a retry, two requests at once, a plan
//! that ended while nobody told us — through real sockets against the local stack (the API,
//! its DynamoDB engine, the Stripe emulator with its fault control).

use devkit::TestApp;
use reqwest::Method;
use serde_json::{Value, json};
use shared::clock::{Clock, ManualClock};
use shared::ledger::{Grant, LedgerKey};
use shared::reconcile::{DriftKind, Options};
use std::time::{Duration, Instant};

const DAY: i64 = 86_400;

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `method path` with this app's key, a JSON body, and extra headers.
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = app
        .http
        .request(method, app.url(path))
        .bearer_auth(&app.api_key);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    json_of(request.send().await.expect("the app answers")).await
}

fn checkout_body(tier: &str, user: Option<&str>) -> Value {
    let mut body = json!({"tier": tier, "success_url": "https://yourapp.com/ok",
                          "cancel_url": "https://yourapp.com/pricing"});
    if let Some(user) = user {
        body["external_user_id"] = json!(user);
    }
    body
}

/// A subscription Checkout for `user` (or the account), paid on the emulator's page.
async fn checkout_and_pay(app: &TestApp, tier: &str, user: Option<&str>) -> Value {
    let (status, checkout) = send(
        app,
        Method::POST,
        "/v1/billing/checkout",
        Some(checkout_body(tier, user)),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{checkout}");
    app.pay(checkout["checkout_url"].as_str().unwrap()).await;
    checkout
}

/// Polls `GET /v1/subscriptions[?external_user_id=user]` until `done` holds.
async fn wait_for(app: &TestApp, user: Option<&str>, done: impl Fn(&Value) -> bool) -> Value {
    let path = match user {
        Some(u) => format!("/v1/subscriptions?external_user_id={u}"),
        None => "/v1/subscriptions".to_string(),
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = send(app, Method::GET, &path, None, &[]).await;
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "gave up waiting; last: {body}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Every subscription Stripe has for the customer, whatever its status.
async fn stripe_subscriptions(app: &TestApp, customer: &str) -> Vec<Value> {
    let (status, list) = app
        .stripe_call(
            Method::GET,
            "/v1/subscriptions",
            &[("customer", customer), ("status", "all")],
        )
        .await;
    assert_eq!(status, 200, "{list}");
    list["data"].as_array().cloned().unwrap_or_default()
}

async fn customer_of(app: &TestApp, subject: &str) -> String {
    app.state
        .store
        .subscription(app.account.as_str(), subject)
        .await
        .unwrap()
        .expect("the subject has an item")
        .stripe_customer_id
}

/// Issue item 1: a paid Checkout whose webhook has not arrived. A second Checkout and a
/// server-side create for the same subject decide on Stripe's view and are refused: one
/// Stripe subscription for the subject.
#[tokio::test]
async fn a_second_subscription_is_refused_while_the_first_ones_webhook_is_missing() {
    let app = TestApp::spawn(local::router).await;
    app.set_webhooks(false).await;
    checkout_and_pay(&app, "pro", None).await;
    let (status, _) = send(&app, Method::GET, "/v1/subscriptions", None, &[]).await;
    assert_eq!(status, 404, "no webhook has told us yet");

    let (status, again) = send(
        &app,
        Method::POST,
        "/v1/billing/checkout",
        Some(checkout_body("enterprise", None)),
        &[],
    )
    .await;
    assert_eq!(status, 400, "{again}");
    assert!(
        again["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Already subscribed (sub_"),
        "{again}"
    );
    let customer = customer_of(&app, "self").await;
    let (status, created) = send(
        &app,
        Method::POST,
        "/v1/subscriptions",
        Some(json!({"tier": "pro", "stripe_customer_id": customer})),
        &[],
    )
    .await;
    assert_eq!(
        (status, created["error"]["field"].as_str()),
        (400, Some("stripe_customer_id")),
        "{created}"
    );
    assert_eq!(stripe_subscriptions(&app, &customer).await.len(), 1);
    // Deciding read Stripe, and stored what it read: the plan shows without any webhook.
    let (status, plan) = send(&app, Method::GET, "/v1/subscriptions", None, &[]).await;
    assert_eq!((status, plan["status"].as_str()), (200, Some("active")));
}

/// Issue item 2: the upgrade reached Stripe, its answer was lost (both the first attempt and
/// the client's resend on the dead connection); the retry with the same Idempotency-Key
/// answers the upgrade — once, with the same proration — instead of failing forever.
#[tokio::test]
async fn an_upgrade_whose_answer_was_lost_converges_on_retry() {
    let app = TestApp::spawn(local::router).await;
    checkout_and_pay(&app, "pro", None).await;
    let sub = wait_for(&app, None, |s| s["status"] == "active").await;
    let id = sub["subscription_id"].as_str().unwrap().to_string();
    let path = format!("/v1/subscriptions/{id}/upgrade");
    app.stripe_fault(&[
        ("method", "POST"),
        ("path_prefix", &format!("/v1/subscriptions/{id}")),
        ("when", "after"),
        ("count", "2"),
    ])
    .await;
    let key = [("Idempotency-Key", "upgrade-1")];
    let body = json!({"new_tier": "enterprise"});
    let (status, lost) = send(&app, Method::PUT, &path, Some(body.clone()), &key).await;
    assert_eq!(
        (status, lost["error"]["code"].as_str()),
        (502, Some("upstream_unavailable")),
        "{lost}"
    );
    let (_, in_stripe) = app
        .stripe_call(Method::GET, &format!("/v1/subscriptions/{id}"), &[])
        .await;
    assert_eq!(
        in_stripe["items"]["data"][0]["price"]["id"],
        app.state
            .prices
            .get()
            .await
            .unwrap()
            .tier(shared::catalog::Tier::Enterprise)
            .unwrap(),
        "the change reached Stripe"
    );

    let (status, up) = send(&app, Method::PUT, &path, Some(body.clone()), &key).await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(
        (up["tier"].as_str(), up["previous_tier"].as_str()),
        (Some("enterprise"), Some("pro"))
    );
    let amount = up["proration_amount"].as_f64().unwrap();
    assert!(amount > 0.0 && amount <= 900.0, "{up}");
    assert!(
        up["message"]
            .as_str()
            .unwrap()
            .starts_with("Subscription upgraded to enterprise")
    );
    // One upgrade, one proration invoice.
    let customer = customer_of(&app, "self").await;
    let (_, invoices) = app
        .stripe_call(
            Method::GET,
            "/v1/invoices",
            &[("customer", &customer), ("limit", "100")],
        )
        .await;
    let updates = invoices["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["billing_reason"] == "subscription_update")
        .count();
    assert_eq!(updates, 1, "{invoices}");
    // The answer is kept now: the same key replays it.
    let (status, replay) = send(&app, Method::PUT, &path, Some(body), &key).await;
    assert_eq!((status, &replay), (200, &up));
}

/// Issue item 3: the same Idempotency-Key and body for another end user (named in the
/// `X-External-User-ID` header) is another request: 422, never alice's answer.
#[tokio::test]
async fn the_same_key_for_another_end_user_is_refused_not_replayed() {
    let app = TestApp::spawn(local::router).await;
    let alice = LedgerKey {
        account_id: app.account.to_string(),
        subject: "user#alice".into(),
    };
    let grant = Grant {
        source_id: "cs_test_seeded",
        kind: shared::ledger::CreditKind::Document,
        credits: 2,
        reason: "credit_pack",
        expires_at: None,
        purchase_sk: None,
    };
    app.state
        .store
        .ledger_grant(&alice, &grant, app.state.clock.now().unix_timestamp())
        .await
        .unwrap();
    let body = json!({"analysis_ids": ["doc_1"]});
    let as_user = |user: &'static str| {
        [
            ("X-External-User-ID", user),
            ("Idempotency-Key", "access-1"),
        ]
    };
    let (status, first) = send(
        &app,
        Method::POST,
        "/v1/credits/access",
        Some(body.clone()),
        &as_user("alice"),
    )
    .await;
    assert_eq!(
        (status, first["credits_spent"].as_i64()),
        (200, Some(1)),
        "{first}"
    );
    let (status, bob) = send(
        &app,
        Method::POST,
        "/v1/credits/access",
        Some(body),
        &as_user("bob"),
    )
    .await;
    assert_eq!(
        (status, bob["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{bob}"
    );
}

/// Issue item 4 (and the emulator's fidelity): a request that lost the subject's lease gets
/// 409, which is not kept under its Idempotency-Key: its retry runs. It also shows that a
/// server-side subscription can charge the card a subscription Checkout collected (the
/// webhook made it the customer's default, as on real Stripe).
#[tokio::test]
async fn a_lease_loser_is_not_answered_forever_and_its_retry_runs() {
    let app = TestApp::spawn(local::router).await;
    checkout_and_pay(&app, "pro", None).await;
    let sub = wait_for(&app, None, |s| s["status"] == "active").await;
    let id = sub["subscription_id"].as_str().unwrap();
    let (status, _) = app
        .stripe_call(Method::DELETE, &format!("/v1/subscriptions/{id}"), &[])
        .await;
    assert_eq!(status, 200);
    wait_for(&app, None, |s| s["status"] == "canceled").await;

    let account = app.account.as_str();
    let now = app.state.clock.now().unix_timestamp();
    assert!(
        app.state
            .store
            .lock_subject(account, "self", now, 60)
            .await
            .unwrap()
    );
    let customer = customer_of(&app, "self").await;
    let body = json!({"tier": "pro", "stripe_customer_id": customer});
    let key = [("Idempotency-Key", "create-1")];
    let (status, busy) = send(
        &app,
        Method::POST,
        "/v1/subscriptions",
        Some(body.clone()),
        &key,
    )
    .await;
    assert_eq!(
        (status, busy["error"]["code"].as_str()),
        (409, Some("request_in_progress")),
        "{busy}"
    );
    app.state
        .store
        .unlock_subject(account, "self")
        .await
        .unwrap();
    let (status, created) = send(&app, Method::POST, "/v1/subscriptions", Some(body), &key).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["status"], "active");
    let live = stripe_subscriptions(&app, &customer)
        .await
        .into_iter()
        .filter(|s| s["status"] == "active")
        .count();
    assert_eq!(live, 1);
}

/// Issue item 5: canceled in Stripe while every webhook fails. Until the period (plus the
/// grace) ends, the stored plan still grants; after it, access fails closed whatever the
/// stored status; the reconciler then brings `canceled` home, and a second run finds nothing.
#[tokio::test]
async fn a_plan_canceled_while_webhooks_fail_fails_closed_then_is_reconciled() {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let app = TestApp::spawn_with_clock(clock.clone(), local::router).await;
    checkout_and_pay(&app, "pro", Some("vip")).await;
    let sub = wait_for(&app, Some("vip"), |s| s["status"] == "active").await;
    let id = sub["subscription_id"].as_str().unwrap();
    app.settle_webhooks().await;
    app.set_webhooks(false).await;
    let (status, _) = app
        .stripe_call(Method::DELETE, &format!("/v1/subscriptions/{id}"), &[])
        .await;
    assert_eq!(status, 200);

    let access = |doc: &'static str| {
        let app = &app;
        async move {
            send(
                app,
                Method::POST,
                "/v1/credits/access",
                Some(json!({"external_user_id": "vip", "analysis_ids": [doc]})),
                &[],
            )
            .await
        }
    };
    let (status, free) = access("doc_1").await;
    assert_eq!(
        (status, free["has_unlimited"].as_bool()),
        (200, Some(true)),
        "{free}"
    );

    // Past the period and its three days of grace: nothing, though we still say active.
    let period_end = app
        .state
        .store
        .subscription(app.account.as_str(), "user#vip")
        .await
        .unwrap()
        .unwrap()
        .current_period_end
        .unwrap();
    let now = clock.now().unix_timestamp();
    clock.advance(time::Duration::seconds(period_end - now + 3 * DAY + 1));
    let (status, closed) = access("doc_2").await;
    assert_eq!(
        (status, closed["error"].as_str()),
        (402, Some("payment_required")),
        "{closed}"
    );
    let stale = wait_for(&app, Some("vip"), |_| true).await;
    assert_eq!(stale["status"], "active");

    let options = Options {
        since: 0,
        dry_run: false,
    };
    let report = shared::reconcile::run(&app.state, options, &())
        .await
        .unwrap();
    let drift: Vec<_> = report
        .drifts
        .iter()
        .filter(|d| d.kind == DriftKind::Subscription)
        .collect();
    assert_eq!(drift.len(), 1, "{}", report.table());
    assert_eq!(
        (drift[0].subject.as_str(), drift[0].object.as_str()),
        ("user#vip", id)
    );
    assert!(drift[0].stripe.contains("canceled"), "{}", report.table());
    let healed = wait_for(&app, Some("vip"), |_| true).await;
    assert_eq!(healed["status"], "canceled");
    let (status, _) = access("doc_3").await;
    assert_eq!(status, 402);

    let again = shared::reconcile::run(&app.state, options, &())
        .await
        .unwrap();
    assert!(again.drifts.is_empty(), "{}", again.table());
    assert!(again.subjects_read >= 1 && again.events_read > 0);
}

/// The reconciler grants a paid session whose webhook was lost (once), closes a purchase
/// whose Checkout expired, and `--dry-run` reports without changing anything.
#[tokio::test]
async fn the_reconciler_grants_lost_payments_once_and_closes_expired_purchases() {
    let app = TestApp::spawn(local::router).await;
    app.set_webhooks(false).await;
    let purchase = |pack: &'static str| {
        let app = &app;
        async move {
            let body = json!({"external_user_id": "u1", "pack_type": pack,
                "success_url": "https://yourapp.com/ok", "cancel_url": "https://yourapp.com/no"});
            let (status, bought) =
                send(app, Method::POST, "/v1/credits/purchase", Some(body), &[]).await;
            assert_eq!(status, 200, "{bought}");
            bought
        }
    };
    let paid = purchase("medium").await;
    app.pay(paid["checkout_url"].as_str().unwrap()).await;
    let abandoned = purchase("single").await;
    let abandoned_id = abandoned["session_id"].as_str().unwrap();
    let (status, _) = app
        .stripe_call(
            Method::POST,
            &format!("/v1/checkout/sessions/{abandoned_id}/expire"),
            &[],
        )
        .await;
    assert_eq!(status, 200);

    let history = || async {
        send(
            &app,
            Method::GET,
            "/v1/credits/history?external_user_id=u1",
            None,
            &[],
        )
        .await
        .1
    };
    let statuses = |h: &Value| {
        let mut s: Vec<String> = h["purchases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["status"].as_str().unwrap().to_string())
            .collect();
        s.sort();
        s
    };
    assert_eq!(statuses(&history().await), ["pending", "pending"]);

    let dry = Options {
        since: 0,
        dry_run: true,
    };
    let report = shared::reconcile::run(&app.state, dry, &()).await.unwrap();
    let kinds: Vec<DriftKind> = report.drifts.iter().map(|d| d.kind).collect();
    assert!(
        kinds.contains(&DriftKind::UngrantedSession),
        "{}",
        report.table()
    );
    assert!(
        kinds.contains(&DriftKind::PendingPurchase),
        "{}",
        report.table()
    );
    assert!(report.drifts.iter().all(|d| d.action == "none (dry run)"));
    assert_eq!(
        statuses(&history().await),
        ["pending", "pending"],
        "a dry run changes nothing"
    );

    let fix = Options {
        since: 0,
        dry_run: false,
    };
    let report = shared::reconcile::run(&app.state, fix, &()).await.unwrap();
    assert_eq!(report.drifts.len(), 2, "{}", report.table());
    assert_eq!(statuses(&history().await), ["completed", "expired"]);
    let (_, balance) = send(
        &app,
        Method::GET,
        "/v1/credits/balance?external_user_id=u1",
        None,
        &[],
    )
    .await;
    assert_eq!(balance["balance"], 5);

    let again = shared::reconcile::run(&app.state, fix, &()).await.unwrap();
    assert!(again.drifts.is_empty(), "{}", again.table());
    let (_, balance) = send(
        &app,
        Method::GET,
        "/v1/credits/balance?external_user_id=u1",
        None,
        &[],
    )
    .await;
    assert_eq!(balance["balance"], 5, "granted once");
}

/// Issue item 6: an event about an object Stripe no longer has is acknowledged (a retry
/// cannot bring it back), not answered 404 for three days.
#[tokio::test]
async fn an_event_about_an_object_stripe_no_longer_has_is_acknowledged() {
    let app = TestApp::spawn(local::router).await;
    let meta = json!({"account_id": app.account.to_string(), "subject": "self"});
    for (id, type_, object) in [
        (
            "evt_gone_1",
            "customer.subscription.updated",
            json!({"id": "sub_gone", "object": "subscription", "customer": "cus_gone", "metadata": meta}),
        ),
        (
            "evt_gone_2",
            "checkout.session.completed",
            json!({"id": "cs_test_gone", "object": "checkout.session", "mode": "subscription",
                "customer": "cus_gone", "subscription": "sub_gone", "metadata": meta}),
        ),
        (
            "evt_gone_3",
            "invoice.payment_failed",
            json!({"id": "in_gone", "object": "invoice", "customer": "cus_gone"}),
        ),
    ] {
        let event = json!({"id": id, "object": "event", "type": type_, "created": 1,
            "data": {"object": object}});
        let response = app.deliver_event(&event).await;
        assert_eq!(response.status(), 200, "{type_}");
    }
}

/// Issue item 6: a report credit's 30 days count from the payment, not from when a late
/// webhook was processed.
#[tokio::test]
async fn a_report_credit_lasts_thirty_days_from_the_payment() {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let app = TestApp::spawn_with_clock(clock.clone(), local::router).await;
    app.set_webhooks(false).await;
    let body = json!({"external_user_id": "late", "success_url": "https://yourapp.com/ok",
                      "cancel_url": "https://yourapp.com/no"});
    let (status, report) = send(
        &app,
        Method::POST,
        "/v1/billing/purchase-report",
        Some(body),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{report}");
    app.pay(report["checkout_url"].as_str().unwrap()).await;
    let completed = app
        .stripe_events()
        .await
        .into_iter()
        .find(|e| e["type"] == "checkout.session.completed")
        .expect("the completion event");
    let paid_at = completed["created"].as_i64().unwrap();

    clock.advance(time::Duration::days(2));
    assert_eq!(app.deliver_event(&completed).await.status(), 200);
    let key = LedgerKey {
        account_id: app.account.to_string(),
        subject: "user#late".into(),
    };
    let balance = app
        .state
        .store
        .ledger_balance(&key, clock.now().unix_timestamp())
        .await
        .unwrap();
    assert_eq!(balance.lots.len(), 1, "{balance:?}");
    assert_eq!(balance.lots[0].expires_at, Some(paid_at + 30 * DAY));
}

/// Issue item 6: a Checkout that expires closes its purchase (the webhook): the history stops
/// showing it pending.
#[tokio::test]
async fn an_expired_checkout_closes_its_purchase() {
    let app = TestApp::spawn(local::router).await;
    let body = json!({"external_user_id": "u2", "pack_type": "single",
        "success_url": "https://yourapp.com/ok", "cancel_url": "https://yourapp.com/no"});
    let (status, bought) = send(&app, Method::POST, "/v1/credits/purchase", Some(body), &[]).await;
    assert_eq!(status, 200, "{bought}");
    let session = bought["session_id"].as_str().unwrap();
    let (status, _) = app
        .stripe_call(
            Method::POST,
            &format!("/v1/checkout/sessions/{session}/expire"),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, h) = send(
            &app,
            Method::GET,
            "/v1/credits/history?external_user_id=u2",
            None,
            &[],
        )
        .await;
        if h["purchases"][0]["status"] == "expired" {
            break;
        }
        assert!(Instant::now() < deadline, "still {h}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Issue item 6: a value of the caller's that Stripe refuses (here its email: Stripe's rules
/// may be stricter than ours) is the caller's 400 naming the field, with Stripe's words, not
/// our 500; a refusal of a parameter the caller did not give stays our 500.
#[tokio::test]
async fn a_value_stripe_refuses_is_the_callers_400() {
    let app = TestApp::spawn(local::router).await;
    let body = json!({"external_user_id": "u3", "pack_type": "single",
        "success_url": "https://yourapp.com/ok", "cancel_url": "https://yourapp.com/no",
        "customer_email": "user@example.com"});
    let refuse = |param: &'static str| {
        let app = &app;
        async move {
            app.stripe_fault(&[
                ("method", "POST"),
                ("path_prefix", "/v1/checkout/sessions"),
                ("status", "400"),
                ("param", param),
                ("message", "Invalid email address: user@example.com"),
            ])
            .await;
        }
    };
    refuse("customer_email").await;
    let (status, refused) = send(
        &app,
        Method::POST,
        "/v1/credits/purchase",
        Some(body.clone()),
        &[],
    )
    .await;
    assert_eq!(
        (
            status,
            refused["error"]["field"].as_str(),
            refused["error"]["message"].as_str()
        ),
        (
            400,
            Some("customer_email"),
            Some("Invalid email address: user@example.com")
        ),
        "{refused}"
    );
    refuse("line_items").await;
    let (status, ours) = send(&app, Method::POST, "/v1/credits/purchase", Some(body), &[]).await;
    assert_eq!(
        (status, ours["error"]["code"].as_str()),
        (500, Some("internal_error")),
        "{ours}"
    );
}

/// Stripe failing before its effect is a 502 the client retries; the retry succeeds once
/// Stripe is back, and a retried Checkout makes one session.
#[tokio::test]
async fn a_checkout_that_failed_at_stripe_is_retried_into_one_session() {
    let app = TestApp::spawn(local::router).await;
    app.stripe_fault(&[("method", "POST"), ("path_prefix", "/v1/checkout/sessions")])
        .await;
    let key = [("Idempotency-Key", "checkout-1")];
    let (status, failed) = send(
        &app,
        Method::POST,
        "/v1/billing/checkout",
        Some(checkout_body("pro", None)),
        &key,
    )
    .await;
    assert_eq!(
        (status, failed["error"]["code"].as_str()),
        (502, Some("upstream_unavailable"))
    );
    let (status, first) = send(
        &app,
        Method::POST,
        "/v1/billing/checkout",
        Some(checkout_body("pro", None)),
        &key,
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let customer = customer_of(&app, "self").await;
    let (_, sessions) = app
        .stripe_call(
            Method::GET,
            "/v1/checkout/sessions",
            &[("customer", &customer)],
        )
        .await;
    assert_eq!(
        sessions["data"].as_array().map(Vec::len),
        Some(1),
        "{sessions}"
    );
}

/// Cancelling decides whether the customer is charged again, so it reads Stripe: a plan
/// reactivated in Stripe (the portal) while the webhook was lost is cancelled for real, not
/// answered "already set to cancel" from our stale copy.
#[tokio::test]
async fn cancel_decides_on_stripes_view_not_a_stale_copy() {
    let app = TestApp::spawn(local::router).await;
    checkout_and_pay(&app, "pro", None).await;
    let sub = wait_for(&app, None, |s| s["status"] == "active").await;
    let id = sub["subscription_id"].as_str().unwrap().to_string();
    let path = format!("/v1/subscriptions/{id}");
    let (status, canceled) = send(&app, Method::DELETE, &path, None, &[]).await;
    assert_eq!(
        (status, canceled["cancel_at_period_end"].as_bool()),
        (200, Some(true))
    );
    app.settle_webhooks().await;
    app.set_webhooks(false).await;
    let (status, _) = app
        .stripe_call(Method::POST, &path, &[("cancel_at_period_end", "false")])
        .await;
    assert_eq!(status, 200, "reactivated in Stripe; the webhook is lost");

    let (status, again) = send(&app, Method::DELETE, &path, None, &[]).await;
    assert_eq!(
        (status, again["cancel_at_period_end"].as_bool()),
        (200, Some(true)),
        "{again}"
    );
    let (_, in_stripe) = app.stripe_call(Method::GET, &path, &[]).await;
    assert_eq!(in_stripe["cancel_at_period_end"], true, "{in_stripe}");
}

/// Two tabs, and Stripe fails to expire the first tab's Checkout: the second tab's request
/// answers 502 and keeps the first session recorded, so its retry expires it. Never two
/// payable Checkouts.
#[tokio::test]
async fn a_checkout_whose_previous_session_would_not_expire_expires_it_on_retry() {
    let app = TestApp::spawn(local::router).await;
    let (status, first) = send(
        &app,
        Method::POST,
        "/v1/billing/checkout",
        Some(checkout_body("pro", None)),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let s1 = first["session_id"].as_str().unwrap();
    app.stripe_fault(&[
        ("method", "POST"),
        ("path_prefix", &format!("/v1/checkout/sessions/{s1}/expire")),
    ])
    .await;
    let key = [("Idempotency-Key", "tab-2")];
    let body = Some(checkout_body("pro", None));
    let (status, failed) = send(
        &app,
        Method::POST,
        "/v1/billing/checkout",
        body.clone(),
        &key,
    )
    .await;
    assert_eq!(status, 502, "{failed}");
    let (status, second) = send(&app, Method::POST, "/v1/billing/checkout", body, &key).await;
    assert_eq!(status, 200, "{second}");
    let (_, s1_now) = app
        .stripe_call(Method::GET, &format!("/v1/checkout/sessions/{s1}"), &[])
        .await;
    assert_eq!(s1_now["status"], "expired", "{s1_now}");
    let customer = customer_of(&app, "self").await;
    let (_, open) = app
        .stripe_call(
            Method::GET,
            "/v1/checkout/sessions",
            &[("customer", &customer), ("status", "open")],
        )
        .await;
    let open: Vec<&str> = open["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(open, [second["session_id"].as_str().unwrap()]);
}

/// A server-side subscription charges the card the subject's subscription Checkout
/// collected even when the webhook that makes it the customer's default never came: on real
/// Stripe (and the emulator) Checkout puts it on the subscription only.
#[tokio::test]
async fn a_server_side_create_charges_the_card_checkout_collected_without_its_webhook() {
    let app = TestApp::spawn(local::router).await;
    app.set_webhooks(false).await;
    checkout_and_pay(&app, "pro", None).await;
    let customer = customer_of(&app, "self").await;
    let subs = stripe_subscriptions(&app, &customer).await;
    let id = subs[0]["id"].as_str().unwrap();
    let (_, cus) = app
        .stripe_call(Method::GET, &format!("/v1/customers/{customer}"), &[])
        .await;
    assert!(
        cus["invoice_settings"]["default_payment_method"].is_null(),
        "{cus}"
    );
    let (status, _) = app
        .stripe_call(Method::DELETE, &format!("/v1/subscriptions/{id}"), &[])
        .await;
    assert_eq!(status, 200);
    let (status, created) = send(
        &app,
        Method::POST,
        "/v1/subscriptions",
        Some(json!({"tier": "enterprise", "stripe_customer_id": customer})),
        &[],
    )
    .await;
    assert_eq!(
        (status, created["status"].as_str()),
        (200, Some("active")),
        "{created}"
    );
    assert_eq!(created["tier"], "enterprise");
}

/// Issue item 2, the other way an answer is lost: the change reached Stripe, then our write
/// failed (a throttled table), so the request answered 500. The retry with the same
/// Idempotency-Key converges on the change Stripe already has.
#[tokio::test]
async fn an_upgrade_whose_write_failed_after_stripe_converges_on_retry() {
    let app = TestApp::spawn(local::router).await;
    checkout_and_pay(&app, "pro", None).await;
    let sub = wait_for(&app, None, |s| s["status"] == "active").await;
    let id = sub["subscription_id"].as_str().unwrap().to_string();
    let path = format!("/v1/subscriptions/{id}/upgrade");
    // No webhook writes in between: the upgrade's one write to the Subscriptions table,
    // Stripe's answer to the change, is the only UpdateItem there, and it fails.
    app.settle_webhooks().await;
    app.set_webhooks(false).await;
    let plans = app
        .state
        .store
        .tables()
        .get(shared::tables::Table::Subscriptions);
    app.dynamodb_faults.arm_on_table("UpdateItem", plans, 0, 1);
    let key = [("Idempotency-Key", "upgrade-write")];
    let body = json!({"new_tier": "enterprise"});
    let (status, failed) = send(&app, Method::PUT, &path, Some(body.clone()), &key).await;
    assert_eq!(
        (status, failed["error"]["code"].as_str()),
        (500, Some("internal_error")),
        "{failed}"
    );
    let (status, up) = send(&app, Method::PUT, &path, Some(body), &key).await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(
        (up["tier"].as_str(), up["previous_tier"].as_str()),
        (Some("enterprise"), Some("pro"))
    );
}
