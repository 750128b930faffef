//! How an analysis or a chat message is paid, with no I/O: given what one consistent read
//! found, which allowance pays and on which counter. The adapter ([`super::store`]) writes the
//! decision as one transaction whose conditions restate it (a marker that must not exist, a
//! counter below its limit, the ledger's spend conditions), and on a failed condition reads
//! again and decides again.
//!
//! An analysis is paid, in order, by:
//! 1. a paid plan's allowance for its Stripe period (Pro: 100; Enterprise: unlimited, still
//!    counted);
//! 2. then the subject's soonest-expiring unexpired analysis credit (the $29 report's), never
//!    a document credit;
//! 3. then, without a paid plan, the free tier (1 per calendar month per account).
//!
//! A chat message is unlimited on a paid plan, and for an analysis paid with a report credit
//! while that credit's 30 days last; otherwise it counts against the free tier's monthly 50.

use super::{AnalysisRecord, AnalysisSource, Meter, Plan, report_period_key};
use crate::ledger::Lot;
use serde::Serialize;

/// Whose counter a decision counts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// The subject's own: its paid plan's, its report credits'.
    Subject,
    /// The account's: the free tier's, shared by the account's end users.
    Account,
}

/// What one consistent read found, for deciding an analysis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalysisFacts {
    pub plan: Plan,
    /// The subject's Analyses counter in the paid plan's period (0 without a paid plan).
    pub plan_used: u64,
    /// The analysis credit that would pay next ([`crate::ledger::rules::LedgerState::next_lot`]).
    pub next_credit: Option<Lot>,
    /// Every unexpired analysis credit of the subject.
    pub credits: i64,
    /// The account's free-tier Analyses counter this month.
    pub free_used: u64,
}

/// Why nothing pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A meter is at its limit: 402 `limit_exceeded` with the numbers.
    LimitReached { meter: Meter, used: u64, limit: u64 },
    /// Nothing a free subject has left pays: 402 `no_subscription` (a plan is what it takes).
    PlanRequired,
}

/// How an analysis is paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnalysisDecision {
    /// One more on a counter, which must stay within `limit` (`None`: unlimited).
    Count {
        source: AnalysisSource,
        counter: Counter,
        period_key: String,
        limit: Option<u64>,
        /// What the allowance has left once this one is counted (`None`: unlimited).
        remaining: Option<u64>,
    },
    /// One credit of `lot`, counted on the subject's report counter of `period_key`.
    SpendCredit {
        lot: Lot,
        period_key: String,
        /// Analysis credits left once this one is spent.
        remaining: u64,
    },
    Refuse(Refusal),
}

/// Decides how an analysis not counted before is paid at `now`.
pub fn decide_analysis(facts: &AnalysisFacts, now: i64) -> AnalysisDecision {
    let credit = || {
        facts
            .next_credit
            .clone()
            .map(|lot| AnalysisDecision::SpendCredit {
                lot,
                period_key: report_period_key(now),
                remaining: u64::try_from(facts.credits - 1).unwrap_or(0),
            })
    };
    let period_key = facts.plan.period(now).key;
    let limit = facts.plan.analyses_limit();
    match facts.plan {
        Plan::Paid { .. } => match limit {
            Some(limit) if facts.plan_used >= limit => {
                credit().unwrap_or(AnalysisDecision::Refuse(Refusal::LimitReached {
                    meter: Meter::Analyses,
                    used: facts.plan_used,
                    limit,
                }))
            }
            _ => AnalysisDecision::Count {
                source: AnalysisSource::Subscription,
                counter: Counter::Subject,
                period_key,
                limit,
                remaining: limit.map(|l| l - facts.plan_used - 1),
            },
        },
        Plan::Free => credit().unwrap_or_else(|| match limit {
            Some(limit) if facts.free_used >= limit => {
                AnalysisDecision::Refuse(Refusal::PlanRequired)
            }
            _ => AnalysisDecision::Count {
                source: AnalysisSource::FreeTier,
                counter: Counter::Account,
                period_key,
                limit,
                remaining: limit.map(|l| l - facts.free_used - 1),
            },
        }),
    }
}

/// What makes chat messages unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnlimitedBy {
    Subscription,
    ReportCredit,
}

/// The counter a chat message counts on, and its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMeter {
    pub counter: Counter,
    pub period_key: String,
    /// `None`: unlimited (still counted).
    pub limit: Option<u64>,
    pub unlimited_by: Option<UnlimitedBy>,
}

/// Decides where a chat message counts at `now`, given the subject's plan and the record of
/// the analysis it is about (if it names one that was counted).
pub fn decide_chat(plan: &Plan, analysis: Option<&AnalysisRecord>, now: i64) -> ChatMeter {
    let by_report = analysis.is_some_and(|r| {
        r.source == AnalysisSource::ReportCredit && r.report_expires_at.is_some_and(|e| now < e)
    });
    match plan {
        Plan::Paid { .. } => ChatMeter {
            counter: Counter::Subject,
            period_key: plan.period(now).key,
            limit: None,
            unlimited_by: Some(UnlimitedBy::Subscription),
        },
        Plan::Free if by_report => ChatMeter {
            counter: Counter::Subject,
            period_key: report_period_key(now),
            limit: None,
            unlimited_by: Some(UnlimitedBy::ReportCredit),
        },
        Plan::Free => ChatMeter {
            counter: Counter::Account,
            period_key: plan.period(now).key,
            limit: plan.chat_messages_limit(),
            unlimited_by: None,
        },
    }
}

/// The refusal of a chat message when its counter is at `used` of `limit`.
pub fn chat_refusal(used: u64, limit: u64) -> Refusal {
    Refusal::LimitReached {
        meter: Meter::ChatMessages,
        used,
        limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Tier;
    use crate::ledger::CreditKind;

    const NOW: i64 = 1_795_219_200; // 2026-11-15T00:00:00Z
    const DAY: i64 = 86_400;

    fn paid(tier: Tier) -> Plan {
        Plan::Paid {
            tier,
            period_start: NOW - DAY,
            period_end: NOW + 29 * DAY,
        }
    }

    fn lot(remaining: i64) -> Lot {
        Lot {
            source_id: "cs_report".into(),
            kind: CreditKind::Analysis,
            remaining,
            expires_at: Some(NOW + 30 * DAY),
        }
    }

    fn facts(plan: Plan, plan_used: u64, credits: i64, free_used: u64) -> AnalysisFacts {
        AnalysisFacts {
            plan,
            plan_used,
            next_credit: (credits > 0).then(|| lot(credits)),
            credits,
            free_used,
        }
    }

    /// The short name of a decision, for the table.
    fn name(d: &AnalysisDecision) -> String {
        match d {
            AnalysisDecision::Count {
                source, remaining, ..
            } => format!("{source:?} remaining={remaining:?}"),
            AnalysisDecision::SpendCredit { remaining, .. } => {
                format!("ReportCredit remaining={remaining}")
            }
            AnalysisDecision::Refuse(r) => format!("{r:?}"),
        }
    }

    #[test]
    fn the_analysis_decision_table() {
        let pro = paid(Tier::Pro);
        let ent = paid(Tier::Enterprise);
        // (plan, plan_used, analysis credits, free_used) → what pays.
        let table: [(Plan, u64, i64, u64, &str); 12] = [
            (pro, 0, 0, 0, "Subscription remaining=Some(99)"),
            (pro, 99, 2, 0, "Subscription remaining=Some(0)"),
            // Pro's allowance first, even with a report credit held …
            (pro, 50, 1, 0, "Subscription remaining=Some(49)"),
            // … then the report credit …
            (pro, 100, 2, 0, "ReportCredit remaining=1"),
            // … and never the free tier on a paid plan.
            (
                pro,
                100,
                0,
                0,
                "LimitReached { meter: Analyses, used: 100, limit: 100 }",
            ),
            (ent, 5_000, 1, 1, "Subscription remaining=None"),
            // Free: a report credit before the free tier, so the free analysis stays.
            (Plan::Free, 0, 1, 0, "ReportCredit remaining=0"),
            (Plan::Free, 0, 3, 1, "ReportCredit remaining=2"),
            (Plan::Free, 0, 0, 0, "FreeTier remaining=Some(0)"),
            (Plan::Free, 0, 0, 1, "PlanRequired"),
            (Plan::Free, 0, 0, 7, "PlanRequired"),
            // The plan's counter means nothing to a free subject.
            (Plan::Free, 100, 0, 0, "FreeTier remaining=Some(0)"),
        ];
        for (plan, plan_used, credits, free_used, expected) in table {
            let d = decide_analysis(&facts(plan, plan_used, credits, free_used), NOW);
            assert_eq!(
                name(&d),
                expected,
                "{plan:?} used={plan_used} credits={credits} free={free_used}"
            );
        }
    }

    #[test]
    fn each_decision_counts_on_its_own_counter_and_period() {
        let pro = paid(Tier::Pro);
        match decide_analysis(&facts(pro, 0, 0, 0), NOW) {
            AnalysisDecision::Count {
                counter,
                period_key,
                limit,
                ..
            } => {
                assert_eq!(counter, Counter::Subject);
                assert_eq!(period_key, pro.period(NOW).key);
                assert_eq!(limit, Some(100));
            }
            other => panic!("{other:?}"),
        }
        match decide_analysis(&facts(Plan::Free, 0, 0, 0), NOW) {
            AnalysisDecision::Count {
                counter,
                period_key,
                limit,
                ..
            } => {
                assert_eq!(counter, Counter::Account, "the free tier is the account's");
                assert_eq!(period_key, Plan::Free.period(NOW).key);
                assert_eq!(limit, Some(1));
            }
            other => panic!("{other:?}"),
        }
        match decide_analysis(&facts(Plan::Free, 0, 1, 0), NOW) {
            AnalysisDecision::SpendCredit {
                lot: l, period_key, ..
            } => {
                assert_eq!(l, lot(1));
                assert_eq!(period_key, report_period_key(NOW));
            }
            other => panic!("{other:?}"),
        }
    }

    fn record(source: AnalysisSource, expires: Option<i64>) -> AnalysisRecord {
        AnalysisRecord {
            analysis_id: "ana_1".into(),
            source,
            period_key: "p".into(),
            consumed_at: NOW - DAY,
            report_expires_at: expires,
        }
    }

    #[test]
    fn the_chat_decision_table() {
        let by_report = record(AnalysisSource::ReportCredit, Some(NOW + DAY));
        let report_over = record(AnalysisSource::ReportCredit, Some(NOW));
        let by_plan = record(AnalysisSource::Subscription, None);
        let by_free = record(AnalysisSource::FreeTier, None);
        let pro = paid(Tier::Pro);
        // (plan, the analysis named) → (counter, limit, unlimited by).
        let table = [
            (
                pro,
                None,
                (Counter::Subject, None, Some(UnlimitedBy::Subscription)),
            ),
            (
                pro,
                Some(&by_report),
                (Counter::Subject, None, Some(UnlimitedBy::Subscription)),
            ),
            (Plan::Free, None, (Counter::Account, Some(50), None)),
            (
                Plan::Free,
                Some(&by_report),
                (Counter::Subject, None, Some(UnlimitedBy::ReportCredit)),
            ),
            // The credit's 30 days are over (its expiry second included).
            (
                Plan::Free,
                Some(&report_over),
                (Counter::Account, Some(50), None),
            ),
            (
                Plan::Free,
                Some(&by_plan),
                (Counter::Account, Some(50), None),
            ),
            (
                Plan::Free,
                Some(&by_free),
                (Counter::Account, Some(50), None),
            ),
        ];
        for (plan, analysis, expected) in table {
            let m = decide_chat(&plan, analysis, NOW);
            assert_eq!(
                (m.counter, m.limit, m.unlimited_by),
                expected,
                "{plan:?} {analysis:?}"
            );
        }
        assert_eq!(
            decide_chat(&Plan::Free, Some(&by_report), NOW).period_key,
            report_period_key(NOW)
        );
        assert_eq!(decide_chat(&pro, None, NOW).period_key, pro.period(NOW).key);
        assert_eq!(
            chat_refusal(50, 50),
            Refusal::LimitReached {
                meter: Meter::ChatMessages,
                used: 50,
                limit: 50
            }
        );
    }
}
