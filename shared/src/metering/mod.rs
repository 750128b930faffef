//! Metering: what an analysis or a chat message costs a subject, with no I/O. The types of
//! the usage meter (meters, sources, periods, whose counter), the plan that meters a subject
//! now ([`plan_of`]), and the decisions in [`rules`]; the DynamoDB adapter is [`store`].
//!
//! A paid plan (Pro, Enterprise, in a state that grants access) meters by its Stripe billing
//! period; a subject without one is on the free tier, metered by calendar month (UTC) and
//! shared by the account's end users. Report credits are counted on a meter of their own, so
//! they never eat a plan's or the free tier's allowance.

pub mod rules;
pub mod store;

use crate::catalog::Tier;
use crate::domain::Subject;
use crate::ledger::LedgerKey;
use crate::subscriptions::SubscriptionRecord;
use serde::{Deserialize, Serialize};

/// What meters a subject's usage now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Paid {
        tier: Tier,
        period_start: i64,
        period_end: i64,
    },
    Free,
}

/// The plan that meters a subject at `now`: a paid plan only while it grants access
/// ([`SubscriptionRecord::grants_access_at`], its grace included).
pub fn plan_of(record: Option<&SubscriptionRecord>, now: i64, grace_secs: i64) -> Plan {
    let Some(r) = record else { return Plan::Free };
    match (r.tier, r.current_period_start, r.current_period_end) {
        (Some(tier @ (Tier::Pro | Tier::Enterprise)), Some(start), Some(end))
            if r.grants_access_at(now, grace_secs) =>
        {
            Plan::Paid {
                tier,
                period_start: start,
                period_end: end,
            }
        }
        _ => Plan::Free,
    }
}

/// A metering period: the counter key and its bounds (unix s, end exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub key: String,
    pub start: i64,
    pub end: i64,
}

impl Plan {
    pub fn tier(&self) -> Tier {
        match self {
            Plan::Paid { tier, .. } => *tier,
            Plan::Free => Tier::Free,
        }
    }

    /// The period a plan's own allowance is counted in.
    pub fn period(&self, now: i64) -> Period {
        match *self {
            Plan::Paid {
                period_start,
                period_end,
                ..
            } => Period {
                key: subscription_period_key(period_start),
                start: period_start,
                end: period_end,
            },
            Plan::Free => {
                let (start, end) = month_bounds(now);
                Period {
                    key: format!("free:{}", month_suffix(now)),
                    start,
                    end,
                }
            }
        }
    }

    pub fn analyses_limit(&self) -> Option<u64> {
        self.tier().info().analyses_limit.map(u64::from)
    }

    pub fn chat_messages_limit(&self) -> Option<u64> {
        self.tier().info().chat_messages_limit.map(u64::from)
    }
}

fn month_suffix(now: i64) -> String {
    let key = month_period_key(now);
    key.split_once(':')
        .map(|(_, m)| m.to_string())
        .unwrap_or(key)
}

/// The counter for analyses and chat paid by report credits, by calendar month.
pub fn report_period_key(now: i64) -> String {
    format!("report:{}", month_suffix(now))
}

/// Whose usage: an account and a subject (`Subject::key()`: `self` or `user#<id>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsageKey {
    pub account_id: String,
    pub subject: String,
}

impl UsageKey {
    /// The partition key of every usage item of this subject: `{account_id}#{subject}`.
    pub fn pk(&self) -> String {
        format!("{}#{}", self.account_id, self.subject)
    }
}

/// What is counted; each meter has its own counter items (sort key prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Meter {
    Analyses,
    ChatMessages,
}

impl Meter {
    /// The sort-key prefix of this meter's counters.
    pub fn prefix(self) -> &'static str {
        match self {
            Meter::Analyses => "COUNT#ANALYSES#",
            Meter::ChatMessages => "COUNT#CHAT#",
        }
    }

    /// The sort key of this meter's counter for `period_key`.
    pub fn sort_key(self, period_key: &str) -> String {
        format!("{}{period_key}", self.prefix())
    }
}

/// What paid for an analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisSource {
    /// A Pro quota or an Enterprise plan.
    Subscription,
    /// A credit of a `report` lot in the ledger.
    ReportCredit,
    /// The free tier's monthly analysis.
    FreeTier,
}

/// The consumption of one analysis id, as stored in its `ANALYSIS#` marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisRecord {
    pub analysis_id: String,
    pub source: AnalysisSource,
    /// The period whose Analyses counter it was counted in.
    pub period_key: String,
    /// Unix seconds.
    pub consumed_at: i64,
    /// For [`AnalysisSource::ReportCredit`]: when the paying lot expires (unix s), which
    /// bounds the analysis's unlimited chat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_expires_at: Option<i64>,
}

/// `sub:<period_start>`: the key of a subscription period (Stripe's `current_period_start`).
pub fn subscription_period_key(period_start: i64) -> String {
    format!("sub:{period_start}")
}

/// `month:<YYYY-MM>`: the key of the calendar month (UTC) of `now` (unix s).
pub fn month_period_key(now: i64) -> String {
    let (year, month, _) = civil_from_days(clamp_unix(now).div_euclid(DAY));
    format!("month:{year:04}-{month:02}")
}

/// The start and end (exclusive) of the calendar month (UTC) of `now`, in unix seconds.
/// Times outside years 0000-9999 are clamped into them.
pub fn month_bounds(now: i64) -> (i64, i64) {
    let (year, month, _) = civil_from_days(clamp_unix(now).div_euclid(DAY));
    let start = days_from_civil(year, month, 1) * DAY;
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let end = days_from_civil(next_year, next_month, 1) * DAY;
    (start, end)
}

const DAY: i64 = 86_400;
/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the range the calendar functions accept.
const MIN_UNIX: i64 = -62_167_219_200;
const MAX_UNIX: i64 = 253_402_300_799;

fn clamp_unix(now: i64) -> i64 {
    now.clamp(MIN_UNIX, MAX_UNIX)
}

/// The proleptic Gregorian date of a day number (days since 1970-01-01); H. Hinnant's
/// `civil_from_days`. Callers keep `days` within years 0000-9999.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The day number (days since 1970-01-01) of a proleptic Gregorian date; H. Hinnant's
/// `days_from_civil`.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The counters and ledger one subject's metering touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterKeys {
    /// The subject's own counters and markers (its paid plan, its report credits).
    pub subject: UsageKey,
    /// The free tier's counters and markers: the account's, shared by all its end users, so
    /// inventing `external_user_id`s cannot mint free analyses.
    pub account: UsageKey,
    /// The subject's credit ledger (its report credits).
    pub ledger: LedgerKey,
}

impl MeterKeys {
    pub fn new(account_id: &str, subject: &Subject) -> Self {
        let key = subject.key();
        Self {
            subject: UsageKey {
                account_id: account_id.to_string(),
                subject: key.clone(),
            },
            account: UsageKey {
                account_id: account_id.to_string(),
                subject: Subject::Account.key(),
            },
            ledger: LedgerKey {
                account_id: account_id.to_string(),
                subject: key,
            },
        }
    }

    /// The counter a [`rules::Counter`] names.
    pub fn counter(&self, counter: rules::Counter) -> &UsageKey {
        match counter {
            rules::Counter::Subject => &self.subject,
            rules::Counter::Account => &self.account,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_500;
    const GRACE: i64 = 3 * 86_400;

    fn record(tier: Tier, status: &str) -> SubscriptionRecord {
        SubscriptionRecord {
            account_id: "a".into(),
            subject: "self".into(),
            stripe_customer_id: "cus_1".into(),
            stripe_subscription_id: Some("sub_1".into()),
            stripe_item_id: None,
            tier: Some(tier),
            status: Some(crate::subscriptions::SubscriptionStatus::parse(status).unwrap()),
            current_period_start: Some(1_000),
            current_period_end: Some(2_000),
            cancel_at_period_end: false,
            subscription_created: Some(1_000),
            payment_error: None,
            synced_at_ms: None,
        }
    }

    #[test]
    fn paid_plans_meter_by_stripe_period_and_the_free_tier_by_month() {
        let pro = plan_of(Some(&record(Tier::Pro, "active")), NOW, GRACE);
        assert_eq!(
            pro,
            Plan::Paid {
                tier: Tier::Pro,
                period_start: 1_000,
                period_end: 2_000
            }
        );
        assert_eq!(pro.period(1_500).key, subscription_period_key(1_000));
        assert_eq!(pro.analyses_limit(), Some(100));
        assert_eq!(pro.chat_messages_limit(), None);
        assert_eq!(
            plan_of(Some(&record(Tier::Enterprise, "past_due")), NOW, GRACE).analyses_limit(),
            None
        );
        for gone in ["canceled", "incomplete", "unpaid"] {
            assert_eq!(
                plan_of(Some(&record(Tier::Pro, gone)), NOW, GRACE),
                Plan::Free,
                "{gone}"
            );
        }
        // Past the period and its grace, the paid plan meters nothing: the free tier does.
        assert_eq!(
            plan_of(Some(&record(Tier::Pro, "active")), 2_000 + GRACE, GRACE),
            Plan::Free
        );
        let free = plan_of(None, NOW, GRACE);
        assert_eq!(
            (free.analyses_limit(), free.chat_messages_limit()),
            (Some(1), Some(50))
        );
        // 2026-11-15T00:00:00Z
        let p = free.period(1_795_219_200);
        assert!(p.key.starts_with("free:2026-11"), "{}", p.key);
        assert!(p.start <= 1_795_219_200 && 1_795_219_200 < p.end);
        assert_ne!(report_period_key(1_795_219_200), p.key);
    }

    fn ymd(unix: i64) -> (i64, i64, i64) {
        civil_from_days(unix.div_euclid(DAY))
    }

    #[test]
    fn calendar_matches_the_time_crate() {
        // Every day from 1900 to 2200, at its first and last second.
        let mut day = days_from_civil(1900, 1, 1);
        let last = days_from_civil(2200, 12, 31);
        while day <= last {
            for unix in [day * DAY, day * DAY + DAY - 1] {
                let t = time::OffsetDateTime::from_unix_timestamp(unix).expect("in range");
                let (y, m, d) = ymd(unix);
                assert_eq!(
                    (y, m, d),
                    (
                        i64::from(t.year()),
                        i64::from(u8::from(t.month())),
                        i64::from(t.day())
                    ),
                    "{unix}"
                );
                assert_eq!(days_from_civil(y, m, d), day);
                assert_eq!(
                    month_period_key(unix),
                    format!("month:{:04}-{:02}", t.year(), u8::from(t.month()))
                );
            }
            day += 1;
        }
    }

    #[test]
    fn month_keys_change_at_midnight_utc_on_the_first() {
        let last_second_2026 = 1_798_761_599; // 2026-12-31T23:59:59Z
        assert_eq!(month_period_key(last_second_2026), "month:2026-12");
        assert_eq!(month_period_key(last_second_2026 + 1), "month:2027-01");
        assert_eq!(
            month_bounds(last_second_2026),
            (1_796_083_200, 1_798_761_600)
        );
        assert_eq!(
            month_bounds(last_second_2026 + 1),
            (1_798_761_600, 1_801_440_000)
        );
    }

    #[test]
    fn month_bounds_hold_the_month_and_february_has_its_length() {
        for (year, days) in [(2024, 29), (2025, 28), (2026, 28), (2000, 29), (2100, 28)] {
            let mid_feb = days_from_civil(year, 2, 14) * DAY + 12 * 3600;
            let (start, end) = month_bounds(mid_feb);
            assert_eq!((end - start) / DAY, days, "February {year}");
            assert_eq!(month_period_key(start), format!("month:{year}-02"));
            assert_eq!(month_period_key(end - 1), format!("month:{year}-02"));
            assert_eq!(month_period_key(end), format!("month:{year}-03"));
            assert_eq!(month_period_key(start - 1), format!("month:{year}-01"));
        }
        for unix in [0, 1_767_225_600, 1_700_000_000, -1, -86_401] {
            let (start, end) = month_bounds(unix);
            assert!(start <= unix && unix < end, "{unix}: {start}..{end}");
            assert_eq!(month_bounds(start), (start, end));
            assert_eq!(month_bounds(end - 1), (start, end));
        }
    }

    #[test]
    fn extreme_times_are_clamped_not_panicking() {
        assert_eq!(month_period_key(i64::MAX), "month:9999-12");
        assert_eq!(month_period_key(i64::MIN), "month:0000-01");
        let (start, end) = month_bounds(i64::MAX);
        assert!(start < end);
        assert_eq!(end, MAX_UNIX + 1);
    }

    #[test]
    fn period_keys_and_sort_keys() {
        assert_eq!(subscription_period_key(1_767_225_600), "sub:1767225600");
        assert_eq!(
            Meter::Analyses.sort_key("month:2026-01"),
            "COUNT#ANALYSES#month:2026-01"
        );
        assert_eq!(Meter::ChatMessages.sort_key("sub:1"), "COUNT#CHAT#sub:1");
        let key = UsageKey {
            account_id: "acct_1".into(),
            subject: "user#u1".into(),
        };
        assert_eq!(key.pk(), "acct_1#user#u1");
    }

    #[test]
    fn sources_serialize_in_snake_case() {
        for (source, name) in [
            (AnalysisSource::Subscription, "\"subscription\""),
            (AnalysisSource::ReportCredit, "\"report_credit\""),
            (AnalysisSource::FreeTier, "\"free_tier\""),
        ] {
            assert_eq!(serde_json::to_string(&source).expect("serializes"), name);
        }
    }
}
