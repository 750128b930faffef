//! A stateful local Stripe.
