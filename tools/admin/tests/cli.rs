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

/// `admin reconcile` against a running stack: a paid credit purchase whose webhook was lost
/// shows in the dry run's table and is granted by the real run; the next run finds nothing.
#[tokio::test]
async fn reconcile_reports_then_heals_a_lost_payment() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::start(&ServeOptions::local(dir.path().into(), 0, 0, 0))
        .await
        .unwrap();
    let stripe = stack.stripe.base_url().to_string();
    // Checkout redirects to the (https) success URL: stay on the page's answer.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Every webhook endpoint off: the payment's events are never delivered.
    let endpoints: serde_json::Value = http
        .get(format!("{stripe}/v1/webhook_endpoints"))
        .bearer_auth("sk_test_local")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for e in endpoints["data"].as_array().unwrap() {
        let id = e["id"].as_str().unwrap();
        http.post(format!("{stripe}/v1/webhook_endpoints/{id}"))
            .bearer_auth("sk_test_local")
            .form(&[("disabled", "true")])
            .send()
            .await
            .unwrap();
    }
    let bought: serde_json::Value = http
        .post(format!("{}/v1/credits/purchase", stack.api_url))
        .bearer_auth(stack.api_key.expose())
        .json(
            &serde_json::json!({"external_user_id": "u1", "pack_type": "medium",
            "success_url": "https://yourapp.com/ok", "cancel_url": "https://yourapp.com/no"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paid = http
        .post(bought["checkout_url"].as_str().unwrap())
        .form(&[("card_number", "4242 4242 4242 4242")])
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 303);

    let reconcile = |args: &'static [&'static str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_admin"));
        command
            .arg("--endpoint-url")
            .arg(&stack.dynamodb_endpoint)
            .arg("reconcile")
            .args(args)
            .env("STRIPE_API_BASE", &stripe)
            .env_remove("STRIPE_SECRET_ID");
        async move {
            tokio::task::spawn_blocking(move || command.output().expect("admin runs"))
                .await
                .unwrap()
        }
    };
    let dry = stdout(&reconcile(&["--dry-run", "--since", "1h"]).await);
    assert!(dry.starts_with("KIND"), "{dry}");
    assert!(dry.contains("ungranted_session"), "{dry}");
    assert!(dry.contains("none (dry run)"), "{dry}");
    let fixed = stdout(&reconcile(&["--since", "1h"]).await);
    assert!(
        fixed.contains("ungranted_session") && fixed.contains("granted"),
        "{fixed}"
    );
    let clean = stdout(&reconcile(&[]).await);
    assert!(clean.starts_with("No drift:"), "{clean}");
    let refused = reconcile(&["--since", "2x"]).await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("30d, 72h, 90m"));
}

/// `admin stripe-sync` against an empty Stripe account (the emulator unseeded, as a new
/// account is): the dry run changes nothing, the first run creates the catalog and
/// configures the portal, the second run reports no change and the same prices.
#[tokio::test]
async fn stripe_sync_creates_the_catalog_once() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let emulator = stripe_emulator::start(
        listener,
        stripe_emulator::EmulatorOptions {
            seed_catalog: false,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let base = emulator.base_url().to_string();
    let sync = |args: &'static [&'static str]| {
        let base = base.clone();
        async move {
            let mut command = Command::new(env!("CARGO_BIN_EXE_admin"));
            command
                .arg("stripe-sync")
                .args(args)
                .env("STRIPE_API_BASE", base)
                .env("STAGE", "test")
                .env_remove("STRIPE_SECRET_ID");
            tokio::task::spawn_blocking(move || command.output().expect("admin runs"))
                .await
                .unwrap()
        }
    };
    let items = shared::catalog::sellables().len();

    let dry = stdout(&sync(&["--dry-run"]).await);
    assert_eq!(dry.matches("would create product").count(), items, "{dry}");
    assert_eq!(dry.matches("would create price").count(), items, "{dry}");
    let again = stdout(&sync(&["--dry-run"]).await);
    assert_eq!(
        again.matches("would create price").count(),
        items,
        "{again}"
    );

    let first = stdout(&sync(&[]).await);
    assert_eq!(
        first.matches("did create product").count(),
        items,
        "{first}"
    );
    assert_eq!(first.matches("did create price").count(), items, "{first}");
    assert!(
        first.contains("did update Customer Portal configuration bpc_emulator_default"),
        "{first}"
    );
    let second = stdout(&sync(&[]).await);
    assert!(second.starts_with("No change"), "{second}");
    assert!(!second.contains("did "), "{second}");
    // The same price for every key, both times.
    let table = |out: &str| out[out.find("LOOKUP KEY").unwrap()..].to_string();
    assert_eq!(table(&first), table(&second));
    for key in shared::catalog::lookup_keys() {
        assert!(second.contains(key), "{second}");
    }
}
