//! `invoke`: runs an API Gateway (HTTP API, payload 2.0) event through one function's router
//! with lambda_http's own event parsing and response encoding, and returns the API Gateway
//! response, as `sam local invoke` does.

use anyhow::{Context, bail};
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, LambdaEvent, Service};
use shared::AppState;

/// Events in `events/` carry this instead of a real key; `invoke` puts the dev key there.
pub const KEY_PLACEHOLDER: &str = "hi_test_REPLACED_BY_INVOKE";
/// A `stripe-signature` header with this value is replaced by a valid signature of the
/// event's body, made with the local webhook secret.
pub const SIGNATURE_PLACEHOLDER: &str = "REPLACED_BY_INVOKE";

pub async fn invoke(
    function: &str,
    event_json: &str,
    state: AppState,
    api_key: &str,
) -> anyhow::Result<serde_json::Value> {
    let Some(function) = crate::function(function) else {
        let names: Vec<_> = crate::FUNCTIONS.iter().map(|f| f.name).collect();
        bail!("no function `{function}`; functions: {}", names.join(", "));
    };
    let mut event: serde_json::Value =
        serde_json::from_str(&event_json.replace(KEY_PLACEHOLDER, api_key))
            .context("the event is not JSON")?;
    if event["headers"]["stripe-signature"] == SIGNATURE_PLACEHOLDER {
        let body = event["body"].as_str().unwrap_or_default();
        let now = state.clock.now().unix_timestamp();
        let keys = state
            .stripe_keys
            .as_deref()
            .context("the local state has no Stripe keys to sign the event with")?;
        let signature =
            stripe_webhook::Webhook::generate_test_header(body, &keys.webhook_secret, Some(now));
        event["headers"]["stripe-signature"] = serde_json::Value::String(signature);
    }
    let event_json = event.to_string();
    let request: LambdaRequest =
        serde_json::from_str(&event_json).context("the event is not an API Gateway event")?;
    let mut context = lambda_http::Context::default();
    context.request_id = format!("invoke-{}", ulid::Ulid::generate());
    context.invoked_function_arn = format!(
        "arn:aws:lambda:us-east-1:000000000000:function:{}",
        function.name
    );
    let mut adapter = Adapter::from((function.api)().into_router(state));
    let response = adapter.call(LambdaEvent::new(request, context)).await?;
    Ok(serde_json::to_value(response)?)
}

/// `invoke` from the command line: against the running local stack's engine when one
/// answers on `dynamodb_addr`, otherwise against the same database file, embedded; against
/// its Stripe emulator when one answers, otherwise an embedded one.
pub async fn run(
    function: &str,
    event_json: &str,
    dir: &std::path::Path,
    dynamodb_addr: std::net::SocketAddr,
) -> anyhow::Result<serde_json::Value> {
    let running = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        tokio::net::TcpStream::connect(dynamodb_addr),
    )
    .await
    .is_ok_and(|c| c.is_ok());
    let (client, engine) = if running {
        (
            shared::store::local_client(&format!("http://{dynamodb_addr}")),
            None,
        )
    } else {
        std::fs::create_dir_all(dir)?;
        let engine =
            devkit::Engine::file(&dir.join(crate::serve::DB_FILE), ([127, 0, 0, 1], 0).into())
                .await?;
        (engine.client(), Some(engine))
    };
    // The running stack's Stripe emulator, else one of its own (seeded by the sync, as every
    // local Stripe is): the functions that sell resolve their prices at start.
    let stripe_running = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        tokio::net::TcpStream::connect(crate::serve::STRIPE_API_BASE.trim_start_matches("http://")),
    )
    .await
    .is_ok_and(|c| c.is_ok());
    let stripe = if stripe_running {
        None
    } else {
        Some(
            stripe_emulator::start(
                tokio::net::TcpListener::bind("127.0.0.1:0").await?,
                stripe_emulator::EmulatorOptions::default(),
            )
            .await?,
        )
    };
    let stripe_api_base = stripe
        .as_ref()
        .map_or(crate::serve::STRIPE_API_BASE, |s| s.base_url());
    let state = devkit::local_state(
        client,
        stripe_api_base,
        std::sync::Arc::new(shared::clock::SystemClock),
    )
    .await?;
    let key = crate::devkey::ensure(&state.store, state.clock.as_ref(), dir).await?;
    let response = invoke(function, event_json, state, key.expose()).await;
    if let Some(engine) = engine {
        engine.stop().await?;
    }
    response
}
