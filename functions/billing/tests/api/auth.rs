//! API-key authentication as a caller meets it.

use devkit::TestApp;
use serde_json::Value;
use shared::config::Stage;
use shared::keys::AccountId;

async fn error_of(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (status, code, message)
}

#[tokio::test]
async fn no_key_is_401_missing_api_key() {
    let app = TestApp::spawn(billing::router).await;
    let (status, code, message) = error_of(app.get_with("/v1/billing/tiers", None).await).await;
    assert_eq!((status, code.as_str()), (401, "missing_api_key"));
    assert!(message.contains("Bearer"), "{message}");
}

#[tokio::test]
async fn a_non_bearer_or_malformed_key_is_401_invalid_api_key() {
    let app = TestApp::spawn(billing::router).await;
    let basic = app
        .http
        .get(app.url("/v1/billing/tiers"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(basic).await.1, "invalid_api_key");
    let (status, code, _) =
        error_of(app.get_with("/v1/billing/tiers", Some("sk_test_123")).await).await;
    assert_eq!((status, code.as_str()), (401, "invalid_api_key"));
}

#[tokio::test]
async fn an_unknown_key_is_401() {
    let app = TestApp::spawn(billing::router).await;
    let unknown = shared::keys::ApiKey::generate(Stage::Test);
    let (status, code, message) = error_of(
        app.get_with("/v1/billing/tiers", Some(unknown.expose()))
            .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str(), message.as_str()),
        (401, "invalid_api_key", "Invalid API key.")
    );
}

#[tokio::test]
async fn a_live_key_on_the_test_stage_is_refused_with_the_reason() {
    let app = TestApp::spawn(billing::router).await;
    // A real, stored live key: refused for its mode, not because it is unknown.
    let live = app.issue_key("acct_live", Stage::Live).await;
    let (status, code, message) =
        error_of(app.get_with("/v1/billing/tiers", Some(&live)).await).await;
    assert_eq!((status, code.as_str()), (401, "invalid_api_key"));
    assert!(
        message.contains("live-mode key") && message.contains("test mode"),
        "{message}"
    );
}

#[tokio::test]
async fn a_revoked_key_is_refused() {
    let app = TestApp::spawn(billing::router).await;
    let other = app.issue_key("acct_other", Stage::Test).await;
    let account = AccountId::parse("acct_other").unwrap();
    let prefix = &other[..16];
    shared::keys::revoke(&app.state.store, app.state.clock.as_ref(), &account, prefix)
        .await
        .unwrap();
    let (status, code, message) =
        error_of(app.get_with("/v1/billing/tiers", Some(&other)).await).await;
    assert_eq!((status, code.as_str()), (401, "invalid_api_key"));
    assert!(message.contains("revoked"), "{message}");
}

#[tokio::test]
async fn a_second_accounts_key_works() {
    let app = TestApp::spawn(billing::router).await;
    let other = app.issue_key("acct_second", Stage::Test).await;
    assert_eq!(
        app.get_with("/v1/billing/tiers", Some(&other))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn warm_instances_cache_keys_for_a_short_ttl() {
    let app = TestApp::spawn(billing::router).await;
    let key = app.issue_key("acct_cached", Stage::Test).await;
    let auth =
        shared::auth::Authenticator::with_ttl(Stage::Test, std::time::Duration::from_millis(300));
    let header = format!("Bearer {key}");
    let account = auth
        .authenticate(&app.state.store, Some(&header))
        .await
        .unwrap();
    assert_eq!(account.id.as_str(), "acct_cached");

    // Revoked in the table: the cached record still answers (no read), until the TTL ends.
    let id = AccountId::parse("acct_cached").unwrap();
    shared::keys::revoke(&app.state.store, app.state.clock.as_ref(), &id, &key)
        .await
        .unwrap();
    assert!(
        auth.authenticate(&app.state.store, Some(&header))
            .await
            .is_ok(),
        "served from the cache"
    );
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let refused = auth
        .authenticate(&app.state.store, Some(&header))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "invalid_api_key");
}
