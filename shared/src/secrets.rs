//! Secrets: the Stripe keys, from Secrets Manager in AWS (once per cold start) or the
//! environment locally.
