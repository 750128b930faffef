//! Usage metering against the DynamoDB-compatible engine over HTTP (devkit): analyses counted
//! per period within a limit and idempotent per analysis id under concurrency, analyses paid
//! with report credits from the ledger (never with pack credits), chat messages.

use aws_sdk_dynamodb::types::AttributeValue;
use devkit::Engine;
use shared::ledger::{CreditKind, EntryKind, Grant, GrantOutcome, LedgerKey};
use shared::metering::store::Consumed;
use shared::metering::{
    AnalysisRecord, AnalysisSource, Meter, UsageKey, month_period_key, subscription_period_key,
};
use shared::store::{Store, StoreError};
use shared::tables::Table;
use std::collections::HashMap;

const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
const DAY: i64 = 86_400;

struct Usage {
    store: Store,
    _engine: Engine,
}

async fn usage() -> Usage {
    let engine = Engine::memory().await.expect("engine starts");
    let store = devkit::local_store(engine.client())
        .await
        .expect("the tables");
    Usage {
        store,
        _engine: engine,
    }
}

fn key(user: &str) -> UsageKey {
    UsageKey {
        account_id: "acct_1".into(),
        subject: format!("user#{user}"),
    }
}

fn ledger_key(user: &str) -> LedgerKey {
    LedgerKey {
        account_id: "acct_1".into(),
        subject: format!("user#{user}"),
    }
}

fn report<'a>(source: &'a str, credits: i64, expires_at: i64) -> Grant<'a> {
    Grant {
        source_id: source,
        kind: CreditKind::Analysis,
        credits,
        reason: "report",
        expires_at: Some(expires_at),
        purchase_sk: None,
    }
}

fn pack(source: &str, credits: i64) -> Grant<'_> {
    Grant {
        source_id: source,
        kind: CreditKind::Document,
        credits,
        reason: "credit pack",
        expires_at: None,
        purchase_sk: None,
    }
}

async fn count(store: &Store, k: &UsageKey, meter: Meter, period: &str) -> u64 {
    store.usage_count(k, meter, period).await.expect("count")
}

/// Consumes `ids` concurrently (one task each) and sorts the outcomes.
async fn consume_all(
    store: &Store,
    k: &UsageKey,
    ids: Vec<String>,
    period: &str,
    limit: Option<u64>,
) -> (Vec<AnalysisRecord>, Vec<AnalysisRecord>, Vec<u64>) {
    let tasks: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let (store, k, period) = (store.clone(), k.clone(), period.to_string());
            tokio::spawn(async move {
                store
                    .consume_analysis(&k, &id, AnalysisSource::Subscription, &period, limit, T0)
                    .await
            })
        })
        .collect();
    let (mut new, mut earlier, mut limited) = (Vec::new(), Vec::new(), Vec::new());
    for task in tasks {
        match task.await.expect("task runs").expect("consumes") {
            Consumed::New(r) => new.push(r),
            Consumed::Earlier(r) => earlier.push(r),
            Consumed::LimitReached { used } => limited.push(used),
        }
    }
    (new, earlier, limited)
}

/// The ledger's invariants from the raw items: balance == Σ entries == pool + Σ lots, totals
/// match the entries by kind, nothing negative. Returns (pool, lots by source).
async fn assert_ledger(store: &Store, k: &LedgerKey) -> (i64, HashMap<String, i64>) {
    let entries = store.ledger_entries(k).await.expect("entries");
    let sum = |kind: EntryKind| -> i64 {
        entries
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.amount)
            .sum()
    };
    let out = store
        .client()
        .get_item()
        .table_name(store.tables().get(Table::CreditLedger))
        .key("pk", AttributeValue::S(k.pk()))
        .key("sk", AttributeValue::S("BALANCE".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("read the balance");
    let item = out.item.expect("a balance item");
    let num = |item: &HashMap<String, AttributeValue>, attr: &str| -> i64 {
        item[attr]
            .as_n()
            .expect("a number")
            .parse()
            .expect("an integer")
    };
    let balance = num(&item, "balance");
    let pool = num(&item, "pool");
    let total: i64 = entries.iter().map(|e| e.amount).sum();
    assert_eq!(balance, total, "balance == Σ entries: {entries:?}");
    assert_eq!(num(&item, "total_purchased"), sum(EntryKind::Grant));
    assert_eq!(num(&item, "total_spent"), -sum(EntryKind::Spend));
    assert_eq!(num(&item, "total_expired"), -sum(EntryKind::Expiry));
    let mut lots = HashMap::new();
    for (source, lot) in item["lots"].as_m().expect("lots is a map") {
        let remaining = num(lot.as_m().expect("a lot is a map"), "remaining");
        assert!(remaining >= 0, "lot {source}: {remaining}");
        lots.insert(source.clone(), remaining);
    }
    assert!(pool >= 0);
    assert_eq!(pool + lots.values().sum::<i64>(), balance, "pool + lots");
    // The ledger's public balance agrees with the items.
    let b = store.ledger_balance(k, T0).await.expect("balance");
    assert!(b.balance <= balance);
    (pool, lots)
}

#[tokio::test]
async fn a_limit_admits_exactly_its_count_under_concurrency() {
    let u = usage().await;
    let k = key("u1");
    let period = subscription_period_key(T0);
    let ids: Vec<String> = (0..300).map(|i| format!("ana_{i}")).collect();
    let (new, earlier, limited) = consume_all(&u.store, &k, ids, &period, Some(100)).await;
    assert_eq!((new.len(), earlier.len(), limited.len()), (100, 0, 200));
    assert!(limited.iter().all(|used| *used == 100), "{limited:?}");
    assert_eq!(count(&u.store, &k, Meter::Analyses, &period).await, 100);
    // Exactly the admitted ids have a marker, with their source and period.
    for r in &new {
        let stored = u.store.analysis_record(&k, &r.analysis_id).await.unwrap();
        assert_eq!(stored.as_ref(), Some(r));
        assert_eq!(r.source, AnalysisSource::Subscription);
        assert_eq!(r.period_key, period);
        assert_eq!(r.report_expires_at, None);
    }
    let admitted: std::collections::HashSet<&str> =
        new.iter().map(|r| r.analysis_id.as_str()).collect();
    for i in 0..300 {
        let id = format!("ana_{i}");
        let stored = u.store.analysis_record(&k, &id).await.unwrap();
        assert_eq!(stored.is_some(), admitted.contains(id.as_str()), "{id}");
    }
    // At the limit, an id consumed before is still Earlier, not LimitReached.
    let again = u
        .store
        .consume_analysis(
            &k,
            &new[0].analysis_id,
            AnalysisSource::FreeTier,
            &period,
            Some(100),
            T0 + 5,
        )
        .await
        .unwrap();
    assert_eq!(again, Consumed::Earlier(new[0].clone()));
    assert_eq!(count(&u.store, &k, Meter::Analyses, &period).await, 100);
}

#[tokio::test]
async fn one_analysis_id_counts_once_under_concurrency() {
    let u = usage().await;
    let k = key("u1");
    let period = month_period_key(T0);
    let before = u
        .store
        .consume_analysis(
            &k,
            "ana_other",
            AnalysisSource::FreeTier,
            &period,
            Some(100),
            T0,
        )
        .await
        .unwrap();
    assert!(matches!(before, Consumed::New(_)), "{before:?}");
    let ids = vec!["ana_same".to_string(); 50];
    let (new, earlier, limited) = consume_all(&u.store, &k, ids, &period, Some(100)).await;
    assert_eq!((new.len(), earlier.len(), limited.len()), (1, 49, 0));
    assert!(earlier.iter().all(|r| *r == new[0]));
    assert_eq!(count(&u.store, &k, Meter::Analyses, &period).await, 2);
}

#[tokio::test]
async fn unlimited_counts_and_periods_start_at_zero() {
    let u = usage().await;
    let k = key("u1");
    let p1 = subscription_period_key(T0);
    let p2 = subscription_period_key(T0 + 30 * DAY);
    for i in 0..5 {
        let out = u
            .store
            .consume_analysis(
                &k,
                &format!("a{i}"),
                AnalysisSource::Subscription,
                &p1,
                None,
                T0,
            )
            .await
            .unwrap();
        assert!(matches!(out, Consumed::New(_)), "{out:?}");
    }
    assert_eq!(count(&u.store, &k, Meter::Analyses, &p1).await, 5);
    assert_eq!(count(&u.store, &k, Meter::Analyses, &p2).await, 0);
    // A new period counts from zero, with its own limit.
    let out = u
        .store
        .consume_analysis(
            &k,
            "b0",
            AnalysisSource::FreeTier,
            &p2,
            Some(1),
            T0 + 30 * DAY,
        )
        .await
        .unwrap();
    assert!(matches!(out, Consumed::New(_)), "{out:?}");
    let out = u
        .store
        .consume_analysis(
            &k,
            "b1",
            AnalysisSource::FreeTier,
            &p2,
            Some(1),
            T0 + 30 * DAY,
        )
        .await
        .unwrap();
    assert_eq!(out, Consumed::LimitReached { used: 1 });
    assert_eq!(count(&u.store, &k, Meter::Analyses, &p2).await, 1);
    assert_eq!(count(&u.store, &k, Meter::Analyses, &p1).await, 5);
    // Another subject's counters are its own.
    assert_eq!(count(&u.store, &key("u2"), Meter::Analyses, &p1).await, 0);
    // A limit of 0 admits nothing; report credits do not go through this path.
    let out = u
        .store
        .consume_analysis(
            &k,
            "c0",
            AnalysisSource::FreeTier,
            "month:2026-02",
            Some(0),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(out, Consumed::LimitReached { used: 0 });
    let e = u
        .store
        .consume_analysis(&k, "c1", AnalysisSource::ReportCredit, &p1, None, T0)
        .await;
    assert!(matches!(e, Err(StoreError::Invalid(_))), "{e:?}");
    let e = u
        .store
        .consume_analysis(&k, "", AnalysisSource::FreeTier, &p1, None, T0)
        .await;
    assert!(matches!(e, Err(StoreError::Invalid(_))), "{e:?}");
}

#[tokio::test]
async fn report_credits_pay_analyses_and_pack_credits_do_not() {
    let u = usage().await;
    let (k, lk) = (key("u1"), ledger_key("u1"));
    let period = month_period_key(T0 + DAY);
    // No ledger at all: nothing to pay with.
    let none = u
        .store
        .consume_analysis_with_report_credit(&lk, &k, "ana_0", &period, T0)
        .await
        .unwrap();
    assert_eq!(none, None);
    let g = u
        .store
        .ledger_grant(&lk, &pack("cs_pack", 5), T0)
        .await
        .unwrap();
    assert_eq!(g, GrantOutcome::Granted { balance: 5 });
    // Pack credits alone never pay an analysis.
    let none = u
        .store
        .consume_analysis_with_report_credit(&lk, &k, "ana_0", &period, T0)
        .await
        .unwrap();
    assert_eq!(none, None);
    let expires = T0 + 30 * DAY;
    let g = u
        .store
        .ledger_grant(&lk, &report("cs_report", 1, expires), T0)
        .await
        .unwrap();
    // The balance counts document credits: the report's is an analysis credit.
    assert_eq!(g, GrantOutcome::Granted { balance: 5 });
    assert_ledger(&u.store, &lk).await;

    let out = u
        .store
        .consume_analysis_with_report_credit(&lk, &k, "ana_1", &period, T0 + DAY)
        .await
        .unwrap();
    let record = AnalysisRecord {
        analysis_id: "ana_1".into(),
        source: AnalysisSource::ReportCredit,
        period_key: period.clone(),
        consumed_at: T0 + DAY,
        report_expires_at: Some(expires),
    };
    assert_eq!(out, Some(Consumed::New(record.clone())));
    let (pool, lots) = assert_ledger(&u.store, &lk).await;
    assert_eq!(
        (pool, lots["cs_report"]),
        (5, 0),
        "the report lot paid, not the pool"
    );
    let spends: Vec<_> = u
        .store
        .ledger_entries(&lk)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EntryKind::Spend)
        .collect();
    assert_eq!(spends.len(), 1);
    assert_eq!(
        (
            spends[0].amount,
            spends[0].reason.as_str(),
            spends[0].source_id.as_deref()
        ),
        (-1, "analysis", Some("cs_report"))
    );
    assert_eq!(
        u.store.ledger_balance(&lk, T0 + DAY).await.unwrap().balance,
        5
    );
    assert_eq!(
        u.store.analysis_record(&k, "ana_1").await.unwrap(),
        Some(record.clone())
    );
    assert_eq!(count(&u.store, &k, Meter::Analyses, &period).await, 1);

    // The same id again: Earlier, nothing spent or counted (even with the lot used up).
    let again = u
        .store
        .consume_analysis_with_report_credit(&lk, &k, "ana_1", &period, T0 + DAY + 1)
        .await
        .unwrap();
    assert_eq!(again, Some(Consumed::Earlier(record.clone())));
    let again = u
        .store
        .consume_analysis(
            &k,
            "ana_1",
            AnalysisSource::FreeTier,
            &period,
            Some(1),
            T0 + DAY,
        )
        .await
        .unwrap();
    assert_eq!(again, Consumed::Earlier(record));
    // No report lot left: None although pack credits remain.
    let none = u
        .store
        .consume_analysis_with_report_credit(&lk, &k, "ana_2", &period, T0 + DAY)
        .await
        .unwrap();
    assert_eq!(none, None);
    assert_eq!(u.store.analysis_record(&k, "ana_2").await.unwrap(), None);
    let (pool, _) = assert_ledger(&u.store, &lk).await;
    assert_eq!(pool, 5);
    assert_eq!(count(&u.store, &k, Meter::Analyses, &period).await, 1);
}

#[tokio::test]
async fn the_soonest_expiring_report_lot_pays_and_expired_or_other_lots_never_do() {
    let u = usage().await;
    let (k, lk) = (key("u1"), ledger_key("u1"));
    let period = month_period_key(T0);
    // An expiring lot that is not a report's (expires first) and two report lots.
    let other = Grant {
        kind: CreditKind::Document,
        reason: "promotion",
        ..report("cs_promo", 3, T0 + 5 * DAY)
    };
    u.store.ledger_grant(&lk, &other, T0).await.unwrap();
    u.store
        .ledger_grant(&lk, &report("cs_late", 1, T0 + 40 * DAY), T0)
        .await
        .unwrap();
    u.store
        .ledger_grant(&lk, &report("cs_early", 1, T0 + 10 * DAY), T0)
        .await
        .unwrap();
    let out = u
        .store
        .consume_analysis_with_report_credit(&lk, &k, "a1", &period, T0 + DAY)
        .await
        .unwrap();
    match out {
        Some(Consumed::New(r)) => assert_eq!(r.report_expires_at, Some(T0 + 10 * DAY)),
        other => panic!("paid: {other:?}"),
    }
    let (_, lots) = assert_ledger(&u.store, &lk).await;
    assert_eq!(
        (lots["cs_promo"], lots["cs_early"], lots["cs_late"]),
        (3, 0, 1)
    );
    // At T0 + 41 days every lot has expired: nothing pays.
    let none = u
        .store
        .consume_analysis_with_report_credit(&lk, &k, "a2", &period, T0 + 41 * DAY)
        .await
        .unwrap();
    assert_eq!(none, None);
    let (_, lots) = assert_ledger(&u.store, &lk).await;
    assert_eq!(lots["cs_late"], 1, "an expired lot is not spent");
    // Before its expiry the late lot pays, and the expired promotion is written off with it.
    let out = u
        .store
        .consume_analysis_with_report_credit(&lk, &k, "a3", &period, T0 + 20 * DAY)
        .await
        .unwrap();
    match out {
        Some(Consumed::New(r)) => assert_eq!(r.report_expires_at, Some(T0 + 40 * DAY)),
        other => panic!("paid: {other:?}"),
    }
    let (pool, lots) = assert_ledger(&u.store, &lk).await;
    assert_eq!((pool, lots["cs_promo"], lots["cs_late"]), (0, 0, 0));
    assert_eq!(count(&u.store, &k, Meter::Analyses, &period).await, 2);
}

#[tokio::test]
async fn one_report_credit_pays_one_of_many_concurrent_analyses() {
    let u = usage().await;
    let (k, lk) = (key("u1"), ledger_key("u1"));
    let period = month_period_key(T0);
    u.store
        .ledger_grant(&lk, &pack("cs_pack", 10), T0)
        .await
        .unwrap();
    u.store
        .ledger_grant(&lk, &report("cs_report", 1, T0 + 30 * DAY), T0)
        .await
        .unwrap();
    let run = |ids: Vec<String>| {
        let tasks: Vec<_> = ids
            .into_iter()
            .map(|id| {
                let (store, k, lk, period) =
                    (u.store.clone(), k.clone(), lk.clone(), period.clone());
                tokio::spawn(async move {
                    store
                        .consume_analysis_with_report_credit(&lk, &k, &id, &period, T0 + DAY)
                        .await
                })
            })
            .collect();
        async move {
            let mut outcomes = Vec::new();
            for t in tasks {
                outcomes.push(t.await.expect("task runs").expect("consumes"));
            }
            outcomes
        }
    };
    let outcomes = run((0..20).map(|i| format!("ana_{i}")).collect()).await;
    let new = outcomes
        .iter()
        .filter(|o| matches!(o, Some(Consumed::New(_))))
        .count();
    let none = outcomes.iter().filter(|o| o.is_none()).count();
    assert_eq!((new, none), (1, 19), "{outcomes:?}");
    let (pool, lots) = assert_ledger(&u.store, &lk).await;
    assert_eq!((pool, lots["cs_report"]), (10, 0));
    assert_eq!(count(&u.store, &k, Meter::Analyses, &period).await, 1);

    // One id, many concurrent requests, a fresh lot of 5: one pays, the rest see it Earlier.
    u.store
        .ledger_grant(&lk, &report("cs_report_2", 5, T0 + 30 * DAY), T0)
        .await
        .unwrap();
    let outcomes = run(vec!["ana_same".to_string(); 20]).await;
    let new = outcomes
        .iter()
        .filter(|o| matches!(o, Some(Consumed::New(_))))
        .count();
    let earlier = outcomes
        .iter()
        .filter(|o| matches!(o, Some(Consumed::Earlier(_))))
        .count();
    assert_eq!((new, earlier), (1, 19), "{outcomes:?}");
    let (pool, lots) = assert_ledger(&u.store, &lk).await;
    assert_eq!((pool, lots["cs_report_2"]), (10, 4));
    assert_eq!(count(&u.store, &k, Meter::Analyses, &period).await, 2);
}

#[tokio::test]
async fn chat_messages_count_with_and_without_a_limit() {
    let u = usage().await;
    let k = key("u1");
    let month = month_period_key(T0);
    for expected in 1..=3 {
        let out = u
            .store
            .count_chat_message(&k, &month, Some(3), T0)
            .await
            .unwrap();
        assert_eq!(out, Ok(expected));
    }
    let out = u
        .store
        .count_chat_message(&k, &month, Some(3), T0)
        .await
        .unwrap();
    assert_eq!(out, Err(3));
    assert_eq!(count(&u.store, &k, Meter::ChatMessages, &month).await, 3);
    // Unlimited: still counted.
    let out = u
        .store
        .count_chat_message(&k, &month, None, T0)
        .await
        .unwrap();
    assert_eq!(out, Ok(4));
    // A limit of 0 admits nothing, even on an empty counter.
    let next = month_period_key(T0 + 31 * DAY);
    assert_eq!(next, "month:2026-02");
    let out = u
        .store
        .count_chat_message(&k, &next, Some(0), T0)
        .await
        .unwrap();
    assert_eq!(out, Err(0));
    // Analyses and chat messages are separate meters.
    assert_eq!(count(&u.store, &k, Meter::Analyses, &month).await, 0);

    // Concurrently, with a limit of 50: exactly 50 counted.
    let sub = subscription_period_key(T0);
    let tasks: Vec<_> = (0..120)
        .map(|_| {
            let (store, k, sub) = (u.store.clone(), k.clone(), sub.clone());
            tokio::spawn(async move { store.count_chat_message(&k, &sub, Some(50), T0).await })
        })
        .collect();
    let mut counted = Vec::new();
    let mut refused = 0;
    for t in tasks {
        match t.await.expect("task runs").expect("counts") {
            Ok(used) => counted.push(used),
            Err(used) => {
                assert_eq!(used, 50);
                refused += 1;
            }
        }
    }
    counted.sort_unstable();
    assert_eq!(counted, (1..=50).collect::<Vec<u64>>());
    assert_eq!(refused, 70);
    assert_eq!(count(&u.store, &k, Meter::ChatMessages, &sub).await, 50);
}
