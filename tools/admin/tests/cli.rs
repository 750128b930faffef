//! The admin CLI against a running local stack: its keys work, its listing hides secrets,
//! its revocations take.

use local::serve::{ServeOptions, Stack};
use std::process::{Command, Output};

/// Runs the admin binary off the runtime's thread, which must keep serving the engine.
async fn admin(endpoint: &str, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_admin"));
    command.arg("--endpoint-url").arg(endpoint).args(args);
    tokio::task::spawn_blocking(move || command.output().expect("admin runs"))
        .await
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "admin failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[tokio::test]
async fn keys_made_by_admin_work_list_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::start(&ServeOptions::local(dir.path().into(), 0, 0, 0))
        .await
        .unwrap();
    let endpoint = stack.dynamodb_endpoint.clone();
    let http = reqwest::Client::new();
    let tiers = |key: String| {
        let http = http.clone();
        let url = format!("{}/v1/billing/tiers", stack.api_url);
        async move { http.get(url).bearer_auth(key).send().await.unwrap() }
    };

    // The key alone on stdout, so `KEY=$(admin create-key …)` works.
    let created = admin(&endpoint, &["create-key", "--account", "acme"]).await;
    let key = stdout(&created).trim().to_string();
    assert_eq!(stdout(&created).lines().count(), 1);
    assert!(key.starts_with("hi_test_"), "{key}");
    assert!(String::from_utf8_lossy(&created.stderr).contains("acme"));
    assert_eq!(
        tiers(key.clone()).await.status(),
        200,
        "a second account's key works"
    );

    let second = stdout(&admin(&endpoint, &["create-key", "--account", "acme"]).await)
        .trim()
        .to_string();
    let live = stdout(
        &admin(
            &endpoint,
            &["create-key", "--account", "acme", "--mode", "live"],
        )
        .await,
    )
    .trim()
    .to_string();
    assert!(live.starts_with("hi_live_"));
    assert_eq!(
        tiers(live).await.status(),
        401,
        "live keys do not work on the test stage"
    );

    let listing = stdout(&admin(&endpoint, &["list-keys", "--account", "acme"]).await);
    assert_eq!(listing.lines().count(), 4, "{listing}");
    assert!(listing.contains(&key[..16]), "{listing}");
    assert!(
        !listing.contains(&key),
        "the listing never shows a whole key"
    );

    // Revoke the second key by its listed prefix, before any instance has cached it.
    stdout(
        &admin(
            &endpoint,
            &["revoke-key", "--account", "acme", &second[..16]],
        )
        .await,
    );
    let refused = tiers(second).await;
    assert_eq!(refused.status(), 401);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
    assert_eq!(tiers(key).await.status(), 200, "other keys are untouched");

    // Another account's key cannot be revoked through this one.
    let other = stdout(&admin(&endpoint, &["create-key", "--account", "globex"]).await)
        .trim()
        .to_string();
    let wrong = admin(
        &endpoint,
        &["revoke-key", "--account", "acme", &other[..16]],
    )
    .await;
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("no key of account acme"));

    let bad = admin(&endpoint, &["create-key", "--account", "not valid!"]).await;
    assert!(!bad.status.success());
    stack.stop().await.unwrap();
}
