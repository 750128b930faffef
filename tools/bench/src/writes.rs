//! The paths that write: every request makes something new (documents unlocked with a
//! credit each, an analysis counted, a paid report's credit granted by the webhook), next to
//! its floor, the same store calls made directly (`shared`'s store API in-process: the same
//! reads and the same TransactWriteItems, without HTTP, routing, auth or the handler).
//!
//! oha sends one request again and again, and each of these must differ from the last, so
//! both sides are driven in-process with a fresh id per request, in alternating slices
//! (`load::in_process_alternating`): every write grows the engine, and a side timed wholly
//! after the other would meet a slower engine.

use crate::load::{self, LoadStats};
use crate::{Options, targets};
use anyhow::{Context, anyhow, bail};
use indicatif::ProgressBar;
use local::serve::Stack;
use serde::Serialize;
use shared::catalog::Tier;
use shared::domain::Subject;
use shared::ledger::{Charge, CreditKind, Grant, GrantOutcome, LedgerKey};
use shared::metering::MeterKeys;
use shared::store::Store;
use shared::stripe::checkout::{Order, Owner, Purpose};
use shared::tables::TableNames;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Slices each side of a path is timed in, alternating with the other's.
const SLICES: u32 = 10;

/// The end user whose document credits the access path spends (no plan: each new document
/// costs a credit).
const SPENDER: &str = "user_bench_spender";
/// The end user on Enterprise (unlimited analyses) whose new analyses are counted.
const ANALYST: &str = "user_bench_analyst";
/// Credits granted to the spender up front: the most one grant carries, far more than a run
/// spends (two a request).
const SPENDER_CREDITS: i64 = 1_000_000;

#[derive(Debug, Clone, Serialize)]
pub struct WriteRow {
    pub endpoint: &'static str,
    pub case: &'static str,
    pub connections: usize,
    pub load: LoadStats,
    pub floor: LoadStats,
    pub overhead_p99_ms: f64,
    pub p99_ratio_to_floor: f64,
    /// Judged at one connection only, as for the reads.
    pub overhead_within_target: Option<bool>,
}

#[derive(Debug, Clone, Copy)]
enum Path {
    Access,
    Analysis,
    Grant,
}

impl Path {
    const ALL: [Path; 3] = [Path::Access, Path::Analysis, Path::Grant];

    fn endpoint(self) -> &'static str {
        match self {
            Path::Access => "POST /v1/credits/access",
            Path::Analysis => "POST /v1/usage/analyses",
            Path::Grant => "POST /v1/webhooks/stripe",
        }
    }

    fn case(self) -> &'static str {
        match self {
            Path::Access => "2 new documents, a credit each",
            Path::Analysis => "a new analysis_id, Enterprise (unlimited)",
            Path::Grant => "a paid report Checkout: its credit granted (signed)",
        }
    }
}

#[derive(Clone)]
struct Writer {
    http: reqwest::Client,
    api_url: String,
    api_key: String,
    account_id: String,
    store: Store,
    spender: LedgerKey,
    analyst: MeterKeys,
    /// A fresh id per request, endpoint and floor alike.
    next: Arc<AtomicU64>,
}

impl Writer {
    fn id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// One request of `path` through the API; anything but a 200 is an error.
    async fn endpoint(&self, path: Path) -> anyhow::Result<()> {
        let n = self.id();
        let request = match path {
            Path::Access => self
                .http
                .post(format!("{}/v1/credits/access", self.api_url))
                .bearer_auth(&self.api_key)
                .json(&serde_json::json!({
                    "external_user_id": SPENDER,
                    "analysis_ids": [format!("ana_w{n}_a"), format!("ana_w{n}_b")],
                })),
            Path::Analysis => self
                .http
                .post(format!("{}/v1/usage/analyses", self.api_url))
                .bearer_auth(&self.api_key)
                .json(&serde_json::json!({
                    "analysis_id": format!("ana_w{n}"),
                    "external_user_id": ANALYST,
                })),
            Path::Grant => {
                let payload = report_paid(&self.account_id, n);
                self.http
                    .post(format!("{}{}", self.api_url, shared::stripe::WEBHOOK_PATH))
                    .header("stripe-signature", crate::seed::sign(&payload))
                    .header("content-type", "application/json")
                    .body(payload)
            }
        };
        let response = request.send().await?;
        let status = response.status();
        if status != 200 {
            bail!("{}: {status} {}", path.endpoint(), response.text().await?);
        }
        Ok(())
    }

    /// The same store calls, made directly.
    async fn floor(&self, path: Path) -> anyhow::Result<()> {
        let n = self.id();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        match path {
            Path::Access => {
                let ids = [format!("ana_f{n}_a"), format!("ana_f{n}_b")];
                self.store
                    .ledger_access(&self.spender, &ids, Charge::UnlessUnlimited, now)
                    .await?;
            }
            Path::Analysis => {
                self.store
                    .meter_analysis(&self.analyst, &format!("ana_f{n}"), now, None)
                    .await?;
            }
            Path::Grant => {
                // The webhook's calls: the event's dedupe record, the grant, the record put.
                let event = format!("evt_bench_floor_{n}");
                let session = format!("cs_bench_floor_{n}");
                self.store.event_processed(&event, now).await?;
                let key = LedgerKey {
                    account_id: self.account_id.clone(),
                    subject: format!("user#buyer_f{n}"),
                };
                let grant = Grant {
                    source_id: &session,
                    kind: CreditKind::Analysis,
                    credits: 1,
                    reason: "Single Report",
                    expires_at: Some(now + 30 * 86_400),
                    purchase_sk: None,
                };
                let outcome = self.store.ledger_grant(&key, &grant, now).await?;
                if !matches!(outcome, GrantOutcome::Granted { .. }) {
                    bail!("the floor's grant was not new: {outcome:?}");
                }
                self.store
                    .mark_event_processed(&event, "checkout.session.completed", now + 30 * 86_400)
                    .await?;
            }
        }
        Ok(())
    }
}

/// A `checkout.session.completed` event of a paid $29 report bought by a new end user
/// (`buyer_<n>`): the webhook grants its credit. Each end user has a ledger of their own, as
/// buyers do (one ledger growing by a lot per request would measure a ledger nobody has).
fn report_paid(account_id: &str, n: u64) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let order = Order::new(
        Owner {
            account_id: account_id.to_string(),
            subject: format!("user#buyer_{n}"),
        },
        Purpose::Report,
    );
    serde_json::json!({
        "id": format!("evt_bench_grant_{n}"), "object": "event",
        "api_version": "2026-09-30.endive", "created": now, "livemode": false,
        "pending_webhooks": 1, "request": {"id": null, "idempotency_key": null},
        "type": "checkout.session.completed",
        "data": {"object": {
            "id": format!("cs_bench_grant_{n}"), "object": "checkout.session",
            "mode": "payment", "payment_status": "paid", "status": "complete",
            "created": now, "customer": null, "subscription": null,
            "amount_total": shared::catalog::REPORT.price_cents, "currency": "usd",
            "metadata": order.to_metadata(),
        }}
    })
    .to_string()
}

/// Seeds the spender's credits and the analyst's plan, then loads each path and its floor
/// at each concurrency.
pub async fn measure(
    options: &Options,
    stack: &Stack,
    progress: &ProgressBar,
) -> anyhow::Result<Vec<WriteRow>> {
    let store = Store::new(
        shared::store::local_client(&stack.dynamodb_endpoint),
        TableNames::defaults(),
    );
    let account_id = local::devkey::DEV_ACCOUNT.to_string();
    let subject = |user: &str| {
        Subject::from_input("external_user_id", Some(user)).map_err(|e| anyhow!("{e:?}"))
    };
    let spender = LedgerKey {
        account_id: account_id.clone(),
        subject: subject(SPENDER)?.key(),
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let source = format!("bench_credits_{now}");
    store
        .ledger_grant(
            &spender,
            &Grant {
                source_id: &source,
                kind: CreditKind::Document,
                credits: SPENDER_CREDITS,
                reason: "bench",
                expires_at: None,
                purchase_sk: None,
            },
            now,
        )
        .await
        .context("granting the spender's credits")?;
    let analyst = subject(ANALYST)?;
    devkit::store_plan(&store, &account_id, &analyst.key(), Tier::Enterprise, now)
        .await
        .context("the analyst's plan")?;
    let ctx = Writer {
        http: reqwest::Client::new(),
        api_url: stack.api_url.clone(),
        api_key: stack.api_key.expose().to_string(),
        analyst: MeterKeys::new(&account_id, &analyst),
        account_id,
        store,
        spender,
        next: Arc::new(AtomicU64::new(0)),
    };
    // The webhook answers 200 for what it ignores too: its grant must really happen.
    let n = ctx.next.load(Ordering::Relaxed);
    ctx.endpoint(Path::Grant)
        .await
        .context("a granting webhook")?;
    let buyer = LedgerKey {
        account_id: ctx.account_id.clone(),
        subject: format!("user#buyer_{n}"),
    };
    let balance = ctx.store.ledger_balance(&buyer, now).await?;
    let granted: i64 = balance
        .lots
        .iter()
        .filter(|l| l.kind == CreditKind::Analysis)
        .map(|l| l.remaining)
        .sum();
    if granted != 1 {
        bail!("the webhook did not grant the report's credit: {balance:?}");
    }
    let mut rows = Vec::new();
    for path in Path::ALL {
        // A warm-up, which also shows each side works before it is timed.
        for _ in 0..20 {
            ctx.endpoint(path)
                .await
                .with_context(|| format!("warming up {}", path.endpoint()))?;
            ctx.floor(path).await.context("the floor's calls")?;
        }
        for &connections in &options.connections {
            progress.set_message(format!(
                "{}: new each time, {connections} connections, {:?}",
                path.endpoint(),
                options.duration
            ));
            let (c, f) = (ctx.clone(), ctx.clone());
            let (endpoint, floor) = load::in_process_alternating(
                connections,
                options.duration,
                SLICES,
                move || {
                    let c = c.clone();
                    async move { c.endpoint(path).await }
                },
                move || {
                    let f = f.clone();
                    async move { f.floor(path).await }
                },
            )
            .await
            .with_context(|| format!("{} at {connections} connections", path.endpoint()))?;
            progress.inc(2);
            let overhead = endpoint.p99_ms - floor.p99_ms;
            rows.push(WriteRow {
                endpoint: path.endpoint(),
                case: path.case(),
                connections,
                p99_ratio_to_floor: endpoint.p99_ms / floor.p99_ms.max(1e-9),
                overhead_within_target: (connections == 1)
                    .then_some(overhead <= targets::OVERHEAD_P99_MAX_MS),
                overhead_p99_ms: overhead,
                load: endpoint,
                floor,
            });
        }
    }
    Ok(rows)
}
