use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init();
    let hours = reconciler::since_hours(std::env::var("RECONCILE_SINCE_HOURS").ok().as_deref())?;
    let (state, prices) = shared::AppState::from_env(shared::state::StripeUse::Calls).await?;
    // It sells nothing: no Stripe call, resolved at once.
    prices.await?;
    lambda_runtime::run(service_fn(|_: LambdaEvent<serde_json::Value>| {
        let state = state.clone();
        async move {
            reconciler::handle(&state, hours)
                .await
                .map_err(|e| e.to_string())
        }
    }))
    .await
}
