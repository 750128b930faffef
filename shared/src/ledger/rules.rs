//! The ledger's decisions, with no I/O: given the stored balance state, the documents already
//! owned, the request and `now`, what to write. The DynamoDB adapter (`store.rs`) turns a plan
//! into one conditioned transaction; every condition there restates an assumption made here,
//! so a plan made from a stale read can never commit.
//!
//! Credits live in two places inside the `BALANCE` item: `pool` (document credits that never
//! expire: the packs) and `lots` (one per expiring grant, keyed by its source, each with the
//! [`CreditKind`] it pays for: the report's analysis credit). Always
//! `balance == pool + Σ lots.remaining`, expired lots included until their expiry entry is
//! written. A document is paid with document credits only, an analysis with analysis
//! credits only.

use super::{CreditKind, Lot, MAX_ACCESS_IDS};
use std::collections::HashSet;

/// The most credits one grant may carry (far above any pack; keeps sums far from overflow).
pub const MAX_GRANT_CREDITS: i64 = 1_000_000;

/// The most expired lots written off in one transaction (each needs its own entry item;
/// DynamoDB allows 100 items per transaction and an access uses up to `MAX_ACCESS_IDS + 2`).
/// Lots beyond it are still excluded from every balance and written off by a later write.
pub const MAX_EXPIRIES_PER_WRITE: usize = 16;

/// An expiring lot as stored in the `BALANCE` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLot {
    pub source_id: String,
    pub kind: CreditKind,
    pub remaining: i64,
    pub expires_at: i64,
}

/// The `BALANCE` item's numbers, as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerState {
    /// Every unexpired and not yet written-off credit: `pool + Σ lots.remaining`.
    pub balance: i64,
    /// Credits that never expire.
    pub pool: i64,
    /// Every credit granted, spent and written off, of both kinds.
    pub total_purchased: i64,
    pub total_spent: i64,
    pub total_expired: i64,
    /// Of those, the analysis credits' (the document credits' are the rest).
    pub analysis: KindTotals,
    pub lots: Vec<StoredLot>,
}

/// Credits of one kind granted, spent and written off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindTotals {
    pub purchased: i64,
    pub spent: i64,
    pub expired: i64,
}

/// A lot has expired from its `expires_at` second on.
pub fn is_expired(expires_at: i64, now: i64) -> bool {
    now >= expires_at
}

impl LedgerState {
    /// Checks the item's own arithmetic (a corrupt item must not be spent from).
    pub fn is_consistent(&self) -> bool {
        let lots: Option<i64> = self
            .lots
            .iter()
            .try_fold(0i64, |acc, l| acc.checked_add(l.remaining));
        self.pool >= 0
            && self.balance >= 0
            && self.lots.iter().all(|l| l.remaining >= 0)
            && lots.and_then(|s| s.checked_add(self.pool)) == Some(self.balance)
            && self
                .total_purchased
                .checked_sub(self.total_spent)
                .and_then(|v| v.checked_sub(self.total_expired))
                == Some(self.balance)
            && self.analysis_is_consistent()
    }

    /// The analysis totals are part of the totals and add up to the analysis lots.
    fn analysis_is_consistent(&self) -> bool {
        let a = self.analysis;
        let in_lots: Option<i64> = self
            .lots
            .iter()
            .filter(|l| l.kind == CreditKind::Analysis)
            .try_fold(0i64, |acc, l| acc.checked_add(l.remaining));
        (0..=self.total_purchased).contains(&a.purchased)
            && (0..=self.total_spent).contains(&a.spent)
            && (0..=self.total_expired).contains(&a.expired)
            && a.purchased
                .checked_sub(a.spent)
                .and_then(|v| v.checked_sub(a.expired))
                == in_lots
    }

    /// The document credits' totals: every credit's less the analysis credits'.
    pub fn document_totals(&self) -> KindTotals {
        KindTotals {
            purchased: self.total_purchased - self.analysis.purchased,
            spent: self.total_spent - self.analysis.spent,
            expired: self.total_expired - self.analysis.expired,
        }
    }

    /// What a lot pays for, if `state` has it.
    pub fn kind_of(&self, source_id: &str) -> Option<CreditKind> {
        self.lots
            .iter()
            .find(|l| l.source_id == source_id)
            .map(|l| l.kind)
    }

    /// Of `expiries`, the analysis credits written off.
    fn analysis_in(&self, draws: &[Draw]) -> i64 {
        draws
            .iter()
            .filter(|d| self.kind_of(&d.source_id) == Some(CreditKind::Analysis))
            .map(|d| d.amount)
            .sum()
    }

    /// The document credits that may be spent at `now`: the pool plus every unexpired
    /// document lot.
    pub fn available(&self, now: i64) -> i64 {
        let available = self.pool + self.unexpired(CreditKind::Document, now);
        debug_assert!(available >= 0 && available <= self.balance);
        available
    }

    /// The credits of `kind` in unexpired lots at `now`.
    pub fn unexpired(&self, kind: CreditKind, now: i64) -> i64 {
        self.lots
            .iter()
            .filter(|l| l.kind == kind && !is_expired(l.expires_at, now))
            .map(|l| l.remaining)
            .sum()
    }

    /// Unexpired lots with credits left, soonest-expiring first.
    pub fn live_lots(&self, now: i64) -> Vec<Lot> {
        let mut lots: Vec<&StoredLot> = self
            .lots
            .iter()
            .filter(|l| l.remaining > 0 && !is_expired(l.expires_at, now))
            .collect();
        lots.sort_by(|a, b| (a.expires_at, &a.source_id).cmp(&(b.expires_at, &b.source_id)));
        lots.into_iter()
            .map(|l| Lot {
                source_id: l.source_id.clone(),
                kind: l.kind,
                remaining: l.remaining,
                expires_at: Some(l.expires_at),
            })
            .collect()
    }

    /// The lot of `kind` that pays next at `now`: unexpired, holding credits, the
    /// soonest-expiring first (ties by source id).
    pub fn next_lot(&self, kind: CreditKind, now: i64) -> Option<Lot> {
        self.live_lots(now).into_iter().find(|l| l.kind == kind)
    }

    /// Expired lots that still hold credits, soonest first, at most `MAX_EXPIRIES_PER_WRITE`.
    pub fn expiries(&self, now: i64) -> Vec<Draw> {
        let mut expired: Vec<&StoredLot> = self
            .lots
            .iter()
            .filter(|l| l.remaining > 0 && is_expired(l.expires_at, now))
            .collect();
        expired.sort_by(|a, b| (a.expires_at, &a.source_id).cmp(&(b.expires_at, &b.source_id)));
        expired
            .into_iter()
            .take(MAX_EXPIRIES_PER_WRITE)
            .map(|l| Draw {
                source_id: l.source_id.clone(),
                amount: l.remaining,
            })
            .collect()
    }
}

/// Credits taken from (or written off) one lot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draw {
    pub source_id: String,
    pub amount: i64,
}

/// What one access request writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPlan {
    /// Requested documents not owned yet, in request order: one `DOC#` item each.
    pub new_docs: Vec<String>,
    /// Credits charged: one per new document, 0 without `charge`.
    pub cost: i64,
    /// Where the cost comes from: unexpired lots, soonest-expiring first …
    pub from_lots: Vec<Draw>,
    /// … then the credits that never expire.
    pub from_pool: i64,
    /// Expired lots written off in the same transaction.
    pub expiries: Vec<Draw>,
    /// Of the cost, the analysis credits; of the write-offs, the analysis credits.
    pub analysis: KindTotals,
    /// The unexpired balance once the cost is paid.
    pub remaining_balance: i64,
}

impl AccessPlan {
    /// How much the stored `balance` goes down: the cost plus the credits written off.
    pub fn balance_decrease(&self) -> i64 {
        self.cost + self.expired_total()
    }

    pub fn expired_total(&self) -> i64 {
        self.expiries.iter().map(|d| d.amount).sum()
    }

    /// Whether the plan writes anything: only new documents make a write worth it (expired
    /// lots are excluded from balances anyway and are written off by the next write).
    pub fn writes(&self) -> bool {
        !self.new_docs.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessDecision {
    Plan(AccessPlan),
    /// `required` new documents, `available` unexpired credits.
    Insufficient {
        required: i64,
        available: i64,
    },
}

/// Decides an access request. `state` is `None` when the subject has no `BALANCE` item;
/// `owned` holds the requested ids bought before with a credit ("already purchased" means
/// paid; a plan's access never made a document owned). `requested` must be
/// distinct and at most [`MAX_ACCESS_IDS`] (the caller's type guarantees it).
pub fn plan_access(
    state: Option<&LedgerState>,
    owned: &HashSet<&str>,
    requested: &[String],
    charge: bool,
    now: i64,
) -> AccessDecision {
    debug_assert!(requested.len() <= MAX_ACCESS_IDS);
    // Documents bought now. A plan's access buys nothing: it lasts as long as the plan, so
    // it writes no `DOC#` item that would keep the document free after the plan ends.
    let new_docs: Vec<String> = if charge {
        requested
            .iter()
            .filter(|id| !owned.contains(id.as_str()))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    let empty = LedgerState::default();
    let state = state.unwrap_or(&empty);
    let available = state.available(now);
    let cost = if charge {
        i64::try_from(new_docs.len()).unwrap_or(i64::MAX)
    } else {
        0
    };
    if cost > available {
        return AccessDecision::Insufficient {
            required: cost,
            available,
        };
    }
    let mut to_take = cost;
    let mut from_lots = Vec::new();
    for lot in state
        .live_lots(now)
        .into_iter()
        .filter(|l| l.kind == CreditKind::Document)
    {
        if to_take == 0 {
            break;
        }
        let amount = lot.remaining.min(to_take);
        to_take -= amount;
        from_lots.push(Draw {
            source_id: lot.source_id,
            amount,
        });
    }
    let from_pool = to_take;
    debug_assert!(from_pool <= state.pool, "available counted the pool");
    let expiries = if new_docs.is_empty() {
        Vec::new()
    } else {
        state.expiries(now)
    };
    let plan = AccessPlan {
        new_docs,
        cost,
        from_lots,
        from_pool,
        analysis: KindTotals {
            purchased: 0,
            spent: 0,
            expired: state.analysis_in(&expiries),
        },
        expiries,
        remaining_balance: available - cost,
    };
    debug_assert_eq!(
        plan.from_lots.iter().map(|d| d.amount).sum::<i64>() + plan.from_pool,
        plan.cost
    );
    debug_assert!(plan.remaining_balance >= 0);
    AccessDecision::Plan(plan)
}

/// Spending one credit of `lot` (one [`LedgerState::next_lot`] chose) at `now`, writing off
/// the expired lots on the way as every spend does. `None` when the lot cannot pay: unknown,
/// expired or empty in `state`.
pub fn plan_lot_spend(state: &LedgerState, lot: &Lot, now: i64) -> Option<AccessPlan> {
    let stored = state
        .lots
        .iter()
        .find(|l| l.source_id == lot.source_id && l.remaining > 0)?;
    if is_expired(stored.expires_at, now) {
        return None;
    }
    let expiries = state.expiries(now);
    Some(AccessPlan {
        new_docs: Vec::new(),
        cost: 1,
        from_lots: vec![Draw {
            source_id: stored.source_id.clone(),
            amount: 1,
        }],
        from_pool: 0,
        analysis: KindTotals {
            purchased: 0,
            spent: i64::from(stored.kind == CreditKind::Analysis),
            expired: state.analysis_in(&expiries),
        },
        expiries,
        remaining_balance: state.unexpired(stored.kind, now) - 1,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantRejected {
    /// Credits outside `1..=MAX_GRANT_CREDITS`.
    Credits(i64),
    /// An expiry at or before `now`: the credits would never be spendable.
    ExpiresInThePast { expires_at: i64, now: i64 },
    /// The sum would leave the i64 range (a corrupt item, in practice).
    Overflow,
}

impl std::fmt::Display for GrantRejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GrantRejected::Credits(n) => {
                write!(
                    f,
                    "a grant carries 1..={MAX_GRANT_CREDITS} credits, not {n}"
                )
            }
            GrantRejected::ExpiresInThePast { expires_at, now } => {
                write!(
                    f,
                    "a grant expiring at {expires_at} is already expired at {now}"
                )
            }
            GrantRejected::Overflow => write!(f, "the balance would overflow"),
        }
    }
}

/// The `BALANCE` item after a grant (what a new item holds, or what an update adds up to),
/// and the unexpired balance the grant leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantPlan {
    pub after: LedgerState,
    pub available_after: i64,
}

/// Where a grant's credits go: `None` for the pool (document credits that never expire),
/// else a lot expiring then (analysis credits always go to a lot: one that never expires
/// gets the end of time).
pub fn lot_expiry(kind: CreditKind, expires_at: Option<i64>) -> Option<i64> {
    match (kind, expires_at) {
        (CreditKind::Document, None) => None,
        (CreditKind::Analysis, None) => Some(i64::MAX),
        (_, Some(at)) => Some(at),
    }
}

/// Checks a grant and computes the state after it.
pub fn plan_grant(
    state: Option<&LedgerState>,
    source_id: &str,
    kind: CreditKind,
    credits: i64,
    expires_at: Option<i64>,
    now: i64,
) -> Result<GrantPlan, GrantRejected> {
    if !(1..=MAX_GRANT_CREDITS).contains(&credits) {
        return Err(GrantRejected::Credits(credits));
    }
    if let Some(at) = expires_at
        && is_expired(at, now)
    {
        return Err(GrantRejected::ExpiresInThePast {
            expires_at: at,
            now,
        });
    }
    let mut after = state.cloned().unwrap_or_default();
    after.balance = after
        .balance
        .checked_add(credits)
        .ok_or(GrantRejected::Overflow)?;
    after.total_purchased = after
        .total_purchased
        .checked_add(credits)
        .ok_or(GrantRejected::Overflow)?;
    if kind == CreditKind::Analysis {
        after.analysis.purchased += credits;
    }
    match lot_expiry(kind, expires_at) {
        None => after.pool += credits,
        Some(at) => {
            debug_assert!(after.lots.iter().all(|l| l.source_id != source_id));
            after.lots.push(StoredLot {
                source_id: source_id.to_string(),
                kind,
                remaining: credits,
                expires_at: at,
            });
        }
    }
    let available_after = after.available(now);
    debug_assert_eq!(
        available_after,
        state.map_or(0, |s| s.available(now))
            + if kind == CreditKind::Document {
                credits
            } else {
                0
            }
    );
    Ok(GrantPlan {
        after,
        available_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;
    const DAY: i64 = 86_400;

    fn ids(raw: &[&str]) -> Vec<String> {
        raw.iter().map(|s| s.to_string()).collect()
    }

    fn state(pool: i64, lots: &[(&str, i64, i64)]) -> LedgerState {
        let lots: Vec<StoredLot> = lots
            .iter()
            .map(|(s, r, e)| StoredLot {
                source_id: s.to_string(),
                kind: CreditKind::Document,
                remaining: *r,
                expires_at: *e,
            })
            .collect();
        let balance = pool + lots.iter().map(|l| l.remaining).sum::<i64>();
        LedgerState {
            balance,
            pool,
            total_purchased: balance,
            total_spent: 0,
            total_expired: 0,
            analysis: KindTotals::default(),
            lots,
        }
    }

    fn plan(decision: AccessDecision) -> AccessPlan {
        match decision {
            AccessDecision::Plan(p) => p,
            other => panic!("expected a plan, got {other:?}"),
        }
    }

    #[test]
    fn owned_documents_are_free_and_new_ones_cost_one_each_in_request_order() {
        let s = state(5, &[]);
        let requested = ids(&["c", "a", "b"]);
        let owned = HashSet::from(["a"]);
        let p = plan(plan_access(Some(&s), &owned, &requested, true, NOW));
        assert_eq!(p.new_docs, ids(&["c", "b"]));
        assert_eq!(p.cost, 2);
        assert_eq!(p.from_pool, 2);
        assert_eq!(p.remaining_balance, 3);
        assert!(p.expiries.is_empty());
    }

    #[test]
    fn nothing_new_means_nothing_to_write() {
        let s = state(0, &[]);
        let requested = ids(&["a"]);
        let p = plan(plan_access(
            Some(&s),
            &HashSet::from(["a"]),
            &requested,
            true,
            NOW,
        ));
        assert!(!p.writes());
        assert_eq!((p.cost, p.remaining_balance), (0, 0));
    }

    #[test]
    fn insufficient_counts_only_new_documents_and_unexpired_credits() {
        let s = state(1, &[("lot", 5, NOW - 1)]);
        let requested = ids(&["a", "b", "c"]);
        let d = plan_access(Some(&s), &HashSet::from(["a"]), &requested, true, NOW);
        assert_eq!(
            d,
            AccessDecision::Insufficient {
                required: 2,
                available: 1
            }
        );
        let none = plan_access(None, &HashSet::new(), &requested, true, NOW);
        assert_eq!(
            none,
            AccessDecision::Insufficient {
                required: 3,
                available: 0
            }
        );
    }

    #[test]
    fn without_charge_documents_cost_nothing_and_buy_nothing_even_with_no_balance() {
        let requested = ids(&["a", "b"]);
        let p = plan(plan_access(None, &HashSet::new(), &requested, false, NOW));
        assert!(p.new_docs.is_empty(), "a plan's access is not a purchase");
        assert!(!p.writes());
        assert_eq!((p.cost, p.from_pool, p.remaining_balance), (0, 0, 0));
        assert!(p.from_lots.is_empty());
    }

    #[test]
    fn spending_takes_the_soonest_expiring_lot_first_and_the_pool_last() {
        let s = state(10, &[("late", 2, NOW + 20 * DAY), ("soon", 1, NOW + DAY)]);
        let requested = ids(&["a", "b", "c", "d", "e"]);
        let p = plan(plan_access(
            Some(&s),
            &HashSet::new(),
            &requested,
            true,
            NOW,
        ));
        assert_eq!(
            p.from_lots,
            vec![
                Draw {
                    source_id: "soon".into(),
                    amount: 1
                },
                Draw {
                    source_id: "late".into(),
                    amount: 2
                }
            ]
        );
        assert_eq!(p.from_pool, 2);
        assert_eq!(p.remaining_balance, 8);
    }

    #[test]
    fn expired_lots_never_count_and_are_written_off_by_a_write() {
        let expires = NOW + 30 * DAY;
        let s = state(3, &[("report", 1, expires)]);
        assert_eq!(s.available(expires - 1), 4);
        assert_eq!(s.available(expires), 3, "expired from expires_at on");
        assert_eq!(s.live_lots(expires + 1), vec![]);
        let requested = ids(&["a"]);
        let p = plan(plan_access(
            Some(&s),
            &HashSet::new(),
            &requested,
            true,
            expires + 1,
        ));
        assert_eq!(p.from_lots, vec![]);
        assert_eq!(p.from_pool, 1);
        assert_eq!(
            p.expiries,
            vec![Draw {
                source_id: "report".into(),
                amount: 1
            }]
        );
        assert_eq!(p.balance_decrease(), 2);
        assert_eq!(p.remaining_balance, 2);
        // Nothing new: no write, so no write-off either.
        let owned = HashSet::from(["a"]);
        let p = plan(plan_access(Some(&s), &owned, &requested, true, expires + 1));
        assert!(p.expiries.is_empty() && !p.writes());
    }

    #[test]
    fn write_offs_per_write_are_bounded() {
        let lots: Vec<(String, i64, i64)> = (0..40)
            .map(|i| (format!("lot{i:02}"), 1, NOW - 100 + i))
            .collect();
        let borrowed: Vec<(&str, i64, i64)> =
            lots.iter().map(|(s, r, e)| (s.as_str(), *r, *e)).collect();
        let s = state(1, &borrowed);
        let e = s.expiries(NOW);
        assert_eq!(e.len(), MAX_EXPIRIES_PER_WRITE);
        assert_eq!(e[0].source_id, "lot00", "oldest first");
        assert_eq!(s.available(NOW), 1);
    }

    #[test]
    fn grants_fill_the_pool_or_add_a_lot() {
        let g = plan_grant(None, "cs_1", CreditKind::Document, 5, None, NOW).unwrap();
        assert_eq!((g.after.balance, g.after.pool), (5, 5));
        assert_eq!(g.available_after, 5);
        assert!(g.after.is_consistent());
        let g2 = plan_grant(
            Some(&g.after),
            "cs_2",
            CreditKind::Document,
            1,
            Some(NOW + 30 * DAY),
            NOW,
        )
        .unwrap();
        assert_eq!((g2.after.balance, g2.after.pool), (6, 5));
        assert_eq!(g2.after.lots.len(), 1);
        assert_eq!(g2.after.total_purchased, 6);
        assert!(g2.after.is_consistent());
    }

    #[test]
    fn bad_grants_are_rejected() {
        assert_eq!(
            plan_grant(None, "s", CreditKind::Document, 0, None, NOW),
            Err(GrantRejected::Credits(0))
        );
        assert_eq!(
            plan_grant(None, "s", CreditKind::Document, -3, None, NOW),
            Err(GrantRejected::Credits(-3))
        );
        assert_eq!(
            plan_grant(
                None,
                "s",
                CreditKind::Document,
                MAX_GRANT_CREDITS + 1,
                None,
                NOW
            ),
            Err(GrantRejected::Credits(MAX_GRANT_CREDITS + 1))
        );
        assert!(matches!(
            plan_grant(None, "s", CreditKind::Document, 1, Some(NOW), NOW),
            Err(GrantRejected::ExpiresInThePast { .. })
        ));
        let huge = LedgerState {
            balance: i64::MAX,
            pool: i64::MAX,
            total_purchased: i64::MAX,
            ..LedgerState::default()
        };
        assert_eq!(
            plan_grant(Some(&huge), "s", CreditKind::Document, 1, None, NOW),
            Err(GrantRejected::Overflow)
        );
    }

    #[test]
    fn consistency_checks_catch_broken_items() {
        assert!(state(2, &[("l", 3, NOW)]).is_consistent());
        let mut s = state(2, &[("l", 3, NOW)]);
        s.balance = 4;
        assert!(!s.is_consistent());
        let mut s = state(0, &[]);
        s.pool = -1;
        s.balance = -1;
        s.total_purchased = -1;
        assert!(!s.is_consistent());
    }

    #[test]
    fn each_credit_pays_for_what_it_was_sold_for() {
        // 2 pack credits in the pool and a report's analysis credit in a lot.
        let g = plan_grant(None, "cs_pack", CreditKind::Document, 2, None, NOW).unwrap();
        let report = NOW + 30 * DAY;
        let g = plan_grant(
            Some(&g.after),
            "cs_report",
            CreditKind::Analysis,
            1,
            Some(report),
            NOW,
        )
        .unwrap();
        assert_eq!(
            g.available_after, 2,
            "the report credit unlocks no document"
        );
        assert_eq!(g.after.unexpired(CreditKind::Analysis, NOW), 1);
        assert!(g.after.is_consistent());
        // A document is paid from the pool; the report credit stays.
        let AccessDecision::Plan(plan) =
            plan_access(Some(&g.after), &HashSet::new(), &ids(&["d1"]), true, NOW)
        else {
            panic!("two document credits pay one document");
        };
        assert_eq!((plan.from_pool, plan.from_lots.len()), (1, 0), "{plan:?}");
        // Three documents are more than the two document credits, whatever lots there are.
        assert_eq!(
            plan_access(
                Some(&g.after),
                &HashSet::new(),
                &ids(&["a", "b", "c"]),
                true,
                NOW
            ),
            AccessDecision::Insufficient {
                required: 3,
                available: 2
            }
        );
        // An analysis credit sold without an expiry is still a lot (never in the pool).
        let forever = plan_grant(None, "s", CreditKind::Analysis, 1, None, NOW).unwrap();
        assert_eq!((forever.after.pool, forever.available_after), (0, 0));
        assert_eq!(forever.after.lots[0].expires_at, i64::MAX);
    }

    #[test]
    fn an_analysis_credit_comes_from_the_soonest_expiring_analysis_lot_only() {
        let mut s = state(4, &[("pack_lot", 2, NOW + 5 * DAY)]);
        let lot = |source: &str, remaining: i64, expires_at: i64| StoredLot {
            source_id: source.into(),
            kind: CreditKind::Analysis,
            remaining,
            expires_at,
        };
        s.lots.extend([
            lot("late", 1, NOW + 20 * DAY),
            lot("soon", 1, NOW + 10 * DAY),
            lot("gone", 1, NOW - 1),
            lot("empty", 0, NOW + DAY),
        ]);
        s.balance += 3;
        s.total_purchased += 3;
        s.analysis.purchased = 3;
        assert!(s.is_consistent());
        // Decision table: (now, the lot that pays next).
        for (now, expected) in [
            (NOW, Some("soon")),
            (NOW + 10 * DAY, Some("late")),
            (NOW + 20 * DAY, None),
        ] {
            let next = s.next_lot(CreditKind::Analysis, now);
            assert_eq!(
                next.as_ref().map(|l| l.source_id.as_str()),
                expected,
                "{now}"
            );
        }
        let next = s.next_lot(CreditKind::Analysis, NOW).unwrap();
        let p = plan_lot_spend(&s, &next, NOW).unwrap();
        assert_eq!(p.cost, 1);
        assert_eq!(p.from_pool, 0, "pack credits never pay an analysis");
        assert_eq!(
            p.from_lots,
            vec![Draw {
                source_id: "soon".into(),
                amount: 1
            }]
        );
        // The expired analysis lot is written off on the way.
        assert_eq!(
            p.expiries,
            vec![Draw {
                source_id: "gone".into(),
                amount: 1
            }]
        );
        assert_eq!(p.remaining_balance, 1);
        // A lot that expired, is empty or is unknown cannot pay.
        assert_eq!(plan_lot_spend(&s, &next, NOW + 10 * DAY), None);
        let unknown = Lot {
            source_id: "nope".into(),
            ..next.clone()
        };
        assert_eq!(plan_lot_spend(&s, &unknown, NOW), None);
        let empty = Lot {
            source_id: "empty".into(),
            ..next
        };
        assert_eq!(plan_lot_spend(&s, &empty, NOW), None);
    }

    #[test]
    fn the_analysis_credits_part_of_the_totals_is_kept_beside_them() {
        // A pack (5, the pool) and a report (1, an analysis lot).
        let g = plan_grant(None, "cs_pack", CreditKind::Document, 5, None, NOW).unwrap();
        let g = plan_grant(
            Some(&g.after),
            "cs_report",
            CreditKind::Analysis,
            1,
            Some(NOW + DAY),
            NOW,
        )
        .unwrap();
        let s = g.after;
        assert!(s.is_consistent());
        assert_eq!(
            s.analysis,
            KindTotals {
                purchased: 1,
                spent: 0,
                expired: 0
            }
        );
        assert_eq!(
            s.document_totals(),
            KindTotals {
                purchased: 5,
                spent: 0,
                expired: 0
            }
        );
        // Spending the report credit is the analysis credits' spend.
        let lot = s.next_lot(CreditKind::Analysis, NOW).unwrap();
        assert_eq!(plan_lot_spend(&s, &lot, NOW).unwrap().analysis.spent, 1);
        // A document bought after the report expired writes the report's credit off: the
        // analysis credits' write-off.
        let p = plan(plan_access(
            Some(&s),
            &HashSet::new(),
            &ids(&["d"]),
            true,
            NOW + DAY,
        ));
        assert_eq!(
            p.analysis,
            KindTotals {
                purchased: 0,
                spent: 0,
                expired: 1
            }
        );
        // Analysis totals that do not add up to the analysis lots are corrupt.
        let mut bad = s.clone();
        bad.analysis.purchased = 2;
        assert!(!bad.is_consistent());
        let mut bad = s;
        bad.analysis.spent = 1;
        assert!(!bad.is_consistent());
    }
}
