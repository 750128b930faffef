use devkit::TestApp;
use serde_json::{Value, json};

#[tokio::test]
async fn tiers_are_the_specs_exactly() {
    let app = TestApp::spawn(billing::router).await;
    let response = app.get("/v1/billing/tiers").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "JSON content type"
    );
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    // The ids Stripe (here the emulator) gave the prices holding the tiers' lookup keys.
    let (pro, enterprise) = stripe_ids(&app).await;
    let expected = json!({
      "tiers": [
        {
          "id": "free", "name": "Free Trial", "price": 0, "currency": "USD", "interval": "month",
          "features": ["1 analysis per month", "50 chat messages", "Basic support"],
          "analyses_limit": 1
        },
        {
          "id": "pro", "name": "Pro", "price": 99, "currency": "USD", "interval": "month",
          "features": ["100 analyses per month", "Unlimited chat messages", "Priority support",
                       "White-label widget", "Advanced cost estimates"],
          "analyses_limit": 100,
          "stripe_price_id": pro
        },
        {
          "id": "enterprise", "name": "Enterprise", "price": 999, "currency": "USD", "interval": "month",
          "features": ["Unlimited analyses", "Unlimited chat messages", "Dedicated support",
                       "Custom integrations", "SLA guarantee", "On-premise deployment option"],
          "analyses_limit": null,
          "stripe_price_id": enterprise
        }
      ]
    });
    assert_eq!(body, expected);
    // Key order is part of what a reader sees: the spec lists id first and the price id last.
    assert!(
        text.starts_with(r#"{"tiers":[{"id":"free","name":"Free Trial","price":0,"#),
        "{text}"
    );
    assert!(
        text.ends_with(&format!(
            r#""analyses_limit":null,"stripe_price_id":"{enterprise}"}}]}}"#
        )),
        "{text}"
    );
}

/// The ids of the prices holding the paid tiers' lookup keys, read from Stripe directly.
async fn stripe_ids(app: &TestApp) -> (String, String) {
    let (status, list) = app
        .stripe_call(
            reqwest::Method::GET,
            "/v1/prices?lookup_keys[]=billing_pro_monthly&lookup_keys[]=billing_enterprise_monthly",
            &[],
        )
        .await;
    assert_eq!(status, 200, "{list}");
    let id_of = |key: &str| {
        list["data"]
            .as_array()
            .and_then(|d| d.iter().find(|p| p["lookup_key"] == key))
            .and_then(|p| p["id"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no price holds {key}: {list}"))
    };
    (
        id_of("billing_pro_monthly"),
        id_of("billing_enterprise_monthly"),
    )
}

#[tokio::test]
async fn responses_carry_a_request_id() {
    let app = TestApp::spawn(billing::router).await;
    let a = app.get("/v1/billing/tiers").await;
    let b = app.get("/v1/billing/tiers").await;
    let id = |r: &reqwest::Response| {
        r.headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_string())
    };
    assert!(id(&a).is_some_and(|v| !v.is_empty()));
    assert_ne!(id(&a), id(&b));
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_format() {
    let app = TestApp::spawn(billing::router).await;
    let missing = app.get("/v1/billing/nope").await;
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");

    let wrong_method = app
        .http
        .delete(app.url("/v1/billing/tiers"))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(
        wrong_method
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap()),
        Some("GET,HEAD")
    );
    let body: Value = wrong_method.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
}
