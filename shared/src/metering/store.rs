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
//! [`Store::meter_analysis`] is the engine: one read of everything the decision needs, the
//! decision ([`rules::decide_analysis`]), then one transaction that restates it; a report
//! credit is spent through the ledger's own API ([`Store::ledger_spend_lot`]), with the
//! marker and the counter riding its transaction.

use super::rules::{self, AnalysisDecision, AnalysisFacts, Refusal};
use super::{AnalysisRecord, AnalysisSource, Meter, MeterKeys, Plan, UsageKey, plan_of};
use crate::ledger::rules::LedgerState;
use crate::ledger::store::{
    CONDITION_FAILED, LotSpend, LotSpendOf, MAX_DECISIONS, TxResult, check_id, last_failed,
};
use crate::ledger::{CreditKind, LedgerKey, Lot};
use crate::store::{AnswerWith, Item, Store, StoreError, build, corrupt, sdk};
use crate::subscriptions::SubscriptionRecord;
use crate::tables::Table;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem, Update};
use serde::Serialize;
use std::collections::HashMap;

/// The ledger reason of the spend entry of an analysis paid with a report credit.
pub const ANALYSIS_SPEND_REASON: &str = "analysis";

const ANALYSIS_PREFIX: &str = "ANALYSIS#";
const COUNT_ATTR: &str = "count";

/// An analysis counted now, and what its allowance has left (`None`: unlimited), as the
/// decision saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    pub record: AnalysisRecord,
    pub remaining: Option<u64>,
}

/// What metering an analysis did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metered {
    /// Counted now; `answered` when the request's answer rode the transaction.
    Counted { counted: Counted, answered: bool },
    /// This analysis id was counted before (from any source): nothing was counted now.
    Earlier(AnalysisRecord),
    /// Nothing pays.
    Refused(Refusal),
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

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn item_key(pk: &str, sk: &str) -> Item {
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

/// What [`Store::analysis_facts`] read.
struct AnalysisRead {
    /// The analysis's earlier record, when it was counted before.
    earlier: Option<AnalysisRecord>,
    facts: AnalysisFacts,
    ledger: Option<LedgerState>,
}

/// What [`Store::usage_now`] read.
#[derive(Debug, Clone, Default)]
pub struct UsageNow {
    pub analyses: u64,
    pub chat_messages: u64,
    /// The subject's ledger (`None`: it never had credits).
    pub ledger: Option<LedgerState>,
}

fn decode<T: serde::de::DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(corrupt)
}

fn new_record(
    analysis_id: &str,
    source: AnalysisSource,
    period_key: &str,
    now: i64,
    report_expires_at: Option<i64>,
) -> AnalysisRecord {
    AnalysisRecord {
        analysis_id: analysis_id.to_string(),
        source,
        period_key: period_key.to_string(),
        consumed_at: now,
        report_expires_at,
    }
}

/// The request's completion for an analysis counted as `record` with `remaining` left.
fn completion(
    answer: Option<AnswerWith<'_, Counted>>,
    record: &AnalysisRecord,
    remaining: Option<u64>,
) -> Result<Option<TransactWriteItem>, StoreError> {
    answer
        .map(|answer| {
            answer(&Counted {
                record: record.clone(),
                remaining,
            })
        })
        .transpose()
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
        self.get_decoded(
            Table::Usage,
            item_key(&key.pk(), &marker_sk(analysis_id)),
            true,
        )
        .await
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
    /// credits pay through the ledger: [`Store::consume_analysis_with_report_credit`]).
    pub async fn consume_analysis(
        &self,
        key: &UsageKey,
        analysis_id: &str,
        source: AnalysisSource,
        period_key: &str,
        limit: Option<u64>,
        now: i64,
    ) -> Result<Consumed, StoreError> {
        let record = new_record(analysis_id, source, period_key, now, None);
        self.count_analysis(key, &record, limit, None).await
    }

    /// [`Self::consume_analysis`] of `record`, with the request's `answer` (its completion)
    /// riding the transaction when given: its condition failing is [`StoreError::ClaimLost`].
    async fn count_analysis(
        &self,
        key: &UsageKey,
        record: &AnalysisRecord,
        limit: Option<u64>,
        answer: Option<TransactWriteItem>,
    ) -> Result<Consumed, StoreError> {
        let (analysis_id, period_key) = (&record.analysis_id, &record.period_key);
        check_id("an analysis id", analysis_id)?;
        check_period_key(period_key)?;
        if record.source == AnalysisSource::ReportCredit {
            return Err(StoreError::Invalid(
                "report credits pay through the ledger".into(),
            ));
        }
        let pk = key.pk();
        let counter_sk = Meter::Analyses.sort_key(period_key);
        let mut items = vec![
            self.marker_put(&pk, record)?,
            TransactWriteItem::builder()
                .update(self.counter_update(&pk, &counter_sk, limit, record.consumed_at)?)
                .build(),
        ];
        let answered = answer.is_some();
        items.extend(answer);
        match self.ledger_transact(items).await? {
            TxResult::Committed => Ok(Consumed::New(record.clone())),
            TxResult::ConditionFailed(codes) => {
                if failed(&codes, 0) {
                    return self.earlier(key, analysis_id).await;
                }
                if answered && failed(&codes, 2) {
                    return Err(StoreError::ClaimLost);
                }
                // The limit (or, without reasons, either condition): find out which.
                if let Some(earlier) = self.analysis_record(key, analysis_id).await? {
                    return Ok(Consumed::Earlier(earlier));
                }
                let used = self.usage_count(key, Meter::Analyses, period_key).await?;
                Ok(Consumed::LimitReached { used })
            }
        }
    }

    /// Pays one analysis with the subject's soonest-expiring unexpired analysis credit
    /// (never with document credits), reading the ledger and deciding again while a
    /// concurrent spend moves it (at most `MAX_DECISIONS` times). `Ok(None)`: no usable
    /// analysis credit (nothing written). An id consumed before answers `Earlier`. What one
    /// decision writes: [`Store::meter_analysis`]'s report-credit transaction.
    pub async fn consume_analysis_with_report_credit(
        &self,
        ledger_key: &LedgerKey,
        key: &UsageKey,
        analysis_id: &str,
        period_key: &str,
        now: i64,
    ) -> Result<Option<Consumed>, StoreError> {
        check_id("an analysis id", analysis_id)?;
        for _ in 0..MAX_DECISIONS {
            if let Some(earlier) = self.analysis_record(key, analysis_id).await? {
                return Ok(Some(Consumed::Earlier(earlier)));
            }
            let Some(state) = self.ledger_read(&ledger_key.pk(), &[], None).await?.state else {
                return Ok(None);
            };
            let Some(lot) = state.next_lot(CreditKind::Analysis, now) else {
                return Ok(None);
            };
            let record = new_record(
                analysis_id,
                AnalysisSource::ReportCredit,
                period_key,
                now,
                lot.expires_at,
            );
            if let Some(consumed) = self
                .spend_credit(ledger_key, key, &state, &lot, &record, None)
                .await?
            {
                return Ok(Some(consumed));
            }
        }
        Err(StoreError::Contention(format!(
            "usage {}: paying {analysis_id} with a report credit lost {MAX_DECISIONS} races",
            key.pk()
        )))
    }

    /// One decision's report-credit transaction, through the ledger's API: the ledger's spend
    /// of one credit of `lot` (reason `analysis`, the analysis id on its entry, expired lots
    /// written off on the way) with the usage marker of `record`, +1 on the subject's Analyses
    /// counter of the record's period (unlimited), and the request's `answer` riding along.
    /// `Ok(None)`: the ledger moved since `state` was read (decide again).
    async fn spend_credit(
        &self,
        ledger_key: &LedgerKey,
        key: &UsageKey,
        state: &LedgerState,
        lot: &Lot,
        record: &AnalysisRecord,
        answer: Option<TransactWriteItem>,
    ) -> Result<Option<Consumed>, StoreError> {
        check_period_key(&record.period_key)?;
        let pk = key.pk();
        let counter_sk = Meter::Analyses.sort_key(&record.period_key);
        let mut riders = vec![
            self.marker_put(&pk, record)?,
            TransactWriteItem::builder()
                .update(self.counter_update(&pk, &counter_sk, None, record.consumed_at)?)
                .build(),
        ];
        let answered = answer.is_some();
        riders.extend(answer);
        let spend = self
            .ledger_spend_lot(
                ledger_key,
                state,
                LotSpendOf {
                    lot,
                    reason: ANALYSIS_SPEND_REASON,
                    analysis_ids: std::slice::from_ref(&record.analysis_id),
                    now: record.consumed_at,
                },
                riders,
            )
            .await?;
        match spend {
            LotSpend::Committed => Ok(Some(Consumed::New(record.clone()))),
            LotSpend::Unpayable => Ok(None),
            LotSpend::ConditionFailed { riders_failed } => {
                if riders_failed.first() == Some(&true) {
                    return self.earlier(key, &record.analysis_id).await.map(Some);
                }
                if answered && riders_failed.last() == Some(&true) {
                    return Err(StoreError::ClaimLost);
                }
                // The lot or the balance moved meanwhile (or no reasons were given).
                Ok(None)
            }
        }
    }

    /// Meters one analysis: reads what the decision needs ([`Self::analysis_facts`]: one
    /// BatchGetItem, plus the plan's counter on a limited paid plan), decides
    /// ([`rules::decide_analysis`]) and writes the decision as one transaction; when a
    /// condition says the read was stale (a counter or the ledger moved), reads and decides
    /// again. `answer`, given the counted analysis, builds the request's completion, which
    /// then rides the transaction (so a crash after it cannot change what a retry answers).
    pub async fn meter_analysis(
        &self,
        keys: &MeterKeys,
        analysis_id: &str,
        now: i64,
        answer: Option<AnswerWith<'_, Counted>>,
    ) -> Result<Metered, StoreError> {
        check_id("an analysis id", analysis_id)?;
        for _ in 0..MAX_DECISIONS {
            let read = self.analysis_facts(keys, analysis_id, now).await?;
            if let Some(earlier) = read.earlier {
                return Ok(Metered::Earlier(earlier));
            }
            let (consumed, remaining) = match rules::decide_analysis(&read.facts, now) {
                AnalysisDecision::Refuse(refusal) => return Ok(Metered::Refused(refusal)),
                AnalysisDecision::Count {
                    source,
                    counter,
                    period_key,
                    limit,
                    remaining,
                } => {
                    let record = new_record(analysis_id, source, &period_key, now, None);
                    let completion = completion(answer, &record, remaining)?;
                    let consumed = self
                        .count_analysis(keys.counter(counter), &record, limit, completion)
                        .await?;
                    (Some(consumed), remaining)
                }
                AnalysisDecision::SpendCredit {
                    lot,
                    period_key,
                    remaining,
                } => {
                    let state = read.ledger.as_ref().ok_or_else(|| {
                        StoreError::Corrupt("a credit decided without a ledger".into())
                    })?;
                    let record = new_record(
                        analysis_id,
                        AnalysisSource::ReportCredit,
                        &period_key,
                        now,
                        lot.expires_at,
                    );
                    let completion = completion(answer, &record, Some(remaining))?;
                    let consumed = self
                        .spend_credit(
                            &keys.ledger,
                            &keys.subject,
                            state,
                            &lot,
                            &record,
                            completion,
                        )
                        .await?;
                    (consumed, Some(remaining))
                }
            };
            match consumed {
                Some(Consumed::New(record)) => {
                    return Ok(Metered::Counted {
                        counted: Counted { record, remaining },
                        answered: answer.is_some(),
                    });
                }
                Some(Consumed::Earlier(record)) => return Ok(Metered::Earlier(record)),
                // The counter or the ledger moved since the read: decide again.
                Some(Consumed::LimitReached { .. }) | None => {}
            }
        }
        Err(StoreError::Contention(format!(
            "usage {}: metering {analysis_id} lost {MAX_DECISIONS} races",
            keys.subject.pk()
        )))
    }

    /// Everything an analysis's decision needs, read consistently: the analysis's markers
    /// (the subject's and the account's), the subject's plan, the account's free-tier counter
    /// and the subject's ledger in one BatchGetItem across three tables; then, on a paid plan
    /// with a limit, the plan period's counter (its key comes from the plan).
    async fn analysis_facts(
        &self,
        keys: &MeterKeys,
        analysis_id: &str,
        now: i64,
    ) -> Result<AnalysisRead, StoreError> {
        let free_period = Plan::Free.period(now).key;
        let ledger_pk = keys.ledger.pk();
        let mut wanted = vec![
            (
                Table::Usage,
                item_key(&keys.subject.pk(), &marker_sk(analysis_id)),
            ),
            (
                Table::Subscriptions,
                Store::subscription_key(&keys.subject.account_id, &keys.subject.subject),
            ),
            (
                Table::Usage,
                item_key(&keys.account.pk(), &Meter::Analyses.sort_key(&free_period)),
            ),
            (Table::CreditLedger, Store::ledger_balance_key(&ledger_pk)),
        ];
        if keys.account != keys.subject {
            wanted.push((
                Table::Usage,
                item_key(&keys.account.pk(), &marker_sk(analysis_id)),
            ));
        }
        let (mut earlier, mut record, mut free_used, mut balance) = (None, None, 0, None);
        for (index, item) in self.batch_get(&wanted).await? {
            match index {
                1 => record = Some(decode::<SubscriptionRecord>(item)?),
                2 => free_used = count_of(Some(&item))?,
                3 => balance = Some(item),
                _ => earlier = Some(decode::<AnalysisRecord>(item)?),
            }
        }
        let plan = plan_of(record.as_ref(), now, self.access_grace_secs());
        let plan_used = match plan {
            Plan::Paid { .. } if earlier.is_none() && plan.analyses_limit().is_some() => {
                self.usage_count(&keys.subject, Meter::Analyses, &plan.period(now).key)
                    .await?
            }
            _ => 0,
        };
        let ledger = match balance {
            Some(item) => Some(self.ledger_state_of(&ledger_pk, item).await?),
            None => None,
        };
        let facts = AnalysisFacts {
            plan,
            plan_used,
            next_credit: ledger
                .as_ref()
                .and_then(|l| l.next_lot(CreditKind::Analysis, now)),
            credits: ledger
                .as_ref()
                .map_or(0, |l| l.unexpired(CreditKind::Analysis, now)),
            free_used,
        };
        Ok(AnalysisRead {
            earlier,
            facts,
            ledger,
        })
    }

    /// What `GET /v1/usage` shows of a subject metered by `plan` at `now`: the Analyses and
    /// ChatMessages counters of the plan's period (the subject's on a paid plan, the
    /// account's free tier otherwise) and the subject's ledger, in one BatchGetItem.
    pub async fn usage_now(
        &self,
        keys: &MeterKeys,
        plan: &Plan,
        now: i64,
    ) -> Result<UsageNow, StoreError> {
        let period = plan.period(now);
        let counter = match plan {
            Plan::Paid { .. } => &keys.subject,
            Plan::Free => &keys.account,
        };
        let ledger_pk = keys.ledger.pk();
        let wanted = [
            (
                Table::Usage,
                item_key(&counter.pk(), &Meter::Analyses.sort_key(&period.key)),
            ),
            (
                Table::Usage,
                item_key(&counter.pk(), &Meter::ChatMessages.sort_key(&period.key)),
            ),
            (Table::CreditLedger, Store::ledger_balance_key(&ledger_pk)),
        ];
        let mut now_ = UsageNow::default();
        for (index, item) in self.batch_get(&wanted).await? {
            match index {
                0 => now_.analyses = count_of(Some(&item))?,
                1 => now_.chat_messages = count_of(Some(&item))?,
                _ => now_.ledger = Some(self.ledger_state_of(&ledger_pk, item).await?),
            }
        }
        Ok(now_)
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
