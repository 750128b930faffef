//! The rate-limit middleware: every request with a valid API key is admitted or refused by
//! its key's policy (`crate::ratelimit`), and its response carries `RateLimit-Policy` and
//! `RateLimit`. A refusal is 429 `rate_limited` with `Retry-After`. Not limited: Stripe's
//! webhook (its signature is its authentication), the OpenAPI document, and requests without
//! a valid key (they are answered 401).
//!
//! A request its instance must lease tokens for waits for the lease before its handler runs,
//! except a read: a safe method's handler (GET, HEAD) changes nothing, so it runs beside the
//! lease and its answer is dropped for the 429 if the lease refuses it. An instance leases
//! at most a few times per window (`crate::ratelimit`), so a refused read did its work at most
//! that often; a cold instance's first read saves a DynamoDB round trip.

use crate::auth::Account;
use crate::catalog::Tier;
use crate::domain::Subject;
use crate::error::ApiError;
use crate::metering::plan_of;
use crate::ratelimit::{Lease, Local, Policy, Step, Window};
use crate::state::AppState;
use crate::subscriptions::SubscriptionRecord;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::OwnedMutexGuard;

/// Most leases one request may ask for (a full batch, then single tokens).
const MAX_LEASES: usize = 3;

/// The routes no key's limit applies to.
const EXEMPT: [&str; 2] = [crate::stripe::WEBHOOK_PATH, super::OPENAPI_PATH];

/// The header naming the key's policy: `RateLimit-Policy: "free";q=20;w=4`.
pub const POLICY_HEADER: &str = "ratelimit-policy";

pub async fn middleware(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    if EXEMPT.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(header) = header else {
        return next.run(request).await;
    };
    let Ok(record) = state.auth.key_record(&state.store, Some(&header)).await else {
        return next.run(request).await;
    };
    let mut account = Account::new(record.account_id.clone(), record.mode);
    let policy = match record.rate_limit {
        Some(limit) => Policy::new("custom", limit),
        None => {
            let (tier, read) = plan(&state, record.account_id.as_str()).await;
            // A read's handler takes the item just read rather than reading it again.
            if let (Some(own), true) = (read, request.method().is_safe()) {
                account = account.with_own_subscription(own);
            }
            Policy::new(tier.as_str(), tier.info().rate_limit)
        }
    };
    // The key is checked: what runs after (the idempotency layer, the handler's `Account`)
    // takes the account from here instead of checking it again.
    request.extensions_mut().insert(account);
    let now_ms = (state.clock.now().unix_timestamp_nanos() / 1_000_000) as i64;
    let window = policy.window(now_ms);
    let reset = window.reset_secs(now_ms);
    let local = state.limiter.local(&record.key_hash);
    let mut local = local.lock_owned().await;
    let step = local.step(&policy, window.index);
    let (step, handler) = match step {
        // A read (a safe method: its handler changes nothing) runs beside the lease it
        // waits for, and its answer is dropped if the lease refuses it: a cold instance's
        // first read costs one DynamoDB round trip less. Its handler is polled first, so its
        // first read goes out ahead of the lease's write: an engine that serializes its
        // work (the local one) answers the read first and the handler's next call waits
        // behind the write rather than the whole handler. Anything else is admitted first.
        Step::Lease { .. } if request.method().is_safe() => {
            let lease = lease(&state, &record.key_hash, &policy, window, local, step);
            let (response, step) = tokio::join!(next.run(request), lease);
            (step, Handler::Ran(response))
        }
        Step::Lease { .. } => {
            let step = lease(&state, &record.key_hash, &policy, window, local, step).await;
            (step, Handler::Waits(request, next))
        }
        admitted_or_refused => {
            drop(local);
            (admitted_or_refused, Handler::Waits(request, next))
        }
    };
    match step {
        Step::Admit { remaining } => {
            let mut response = match handler {
                Handler::Ran(response) => response,
                Handler::Waits(request, next) => next.run(request).await,
            };
            set_headers(response.headers_mut(), &policy, remaining, reset);
            response
        }
        // Refused, or still leasing after MAX_LEASES (a window racing to its end).
        Step::Refuse | Step::Lease { .. } => {
            let mut response = ApiError::RateLimited {
                retry_after_seconds: reset,
            }
            .into_response();
            let headers = response.headers_mut();
            set_headers(headers, &policy, 0, reset);
            headers.insert(RETRY_AFTER, HeaderValue::from(reset));
            response
        }
    }
}

/// Leases tokens from the key's window item until `local` admits or refuses (at most
/// [`MAX_LEASES`] calls). `local` stays locked throughout, so concurrent requests of one key
/// on one instance wait for the lease in flight instead of racing to lease the window away.
async fn lease(
    state: &AppState,
    key_hash: &str,
    policy: &Policy,
    window: Window,
    mut local: OwnedMutexGuard<Local>,
    mut step: Step,
) -> Step {
    for _ in 0..MAX_LEASES {
        let Step::Lease { tokens } = step else { break };
        let lease = state
            .store
            .rate_lease(
                key_hash,
                window.index,
                window.ends_ms / 1000,
                tokens,
                policy.quota,
            )
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "rate limit lease failed; admitting (fail open)");
                Lease::Failed
            });
        local.leased(window.index, lease);
        step = local.step(policy, window.index);
    }
    step
}

/// The request's handler: already run beside its lease, or waiting for admission.
enum Handler {
    Ran(Response),
    Waits(Request, Next),
}

fn set_headers(headers: &mut HeaderMap, policy: &Policy, remaining: u32, reset: u64) {
    for (name, value) in [
        (POLICY_HEADER, policy.policy_header()),
        ("ratelimit", policy.state_header(remaining, reset)),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

/// The account's plan (its own subscription; free without one), read once per
/// [`crate::ratelimit::PLAN_TTL`], with the item when this call read it. A failed read fails
/// open: the most generous plan, not remembered.
async fn plan(state: &AppState, account: &str) -> (Tier, Option<Option<SubscriptionRecord>>) {
    if let Some(tier) = state.limiter.plan(account) {
        return (tier, None);
    }
    let now = state.clock.now().unix_timestamp();
    match state
        .store
        .subscription(account, Subject::ACCOUNT_KEY)
        .await
    {
        Ok(record) => {
            let tier = plan_of(record.as_ref(), now, state.store.access_grace_secs()).tier();
            state.limiter.remember_plan(account, tier);
            (tier, Some(record))
        }
        Err(e) => {
            tracing::warn!(error = %e, account, "reading the plan for the rate limit; admitting as enterprise");
            (Tier::Enterprise, None)
        }
    }
}
