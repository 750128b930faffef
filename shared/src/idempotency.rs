//! Idempotency-Key for every POST, PUT and DELETE of the API.
