//! What the warm endpoints read: the local stack's development account with, for its end
//! user `user_123`, a Pro subscription in its current period and a completed credit pack, as
//! the webhook records them; two documents already unlocked, one analysis already counted,
//! one Stripe event already processed. Written with the `shared` store and ledger APIs, so
//! every endpoint then answers 200 from the same items on every request.

use anyhow::{Context, anyhow};
use local::serve::Stack;
use shared::catalog::{PackType, Tier};
use shared::domain::Subject;
use shared::ledger::{
    AccessOutcome, Charge, Grant, GrantOutcome, LedgerKey, Purchase, PurchaseStatus,
};
use shared::metering::store::Consumed;
use shared::metering::{AnalysisSource, UsageKey, subscription_period_key};
use shared::store::Store;
use shared::store::SyncedState;
use shared::stripe::SubscriptionSnapshot;
use shared::stripe::checkout::{Owner, Purpose};
use shared::subscriptions::SubscriptionStatus;
use shared::tables::TableNames;

/// The end user every request names.
pub const USER: &str = "user_123";
/// The documents `POST /v1/credits/access` asks for: unlocked before.
pub const DOCUMENTS: [&str; 2] = ["ana_bench_1", "ana_bench_2"];
/// The analysis `POST /v1/usage/analyses` reports again and again: counted once, before.
pub const REPEATED_ANALYSIS: &str = "ana_bench_repeat";
/// The Stripe event the webhook receives again and again: processed once, before.
pub const DUPLICATE_EVENT: &str = "evt_bench_duplicate";
const CUSTOMER: &str = "cus_bench";
const SUBSCRIPTION: &str = "sub_bench";
const PACK_SESSION: &str = "cs_bench_pack";

/// The keys of the seeded items, for the floor's direct calls.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub api_key: String,
    pub account_id: String,
    /// `user#user_123`.
    pub subject: String,
    pub ledger_pk: String,
    pub usage_pk: String,
    /// The Pro subscription's current period (`sub:<start>`).
    pub period_key: String,
    pub tables: TableNames,
    /// The body of the duplicate webhook event (sign it when sending).
    pub webhook_payload: String,
}

pub async fn seed(stack: &Stack) -> anyhow::Result<Seeded> {
    let store = Store::new(
        shared::store::local_client(&stack.dynamodb_endpoint),
        TableNames::defaults(),
    );
    let account_id = local::devkey::DEV_ACCOUNT.to_string();
    let subject = Subject::from_input("external_user_id", Some(USER))
        .map_err(|e| anyhow!("{e:?}"))?
        .key();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let period_start = now - 86_400;

    // The subscription, as the webhook records a paid Checkout: customer, then Stripe's read.
    store
        .attach_customer(&account_id, &subject, CUSTOMER)
        .await?;
    let snapshot = SubscriptionSnapshot {
        id: SUBSCRIPTION.into(),
        customer_id: CUSTOMER.into(),
        status: SubscriptionStatus::Active,
        tier: Some(Tier::Pro),
        item_id: Some("si_bench".into()),
        price_id: Tier::Pro.info().lookup_key.map(|k| format!("price_{k}")),
        current_period_start: Some(period_start),
        current_period_end: Some(period_start + 30 * 86_400),
        cancel_at_period_end: false,
        created: period_start,
        metadata: Owner {
            account_id: account_id.clone(),
            subject: subject.clone(),
        }
        .to_metadata(),
        default_payment_method: None,
    };
    let synced = SyncedState {
        snapshot: &snapshot,
        synced_at_ms: now * 1000,
        payment_error: None,
    };
    anyhow::ensure!(
        store
            .sync_subscription(&account_id, &subject, &synced)
            .await?
            .is_some(),
        "the seeded subscription was not written"
    );

    // A medium pack bought before, completed by its grant as the webhook does.
    let ledger = LedgerKey {
        account_id: account_id.clone(),
        subject: subject.clone(),
    };
    let pack = PackType::Medium.pack();
    let purchase = Purchase {
        id: Purchase::id_for_session(PACK_SESSION),
        session_id: PACK_SESSION.into(),
        pack_type: pack.pack_type.as_str().into(),
        credits: i64::from(pack.credits),
        price_cents: pack.price_cents,
        status: PurchaseStatus::Pending,
        created_at: now - 3600,
        completed_at: None,
    };
    store.insert_purchase(&ledger, &purchase).await?;
    let purchase_sk = purchase.sort_key();
    let grant = Grant {
        source_id: PACK_SESSION,
        kind: shared::ledger::CreditKind::Document,
        credits: purchase.credits,
        reason: Purpose::CreditPack(PackType::Medium).name(),
        expires_at: None,
        purchase_sk: Some(&purchase_sk),
    };
    anyhow::ensure!(
        matches!(
            store.ledger_grant(&ledger, &grant, now).await?,
            GrantOutcome::Granted { .. }
        ),
        "the seeded pack was not granted"
    );

    // Two documents bought with those credits.
    let documents: Vec<String> = DOCUMENTS.iter().map(|d| d.to_string()).collect();
    anyhow::ensure!(
        matches!(
            store
                .ledger_access(&ledger, &documents, Charge::Always, now)
                .await?
                .outcome,
            AccessOutcome::Granted { .. }
        ),
        "the seeded documents were not unlocked"
    );

    // One analysis counted in the subscription's period.
    let usage = UsageKey {
        account_id: account_id.clone(),
        subject: subject.clone(),
    };
    let period_key = subscription_period_key(period_start);
    let limit = Tier::Pro.info().analyses_limit.map(u64::from);
    anyhow::ensure!(
        matches!(
            store
                .consume_analysis(
                    &usage,
                    REPEATED_ANALYSIS,
                    AnalysisSource::Subscription,
                    &period_key,
                    limit,
                    now,
                )
                .await?,
            Consumed::New(_)
        ),
        "the seeded analysis was not counted"
    );

    // One Stripe event processed (an ignored type: `customer.created`).
    let webhook_payload = serde_json::json!({
        "id": DUPLICATE_EVENT, "object": "event", "api_version": "2026-09-30.endive",
        "created": now, "livemode": false, "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null}, "type": "customer.created",
        "data": {"object": {"id": CUSTOMER, "object": "customer", "email": "bench@example.com",
                            "metadata": {}}}
    })
    .to_string();
    store
        .mark_event_processed(DUPLICATE_EVENT, "customer.created", now + 30 * 86_400)
        .await
        .context("marking the webhook event processed")?;

    Ok(Seeded {
        api_key: stack.api_key.expose().to_string(),
        ledger_pk: ledger.pk(),
        usage_pk: usage.pk(),
        account_id,
        subject,
        period_key,
        tables: TableNames::defaults(),
        webhook_payload,
    })
}

/// A `Stripe-Signature` for `payload` at the current time, with the local webhook secret.
pub fn sign(payload: &str) -> String {
    stripe_webhook::Webhook::generate_test_header(
        payload,
        shared::secrets::LOCAL_WEBHOOK_SECRET,
        Some(time::OffsetDateTime::now_utc().unix_timestamp()),
    )
}
