//! The credit ledger against the DynamoDB-compatible engine over HTTP (devkit): grants keyed
//! by their source, document access under concurrency, expiring lots, purchases. After every
//! step `assert_invariants` re-derives the balance from the stored items.

use aws_sdk_dynamodb::types::AttributeValue;
use devkit::Engine;
use shared::ledger::{
    AccessOutcome, Balance, Charge, CreditKind, EntryKind, Grant, GrantOutcome, LedgerKey, Lot,
    MAX_ACCESS_IDS, Purchase, PurchaseStatus,
};
use shared::store::{Store, StoreError};
use shared::tables::Table;
use std::collections::{HashMap, HashSet};

const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
const DAY: i64 = 86_400;

struct Ledger {
    store: Store,
    _engine: Engine,
}

async fn ledger() -> Ledger {
    let engine = Engine::memory().await.expect("engine starts");
    let store = devkit::local_store(engine.client())
        .await
        .expect("the tables");
    Ledger {
        store,
        _engine: engine,
    }
}

fn key(user: &str) -> LedgerKey {
    LedgerKey {
        account_id: "acct_1".into(),
        subject: format!("user#{user}"),
    }
}

fn ids(raw: &[&str]) -> Vec<String> {
    raw.iter().map(|s| s.to_string()).collect()
}

fn grant<'a>(source: &'a str, credits: i64) -> Grant<'a> {
    Grant {
        source_id: source,
        kind: CreditKind::Document,
        credits,
        reason: "credit pack",
        expires_at: None,
        purchase_sk: None,
    }
}

/// Every item of a ledger, by sort key.
async fn items(store: &Store, key: &LedgerKey) -> HashMap<String, HashMap<String, AttributeValue>> {
    let pages: Vec<_> = store
        .client()
        .query()
        .table_name(store.tables().get(Table::CreditLedger))
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(key.pk()))
        .consistent_read(true)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("query the ledger");
    pages
        .into_iter()
        .map(|item| {
            let sk = item["sk"].as_s().expect("sk is a string").clone();
            (sk, item)
        })
        .collect()
}

fn num(item: &HashMap<String, AttributeValue>, attr: &str) -> i64 {
    item.get(attr)
        .unwrap_or_else(|| panic!("{attr} missing in {item:?}"))
        .as_n()
        .expect("a number")
        .parse()
        .expect("an integer")
}

/// What the stored items add up to.
#[derive(Debug, Default)]
struct Derived {
    balance: i64,
    pool: i64,
    lots: HashMap<String, (i64, i64)>,
    charged_docs: usize,
    docs: HashSet<String>,
    expiries: Vec<(String, i64)>,
}

/// The ledger's invariants, from the raw items: the balance item equals the sum of the
/// entries and of its own parts, totals match the entries by kind, nothing is negative, each
/// grant has its marker, each charged document its credit, each lot at most one write-off.
async fn assert_invariants(store: &Store, key: &LedgerKey) -> Derived {
    let all = items(store, key).await;
    let entries = store.ledger_entries(key).await.expect("entries");
    let sum = |kind: EntryKind| -> i64 {
        entries
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.amount)
            .sum()
    };
    for e in &entries {
        match e.kind {
            EntryKind::Grant => assert!(e.amount > 0, "{e:?}"),
            EntryKind::Spend | EntryKind::Expiry => assert!(e.amount < 0, "{e:?}"),
        }
    }
    let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "entries come oldest first");
    let total: i64 = entries.iter().map(|e| e.amount).sum();
    let mut derived = Derived::default();
    match all.get("BALANCE") {
        None => assert!(entries.is_empty(), "entries without a balance: {entries:?}"),
        Some(b) => {
            derived.balance = num(b, "balance");
            derived.pool = num(b, "pool");
            assert_eq!(derived.balance, total, "balance == sum of entries");
            assert!(derived.balance >= 0 && derived.pool >= 0, "{b:?}");
            assert_eq!(num(b, "total_purchased"), sum(EntryKind::Grant));
            assert_eq!(num(b, "total_spent"), -sum(EntryKind::Spend));
            assert_eq!(num(b, "total_expired"), -sum(EntryKind::Expiry));
            let lots = b["lots"].as_m().expect("lots is a map");
            for (source, lot) in lots {
                let lot = lot.as_m().expect("a lot is a map");
                let remaining = num(lot, "remaining");
                assert!(remaining >= 0, "lot {source}: {remaining}");
                derived
                    .lots
                    .insert(source.clone(), (remaining, num(lot, "expires_at")));
            }
            let in_lots: i64 = derived.lots.values().map(|(r, _)| r).sum();
            assert_eq!(
                derived.pool + in_lots,
                derived.balance,
                "pool + lots == balance"
            );
        }
    }
    let grants: Vec<&str> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::Grant)
        .map(|e| e.source_id.as_deref().expect("a grant has a source"))
        .collect();
    let markers = all.keys().filter(|sk| sk.starts_with("GRANT#")).count();
    assert_eq!(markers, grants.len(), "one marker per grant");
    assert_eq!(
        grants.iter().collect::<HashSet<_>>().len(),
        grants.len(),
        "a source grants once"
    );
    for source in &grants {
        assert!(all.contains_key(&format!("GRANT#{source}")), "{source}");
    }
    for (sk, item) in &all {
        if let Some(doc) = sk.strip_prefix("DOC#") {
            derived.docs.insert(doc.to_string());
            if item.contains_key("entry_id") {
                derived.charged_docs += 1;
            }
        }
    }
    let document_spends: i64 = entries
        .iter()
        .filter(|e| e.kind == EntryKind::Spend && e.reason != "analysis")
        .map(|e| -e.amount)
        .sum();
    assert_eq!(
        i64::try_from(derived.charged_docs).expect("small"),
        document_spends,
        "one credit per charged document (analyses are paid without one)"
    );
    for e in entries.iter().filter(|e| e.kind == EntryKind::Expiry) {
        let source = e.source_id.clone().expect("an expiry names its lot");
        assert!(
            derived.expiries.iter().all(|(s, _)| *s != source),
            "lot {source} written off twice"
        );
        assert_eq!(
            derived.lots.get(&source).map(|l| l.0),
            Some(0),
            "a written-off lot is empty"
        );
        derived.expiries.push((source, e.amount));
    }
    derived
}

async fn balance(store: &Store, key: &LedgerKey, now: i64) -> Balance {
    store.ledger_balance(key, now).await.expect("balance")
}

async fn access(
    store: &Store,
    key: &LedgerKey,
    docs: &[&str],
    charge: bool,
    now: i64,
) -> AccessOutcome {
    store
        .ledger_access(
            key,
            &ids(docs),
            if charge {
                Charge::Always
            } else {
                Charge::Never
            },
            now,
        )
        .await
        .expect("access")
        .outcome
}

fn granted(accessible: &[&str], spent: i64, remaining: i64) -> AccessOutcome {
    AccessOutcome::Granted {
        accessible: ids(accessible),
        credits_spent: spent,
        remaining_balance: remaining,
    }
}

#[tokio::test]
async fn an_empty_ledger_has_nothing() {
    let l = ledger().await;
    let k = key("u1");
    let b = balance(&l.store, &k, T0).await;
    assert_eq!((b.balance, b.total_purchased, b.total_spent), (0, 0, 0));
    assert!(b.lots.is_empty());
    assert!(l.store.ledger_entries(&k).await.unwrap().is_empty());
    assert_invariants(&l.store, &k).await;
}

#[tokio::test]
async fn a_source_grants_once() {
    let l = ledger().await;
    let k = key("u1");
    let first = l.store.ledger_grant(&k, &grant("cs_1", 5), T0).await;
    assert_eq!(first.unwrap(), GrantOutcome::Granted { balance: 5 });
    assert_invariants(&l.store, &k).await;
    let again = l.store.ledger_grant(&k, &grant("cs_1", 5), T0 + 60).await;
    assert_eq!(again.unwrap(), GrantOutcome::AlreadyGranted);
    assert_invariants(&l.store, &k).await;
    let other = l.store.ledger_grant(&k, &grant("cs_2", 10), T0 + 61).await;
    assert_eq!(other.unwrap(), GrantOutcome::Granted { balance: 15 });
    let d = assert_invariants(&l.store, &k).await;
    assert_eq!(d.balance, 15);
    let b = balance(&l.store, &k, T0 + 62).await;
    assert_eq!((b.balance, b.total_purchased, b.total_spent), (15, 15, 0));
    let entries = l.store.ledger_entries(&k).await.unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].source_id.as_deref(), Some("cs_1"));
    assert_eq!(entries[0].reason, "credit pack");
    assert_eq!(entries[0].created_at, T0);
    // Another subject of the same account is another ledger.
    assert_eq!(balance(&l.store, &key("u2"), T0).await.balance, 0);
}

#[tokio::test]
async fn bad_grants_write_nothing() {
    let l = ledger().await;
    let k = key("u1");
    for credits in [0, -5, 1_000_001] {
        let e = l
            .store
            .ledger_grant(&k, &grant("cs_bad", credits), T0)
            .await;
        assert!(matches!(e, Err(StoreError::Invalid(_))), "{credits}: {e:?}");
    }
    let expired = Grant {
        expires_at: Some(T0),
        ..grant("cs_old", 1)
    };
    let e = l.store.ledger_grant(&k, &expired, T0).await;
    assert!(matches!(e, Err(StoreError::Invalid(_))), "{e:?}");
    let e = l.store.ledger_grant(&k, &grant("", 1), T0).await;
    assert!(matches!(e, Err(StoreError::Invalid(_))), "{e:?}");
    assert!(items(&l.store, &k).await.is_empty());
    assert_invariants(&l.store, &k).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn twenty_concurrent_grants_of_one_source_grant_once() {
    let l = ledger().await;
    let k = key("u1");
    // Once on an empty ledger (racing to create the balance), once on an existing one.
    for (round, source) in ["cs_first", "cs_second"].into_iter().enumerate() {
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (store, k) = (l.store.clone(), k.clone());
                tokio::spawn(async move { store.ledger_grant(&k, &grant(source, 3), T0).await })
            })
            .collect();
        let mut granted = 0;
        for t in tasks {
            match t.await.expect("task").expect("grant") {
                GrantOutcome::Granted { balance } => {
                    granted += 1;
                    assert_eq!(balance, 3 * (round as i64 + 1));
                }
                GrantOutcome::AlreadyGranted => {}
            }
        }
        assert_eq!(granted, 1, "{source}");
        let d = assert_invariants(&l.store, &k).await;
        assert_eq!(d.balance, 3 * (round as i64 + 1));
    }
    assert_eq!(l.store.ledger_entries(&k).await.unwrap().len(), 2);
}

fn purchase(id: &str, session: &str, credits: i64, cents: i64, created_at: i64) -> Purchase {
    Purchase {
        id: id.into(),
        session_id: session.into(),
        pack_type: "medium".into(),
        credits,
        price_cents: cents,
        status: PurchaseStatus::Pending,
        created_at,
        completed_at: None,
    }
}

#[tokio::test]
async fn a_grant_completes_its_pending_purchase_once() {
    let l = ledger().await;
    let k = key("u1");
    let p = purchase("cp_01", "cs_1", 5, 1999, T0);
    let sk = p.sort_key();
    assert_eq!(sk, "PURCHASE#2026-01-01T00:00:00Z#cp_01");
    l.store.insert_purchase(&k, &p).await.unwrap();
    assert_invariants(&l.store, &k).await;
    let page = l.store.purchases(&k, 50, 0).await.unwrap();
    assert_eq!(page.purchases, vec![p.clone()]);
    assert_eq!((page.total_purchased, page.total_spent_cents), (0, 0));

    let g = Grant {
        purchase_sk: Some(&sk),
        ..grant("cs_1", 5)
    };
    let out = l.store.ledger_grant(&k, &g, T0 + 120).await.unwrap();
    assert_eq!(out, GrantOutcome::Granted { balance: 5 });
    assert_invariants(&l.store, &k).await;
    let completed = Purchase {
        status: PurchaseStatus::Completed,
        completed_at: Some(T0 + 120),
        ..p.clone()
    };
    let page = l.store.purchases(&k, 50, 0).await.unwrap();
    assert_eq!(page.purchases, vec![completed.clone()]);
    assert_eq!((page.total_purchased, page.total_spent_cents), (5, 1999));

    // The webhook delivered again: a clean no-op; the purchase keeps its completion time.
    let out = l.store.ledger_grant(&k, &g, T0 + 900).await.unwrap();
    assert_eq!(out, GrantOutcome::AlreadyGranted);
    assert_invariants(&l.store, &k).await;
    let page = l.store.purchases(&k, 50, 0).await.unwrap();
    assert_eq!(page.purchases, vec![completed]);
    assert_eq!(balance(&l.store, &k, T0 + 901).await.balance, 5);
}

#[tokio::test]
async fn a_grant_for_a_missing_or_foreign_purchase_writes_nothing() {
    let l = ledger().await;
    let k = key("u1");
    let missing = Grant {
        purchase_sk: Some("PURCHASE#2026-01-01T00:00:00Z#cp_none"),
        ..grant("cs_1", 5)
    };
    let e = l.store.ledger_grant(&k, &missing, T0).await;
    assert!(matches!(e, Err(StoreError::ConditionFailed(_))), "{e:?}");
    assert!(items(&l.store, &k).await.is_empty());

    let p = purchase("cp_02", "cs_other", 5, 1999, T0);
    l.store.insert_purchase(&k, &p).await.unwrap();
    let sk = p.sort_key();
    let foreign = Grant {
        purchase_sk: Some(&sk),
        ..grant("cs_1", 5)
    };
    let e = l.store.ledger_grant(&k, &foreign, T0).await;
    assert!(matches!(e, Err(StoreError::ConditionFailed(_))), "{e:?}");
    assert_invariants(&l.store, &k).await;
    assert_eq!(balance(&l.store, &k, T0).await.balance, 0);
    let page = l.store.purchases(&k, 50, 0).await.unwrap();
    assert_eq!(page.purchases[0].status, PurchaseStatus::Pending);
    // The same purchase twice is refused.
    let e = l.store.insert_purchase(&k, &p).await;
    assert!(matches!(e, Err(StoreError::ConditionFailed(_))), "{e:?}");
}

#[tokio::test]
async fn owned_documents_are_free_and_access_is_all_or_nothing() {
    let l = ledger().await;
    let k = key("u1");
    l.store
        .ledger_grant(&k, &grant("cs_1", 3), T0)
        .await
        .unwrap();
    assert_invariants(&l.store, &k).await;

    assert_eq!(
        access(&l.store, &k, &["a", "b"], true, T0).await,
        granted(&["a", "b"], 2, 1)
    );
    assert_invariants(&l.store, &k).await;
    assert_eq!(
        access(&l.store, &k, &["b", "a"], true, T0).await,
        granted(&["b", "a"], 0, 1),
        "owned documents cost nothing"
    );
    assert_invariants(&l.store, &k).await;

    let before = items(&l.store, &k).await.len();
    assert_eq!(
        access(&l.store, &k, &["a", "c", "d"], true, T0).await,
        AccessOutcome::Insufficient {
            required: 2,
            available: 1
        }
    );
    let d = assert_invariants(&l.store, &k).await;
    assert_eq!(items(&l.store, &k).await.len(), before, "nothing written");
    assert!(!d.docs.contains("c") && !d.docs.contains("d"));

    assert_eq!(
        access(&l.store, &k, &["c", "a"], true, T0).await,
        granted(&["c", "a"], 1, 0)
    );
    let d = assert_invariants(&l.store, &k).await;
    assert_eq!(d.balance, 0);
    assert_eq!(d.charged_docs, 3);
    let b = balance(&l.store, &k, T0).await;
    assert_eq!((b.balance, b.total_purchased, b.total_spent), (0, 3, 3));
    assert_eq!(
        access(&l.store, &k, &[], true, T0).await,
        granted(&[], 0, 0)
    );
}

#[tokio::test]
async fn without_charge_documents_cost_nothing_and_are_not_bought() {
    let l = ledger().await;
    let k = key("u1");
    assert_eq!(
        access(&l.store, &k, &["x", "y"], false, T0).await,
        granted(&["x", "y"], 0, 0)
    );
    // A plan's access writes nothing: it is not a purchase.
    assert!(items(&l.store, &k).await.is_empty());
    // Later, without the subscription, they cost a credit like any other.
    l.store
        .ledger_grant(&k, &grant("cs_1", 3), T0)
        .await
        .unwrap();
    assert_eq!(
        access(&l.store, &k, &["x", "z"], true, T0).await,
        granted(&["x", "z"], 2, 1)
    );
    assert_invariants(&l.store, &k).await;
    // A document bought with a credit stays free, on a plan or not.
    assert_eq!(
        access(&l.store, &k, &["x", "w"], false, T0).await,
        granted(&["x", "w"], 0, 1)
    );
    assert_eq!(
        access(&l.store, &k, &["x"], true, T0).await,
        granted(&["x"], 0, 1)
    );
    let d = assert_invariants(&l.store, &k).await;
    assert_eq!((d.balance, d.docs.len()), (1, 2));
}

#[tokio::test]
async fn a_document_a_plan_once_recorded_is_bought_with_a_credit() {
    // Plan access used to write a `DOC#` item without an entry; it owns nothing now.
    let l = ledger().await;
    let k = key("u1");
    l.store
        .ledger_grant(&k, &grant("cs_1", 2), T0)
        .await
        .unwrap();
    let table = l.store.tables().get(Table::CreditLedger).to_string();
    l.store
        .client()
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S(k.pk()))
        .item("sk", AttributeValue::S("DOC#old".into()))
        .item("analysis_id", AttributeValue::S("old".into()))
        .item("granted_at", AttributeValue::N(T0.to_string()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        access(&l.store, &k, &["old"], true, T0).await,
        granted(&["old"], 1, 1)
    );
    assert_eq!(
        access(&l.store, &k, &["old"], true, T0).await,
        granted(&["old"], 0, 1)
    );
    assert_invariants(&l.store, &k).await;
}

#[tokio::test]
async fn access_ids_are_bounded_and_distinct() {
    let l = ledger().await;
    let k = key("u1");
    l.store
        .ledger_grant(&k, &grant("cs_1", 100), T0)
        .await
        .unwrap();
    let too_many: Vec<String> = (0..=MAX_ACCESS_IDS).map(|i| format!("d{i}")).collect();
    let e = l
        .store
        .ledger_access(&k, &too_many, Charge::Always, T0)
        .await;
    assert!(matches!(e, Err(StoreError::Invalid(_))), "{e:?}");
    let e = l
        .store
        .ledger_access(&k, &ids(&["a", "a"]), Charge::Always, T0)
        .await;
    assert!(matches!(e, Err(StoreError::Invalid(_))), "{e:?}");
    let e = l
        .store
        .ledger_access(&k, &ids(&[""]), Charge::Always, T0)
        .await;
    assert!(matches!(e, Err(StoreError::Invalid(_))), "{e:?}");
    assert_invariants(&l.store, &k).await;
    // The bound itself fits one transaction.
    let max = &too_many[..MAX_ACCESS_IDS];
    let out = l
        .store
        .ledger_access(&k, max, Charge::Always, T0)
        .await
        .unwrap()
        .outcome;
    assert_eq!(
        out,
        AccessOutcome::Granted {
            accessible: max.to_vec(),
            credits_spent: 50,
            remaining_balance: 50
        }
    );
    let d = assert_invariants(&l.store, &k).await;
    assert_eq!(d.charged_docs, 50);
}

async fn concurrent_access(
    store: &Store,
    k: &LedgerKey,
    docs: Vec<String>,
    now: i64,
) -> Vec<AccessOutcome> {
    let tasks: Vec<_> = docs
        .into_iter()
        .map(|doc| {
            let (store, k) = (store.clone(), k.clone());
            tokio::spawn(async move { store.ledger_access(&k, &[doc], Charge::Always, now).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.expect("task").expect("access").outcome);
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn two_hundred_concurrent_documents_against_ten_credits_succeed_ten_times() {
    let l = ledger().await;
    let k = key("u1");
    l.store
        .ledger_grant(&k, &grant("cs_1", 10), T0)
        .await
        .unwrap();
    assert_invariants(&l.store, &k).await;
    let docs: Vec<String> = (0..200).map(|i| format!("ana_{i}")).collect();
    let outcomes = concurrent_access(&l.store, &k, docs, T0).await;
    let won = outcomes
        .iter()
        .filter(|o| {
            matches!(
                o,
                AccessOutcome::Granted {
                    credits_spent: 1,
                    ..
                }
            )
        })
        .count();
    let lost = outcomes
        .iter()
        .filter(|o| {
            matches!(
                o,
                AccessOutcome::Insufficient {
                    required: 1,
                    available: 0
                }
            )
        })
        .count();
    assert_eq!((won, lost), (10, 190), "{outcomes:?}");
    let d = assert_invariants(&l.store, &k).await;
    assert_eq!(d.balance, 0);
    assert_eq!(d.docs.len(), 10);
    assert_eq!(d.charged_docs, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn two_hundred_concurrent_requests_for_one_document_charge_once() {
    let l = ledger().await;
    let k = key("u1");
    l.store
        .ledger_grant(&k, &grant("cs_1", 10), T0)
        .await
        .unwrap();
    let docs = vec!["ana_same".to_string(); 200];
    let outcomes = concurrent_access(&l.store, &k, docs, T0).await;
    let mut spent = 0;
    for o in &outcomes {
        match o {
            AccessOutcome::Granted {
                accessible,
                credits_spent,
                remaining_balance,
            } => {
                assert_eq!(accessible, &ids(&["ana_same"]));
                assert_eq!(*remaining_balance, 9);
                spent += credits_spent;
            }
            other => panic!("every request gets the document: {other:?}"),
        }
    }
    assert_eq!(spent, 1);
    let d = assert_invariants(&l.store, &k).await;
    assert_eq!((d.balance, d.charged_docs), (9, 1));
}

#[tokio::test]
async fn spending_takes_the_expiring_document_lot_first() {
    let l = ledger().await;
    let k = key("u1");
    l.store
        .ledger_grant(&k, &grant("cs_pack", 5), T0)
        .await
        .unwrap();
    assert_invariants(&l.store, &k).await;
    // Expiring document credits (a promotion, say).
    let report = Grant {
        reason: "promotion",
        expires_at: Some(T0 + 30 * DAY),
        ..grant("cs_report", 2)
    };
    let out = l.store.ledger_grant(&k, &report, T0).await.unwrap();
    assert_eq!(out, GrantOutcome::Granted { balance: 7 });
    assert_invariants(&l.store, &k).await;
    let b = balance(&l.store, &k, T0).await;
    assert_eq!(b.balance, 7);
    assert_eq!(
        b.lots,
        vec![Lot {
            source_id: "cs_report".into(),
            kind: CreditKind::Document,
            remaining: 2,
            expires_at: Some(T0 + 30 * DAY)
        }]
    );
    assert_eq!(
        access(&l.store, &k, &["a"], true, T0 + DAY).await,
        granted(&["a"], 1, 6)
    );
    let d = assert_invariants(&l.store, &k).await;
    assert_eq!(
        (d.pool, d.lots["cs_report"].0),
        (5, 1),
        "the lot went first"
    );
    assert_eq!(
        access(&l.store, &k, &["b", "c"], true, T0 + DAY).await,
        granted(&["b", "c"], 2, 4)
    );
    let d = assert_invariants(&l.store, &k).await;
    assert_eq!((d.pool, d.lots["cs_report"].0), (4, 0));
    assert!(balance(&l.store, &k, T0 + DAY).await.lots.is_empty());
    // An empty lot expiring writes nothing off.
    assert_eq!(
        access(&l.store, &k, &["d"], true, T0 + 31 * DAY).await,
        granted(&["d"], 1, 3)
    );
    let d = assert_invariants(&l.store, &k).await;
    assert!(d.expiries.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn expired_credits_never_count_and_are_written_off_once() {
    let l = ledger().await;
    let k = key("u1");
    let expires = T0 + 30 * DAY;
    l.store
        .ledger_grant(&k, &grant("cs_pack", 5), T0)
        .await
        .unwrap();
    let report = Grant {
        expires_at: Some(expires),
        ..grant("cs_report", 3)
    };
    l.store.ledger_grant(&k, &report, T0).await.unwrap();
    assert_eq!(
        access(&l.store, &k, &["a"], true, T0).await,
        granted(&["a"], 1, 7)
    );
    assert_invariants(&l.store, &k).await;
    assert_eq!(balance(&l.store, &k, expires - 1).await.balance, 7);

    // A second after the 30 days: the lot's 2 credits no longer count, before any write.
    let later = expires + 1;
    let b = balance(&l.store, &k, later).await;
    assert_eq!((b.balance, b.total_purchased, b.total_spent), (5, 8, 1));
    assert!(b.lots.is_empty());
    let d = assert_invariants(&l.store, &k).await;
    assert_eq!(d.balance, 7, "a read writes nothing");
    assert!(d.expiries.is_empty());
    // An access with nothing new writes nothing either.
    assert_eq!(
        access(&l.store, &k, &["a"], true, later).await,
        granted(&["a"], 0, 5)
    );
    assert!(assert_invariants(&l.store, &k).await.expiries.is_empty());

    // Ten concurrent spends of distinct documents: five win, the lot is written off once.
    let docs: Vec<String> = (0..10).map(|i| format!("ana_{i}")).collect();
    let outcomes = concurrent_access(&l.store, &k, docs, later).await;
    let won = outcomes
        .iter()
        .filter(|o| matches!(o, AccessOutcome::Granted { .. }))
        .count();
    assert_eq!(won, 5, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| matches!(
        o,
        AccessOutcome::Granted {
            credits_spent: 1,
            ..
        } | AccessOutcome::Insufficient {
            required: 1,
            available: 0
        }
    )));
    let d = assert_invariants(&l.store, &k).await;
    assert_eq!(d.expiries, vec![("cs_report".to_string(), -2)]);
    assert_eq!((d.balance, d.pool), (0, 0));
    let b = balance(&l.store, &k, later).await;
    assert_eq!((b.balance, b.total_purchased, b.total_spent), (0, 8, 6));
}

#[tokio::test]
async fn purchases_page_newest_first_with_totals_over_completed_ones() {
    let l = ledger().await;
    let k = key("u1");
    let all: Vec<Purchase> = (0..5)
        .map(|i| {
            purchase(
                &format!("cp_{i:02}"),
                &format!("cs_{i}"),
                i + 1,
                100 * (i + 1),
                T0 + i * 3600,
            )
        })
        .collect();
    for p in &all {
        l.store.insert_purchase(&k, p).await.unwrap();
        assert_invariants(&l.store, &k).await;
    }
    // Complete the 2nd and the 4th.
    for i in [1usize, 3] {
        let sk = all[i].sort_key();
        let g = Grant {
            purchase_sk: Some(&sk),
            ..grant(&all[i].session_id, all[i].credits)
        };
        let out = l.store.ledger_grant(&k, &g, T0 + DAY).await.unwrap();
        assert!(matches!(out, GrantOutcome::Granted { .. }));
        assert_invariants(&l.store, &k).await;
    }
    let page = l.store.purchases(&k, 2, 0).await.unwrap();
    let got: Vec<&str> = page.purchases.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(got, ["cp_04", "cp_03"]);
    assert_eq!(page.purchases[1].status, PurchaseStatus::Completed);
    assert_eq!(page.purchases[1].completed_at, Some(T0 + DAY));
    assert_eq!(page.purchases[0].status, PurchaseStatus::Pending);
    assert_eq!(
        (page.total_purchased, page.total_spent_cents),
        (2 + 4, 200 + 400)
    );
    let page = l.store.purchases(&k, 2, 2).await.unwrap();
    let got: Vec<&str> = page.purchases.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(got, ["cp_02", "cp_01"]);
    assert_eq!((page.total_purchased, page.total_spent_cents), (6, 600));
    let page = l.store.purchases(&k, 2, 4).await.unwrap();
    assert_eq!(page.purchases.len(), 1);
    assert!(
        l.store
            .purchases(&k, 10, 9)
            .await
            .unwrap()
            .purchases
            .is_empty()
    );
    assert_eq!(
        l.store.purchases(&k, 500, 0).await.unwrap().purchases.len(),
        5
    );
    assert_eq!(balance(&l.store, &k, T0 + DAY).await.total_purchased, 6);
}

#[tokio::test]
async fn a_lot_stored_before_kinds_gets_its_kind_from_its_grant_once() {
    let l = ledger().await;
    let k = key("u1");
    let expires = T0 + 30 * DAY;
    for (source, reason, kind) in [
        ("cs_report", "report", CreditKind::Analysis),
        ("cs_promo", "promotion", CreditKind::Document),
    ] {
        let g = Grant {
            kind,
            reason,
            expires_at: Some(expires),
            ..grant(source, if kind == CreditKind::Analysis { 2 } else { 1 })
        };
        l.store.ledger_grant(&k, &g, T0).await.unwrap();
    }
    // The report's credit pays an analysis, the promotion's a document (both through the
    // ledger), so the analysis totals have a spend to find.
    let lot = l
        .store
        .ledger_balance(&k, T0)
        .await
        .unwrap()
        .lots
        .into_iter()
        .find(|l| l.kind == CreditKind::Analysis)
        .unwrap();
    let usage = shared::metering::UsageKey {
        account_id: k.account_id.clone(),
        subject: k.subject.clone(),
    };
    let paid = l
        .store
        .consume_analysis_with_report_credit(&k, &usage, "ana_1", "report:2026-01", T0 + 1)
        .await
        .unwrap();
    assert!(
        matches!(paid, Some(shared::metering::store::Consumed::New(_))),
        "{paid:?} {lot:?}"
    );
    // As the items were before lots had kinds, and before the analysis totals were kept.
    let table = l.store.tables().get(Table::CreditLedger).to_string();
    l.store
        .client()
        .update_item()
        .table_name(&table)
        .key("pk", AttributeValue::S(k.pk()))
        .key("sk", AttributeValue::S("BALANCE".into()))
        .update_expression("REMOVE analysis_purchased, analysis_spent, analysis_expired")
        .send()
        .await
        .unwrap();
    for source in ["cs_report", "cs_promo"] {
        l.store
            .client()
            .update_item()
            .table_name(&table)
            .key("pk", AttributeValue::S(k.pk()))
            .key("sk", AttributeValue::S("BALANCE".into()))
            .update_expression("REMOVE #lots.#s.#k")
            .expression_attribute_names("#lots", "lots")
            .expression_attribute_names("#s", source)
            .expression_attribute_names("#k", "kind")
            .send()
            .await
            .unwrap();
    }
    let stored_kinds = || async {
        let all = items(&l.store, &k).await;
        let Some(AttributeValue::M(lots)) = all["BALANCE"].get("lots") else {
            panic!("lots");
        };
        let mut kinds: Vec<(String, Option<String>)> = lots
            .iter()
            .map(|(s, lot)| {
                let kind = lot
                    .as_m()
                    .ok()
                    .and_then(|m| m.get("kind"))
                    .and_then(|v| v.as_s().ok())
                    .cloned();
                (s.clone(), kind)
            })
            .collect();
        kinds.sort();
        kinds
    };
    assert!(stored_kinds().await.iter().all(|(_, k)| k.is_none()));
    let b = balance(&l.store, &k, T0).await;
    assert_eq!(
        (b.balance, b.total_purchased, b.total_spent),
        (1, 1, 0),
        "only the promotion's credit unlocks documents, and only it counts in the totals"
    );
    let stored = items(&l.store, &k).await;
    let n = |attr: &str| {
        stored["BALANCE"]
            .get(attr)
            .and_then(|v| v.as_n().ok())
            .cloned()
    };
    assert_eq!(
        (
            n("analysis_purchased"),
            n("analysis_spent"),
            n("analysis_expired")
        ),
        (Some("2".into()), Some("1".into()), Some("0".into())),
        "added up from the entries once, and stored"
    );
    let mut kinds: Vec<_> = b
        .lots
        .iter()
        .map(|l| (l.source_id.clone(), l.kind))
        .collect();
    kinds.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        kinds,
        vec![
            ("cs_promo".to_string(), CreditKind::Document),
            ("cs_report".to_string(), CreditKind::Analysis)
        ]
    );
    assert_eq!(
        stored_kinds().await,
        vec![
            ("cs_promo".to_string(), Some("document".to_string())),
            ("cs_report".to_string(), Some("analysis".to_string()))
        ],
        "stored, so later reads need no grant"
    );
    assert_invariants(&l.store, &k).await;
}
