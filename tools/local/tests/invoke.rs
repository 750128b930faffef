//! `invoke` runs every event in events/ through its function, as `sam local invoke` would.

use serde_json::Value;
use std::path::PathBuf;

fn events() -> Vec<(PathBuf, Value)> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../events"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let v = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (p, v)
        })
        .collect()
}

/// The function that serves an event's route.
fn function_of(event: &Value) -> &'static str {
    let route_key = event["routeKey"].as_str().expect("routeKey");
    local::FUNCTIONS
        .iter()
        .find(|f| {
            (f.api)()
                .routes()
                .iter()
                .any(|r| format!("{} {}", r.method, r.path) == route_key)
        })
        .unwrap_or_else(|| panic!("no function serves {route_key}"))
        .name
}

#[test]
fn there_is_an_event_for_every_route() {
    let keys: std::collections::BTreeSet<String> = events()
        .iter()
        .map(|(_, e)| e["routeKey"].as_str().unwrap().to_string())
        .collect();
    let routes: std::collections::BTreeSet<String> = local::api()
        .routes()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(keys, routes);
}

/// What each event answers for a fresh development account (files run in name order, so
/// `billing-checkout` has created the customer `billing-portal` needs). The id-bearing
/// events name a subscription the account does not have: 404 in the spec's format; the
/// end user has no credits yet: access is the spec's 402.
const EXPECTED: &[(&str, u16)] = &[
    ("billing-checkout", 200),
    ("billing-openapi", 200),
    ("billing-portal", 200),
    ("billing-purchase-report", 200),
    ("billing-tiers", 200),
    ("credits-access", 402),
    ("credits-balance", 200),
    ("credits-history", 200),
    ("credits-packs", 200),
    ("credits-purchase", 200),
    ("stripe-webhook", 200),
    ("subscriptions-cancel", 404),
    ("subscriptions-create", 404),
    ("subscriptions-reactivate", 404),
    ("subscriptions-status", 404),
    ("subscriptions-upgrade", 404),
    ("usage-analyses", 200),
    ("usage-chat-messages", 200),
    ("usage-status", 200),
];

#[tokio::test]
async fn every_event_answers_through_lambda_http() {
    let app = devkit::TestApp::spawn(local::router).await;
    let dir = tempfile::tempdir().unwrap();
    let key = local::devkey::ensure(&app.state.store, app.state.clock.as_ref(), dir.path())
        .await
        .unwrap();
    let names: Vec<String> = events()
        .iter()
        .map(|(p, _)| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let expected: Vec<String> = EXPECTED.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(names, expected, "every event has an expectation");
    for ((path, event), (_, status)) in events().into_iter().zip(EXPECTED) {
        let text = serde_json::to_string(&event).unwrap();
        let response =
            local::invoke::invoke(function_of(&event), &text, app.state.clone(), key.expose())
                .await
                .unwrap();
        assert_eq!(
            response["statusCode"],
            *status,
            "{}: {response}",
            path.display()
        );
        let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
        if *status == 402 {
            assert_eq!(
                body["error"],
                "payment_required",
                "{}: {body}",
                path.display()
            );
        } else if *status >= 400 {
            assert!(
                body["error"]["code"].is_string() && body["error"]["message"].is_string(),
                "{}: {body}",
                path.display()
            );
        } else {
            assert!(body.is_object() || body.is_array());
        }
        // The request id is Lambda's, so logs, API Gateway and the caller agree.
        assert!(
            response["headers"]["x-request-id"]
                .as_str()
                .unwrap()
                .starts_with("invoke-"),
            "{response}"
        );
    }
}

#[tokio::test]
async fn invoke_refuses_an_unknown_function_and_a_non_event() {
    let engine = devkit::Engine::memory().await.unwrap();
    let (state, _stripe) = devkit::state_with_emulator(engine.client()).await.unwrap();
    let err = local::invoke::invoke("nope", "{}", state.clone(), "k")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("billing"), "{err}");
    assert!(
        local::invoke::invoke("billing", "{\"x\":1}", state, "k")
            .await
            .is_err()
    );
}

#[test]
fn the_cli_prints_an_api_gateway_response() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: invoke embeds the engine over the directory's database.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let event = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../events/billing-tiers.json"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_local"))
        .args([
            "--dir",
            dir.path().to_str().unwrap(),
            "--dynamodb-port",
            &free.to_string(),
            "invoke",
            "billing",
            event,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let response: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(response["statusCode"], 200);
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["tiers"][0]["id"], "free");
    assert!(dir.path().join("api-key").exists());
}
