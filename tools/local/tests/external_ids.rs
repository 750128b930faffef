//! End-user ids as identity providers issue them (`auth0|…`, `google-oauth2|…`) work end to
//! end, and no id can reach another subject's items.

use devkit::TestApp;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// `GET path?external_user_id=<user>`, the id encoded as a client's URL library would.
async fn get_for(app: &TestApp, path: &str, user: &str) -> (u16, Value) {
    let url = reqwest::Url::parse_with_params(&app.url(path), &[("external_user_id", user)])
        .expect("a URL");
    let response = app
        .http
        .get(url)
        .bearer_auth(&app.api_key)
        .send()
        .await
        .expect("the app answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let response = app.send(Method::POST, path, Some(body)).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Buys a medium pack (5 credits) for `user` and waits for the grant.
async fn buy_pack(app: &TestApp, user: &str) {
    let (status, purchase) = post(
        app,
        "/v1/credits/purchase",
        json!({"external_user_id": user, "pack_type": "medium",
               "success_url": "https://yourapp.com/ok", "cancel_url": "https://yourapp.com/no"}),
    )
    .await;
    assert_eq!(status, 200, "{purchase}");
    assert_eq!(purchase["external_user_id"], user, "{purchase}");
    app.pay(purchase["checkout_url"].as_str().expect("a checkout url"))
        .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, balance) = get_for(app, "/v1/credits/balance", user).await;
        if balance["balance"] == 5 {
            return;
        }
        assert!(Instant::now() < deadline, "never granted: {balance}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn ids_from_identity_providers_work_end_to_end() {
    let app = TestApp::spawn(local::router).await;
    for user in ["auth0|abc", "google-oauth2|1043"] {
        buy_pack(&app, user).await;
        let (status, access) = post(
            &app,
            "/v1/credits/access",
            json!({"external_user_id": user, "analysis_ids": ["doc_1", "doc_2"]}),
        )
        .await;
        assert_eq!(status, 200, "{access}");
        assert_eq!(
            (
                access["external_user_id"].clone(),
                access["remaining_balance"].clone()
            ),
            (json!(user), json!(3)),
            "{access}"
        );
        let (status, balance) = get_for(&app, "/v1/credits/balance", user).await;
        assert_eq!(status, 200, "{balance}");
        assert_eq!(
            balance,
            json!({"external_user_id": user, "balance": 3, "has_unlimited": false,
                   "total_purchased": 5, "total_spent": 2})
        );
        let (status, history) = get_for(&app, "/v1/credits/history", user).await;
        assert_eq!(status, 200, "{history}");
        assert_eq!(history["external_user_id"], user, "{history}");
        assert_eq!(history["purchases"][0]["status"], "completed", "{history}");
        let (status, usage) = get_for(&app, "/v1/usage", user).await;
        assert_eq!(
            (status, usage["external_user_id"].clone()),
            (200, json!(user))
        );
    }
}

#[tokio::test]
async fn an_id_spelled_like_another_ids_key_is_another_user() {
    let app = TestApp::spawn(local::router).await;
    buy_pack(&app, "auth0|abc").await;
    // `auth0|abc` is stored under `user#auth0%7Cabc`: the user literally named so, or one
    // naming a separator, reaches nothing of it.
    for other in ["auth0%7Cabc", "auth0", "abc", "auth0|abc#", "auth0|abc "] {
        let (status, balance) = get_for(&app, "/v1/credits/balance", other).await;
        assert_eq!(status, 200, "{other}: {balance}");
        assert_eq!(
            (
                balance["balance"].clone(),
                balance["total_purchased"].clone()
            ),
            (json!(0), json!(0)),
            "{other} must not see auth0|abc's credits"
        );
    }
    let (status, refused) = get_for(&app, "/v1/credits/balance", "a\u{7}b").await;
    assert_eq!(status, 400, "a control character: {refused}");
    assert_eq!(refused["error"]["code"], "invalid_request");
}
