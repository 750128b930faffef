//! The Lambda entry point every function's `main` calls.

use crate::state::{AppState, Sells};

/// Initialises logging, builds the state once per cold start and serves `router`'s routes
/// to API Gateway events until the runtime stops.
pub async fn run(
    router: fn(AppState) -> axum::Router,
    sells: Sells,
) -> Result<(), lambda_http::Error> {
    crate::telemetry::init();
    let state = AppState::from_env(sells).await?;
    lambda_http::run(router(state)).await
}
