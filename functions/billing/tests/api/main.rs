//! The billing function over HTTP, against its own in-memory DynamoDB engine.

mod auth;
mod tiers;
