//! The credits function over HTTP, against its own in-memory DynamoDB engine.

mod packs;
