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

#[tokio::test]
async fn every_event_answers_200_through_lambda_http() {
    let engine = devkit::Engine::memory().await.unwrap();
    let state = devkit::local_state(
        engine.client(),
        "http://127.0.0.1:9",
        std::sync::Arc::new(shared::clock::SystemClock),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = local::devkey::ensure(&state.store, state.clock.as_ref(), dir.path())
        .await
        .unwrap();
    for (path, event) in events() {
        let text = serde_json::to_string(&event).unwrap();
        assert!(
            text.contains(local::invoke::KEY_PLACEHOLDER),
            "{} carries the placeholder key",
            path.display()
        );
        let response =
            local::invoke::invoke(function_of(&event), &text, state.clone(), key.expose())
                .await
                .unwrap();
        assert_eq!(
            response["statusCode"],
            200,
            "{}: {response}",
            path.display()
        );
        let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
        assert!(body.is_object() || body.is_array());
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
    let state = devkit::local_state(
        engine.client(),
        "http://127.0.0.1:9",
        std::sync::Arc::new(shared::clock::SystemClock),
    )
    .await
    .unwrap();
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
