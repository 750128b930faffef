//! The rate limiter under load: a key of each plan driven by oha at several times the free
//! plan's rate for a while, on `GET /v1/billing/tiers` (no DynamoDB call of its own), so
//! every DynamoDB call counted is the limiter's. What was admitted is compared with the bound
//! the README states (`rate × T + 2 × quota` over `T` seconds).

use crate::load::{self, HttpRequest};
use anyhow::{Context, bail};
use devkit::CallCounter;
use local::serve::Stack;
use serde::Serialize;
use shared::catalog::Tier;
use shared::clock::SystemClock;
use shared::config::Stage;
use shared::keys::{self, AccountId};
use shared::ratelimit::Policy;
use shared::store::Store;
use shared::tables::TableNames;
use std::path::Path;
use std::time::Duration;

/// How long each plan's key is driven.
pub const RUN: Duration = Duration::from_secs(10);
/// The offered load: five times the free plan's sustained rate.
pub const OFFERED_RPS: u32 = 25;

#[derive(Debug, Clone, Serialize)]
pub struct LimitRow {
    pub plan: &'static str,
    /// `RateLimit-Policy`.
    pub policy: String,
    pub offered_rps: u32,
    pub duration_s: f64,
    pub requests: u64,
    pub admitted: u64,
    pub refused: u64,
    pub admitted_per_sec: f64,
    /// The stated bound, per second over the run: `rate + 2 × quota / T`.
    pub bound_per_sec: f64,
    pub within_bound: bool,
    /// DynamoDB calls the limiter made (leases; the plan's read) per request.
    pub calls_per_request: f64,
    pub calls: std::collections::BTreeMap<String, u64>,
    pub p99_ms: f64,
}

pub async fn measure(
    stack: &Stack,
    counter: &CallCounter,
    oha: &Path,
) -> anyhow::Result<Vec<LimitRow>> {
    let store = Store::new(
        shared::store::local_client(&stack.dynamodb_endpoint),
        TableNames::defaults(),
    );
    let mut rows = Vec::new();
    for tier in [Tier::Free, Tier::Pro] {
        let account = format!("acct_bench_{}", tier.as_str());
        let id = AccountId::parse(&account).map_err(anyhow::Error::msg)?;
        let (key, _) = keys::issue(&store, &SystemClock, &id, Stage::Test, None).await?;
        if tier != Tier::Free {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            devkit::store_plan(&store, &account, "self", tier, now).await?;
        }
        let request = HttpRequest {
            method: "GET",
            url: format!("{}/v1/billing/tiers", stack.api_url),
            headers: vec![("Authorization".into(), format!("Bearer {}", key.expose()))],
            body: None,
        };
        counter.reset();
        let run = load::oha_at_rate(oha, &request, 2, RUN, Some(OFFERED_RPS))
            .await
            .with_context(|| format!("driving a {} key", tier.as_str()))?;
        let calls = counter.take();
        let count = |code: &str| run.status_codes.get(code).copied().unwrap_or(0);
        let (admitted, refused) = (count("200"), count("429"));
        if admitted + refused != run.stats.requests || !run.errors.is_empty() {
            bail!(
                "a {} key answered {:?} with errors {:?}",
                tier.as_str(),
                run.status_codes,
                run.errors
            );
        }
        let limit = tier.info().rate_limit;
        let policy = Policy::new(tier.as_str(), limit);
        let secs = RUN.as_secs_f64();
        let bound = f64::from(limit.rate) + 2.0 * f64::from(policy.quota) / secs;
        let admitted_per_sec = admitted as f64 / secs;
        rows.push(LimitRow {
            plan: tier.as_str(),
            policy: policy.policy_header(),
            offered_rps: OFFERED_RPS,
            duration_s: secs,
            requests: run.stats.requests,
            admitted,
            refused,
            admitted_per_sec,
            bound_per_sec: bound,
            within_bound: admitted_per_sec <= bound,
            calls_per_request: calls.values().sum::<u64>() as f64
                / run.stats.requests.max(1) as f64,
            calls,
            p99_ms: run.stats.p99_ms,
        });
    }
    Ok(rows)
}
