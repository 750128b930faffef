//! The invariants, read from the truth on each side: Stripe's objects (the emulator's API)
//! and the stored items (a scan outside the fault seam). Nothing here asks the product's own
//! logic what the answer should be; it recomputes it from the raw objects.

use crate::ops::{Op, USERS, User};
use crate::run::{Failure, Sim};
use crate::world::World;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use shared::tables::Table;
use std::collections::{BTreeMap, HashMap, HashSet};

type Item = HashMap<String, AttributeValue>;

fn harness(e: anyhow::Error) -> Failure {
    ("harness", format!("{e:#}"))
}

/// `self` or `user#<id>`, as the API keys its subjects.
pub fn subject_key(user: User) -> String {
    shared::domain::Subject::from_input("external_user_id", user.map(|u| USERS[u]))
        .map(|s| s.key())
        .unwrap_or_default()
}

/// Stripe statuses of a subscription that has not ended.
pub fn is_live(status: &str) -> bool {
    !matches!(status, "canceled" | "incomplete_expired")
}

fn s<'a>(item: &'a Item, name: &str) -> &'a str {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map_or("", String::as_str)
}

fn n(item: &Item, name: &str) -> i64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One ledger as stored: its balance item and entries.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    pub balance: i64,
    pub pool: i64,
    pub total_purchased: i64,
    pub total_spent: i64,
    pub total_expired: i64,
    /// source → (remaining, expires_at)
    pub lots: BTreeMap<String, (i64, i64)>,
    /// source → the kind its lot pays for (`document`, `analysis`).
    pub lot_kinds: BTreeMap<String, String>,
    /// (kind, amount, source, analysis ids, reason, created_at)
    pub entries: Vec<(String, i64, String, Vec<String>, String, i64)>,
    /// `GRANT#` markers: source → credits.
    pub grants: BTreeMap<String, i64>,
    pub has_balance_item: bool,
}

/// Every ledger of the CreditLedger table, by partition key.
pub async fn ledgers(world: &World) -> anyhow::Result<BTreeMap<String, Ledger>> {
    let mut out: BTreeMap<String, Ledger> = BTreeMap::new();
    for item in world.scan(Table::CreditLedger).await? {
        let pk = s(&item, "pk").to_string();
        let sk = s(&item, "sk").to_string();
        let ledger = out.entry(pk).or_default();
        if sk == "BALANCE" {
            ledger.has_balance_item = true;
            ledger.balance = n(&item, "balance");
            ledger.pool = n(&item, "pool");
            ledger.total_purchased = n(&item, "total_purchased");
            ledger.total_spent = n(&item, "total_spent");
            ledger.total_expired = n(&item, "total_expired");
            if let Some(AttributeValue::M(lots)) = item.get("lots") {
                for (source, lot) in lots {
                    if let AttributeValue::M(lot) = lot {
                        ledger
                            .lots
                            .insert(source.clone(), (n(lot, "remaining"), n(lot, "expires_at")));
                        ledger
                            .lot_kinds
                            .insert(source.clone(), s(lot, "kind").to_string());
                    }
                }
            }
        } else if sk.starts_with("ENTRY#") {
            let ids = match item.get("analysis_ids") {
                Some(AttributeValue::L(list)) => {
                    list.iter().filter_map(|v| v.as_s().ok().cloned()).collect()
                }
                Some(AttributeValue::Ss(list)) => list.clone(),
                _ => Vec::new(),
            };
            ledger.entries.push((
                s(&item, "kind").to_string(),
                n(&item, "amount"),
                s(&item, "source_id").to_string(),
                ids,
                s(&item, "reason").to_string(),
                n(&item, "created_at"),
            ));
        } else if let Some(source) = sk.strip_prefix("GRANT#") {
            ledger
                .grants
                .insert(source.to_string(), n(&item, "credits"));
        }
    }
    Ok(out)
}

/// What the checks remember between steps.
#[derive(Debug, Default)]
pub struct Seen {
    /// Expired lots as first seen after their expiry: (pk, source) → remaining.
    pub expired_lots: HashMap<(String, String), i64>,
    /// Subscription views the API answered this step: (account, user, body).
    pub views: Vec<(String, User, Value)>,
}

/// Objects counted before and after a step.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    sessions: usize,
    subscriptions: usize,
    spends: usize,
    /// Chat messages and analyses counted, over every subject and period.
    chats: i64,
    analyses: i64,
}

impl Counts {
    /// The counts of one snapshot: Stripe's objects, the ledgers, and the Usage table.
    async fn of(
        world: &World,
        view: &StripeView,
        ledgers: &BTreeMap<String, Ledger>,
    ) -> anyhow::Result<Self> {
        let usage = world.scan(Table::Usage).await?;
        let counted = |prefix: &str| -> i64 {
            usage
                .iter()
                .filter(|i| s(i, "sk").starts_with(prefix))
                .map(|i| n(i, "count"))
                .sum()
        };
        Ok(Self {
            sessions: view.sessions.len(),
            subscriptions: view.subscriptions.len(),
            spends: ledgers
                .values()
                .flat_map(|l| &l.entries)
                .filter(|e| e.0 == "spend")
                .count(),
            chats: counted("COUNT#CHAT#"),
            analyses: counted("COUNT#ANALYSES#"),
        })
    }

    /// The counts of the world as it is.
    pub async fn read(world: &World) -> anyhow::Result<Self> {
        let view = stripe_view(world).await?;
        let ledgers = ledgers(world).await?;
        Self::of(world, &view, &ledgers).await
    }
}

/// Invariant 5's other half: a step makes no more Stripe objects or spends than its
/// requests' intents (one per Idempotency-Key; a request without one may be several).
pub fn created_at_most(
    before: &Counts,
    after: &Counts,
    op: &Op,
    keyed: bool,
    keyless_attempts: u64,
    checks: &mut u64,
) -> Result<(), Failure> {
    let per_intent = |intents: u64| {
        if keyed {
            intents
        } else {
            intents * keyless_attempts.max(1)
        }
    };
    let (sessions, subscriptions, spends, chats, analyses) = match op {
        Op::Checkout { tabs, .. } => (per_intent(u64::from(*tabs)), u64::from(*tabs), 0, 0, 0),
        Op::Report { .. } | Op::Pack { .. } => (per_intent(1), 0, 0, 0, 0),
        Op::ServerCreate { .. } => (0, per_intent(1), 0, 0, 0),
        Op::Access { docs, .. } => (0, 0, per_intent(docs.len() as u64), 0, 0),
        Op::Analysis { .. } => (0, 0, per_intent(1), 0, per_intent(1)),
        Op::Chat { .. } => (0, 0, 0, per_intent(1), 0),
        _ => (0, 0, 0, 0, 0),
    };
    *checks += 5;
    let made = |a: usize, b: usize| (b.saturating_sub(a)) as u64;
    let counted = |a: i64, b: i64| u64::try_from(b - a).unwrap_or(0);
    for (what, n, allowed) in [
        (
            "Checkout Sessions",
            made(before.sessions, after.sessions),
            sessions,
        ),
        (
            "subscriptions",
            made(before.subscriptions, after.subscriptions),
            subscriptions,
        ),
        ("ledger spends", made(before.spends, after.spends), spends),
        (
            "chat messages counted",
            counted(before.chats, after.chats),
            chats,
        ),
        (
            "analyses counted",
            counted(before.analyses, after.analyses),
            analyses,
        ),
    ] {
        if n > allowed {
            return Err((
                "5 (a retry never makes a second Stripe object or ledger entry)",
                format!(
                    "{op:?} ({}) made {n} {what}; at most {allowed} allowed",
                    if keyed { "keyed" } else { "no key" }
                ),
            ));
        }
    }
    Ok(())
}

/// 7, at the moment of the read: the balance an account was answered for its user is its
/// own ledger's (document credits now, and the document credits purchased).
pub async fn balance_is_own(
    world: &World,
    account: &str,
    user: &str,
    body: &Value,
) -> Result<(), Failure> {
    let pk = format!("{account}#user#{user}");
    let ledgers = ledgers(world).await.map_err(harness)?;
    let now = world.now();
    let (documents, purchased) = ledgers.get(&pk).map_or((0, 0), |l| {
        let lots: i64 = l
            .lots
            .iter()
            .filter(|(source, (_, expires_at))| {
                now < *expires_at
                    && l.lot_kinds.get(*source).map(String::as_str) == Some("document")
            })
            .map(|(_, (remaining, _))| remaining)
            .sum();
        // Document credits bought: every grant but the report's (its credit pays analyses).
        let purchased = l
            .entries
            .iter()
            .filter(|(kind, _, _, _, reason, _)| kind == "grant" && reason != "report")
            .map(|(_, amount, ..)| amount)
            .sum();
        (l.pool + lots, purchased)
    });
    if body["balance"].as_i64() != Some(documents)
        || body["total_purchased"].as_i64() != Some(purchased)
    {
        return Err((
            "7 (accounts are isolated)",
            format!(
                "{account} read {user}'s balance {body}; its ledger {pk} has {documents} document credits and {purchased} purchased"
            ),
        ));
    }
    Ok(())
}

/// What the invariants read from Stripe.
struct StripeView {
    /// customer id → (account, subject)
    owners: HashMap<String, (String, String)>,
    subscriptions: Vec<Value>,
    sessions: HashMap<String, Value>,
}

async fn stripe_view(world: &World) -> anyhow::Result<StripeView> {
    let owners = world
        .stripe_list("/v1/customers")
        .await?
        .into_iter()
        .filter_map(|c| {
            Some((
                c["id"].as_str()?.to_string(),
                (
                    c["metadata"]["account_id"].as_str()?.to_string(),
                    c["metadata"]["subject"].as_str()?.to_string(),
                ),
            ))
        })
        .collect();
    let subscriptions = world.stripe_list("/v1/subscriptions?status=all").await?;
    let sessions = world
        .stripe_list("/v1/checkout/sessions")
        .await?
        .into_iter()
        .filter_map(|cs| Some((cs["id"].as_str()?.to_string(), cs)))
        .collect();
    Ok(StripeView {
        owners,
        subscriptions,
        sessions,
    })
}

fn subject_subscriptions(view: &StripeView) -> BTreeMap<(String, String), Vec<&Value>> {
    let mut by_subject: BTreeMap<(String, String), Vec<&Value>> = BTreeMap::new();
    for sub in &view.subscriptions {
        let customer = sub["customer"].as_str().unwrap_or_default();
        let owner = view
            .owners
            .get(customer)
            .cloned()
            .unwrap_or_else(|| ("?".into(), customer.to_string()));
        by_subject.entry(owner).or_default().push(sub);
    }
    by_subject
}

/// The invariants that hold after every step; the counts of what they read.
pub async fn always(sim: &mut Sim) -> Result<Counts, Failure> {
    let view = stripe_view(&sim.world).await.map_err(harness)?;
    let mut checks = 0u64;

    // 1. At most one live Stripe subscription per subject.
    for ((account, subject), subs) in subject_subscriptions(&view) {
        checks += 1;
        let live: Vec<&str> = subs
            .iter()
            .filter(|s| is_live(s["status"].as_str().unwrap_or_default()))
            .filter_map(|s| s["id"].as_str())
            .collect();
        if live.len() > 1 {
            return Err((
                "1 (at most one live subscription per subject)",
                format!(
                    "{account} {subject} has {} live subscriptions in Stripe: {live:?}",
                    live.len()
                ),
            ));
        }
    }

    let ledgers = ledgers(&sim.world).await.map_err(harness)?;
    let now = sim.world.now();
    for (pk, ledger) in &ledgers {
        let (account, subject) = pk.split_once('#').unwrap_or((pk, ""));
        // 2. No unpaid session granted; a session granted once.
        for (source, credits) in &ledger.grants {
            checks += 1;
            let Some(session) = view.sessions.get(source) else {
                return Err((
                    "2 (paid sessions granted exactly once)",
                    format!("{pk} has a grant from {source}, which Stripe does not have"),
                ));
            };
            if session["payment_status"] != "paid" {
                return Err((
                    "2 (paid sessions granted exactly once)",
                    format!(
                        "{pk} was granted {credits} for {source}, which is {} in Stripe",
                        session["payment_status"]
                    ),
                ));
            }
            if session["metadata"]["account_id"] != account
                || session["metadata"]["subject"] != subject
            {
                return Err((
                    "7 (accounts are isolated)",
                    format!(
                        "{pk} was granted {source}, which belongs to {} {}",
                        session["metadata"]["account_id"], session["metadata"]["subject"]
                    ),
                ));
            }
            let entries = ledger
                .entries
                .iter()
                .filter(|e| e.0 == "grant" && e.2 == *source)
                .count();
            if entries != 1 {
                return Err((
                    "2 (paid sessions granted exactly once)",
                    format!("{pk} has {entries} grant entries for {source}"),
                ));
            }
        }
        if !ledger.has_balance_item {
            continue;
        }
        // 3. Balance = Σ entries, never negative, lots add up.
        checks += 3;
        let sum: i64 = ledger.entries.iter().map(|e| e.1).sum();
        let lots: i64 = ledger.lots.values().map(|l| l.0).sum();
        if ledger.balance != sum
            || ledger.balance < 0
            || ledger.pool < 0
            || ledger.lots.values().any(|l| l.0 < 0)
            || ledger.pool + lots != ledger.balance
            || ledger.total_purchased - ledger.total_spent - ledger.total_expired != ledger.balance
        {
            return Err((
                "3 (balances equal their ledgers, never negative)",
                format!("{pk}: {ledger:?} (entries sum {sum})"),
            ));
        }
        // 3. No expired credit spent: no spend naming a lot at or after its expiry …
        for (kind, _, source, _, _, at) in &ledger.entries {
            let Some((_, expires_at)) = ledger.lots.get(source) else {
                continue;
            };
            if kind != "spend" {
                continue;
            }
            checks += 1;
            if at >= expires_at {
                return Err((
                    "3 (no expired credit is spent)",
                    format!("{pk}: lot {source} expired at {expires_at} and paid a spend at {at}"),
                ));
            }
        }
        // … and an expired lot keeps what it had until written off.
        for (source, (remaining, expires_at)) in &ledger.lots {
            if now < *expires_at {
                continue;
            }
            checks += 1;
            let key = (pk.clone(), source.clone());
            let first = *sim.seen.expired_lots.entry(key).or_insert(*remaining);
            let written_off = ledger
                .entries
                .iter()
                .any(|e| e.0 == "expiry" && e.2 == *source && e.1 == -first);
            if *remaining != first && !(*remaining == 0 && written_off) {
                return Err((
                    "3 (no expired credit is spent)",
                    format!(
                        "{pk}: lot {source} expired holding {first} and now holds {remaining} (written off: {written_off})"
                    ),
                ));
            }
        }
        // 8. Each credit pays for what it was sold for: what an analysis lot lost went to
        // analyses (spends naming it) or expired, never to a document.
        for (source, (remaining, _)) in &ledger.lots {
            if ledger.lot_kinds.get(source).map(String::as_str) != Some("analysis") {
                continue;
            }
            checks += 1;
            let granted = ledger.grants.get(source).copied().unwrap_or(0);
            let paid: i64 = ledger
                .entries
                .iter()
                .filter(|e| e.0 != "grant" && e.2 == *source)
                .map(|e| -e.1)
                .sum();
            if granted - remaining != paid {
                return Err((
                    "8 (each credit pays for what it was sold for)",
                    format!(
                        "{pk}: analysis lot {source} was granted {granted}, holds {remaining}, and its analyses and expiry account for {paid}"
                    ),
                ));
            }
        }
        // 4. No document charged twice (an analysis paid with a report credit is not a
        // document's unlock).
        checks += 1;
        let mut charged = HashSet::new();
        for (kind, _, _, ids, reason, _) in &ledger.entries {
            if kind != "spend" || !reason.starts_with("document access") {
                continue;
            }
            for id in ids {
                if !charged.insert(id.clone()) {
                    return Err((
                        "4 (no document charged twice)",
                        format!("{pk}: {id} was charged twice"),
                    ));
                }
            }
        }
    }

    // 7. What an account read is its own.
    for (account, user, body) in std::mem::take(&mut sim.seen.views) {
        checks += 1;
        let subject = subject_key(user);
        let id = body["subscription_id"].as_str().unwrap_or_default();
        let owner = view
            .subscriptions
            .iter()
            .find(|s| s["id"] == id)
            .and_then(|s| view.owners.get(s["customer"].as_str().unwrap_or_default()));
        if owner != Some(&(account.clone(), subject.clone())) {
            return Err((
                "7 (accounts are isolated)",
                format!("{account} {subject} was shown subscription {id}, owned by {owner:?}"),
            ));
        }
    }
    let counts = Counts::of(&sim.world, &view, &ledgers)
        .await
        .map_err(harness)?;
    sim.report.checks += checks;
    Ok(counts)
}

/// The invariants that hold once the world is quiet: every delivery made, one reconcile.
pub async fn at_quiescence(sim: &mut Sim) -> Result<(), Failure> {
    let view = stripe_view(&sim.world).await.map_err(harness)?;
    let mut checks = 0u64;
    // 1. The API's view of each subject equals Stripe's.
    for ((account, subject), subs) in subject_subscriptions(&view) {
        checks += 1;
        let newest = |live: bool| {
            subs.iter()
                .filter(|s| !live || is_live(s["status"].as_str().unwrap_or_default()))
                .max_by_key(|s| {
                    (
                        s["created"].as_i64().unwrap_or(0),
                        s["id"].as_str().unwrap_or("").to_string(),
                    )
                })
                .copied()
        };
        let Some(expected) = newest(true).or_else(|| newest(false)) else {
            continue;
        };
        let Some(index) = sim
            .world
            .accounts
            .iter()
            .position(|a| a.id.as_str() == account)
        else {
            continue;
        };
        let query = match subject.strip_prefix("user#") {
            Some(user) => format!("?external_user_id={user}"),
            None => String::new(),
        };
        let key = sim.world.accounts[index].key.clone();
        let answer = sim
            .world
            .send(
                &crate::world::Call::new(
                    http::Method::GET,
                    format!("/v1/subscriptions{query}"),
                    &key,
                ),
                None,
            )
            .await
            .map_err(harness)?;
        let body = answer.body();
        let price = &expected["items"]["data"][0]["price"];
        let tier = shared::stripe::prices::tier_of(
            price["metadata"][shared::stripe::prices::CATALOG_KEY].as_str(),
            price["lookup_key"].as_str(),
        )
        .map(|t| t.as_str().to_string());
        if answer.status() != Some(200)
            || body["subscription_id"] != expected["id"]
            || body["status"] != expected["status"]
            || body["cancel_at_period_end"] != expected["cancel_at_period_end"]
            || body["tier"].as_str().map(str::to_string) != tier
        {
            return Err((
                "1 (the API's view of each subject equals Stripe's)",
                format!(
                    "{account} {subject}: the API shows {} {body}; Stripe's plan is {} {} cancel_at_period_end={} tier {tier:?}",
                    answer.short(),
                    expected["id"],
                    expected["status"],
                    expected["cancel_at_period_end"]
                ),
            ));
        }
    }
    // 2. Every paid credit session is granted.
    let ledgers = ledgers(&sim.world).await.map_err(harness)?;
    for (id, session) in &view.sessions {
        if session["mode"] != "payment" || session["payment_status"] != "paid" {
            continue;
        }
        checks += 1;
        let (Some(account), Some(subject)) = (
            session["metadata"]["account_id"].as_str(),
            session["metadata"]["subject"].as_str(),
        ) else {
            continue;
        };
        let pk = format!("{account}#{subject}");
        if !ledgers.get(&pk).is_some_and(|l| l.grants.contains_key(id)) {
            return Err((
                "2 (paid sessions granted exactly once)",
                format!(
                    "{id} ({}, created at {}h) was paid in Stripe and never granted to {pk}; its webhooks:{}",
                    session["metadata"]["purpose"],
                    sim.hours(session["created"].as_i64().unwrap_or(0)),
                    sim.network_of(id)
                ),
            ));
        }
    }
    sim.report.checks += checks;
    Ok(())
}
