//! The credits function: the B2B2C credit system, `/v1/credits/*`.

use axum::Json;
use shared::AppState;
use shared::auth::Account;
use shared::catalog::{PACKS, PackView};
use shared::http::ApiRouter;

pub fn api() -> ApiRouter {
    ApiRouter::new().get("/v1/credits/packs", packs)
}

pub fn router(state: AppState) -> axum::Router {
    api().into_router(state)
}

/// `GET /v1/credits/packs`: the packs as a bare array, smallest first.
async fn packs(_: Account) -> Json<Vec<PackView>> {
    Json(PACKS.iter().map(PackView::from).collect())
}
