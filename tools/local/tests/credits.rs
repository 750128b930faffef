//! Credits end to end through real sockets: packs and the $29 report bought on the emulator's
//! Checkout page, granted by the webhook exactly once, spent on documents, expiring on time.

use devkit::TestApp;
use reqwest::Method;
use serde_json::{Value, json};
use shared::clock::ManualClock;
use shared::ledger::{EntryKind, Grant, LedgerKey};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn user_key(app: &TestApp, user: &str) -> LedgerKey {
    LedgerKey {
        account_id: app.account.to_string(),
        subject: format!("user#{user}"),
    }
}

/// The ledger's invariant: the balance equals the sum of its entries, never negative, and
/// the purchase total equals the sum of the document credits' grants (all but the report's).
async fn assert_ledger_consistent(app: &TestApp, user: &str) {
    let key = user_key(app, user);
    let now = app.state.clock.now().unix_timestamp();
    let balance = app.state.store.ledger_balance(&key, now).await.unwrap();
    let entries = app.state.store.ledger_entries(&key).await.unwrap();
    assert!(balance.balance >= 0, "negative balance {balance:?}");
    assert_eq!(
        balance.balance,
        entries.iter().map(|e| e.amount).sum::<i64>(),
        "{balance:?} {entries:?}"
    );
    let granted: i64 = entries
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::Grant) && e.reason != "report")
        .map(|e| e.amount)
        .sum();
    assert_eq!(balance.total_purchased, granted, "{entries:?}");
}

async fn balance_of(app: &TestApp, key: &str, user: &str) -> Value {
    json_of(
        app.send_as(
            key,
            Method::GET,
            &format!("/v1/credits/balance?external_user_id={user}"),
            None,
        )
        .await,
    )
    .await
    .1
}

/// `GET /v1/usage`'s report credits of `user`.
async fn report_credits(app: &TestApp, user: &str) -> Value {
    let usage: Value = app
        .get(&format!("/v1/usage?external_user_id={user}"))
        .await
        .json()
        .await
        .expect("JSON");
    usage["report_credits"].clone()
}

async fn wait_balance(app: &TestApp, user: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let b = balance_of(app, &app.api_key, user).await;
        if done(&b) {
            return b;
        }
        assert!(Instant::now() < deadline, "gave up waiting; last: {b}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn pay(app: &TestApp, checkout_url: &str) {
    let paid = app
        .http
        .post(checkout_url)
        .form(&[("card_number", "4242 4242 4242 4242")])
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 303);
}

async fn access(app: &TestApp, user: &str, ids: &[&str]) -> (u16, Value) {
    json_of(
        app.send(
            Method::POST,
            "/v1/credits/access",
            Some(json!({"external_user_id": user, "analysis_ids": ids})),
        )
        .await,
    )
    .await
}

/// Every event the emulator sent, delivered again, twice, newest first; then once more after
/// the webhook's dedupe records are lost, so only the ledger's grant markers stand guard.
async fn redeliver_everything(app: &TestApp) {
    deliver_all(app).await;
    assert!(app.forget_idempotency_records("evt#").await > 0);
    deliver_all(app).await;
}

async fn deliver_all(app: &TestApp) {
    let events = app.stripe_events().await;
    assert!(!events.is_empty());
    for event in events.iter().chain(events.iter().rev()) {
        assert_eq!(app.deliver_event(event).await.status(), 200);
    }
}

#[tokio::test]
async fn buy_a_pack_spend_it_and_see_the_history() {
    let app = TestApp::spawn(local::router).await;
    let body = json!({"external_user_id": "user_123", "pack_type": "medium", "success_url": "https://yourapp.com/billing/success",
                      "cancel_url": "https://yourapp.com/billing/cancel", "customer_email": "user@example.com"});
    let (status, purchase) = json_of(
        app.send(Method::POST, "/v1/credits/purchase", Some(body))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{purchase}");
    assert_eq!(
        (
            purchase["external_user_id"].as_str(),
            purchase["pack_type"].as_str()
        ),
        (Some("user_123"), Some("medium"))
    );
    assert_eq!(
        (
            purchase["credits"].as_i64(),
            purchase["price_cents"].as_i64()
        ),
        (Some(5), Some(1999))
    );
    let (_, history) = json_of(
        app.send(
            Method::GET,
            "/v1/credits/history?external_user_id=user_123",
            None,
        )
        .await,
    )
    .await;
    assert_eq!(history["purchases"][0]["status"], "pending");
    assert_eq!(
        history["total_purchased"], 0,
        "pending purchases do not count"
    );

    pay(&app, purchase["checkout_url"].as_str().unwrap()).await;
    let b = wait_balance(&app, "user_123", |b| b["balance"] == 5).await;
    assert_eq!(
        b,
        json!({"external_user_id": "user_123", "balance": 5, "has_unlimited": false, "total_purchased": 5, "total_spent": 0})
    );
    assert_ledger_consistent(&app, "user_123").await;

    let (status, a) = access(&app, "user_123", &["ana_abc123", "ana_def456"]).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(
        a,
        json!({"external_user_id": "user_123", "accessible_documents": ["ana_abc123", "ana_def456"],
                         "credits_spent": 2, "remaining_balance": 3, "has_unlimited": false})
    );
    let (_, again) = access(&app, "user_123", &["ana_abc123", "ana_def456"]).await;
    assert_eq!(
        (
            again["credits_spent"].as_i64(),
            again["remaining_balance"].as_i64()
        ),
        (Some(0), Some(3))
    );
    assert_ledger_consistent(&app, "user_123").await;

    let (status, short) = access(&app, "user_123", &["n1", "n2", "n3", "n4"]).await;
    assert_eq!(status, 402, "{short}");
    assert_eq!(short["error"], "payment_required");
    assert_eq!(short["message"], "Need 4 credits to access 4 documents");
    assert_eq!(
        (
            short["credits_required"].as_i64(),
            short["credits_available"].as_i64(),
            short["credits_needed"].as_i64()
        ),
        (Some(4), Some(3), Some(1))
    );
    assert_eq!(short["can_unlock"], false);
    assert_eq!(short["purchase_options"].as_array().unwrap().len(), 3);
    assert_eq!(
        short["purchase_options"][1]["per_credit_display"],
        "$3.99/credit"
    );
    assert_eq!(
        short["subscription_option"],
        json!({"tier": "pro", "name": "Pro Subscription", "price_display": "$99/month", "description": "Unlimited document analyses"})
    );
    let b = balance_of(&app, &app.api_key, "user_123").await;
    assert_eq!(
        (b["balance"].as_i64(), b["total_spent"].as_i64()),
        (Some(3), Some(2)),
        "all or nothing"
    );

    let (_, history) = json_of(
        app.send(
            Method::GET,
            "/v1/credits/history?external_user_id=user_123",
            None,
        )
        .await,
    )
    .await;
    assert_eq!(history["external_user_id"], "user_123");
    let p = &history["purchases"][0];
    assert_eq!(
        (
            p["pack_type"].as_str(),
            p["credits"].as_i64(),
            p["price_cents"].as_i64(),
            p["status"].as_str()
        ),
        (Some("medium"), Some(5), Some(1999), Some("completed"))
    );
    assert!(p["id"].as_str().unwrap().starts_with("cp_"));
    assert!(
        p["created_at"].as_str().is_some_and(|t| t.ends_with('Z'))
            && p["completed_at"].as_str().is_some_and(|t| t.ends_with('Z'))
    );
    assert_eq!(
        (
            history["total_purchased"].as_i64(),
            history["total_spent_cents"].as_i64()
        ),
        (Some(5), Some(1999))
    );

    // Every event again, twice, newest first: no second grant.
    let entries_before = app
        .state
        .store
        .ledger_entries(&user_key(&app, "user_123"))
        .await
        .unwrap()
        .len();
    redeliver_everything(&app).await;
    let b = balance_of(&app, &app.api_key, "user_123").await;
    assert_eq!(
        (b["balance"].as_i64(), b["total_purchased"].as_i64()),
        (Some(3), Some(5))
    );
    assert_eq!(
        app.state
            .store
            .ledger_entries(&user_key(&app, "user_123"))
            .await
            .unwrap()
            .len(),
        entries_before
    );
    assert_ledger_consistent(&app, "user_123").await;

    // Another account sees nothing of this end user.
    let other = app
        .issue_key("acct_other", shared::config::Stage::Test)
        .await;
    let b = balance_of(&app, &other, "user_123").await;
    assert_eq!(
        (b["balance"].as_i64(), b["total_purchased"].as_i64()),
        (Some(0), Some(0))
    );
    let (_, h) = json_of(
        app.send_as(
            &other,
            Method::GET,
            "/v1/credits/history?external_user_id=user_123",
            None,
        )
        .await,
    )
    .await;
    assert_eq!(h["purchases"], json!([]));
}

#[tokio::test]
async fn the_report_credit_lasts_thirty_days() {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let app = TestApp::spawn_with_clock(clock.clone(), local::router).await;
    let body = json!({"success_url": "https://yourapp.com/report/success", "cancel_url": "https://yourapp.com/pricing", "external_user_id": "user_9"});
    let (status, report) = json_of(
        app.send(Method::POST, "/v1/billing/purchase-report", Some(body))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert!(
        report["session_id"]
            .as_str()
            .unwrap()
            .starts_with("cs_test_")
    );
    pay(&app, report["checkout_url"].as_str().unwrap()).await;
    // An analysis credit: listed with its expiry by GET /v1/usage, not in the document
    // balance.
    let deadline = Instant::now() + Duration::from_secs(15);
    while report_credits(&app, "user_9").await[0]["credits"] != 1 {
        assert!(Instant::now() < deadline, "the report credit never came");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let b = balance_of(&app, &app.api_key, "user_9").await;
    assert_eq!(
        (&b["balance"], &b["total_purchased"], &b["total_spent"]),
        (&json!(0), &json!(0), &json!(0)),
        "the balance's totals count document credits: {b}"
    );
    redeliver_everything(&app).await;
    assert_eq!(
        report_credits(&app, "user_9").await,
        json!([{"credits": 1, "expires_at": report_credits(&app, "user_9").await[0]["expires_at"]}]),
        "granted once"
    );

    clock.advance(time::Duration::days(29));
    assert_eq!(report_credits(&app, "user_9").await[0]["credits"], 1);
    clock.advance(time::Duration::days(1) + time::Duration::seconds(1));
    assert_eq!(
        report_credits(&app, "user_9").await,
        json!([]),
        "expired credits never count"
    );
    // Nor pay a document, expired or not.
    let (status, _) = access(&app, "user_9", &["ana_1"]).await;
    assert_eq!(status, 402);
    // The expired credit is written off at most once; until it is, the balance excludes it.
    let entries = app
        .state
        .store
        .ledger_entries(&user_key(&app, "user_9"))
        .await
        .unwrap();
    let expiries: Vec<_> = entries
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::Expiry))
        .collect();
    assert!(
        expiries.len() <= 1 && expiries.iter().all(|e| e.amount == -1),
        "{entries:?}"
    );
    if expiries.len() == 1 {
        assert_ledger_consistent(&app, "user_9").await;
    }
}

#[tokio::test]
async fn concurrent_access_never_overspends() {
    let app = Arc::new(TestApp::spawn(local::router).await);
    let key = user_key(&app, "crowd");
    let now = app.state.clock.now().unix_timestamp();
    let grant = Grant {
        source_id: "cs_test_seed",
        kind: shared::ledger::CreditKind::Document,
        credits: 10,
        reason: "credit_pack",
        expires_at: None,
        purchase_sk: None,
    };
    app.state
        .store
        .ledger_grant(&key, &grant, now)
        .await
        .unwrap();

    // 200 requests for 200 distinct documents against 10 credits: exactly 10 succeed.
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move { access(&app, "crowd", &[&format!("doc_{i}")]).await.0 })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 402).count(),
        190,
        "{statuses:?}"
    );
    let b = balance_of(&app, &app.api_key, "crowd").await;
    assert_eq!(
        (b["balance"].as_i64(), b["total_spent"].as_i64()),
        (Some(0), Some(10))
    );
    assert_ledger_consistent(&app, "crowd").await;

    // 200 requests for the same new document: one credit spent.
    let grant = Grant {
        source_id: "cs_test_seed_2",
        kind: shared::ledger::CreditKind::Document,
        credits: 10,
        reason: "credit_pack",
        expires_at: None,
        purchase_sk: None,
    };
    app.state
        .store
        .ledger_grant(&key, &grant, now)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { access(&app, "crowd", &["the_same_doc"]).await })
        })
        .collect();
    let mut spent = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        spent += body["credits_spent"].as_i64().unwrap();
    }
    assert_eq!(spent, 1);
    assert_eq!(balance_of(&app, &app.api_key, "crowd").await["balance"], 9);
    assert_ledger_consistent(&app, "crowd").await;
}

#[tokio::test]
async fn subscribers_read_for_free_and_bad_input_is_400() {
    let app = TestApp::spawn(local::router).await;
    let body = json!({"tier": "pro", "success_url": "https://a.example/ok", "cancel_url": "https://a.example/no", "external_user_id": "vip"});
    let (_, checkout) = json_of(
        app.send(Method::POST, "/v1/billing/checkout", Some(body))
            .await,
    )
    .await;
    pay(&app, checkout["checkout_url"].as_str().unwrap()).await;
    let b = wait_balance(&app, "vip", |b| b["has_unlimited"] == true).await;
    assert_eq!(b["balance"], 0);
    let (status, a) = access(&app, "vip", &["d1", "d2", "d3"]).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(
        (a["credits_spent"].as_i64(), a["has_unlimited"].as_bool()),
        (Some(0), Some(true))
    );

    let bad = [
        (json!({"analysis_ids": ["d1"]}), None, "external_user_id"),
        (
            json!({"external_user_id": "vip", "analysis_ids": []}),
            None,
            "analysis_ids",
        ),
        (
            json!({"external_user_id": "vip", "analysis_ids": (0..51).map(|i| format!("d{i}")).collect::<Vec<_>>()}),
            None,
            "analysis_ids",
        ),
        (
            json!({"external_user_id": "vip", "analysis_ids": ["d1"]}),
            Some("someone_else"),
            "X-External-User-ID",
        ),
    ];
    for (body, header, field) in bad {
        let mut r = app
            .http
            .post(app.url("/v1/credits/access"))
            .bearer_auth(&app.api_key)
            .json(&body);
        if let Some(h) = header {
            r = r.header("x-external-user-id", h);
        }
        let (status, e) = json_of(r.send().await.unwrap()).await;
        assert_eq!(
            (status, e["error"]["field"].as_str()),
            (400, Some(field)),
            "{body}: {e}"
        );
    }
    // The header alone names the user.
    let r = app
        .http
        .post(app.url("/v1/credits/access"))
        .bearer_auth(&app.api_key)
        .header("x-external-user-id", "vip")
        .json(&json!({"analysis_ids": ["d9"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for (q, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("offset=-1", "offset"),
        ("limit=x", "limit"),
    ] {
        let (status, e) = json_of(
            app.send(
                Method::GET,
                &format!("/v1/credits/history?external_user_id=vip&{q}"),
                None,
            )
            .await,
        )
        .await;
        assert_eq!(
            (status, e["error"]["field"].as_str()),
            (400, Some(field)),
            "{q}: {e}"
        );
    }
    let (status, e) = json_of(app.send(Method::GET, "/v1/credits/balance", None).await).await;
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (400, Some("external_user_id"))
    );
    let (status, e) = json_of(app.send(Method::POST, "/v1/credits/purchase", Some(json!({"external_user_id": "vip", "pack_type": "huge", "success_url": "https://a.example/", "cancel_url": "https://a.example/"}))).await).await;
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (400, Some("pack_type"))
    );
}

#[tokio::test]
async fn a_retried_purchase_records_one_purchase_and_one_session() {
    let app = TestApp::spawn(local::router).await;
    let body = json!({"external_user_id": "u_retry", "pack_type": "single", "success_url": "https://a.example/ok", "cancel_url": "https://a.example/no"});
    let post = || {
        let request = app
            .http
            .post(app.url("/v1/credits/purchase"))
            .bearer_auth(&app.api_key)
            .header("idempotency-key", "buy-7")
            .json(&body);
        async move { json_of(request.send().await.unwrap()).await }
    };
    let (status, first) = post().await;
    assert_eq!(status, 200, "{first}");
    // As if the first answer was lost with its idempotency record: the request runs again,
    // Stripe answers the same session, and the same purchase is recorded once.
    assert!(app.forget_idempotency_records("").await > 0);
    let (status, again) = post().await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["session_id"], first["session_id"]);
    let (_, history) = json_of(
        app.send(
            Method::GET,
            "/v1/credits/history?external_user_id=u_retry",
            None,
        )
        .await,
    )
    .await;
    assert_eq!(
        history["purchases"].as_array().unwrap().len(),
        1,
        "{history}"
    );
}

#[tokio::test]
async fn a_delayed_payment_grants_when_it_succeeds() {
    let app = TestApp::spawn(local::router).await;
    let body = json!({"external_user_id": "u_bank", "pack_type": "pro", "success_url": "https://a.example/ok", "cancel_url": "https://a.example/no"});
    let (_, purchase) = json_of(
        app.send(Method::POST, "/v1/credits/purchase", Some(body))
            .await,
    )
    .await;
    let session_id = purchase["session_id"].as_str().unwrap();
    // The session as Stripe has it, settled later by a bank debit.
    let mut session: Value = app
        .http
        .get(format!(
            "{}/v1/checkout/sessions/{session_id}",
            app.stripe.base_url()
        ))
        .bearer_auth("sk_test_local")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    session["status"] = json!("complete");
    session["payment_status"] = json!("paid");
    let event = json!({"id": "evt_async_paid", "object": "event", "api_version": "2026-09-30.endive", "created": session["created"],
        "data": {"object": session}, "livemode": false, "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null}, "type": "checkout.session.async_payment_succeeded"});
    let r = app.deliver_event(&event).await;
    assert_eq!(r.status(), 200);
    let b = balance_of(&app, &app.api_key, "u_bank").await;
    assert_eq!(
        (b["balance"].as_i64(), b["total_purchased"].as_i64()),
        (Some(10), Some(10)),
        "{b}"
    );
    let (_, history) = json_of(
        app.send(
            Method::GET,
            "/v1/credits/history?external_user_id=u_bank",
            None,
        )
        .await,
    )
    .await;
    assert_eq!(history["purchases"][0]["status"], "completed", "{history}");
    assert_ledger_consistent(&app, "u_bank").await;
}
