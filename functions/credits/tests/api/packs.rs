use devkit::TestApp;
use serde_json::{Value, json};

#[tokio::test]
async fn packs_are_a_bare_array_as_in_the_spec() {
    let app = TestApp::spawn(credits::router).await;
    let response = app.get("/v1/credits/packs").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!([
          {"pack_type": "single", "name": "Single Analysis", "credits": 1, "price_cents": 499,
           "price_display": "$4.99", "per_credit_display": "$4.99/credit"},
          {"pack_type": "medium", "name": "5 Credits Pack", "credits": 5, "price_cents": 1999,
           "price_display": "$19.99", "per_credit_display": "$3.99/credit"},
          {"pack_type": "pro", "name": "10 Credits Pack", "credits": 10, "price_cents": 2999,
           "price_display": "$29.99", "per_credit_display": "$2.99/credit"}
        ])
    );
}

#[tokio::test]
async fn packs_need_a_key() {
    let app = TestApp::spawn(credits::router).await;
    let response = app.get_with("/v1/credits/packs", None).await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "missing_api_key");
}
