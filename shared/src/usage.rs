//! Usage metering on the `Usage` table: analyses and chat messages counted per subject and
//! per period, and the marker that makes consuming one analysis id idempotent.
//!
//! Item layout (pk `"{account_id}#{subject_key}"`, see [`UsageKey::pk`]):
//! - `COUNT#ANALYSES#<period_key>` / `COUNT#CHAT#<period_key>`: `{count, updated_at}`, the
//!   number of analyses / chat messages counted in that period. Counters are keyed by
//!   period, so a new period starts at zero without any job.
//! - `ANALYSIS#<analysis_id>`: the [`AnalysisRecord`] of the consumption of that analysis:
//!   `{analysis_id, source, period_key, consumed_at, report_expires_at?}`. Written with
//!   `attribute_not_exists` in the same transaction as the counter (and, when a report credit
//!   pays, as the ledger's spend), so one id is consumed at most once, whatever paid.
//!
//! Period keys: `sub:<period_start>` for a subscription period ([`subscription_period_key`]),
//! `month:<YYYY-MM>` for the free tier's calendar month in UTC ([`month_period_key`]).
//!
//! Which allowance applies is the caller's decision (Pro quota, Enterprise, a report credit,
//! the free tier, in that order); this module only counts and pays atomically.

use crate::ledger::LedgerKey;
use crate::ledger::rules::{AccessPlan, Draw};
use crate::ledger::store::{
    CONDITION_FAILED, MAX_DECISIONS, TxResult, check_id, entry_put, last_failed, new_entry_id,
    spend_update,
};
use crate::ledger::{CreditKind, Entry, EntryKind};
use crate::store::{AnswerWith, Store, StoreError, build, corrupt, sdk};
use crate::tables::Table;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The ledger reason of the spend entry of an analysis paid with a report credit.
pub const ANALYSIS_SPEND_REASON: &str = "analysis";

const ANALYSIS_PREFIX: &str = "ANALYSIS#";
const COUNT_ATTR: &str = "count";

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consumed {
    /// Counted now.
    New(AnalysisRecord),
    /// This analysis id was consumed before (from any source): nothing was counted.
    Earlier(AnalysisRecord),
    /// The counter is at its limit: nothing was written. `used`: the counter's value.
    LimitReached { used: u64 },
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

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn item_key(pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

fn check_period_key(period_key: &str) -> Result<(), StoreError> {
    check_id("a period key", period_key)
}

fn marker_sk(analysis_id: &str) -> String {
    format!("{ANALYSIS_PREFIX}{analysis_id}")
}

#[derive(Debug, Serialize)]
struct MarkerItem<'a> {
    pk: &'a str,
    sk: String,
    #[serde(flatten)]
    record: &'a AnalysisRecord,
}

/// A counter's value in an item (absent: 0).
fn count_of(item: Option<&HashMap<String, AttributeValue>>) -> Result<u64, StoreError> {
    match item.and_then(|i| i.get(COUNT_ATTR)) {
        None => Ok(0),
        Some(AttributeValue::N(v)) => v
            .parse::<u64>()
            .map_err(|_| StoreError::Corrupt(format!("a usage counter holds `{v}`"))),
        Some(other) => Err(StoreError::Corrupt(format!(
            "a usage counter holds {other:?}"
        ))),
    }
}

/// Whether item `i` of a cancelled transaction failed its condition.
fn failed(codes: &[String], i: usize) -> bool {
    codes.get(i).is_some_and(|c| c == CONDITION_FAILED)
}

impl Store {
    fn usage_table(&self) -> &str {
        self.tables().get(Table::Usage)
    }

    /// The put of an analysis marker, which must not exist yet.
    fn marker_put(
        &self,
        pk: &str,
        record: &AnalysisRecord,
    ) -> Result<TransactWriteItem, StoreError> {
        let item = serde_dynamo::to_item(MarkerItem {
            pk,
            sk: marker_sk(&record.analysis_id),
            record,
        })
        .map_err(corrupt)?;
        let put = Put::builder()
            .table_name(self.usage_table())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(sk)")
            .build()
            .map_err(build)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// The update adding one to a counter, conditioned on staying within `limit` (`None`:
    /// unconditioned). With a limit of 0 the condition can never hold.
    fn counter_update(
        &self,
        pk: &str,
        sk: &str,
        limit: Option<u64>,
        now: i64,
    ) -> Result<Update, StoreError> {
        let mut update = Update::builder()
            .table_name(self.usage_table())
            .set_key(Some(item_key(pk, sk)))
            .update_expression("SET #u = :now ADD #c :one")
            .expression_attribute_names("#c", COUNT_ATTR)
            .expression_attribute_names("#u", "updated_at")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()));
        if let Some(limit) = limit {
            // A missing counter is 0, which is below any limit but 0; `#c < :limit` alone is
            // false for a missing attribute.
            let condition = if limit == 0 {
                "#c < :limit"
            } else {
                "attribute_not_exists(#c) OR #c < :limit"
            };
            update = update
                .condition_expression(condition)
                .expression_attribute_values(":limit", AttributeValue::N(limit.to_string()));
        }
        update.build().map_err(build)
    }

    /// The earlier consumption of this analysis id, if any (1 consistent read).
    pub async fn analysis_record(
        &self,
        key: &UsageKey,
        analysis_id: &str,
    ) -> Result<Option<AnalysisRecord>, StoreError> {
        check_id("an analysis id", analysis_id)?;
        let out = self
            .client()
            .get_item()
            .table_name(self.usage_table())
            .set_key(Some(item_key(&key.pk(), &marker_sk(analysis_id))))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk)?;
        out.item
            .map(|item| serde_dynamo::from_item(item).map_err(corrupt))
            .transpose()
    }

    /// The counter of `meter` for `period_key` (0 when nothing was counted; 1 consistent read).
    pub async fn usage_count(
        &self,
        key: &UsageKey,
        meter: Meter,
        period_key: &str,
    ) -> Result<u64, StoreError> {
        check_period_key(period_key)?;
        let out = self
            .client()
            .get_item()
            .table_name(self.usage_table())
            .set_key(Some(item_key(&key.pk(), &meter.sort_key(period_key))))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk)?;
        count_of(out.item.as_ref())
    }

    /// What a transaction carrying the marker of `analysis_id` answers when the marker's
    /// condition failed: the earlier record (which cannot vanish once written).
    async fn earlier(&self, key: &UsageKey, analysis_id: &str) -> Result<Consumed, StoreError> {
        match self.analysis_record(key, analysis_id).await? {
            Some(record) => Ok(Consumed::Earlier(record)),
            None => Err(StoreError::Corrupt(format!(
                "usage {}: the marker of {analysis_id} failed its condition but is missing",
                key.pk()
            ))),
        }
    }

    /// Counts one analysis against the counter of meter Analyses for `period_key`, within
    /// `limit` (`None`: unlimited, still counted), and records its marker in the same
    /// transaction: the marker is put with `attribute_not_exists`, the counter's ADD is
    /// conditioned on `count < limit` when limited. An id consumed before (from any source)
    /// answers `Earlier` and counts nothing. `source` is `Subscription` or `FreeTier` (report
    /// credits pay through [`Store::consume_analysis_with_report_credit`]).
    pub async fn consume_analysis(
        &self,
        key: &UsageKey,
        analysis_id: &str,
        source: AnalysisSource,
        period_key: &str,
        limit: Option<u64>,
        now: i64,
    ) -> Result<Consumed, StoreError> {
        check_id("an analysis id", analysis_id)?;
        check_period_key(period_key)?;
        if source == AnalysisSource::ReportCredit {
            return Err(StoreError::Invalid(
                "report credits pay through consume_analysis_with_report_credit".into(),
            ));
        }
        let pk = key.pk();
        let counter_sk = Meter::Analyses.sort_key(period_key);
        let record = AnalysisRecord {
            analysis_id: analysis_id.to_string(),
            source,
            period_key: period_key.to_string(),
            consumed_at: now,
            report_expires_at: None,
        };
        for _ in 0..MAX_DECISIONS {
            let items = vec![
                self.marker_put(&pk, &record)?,
                TransactWriteItem::builder()
                    .update(self.counter_update(&pk, &counter_sk, limit, now)?)
                    .build(),
            ];
            match self.ledger_transact(items).await? {
                TxResult::Committed => return Ok(Consumed::New(record)),
                TxResult::ConditionFailed(codes) => {
                    if failed(&codes, 0) {
                        return self.earlier(key, analysis_id).await;
                    }
                    if failed(&codes, 1) {
                        let used = self.usage_count(key, Meter::Analyses, period_key).await?;
                        return Ok(Consumed::LimitReached { used });
                    }
                    // No reasons given: find out which condition failed.
                    if let Some(earlier) = self.analysis_record(key, analysis_id).await? {
                        return Ok(Consumed::Earlier(earlier));
                    }
                    let used = self.usage_count(key, Meter::Analyses, period_key).await?;
                    if limit.is_some_and(|l| used >= l) {
                        return Ok(Consumed::LimitReached { used });
                    }
                }
            }
        }
        Err(StoreError::Contention(format!(
            "usage {pk}: consuming {analysis_id} lost {MAX_DECISIONS} races"
        )))
    }

    /// Pays one analysis with the subject's soonest-expiring unexpired lot granted for a
    /// `report` (never with the pool: pack credits do not pay analyses), in one transaction
    /// spanning the ledger and the usage table: `BALANCE` (balance −1, that lot's remaining
    /// −1, conditioned as the ledger's spends are, and expired lots written off as the
    /// ledger's spends do), an `ENTRY#` spend of −1 (reason `analysis`, `source_id` the lot,
    /// `analysis_ids` [the id]), the usage marker (source `ReportCredit`, `report_expires_at`
    /// the lot's expiry) and +1 on the Analyses counter of `period_key` (unlimited).
    ///
    /// `Ok(None)`: no usable report credit (nothing written). An id consumed before (from any
    /// source) answers `Earlier`. A spend condition failing (a concurrent spend) re-reads and
    /// decides again, at most `MAX_DECISIONS` times.
    pub async fn consume_analysis_with_report_credit(
        &self,
        ledger_key: &LedgerKey,
        key: &UsageKey,
        analysis_id: &str,
        period_key: &str,
        now: i64,
    ) -> Result<Option<Consumed>, StoreError> {
        check_id("an analysis id", analysis_id)?;
        check_period_key(period_key)?;
        let ledger_pk = ledger_key.pk();
        let pk = key.pk();
        let counter_sk = Meter::Analyses.sort_key(period_key);
        for _ in 0..MAX_DECISIONS {
            if let Some(earlier) = self.analysis_record(key, analysis_id).await? {
                return Ok(Some(Consumed::Earlier(earlier)));
            }
            let Some(state) = self.ledger_read(&ledger_pk, &[], None).await?.state else {
                return Ok(None);
            };
            // The soonest-expiring unexpired analysis credit (a report's).
            let chosen = state
                .lots
                .iter()
                .filter(|l| {
                    l.kind == CreditKind::Analysis
                        && l.remaining > 0
                        && !crate::ledger::rules::is_expired(l.expires_at, now)
                })
                .min_by(|a, b| (a.expires_at, &a.source_id).cmp(&(b.expires_at, &b.source_id)));
            let Some(lot) = chosen else {
                return Ok(None);
            };
            let plan = AccessPlan {
                new_docs: Vec::new(),
                cost: 1,
                from_lots: vec![Draw {
                    source_id: lot.source_id.clone(),
                    amount: 1,
                }],
                from_pool: 0,
                expiries: state.expiries(now),
                remaining_balance: state.unexpired(CreditKind::Analysis, now) - 1,
            };
            let spend = Entry {
                id: new_entry_id(now),
                kind: EntryKind::Spend,
                amount: -1,
                reason: ANALYSIS_SPEND_REASON.to_string(),
                source_id: Some(lot.source_id.clone()),
                created_at: now,
            };
            let analysis_ids = [analysis_id.to_string()];
            let mut items = Vec::with_capacity(plan.expiries.len() + 4);
            items.push(
                TransactWriteItem::builder()
                    .update(spend_update(self, &ledger_pk, &plan)?)
                    .build(),
            );
            items.push(entry_put(self, &ledger_pk, &spend, Some(&analysis_ids))?);
            for expiry in &plan.expiries {
                let entry = Entry {
                    id: new_entry_id(now),
                    kind: EntryKind::Expiry,
                    amount: -expiry.amount,
                    reason: "expired".to_string(),
                    source_id: Some(expiry.source_id.clone()),
                    created_at: now,
                };
                items.push(entry_put(self, &ledger_pk, &entry, None)?);
            }
            let record = AnalysisRecord {
                analysis_id: analysis_id.to_string(),
                source: AnalysisSource::ReportCredit,
                period_key: period_key.to_string(),
                consumed_at: now,
                report_expires_at: Some(lot.expires_at),
            };
            let marker_index = items.len();
            items.push(self.marker_put(&pk, &record)?);
            items.push(
                TransactWriteItem::builder()
                    .update(self.counter_update(&pk, &counter_sk, None, now)?)
                    .build(),
            );
            match self.ledger_transact(items).await? {
                TxResult::Committed => return Ok(Some(Consumed::New(record))),
                TxResult::ConditionFailed(codes) => {
                    if failed(&codes, marker_index) {
                        return self.earlier(key, analysis_id).await.map(Some);
                    }
                    // The lot or the balance moved meanwhile (or no reasons were given):
                    // read again and decide again.
                }
            }
        }
        Err(StoreError::Contention(format!(
            "usage {pk}: paying {analysis_id} with a report credit lost {MAX_DECISIONS} races"
        )))
    }

    /// Counts one chat message in `period_key` within `limit` (`None`: unlimited, still
    /// counted). `Ok(Ok(used after))` when counted, `Ok(Err(used))` when the limit was
    /// reached (nothing written). Not idempotent: chat messages have no id.
    pub async fn count_chat_message(
        &self,
        key: &UsageKey,
        period_key: &str,
        limit: Option<u64>,
        now: i64,
    ) -> Result<Result<u64, u64>, StoreError> {
        check_period_key(period_key)?;
        let update = self.counter_update(
            &key.pk(),
            &Meter::ChatMessages.sort_key(period_key),
            limit,
            now,
        )?;
        let result = self
            .client()
            .update_item()
            .table_name(update.table_name())
            .set_key(Some(update.key().clone()))
            .update_expression(update.update_expression())
            .set_condition_expression(update.condition_expression().map(str::to_string))
            .set_expression_attribute_names(update.expression_attribute_names().cloned())
            .set_expression_attribute_values(update.expression_attribute_values().cloned())
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        match result {
            Ok(out) => count_of(out.attributes.as_ref()).map(Ok),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                let used = self
                    .usage_count(key, Meter::ChatMessages, period_key)
                    .await?;
                Ok(Err(used))
            }
            Err(e) => Err(sdk(e)),
        }
    }

    /// [`Store::count_chat_message`] for a request whose answer is stored with the count
    /// (`answer` of the counted message's `used` after): a consistent read of the counter,
    /// then one transaction that sets it one higher, conditioned on the value read, and
    /// stores the answer. `true` when the answer rode the transaction (not when the limit
    /// was reached: nothing was written).
    pub async fn count_chat_message_answered(
        &self,
        key: &UsageKey,
        period_key: &str,
        limit: Option<u64>,
        now: i64,
        answer: AnswerWith<'_, u64>,
    ) -> Result<(Result<u64, u64>, bool), StoreError> {
        check_period_key(period_key)?;
        let pk = key.pk();
        let sk = Meter::ChatMessages.sort_key(period_key);
        for _ in 0..MAX_DECISIONS {
            let used = self
                .usage_count(key, Meter::ChatMessages, period_key)
                .await?;
            if limit.is_some_and(|l| used >= l) {
                return Ok((Err(used), false));
            }
            let next = used + 1;
            let update = Update::builder()
                .table_name(self.usage_table())
                .set_key(Some(item_key(&pk, &sk)))
                .update_expression("SET #c = :next, #u = :now")
                .condition_expression(if used == 0 {
                    "attribute_not_exists(#c) OR #c = :seen"
                } else {
                    "#c = :seen"
                })
                .expression_attribute_names("#c", COUNT_ATTR)
                .expression_attribute_names("#u", "updated_at")
                .expression_attribute_values(":seen", AttributeValue::N(used.to_string()))
                .expression_attribute_values(":next", AttributeValue::N(next.to_string()))
                .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
                .build()
                .map_err(build)?;
            let items = vec![
                TransactWriteItem::builder().update(update).build(),
                answer(&next)?,
            ];
            match self.ledger_transact(items).await? {
                TxResult::Committed => return Ok((Ok(next), true)),
                TxResult::ConditionFailed(codes) if last_failed(&codes) => {
                    return Err(StoreError::ClaimLost);
                }
                // Another message was counted meanwhile: read again.
                TxResult::ConditionFailed(_) => {}
            }
        }
        Err(StoreError::Contention(format!(
            "usage {pk}: counting a chat message lost {MAX_DECISIONS} races"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
