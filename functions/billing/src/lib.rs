//! The billing function: plans and payments, `/v1/billing/*`.

use axum::Json;
use serde::Serialize;
use shared::AppState;
use shared::auth::Account;
use shared::catalog::{TIERS, TierView};
use shared::http::ApiRouter;

pub fn api() -> ApiRouter {
    ApiRouter::new().get("/v1/billing/tiers", tiers)
}

pub fn router(state: AppState) -> axum::Router {
    api().into_router(state)
}

#[derive(Debug, Serialize)]
pub struct TiersResponse {
    pub tiers: Vec<TierView>,
}

/// `GET /v1/billing/tiers`: every plan, free first.
async fn tiers(_: Account) -> Json<TiersResponse> {
    Json(TiersResponse {
        tiers: TIERS.iter().map(TierView::from).collect(),
    })
}
