//! The library every Billing API function uses: configuration, errors, API-key auth, the
//! tier and pack catalog, DynamoDB tables and store, HTTP plumbing and telemetry.
//!
//! Functions build an [`http::ApiRouter`] from handlers in their own crate; everything that
//! decides or stores lives here so tests and tools reach it without Lambda.

pub mod auth;
pub mod aws;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod customers;
pub mod domain;
pub mod error;
pub mod events;
pub mod http;
pub mod keys;
pub mod lambda;
pub mod ledger;
pub mod metering;
pub mod metrics;
pub mod openapi;
pub mod query;
pub mod ratelimit;
pub mod reconcile;
pub mod secrets;
pub mod state;
pub mod store;
pub mod stripe;
pub mod subscriptions;
pub mod sync;
pub mod tables;
pub mod telemetry;
pub mod tls;

pub use error::ApiError;
/// The Idempotency-Key layer, part of the HTTP plumbing ([`http::idempotency`]).
pub use http::idempotency;
pub use state::AppState;
