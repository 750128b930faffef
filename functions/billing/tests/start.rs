//! The deployed start of this crate's bootstrap, exec'd as the Lambda service does against
//! the Lambda Runtime API (`cargo lambda watch`, as `make bench` runs it), with a local engine
//! and the Stripe emulator: a price the Stripe account lacks ends the start before any
//! answer, naming its lookup key (the event it had received is never answered: in AWS its
//! caller gets API Gateway's 502), and once the sync has run the next start serves.

use devkit::runtime_api::{self, RuntimeApi};
use shared::catalog::Tier;
use std::process::Stdio;
use std::time::Duration;

/// The bootstrap, started with Lambda's environment against `api` and `app`'s stack.
fn bootstrap(api: &RuntimeApi, app: &devkit::TestApp) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_billing"));
    command
        .env_clear()
        .envs(runtime_api::environment(
            "billing",
            &api.runtime_api(),
            &app.engine.endpoint,
            app.stripe.base_url(),
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn a_start_without_its_price_ends_before_any_answer_and_starts_once_the_sync_has_run() {
    let app = devkit::TestApp::spawn(billing::router).await;
    let prices = app.state.prices.get().await.expect("the app's prices");
    // The report's price loses its lookup key, as in an account the sync never ran on.
    let report = prices.id("billing_report_single").expect("a report price");
    let (status, price) = app
        .stripe_call(
            reqwest::Method::POST,
            &format!("/v1/prices/{report}"),
            &[("lookup_key", "")],
        )
        .await;
    assert_eq!(status, 200, "{price}");

    let root = runtime_api::workspace_root();
    let logs = tempfile::tempdir().expect("a directory");
    let api = RuntimeApi::start(
        &runtime_api::cargo_lambda(&root),
        &root,
        &logs.path().join("watch.log"),
    )
    .await
    .expect("the Runtime API");
    let event = |name: &str| {
        let path = root.join("events").join(name);
        let mut event: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("the event")).expect("JSON");
        event["headers"]["authorization"] = format!("Bearer {}", app.api_key).into();
        event.to_string()
    };
    let invoke = |event: String| {
        tokio::spawn(
            reqwest::Client::new()
                .post(api.invoke_url())
                .body(event)
                .send(),
        )
    };
    // The OpenAPI document: an answer that needs neither a price nor a call, so it would be
    // ready long before the prices' resolution fails, did the answer not wait for it.
    let first = invoke(event("billing-openapi.json"));
    tokio::time::sleep(Duration::from_millis(100)).await;

    let failed = tokio::time::timeout(
        Duration::from_secs(30),
        bootstrap(&api, &app)
            .spawn()
            .expect("the bootstrap")
            .wait_with_output(),
    )
    .await
    .expect("the start ended")
    .expect("its output");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert!(!failed.status.success(), "{stdout}\n{stderr}");
    let logged = format!("{stdout}{stderr}");
    assert!(logged.contains("`billing_report_single`"), "{logged}");
    assert!(logged.contains("admin stripe-sync"), "{logged}");
    assert!(!logged.contains("billing_pro_monthly"), "{logged}");
    assert!(!first.is_finished(), "the event was answered");
    first.abort();

    // The sync puts the key back; the next start serves.
    let stripe =
        shared::stripe::StripeApi::new(app.stripe.base_url(), shared::secrets::LOCAL_SECRET_KEY)
            .expect("a Stripe client");
    shared::stripe::prices::sync(&stripe, &shared::catalog::sellables(), false)
        .await
        .expect("the sync");
    let second = invoke(event("billing-tiers.json"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _serving = bootstrap(&api, &app).spawn().expect("the bootstrap");
    let answer = tokio::time::timeout(Duration::from_secs(30), second)
        .await
        .expect("answered")
        .expect("the invoke")
        .expect("a response")
        .text()
        .await
        .expect("its body");
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let pro = prices.tier(Tier::Pro).expect("a pro price");
    assert!(
        answer["body"].as_str().is_some_and(|b| b.contains(pro)),
        "{answer}"
    );
    api.stop().await;
}
