//! The local stack as `make dev` runs it: state on disk, the dev key written once and
//! reused, the engine reachable by any DynamoDB client, the Stripe emulator delivering its
//! webhooks to the API.

use local::serve::{ServeOptions, Stack};

/// The local stack on random ports, with a fast webhook retry schedule.
fn options(dir: &std::path::Path) -> ServeOptions {
    ServeOptions {
        webhook_retry_base: std::time::Duration::from_millis(20),
        webhook_max_attempts: 3,
        ..ServeOptions::local(dir.to_path_buf(), 0, 0, 0)
    }
}

#[tokio::test]
async fn serves_the_api_and_keeps_its_key_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();

    let stack = Stack::start(&options(dir.path())).await.unwrap();
    let key_file = std::fs::read_to_string(dir.path().join("api-key")).unwrap();
    assert_eq!(key_file.lines().count(), 1);
    assert_eq!(key_file.trim(), stack.api_key.expose());
    let tiers = http
        .get(format!("{}/v1/billing/tiers", stack.api_url))
        .bearer_auth(key_file.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(tiers.status(), 200);
    let packs = http
        .get(format!("{}/v1/credits/packs", stack.api_url))
        .bearer_auth(key_file.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(packs.status(), 200);

    // Any DynamoDB client can look inside.
    let tables = shared::store::local_client(&stack.dynamodb_endpoint)
        .list_tables()
        .send()
        .await
        .unwrap();
    assert_eq!(tables.table_names().len(), shared::tables::TABLES.len());
    stack.stop().await.unwrap();

    let again = Stack::start(&options(dir.path())).await.unwrap();
    assert_eq!(again.api_key.expose(), key_file.trim(), "the key is reused");
    let tiers = http
        .get(format!("{}/v1/billing/tiers", again.api_url))
        .bearer_auth(key_file.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(tiers.status(), 200, "the data survived the restart");
    again.stop().await.unwrap();
}

#[tokio::test]
async fn a_lost_database_gets_a_fresh_key() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::start(&options(dir.path())).await.unwrap();
    let first = stack.api_key.expose().to_string();
    stack.stop().await.unwrap();
    std::fs::remove_file(dir.path().join(local::serve::DB_FILE)).unwrap();
    let stack = Stack::start(&options(dir.path())).await.unwrap();
    assert_ne!(stack.api_key.expose(), first);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("api-key"))
            .unwrap()
            .trim(),
        stack.api_key.expose()
    );
    stack.stop().await.unwrap();
}

#[tokio::test]
async fn the_emulator_delivers_signed_webhooks_that_the_api_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::start(&options(dir.path())).await.unwrap();
    let http = reqwest::Client::new();

    let customer: serde_json::Value = http
        .post(format!("{}/v1/customers", stack.stripe.base_url()))
        .bearer_auth("sk_test_local")
        .form(&[("email", "dev@example.com")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        customer["id"].as_str().unwrap().starts_with("cus_"),
        "{customer}"
    );

    // The API's webhook route verifies the emulator's signature and acknowledges at once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let attempts = loop {
        let attempts: Vec<_> = stack
            .stripe
            .deliveries()
            .into_iter()
            .filter(|d| d.event_type == "customer.created")
            .collect();
        if !attempts.is_empty() || std::time::Instant::now() > deadline {
            break attempts;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(
        attempts[0].url,
        format!("{}{}", stack.api_url, local::serve::WEBHOOK_PATH)
    );
    assert_eq!(attempts[0].status_code, Some(200));
    assert!(attempts[0].succeeded);
    stack.stop().await.unwrap();
}

#[tokio::test]
async fn serves_the_committed_openapi_document_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::start(&options(dir.path())).await.unwrap();
    let response = reqwest::get(format!("{}/v1/openapi.json", stack.api_url))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "{:?}",
        response.headers()
    );
    let served = response.text().await.unwrap();
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.json"))
            .unwrap();
    assert!(
        served == committed,
        "the served document is the committed file"
    );
    let doc: serde_json::Value = serde_json::from_str(&served).unwrap();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "{}",
        doc["openapi"]
    );
    assert!(doc["paths"]["/v1/openapi.json"]["get"].is_object());
    stack.stop().await.unwrap();
}
