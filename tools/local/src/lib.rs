//! The whole API in one process for development: `serve` (what `make dev` runs) and
//! `invoke` (`sam local invoke` without Docker).

pub mod devkey;
pub mod invoke;
pub mod serve;

use shared::AppState;
use shared::http::ApiRouter;

/// A deployed Lambda function: its name (crate, binary and `invoke` name) and its routes.
#[derive(Debug, Clone, Copy)]
pub struct Function {
    pub name: &'static str,
    pub api: fn() -> ApiRouter,
}

/// Every function of template.yaml.
pub const FUNCTIONS: &[Function] = &[
    Function {
        name: "billing",
        api: billing::api,
    },
    Function {
        name: "credits",
        api: credits::api,
    },
    Function {
        name: "subscriptions",
        api: subscriptions::api,
    },
    Function {
        name: "usage",
        api: usage::api,
    },
    Function {
        name: "stripe-webhook",
        api: webhook::api,
    },
];

pub fn function(name: &str) -> Option<&'static Function> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

/// All functions' routes in one router.
pub fn api() -> ApiRouter {
    FUNCTIONS
        .iter()
        .fold(ApiRouter::new(), |all, f| all.merge((f.api)()))
}

pub fn router(state: AppState) -> axum::Router {
    api().into_router(state)
}
