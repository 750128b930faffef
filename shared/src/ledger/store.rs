//! The ledger's DynamoDB adapter: reads the state, asks `rules` what to do, and writes the
//! plan as one `TransactWriteItems` whose conditions restate every assumption the plan made.
//!
//! - A transaction cancelled by a *conflict* or throttling is retried as is, with jittered
//!   exponential backoff (at most `MAX_TX_ATTEMPTS` sends, well under a second of waiting).
//! - A transaction cancelled by a *condition* means the read is stale: re-read and decide
//!   again (at most `MAX_DECISIONS` times), e.g. a document bought meanwhile by a concurrent
//!   request is now free, a balance spent meanwhile may now be insufficient.

use super::rules::{self, AccessDecision, AccessPlan, KindTotals, LedgerState, StoredLot};
use super::{
    Access, AccessOutcome, Balance, Charge, CreditKind, Entry, EntryKind, Grant, GrantOutcome,
    LedgerKey, MAX_ACCESS_IDS, MAX_PURCHASE_PAGE, Purchase, PurchasePage, PurchaseStatus,
};
use crate::store::{AnswerWith, Store, StoreError, build, condition_held, corrupt, sdk};
use crate::subscriptions::SubscriptionRecord;
use crate::tables::Table;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

pub(super) const BALANCE_SK: &str = "BALANCE";
pub(crate) const ENTRY_PREFIX: &str = "ENTRY#";
pub(crate) const GRANT_PREFIX: &str = "GRANT#";
pub(super) const DOC_PREFIX: &str = "DOC#";
pub(super) const PURCHASE_PREFIX: &str = "PURCHASE#";

/// Sends of one transaction that a conflict or throttling may cause.
const MAX_TX_ATTEMPTS: u32 = 8;
/// Backoff before the n-th resend: uniformly random up to `min(BASE · 2ⁿ, CAP)` ms, so at
/// most 8+16+32+64+128+200+200 = 648 ms over all resends.
const BACKOFF_BASE_MS: u64 = 8;
const BACKOFF_CAP_MS: u64 = 200;
/// Re-reads after a transaction cancelled by a condition (each means someone else changed
/// the ledger meanwhile).
pub(crate) const MAX_DECISIONS: usize = 12;
/// Query pages read for one listing (each up to 1 MB).
const MAX_QUERY_PAGES: usize = 64;
/// Longest id accepted in a sort key (documents, grant sources, purchases).
const MAX_ID_LEN: usize = 256;
const MAX_REASON_LEN: usize = 512;

fn balance_at(state: LedgerState, now: i64) -> Balance {
    let documents = state.document_totals();
    Balance {
        balance: state.available(now),
        total_purchased: documents.purchased,
        total_spent: documents.spent,
        lots: state.live_lots(now),
    }
}

/// One consistent read of a ledger: its state, which of the asked items exist, and the
/// subject's plan when asked for.
#[derive(Debug, Default)]
pub(crate) struct LedgerRead {
    pub(crate) state: Option<LedgerState>,
    pub(crate) found: HashSet<String>,
    /// Of `found`, the items that name a ledger entry (`DOC#` items bought with a credit).
    pub(crate) paid: HashSet<String>,
    pub(crate) plan: Option<SubscriptionRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
struct LotItem {
    remaining: i64,
    expires_at: i64,
    /// What the lot pays for. Absent on lots written before kinds existed: read once from
    /// the lot's grant, then stored ([`Store::store_lot_kinds`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<CreditKind>,
}

#[derive(Debug, Serialize, Deserialize)]
struct BalanceItem {
    pk: String,
    sk: String,
    balance: i64,
    pool: i64,
    total_purchased: i64,
    total_spent: i64,
    total_expired: i64,
    /// The analysis credits' part of the totals. Absent on items written before it was
    /// kept: read once from the entries, then stored ([`Store::store_analysis_totals`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    analysis_purchased: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    analysis_spent: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    analysis_expired: Option<i64>,
    #[serde(default)]
    lots: HashMap<String, LotItem>,
}

impl BalanceItem {
    /// The lots whose kind is not stored yet.
    fn kindless(&self) -> Vec<String> {
        self.lots
            .iter()
            .filter(|(_, l)| l.kind.is_none())
            .map(|(source, _)| source.clone())
            .collect()
    }

    /// The analysis totals, when the item has them.
    fn analysis(&self) -> Option<KindTotals> {
        Some(KindTotals {
            purchased: self.analysis_purchased?,
            spent: self.analysis_spent?,
            expired: self.analysis_expired?,
        })
    }

    /// The state; every lot's kind is known (stored, or in `kinds`), and the analysis
    /// totals (stored, or `analysis`).
    fn state(
        self,
        kinds: &HashMap<String, CreditKind>,
        analysis: KindTotals,
    ) -> Result<LedgerState, StoreError> {
        let pk = self.pk;
        let mut lots: Vec<StoredLot> = self
            .lots
            .into_iter()
            .map(|(source_id, l)| {
                let kind = l
                    .kind
                    .or_else(|| kinds.get(&source_id).copied())
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("ledger {pk}: lot {source_id} has no kind"))
                    })?;
                Ok(StoredLot {
                    source_id,
                    kind,
                    remaining: l.remaining,
                    expires_at: l.expires_at,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        lots.sort_by(|a, b| a.source_id.cmp(&b.source_id));
        Ok(LedgerState {
            balance: self.balance,
            pool: self.pool,
            total_purchased: self.total_purchased,
            total_spent: self.total_spent,
            total_expired: self.total_expired,
            analysis,
            lots,
        })
    }

    fn new(pk: &str, state: &LedgerState) -> Self {
        Self {
            pk: pk.to_string(),
            sk: BALANCE_SK.to_string(),
            balance: state.balance,
            pool: state.pool,
            total_purchased: state.total_purchased,
            total_spent: state.total_spent,
            total_expired: state.total_expired,
            analysis_purchased: Some(state.analysis.purchased),
            analysis_spent: Some(state.analysis.spent),
            analysis_expired: Some(state.analysis.expired),
            lots: state
                .lots
                .iter()
                .map(|l| {
                    (
                        l.source_id.clone(),
                        LotItem {
                            remaining: l.remaining,
                            expires_at: l.expires_at,
                            kind: Some(l.kind),
                        },
                    )
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize)]
struct EntryItem<'a> {
    pk: &'a str,
    sk: String,
    #[serde(flatten)]
    entry: &'a Entry,
    #[serde(skip_serializing_if = "Option::is_none")]
    analysis_ids: Option<&'a [String]>,
}

#[derive(Debug, Serialize)]
struct GrantMarker<'a> {
    pk: &'a str,
    sk: String,
    source_id: &'a str,
    credits: i64,
    entry_id: &'a str,
    granted_at: i64,
}

#[derive(Debug, Serialize)]
struct DocItem<'a> {
    pk: &'a str,
    sk: String,
    analysis_id: &'a str,
    granted_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    entry_id: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct PurchaseItem<'a> {
    pk: &'a str,
    sk: String,
    #[serde(flatten)]
    purchase: &'a Purchase,
}

fn kind_value(kind: CreditKind) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(kind).map_err(corrupt)
}

/// A new lot of `grant`, expiring `at`, as stored in `BALANCE.lots`.
fn lot_value(grant: &Grant<'_>, at: i64) -> Result<AttributeValue, StoreError> {
    Ok(AttributeValue::M(HashMap::from([
        ("remaining".to_string(), n(grant.credits)),
        ("expires_at".to_string(), n(at)),
        ("kind".to_string(), kind_value(grant.kind)?),
    ])))
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn item_key(pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

pub(crate) fn check_id(what: &str, id: &str) -> Result<(), StoreError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(StoreError::Invalid(format!(
            "{what} must be 1-{MAX_ID_LEN} bytes, got {}",
            id.len()
        )));
    }
    Ok(())
}

/// A new entry id: a ULID whose time part is `now` (so ids sort by time).
pub(crate) fn new_entry_id(now: i64) -> String {
    let ms = u64::try_from(now).unwrap_or(0).saturating_mul(1000);
    ulid::Ulid::from_parts(ms, rand::random::<u128>()).to_string()
}

/// The longest wait before resend `attempt` (1-based): `min(BASE · 2^(attempt-1), CAP)` ms.
fn backoff_ceiling_ms(attempt: u32) -> u64 {
    BACKOFF_BASE_MS
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_CAP_MS)
}

/// Jittered exponential backoff before resend `attempt` (1-based): a uniformly random wait
/// up to the ceiling ("full jitter"), so racing writers spread out.
async fn backoff(attempt: u32) {
    let wait = rand::random_range(1..=backoff_ceiling_ms(attempt).max(1));
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

/// How a transaction ended when it did not fail outright.
#[derive(Debug)]
pub(crate) enum TxResult {
    Committed,
    /// Cancelled by a condition: the code of each item, in order (`None` for items that
    /// passed; may be empty when the engine sends no reasons).
    ConditionFailed(Vec<String>),
}

pub(crate) const CONDITION_FAILED: &str = "ConditionalCheckFailed";

/// Whether a cancelled transaction's last item (a request's stored answer) failed its condition.
pub(crate) fn last_failed(codes: &[String]) -> bool {
    codes.last().is_some_and(|c| c == CONDITION_FAILED)
}

fn is_retryable_reason(code: &str) -> bool {
    matches!(
        code,
        "None"
            | "TransactionConflict"
            | "ThrottlingError"
            | "ProvisionedThroughputExceeded"
            | "RequestLimitExceeded"
    )
}

/// What the ledger's queries and transactions share.
impl Store {
    pub(crate) fn ledger_table(&self) -> &str {
        self.tables().get(Table::CreditLedger)
    }

    /// Sends one transaction, resending it (backoff) while it is cancelled by conflicts or
    /// throttling. Also sends the usage meter's transactions (`crate::metering::store`), which may span
    /// this table and the Usage table.
    pub(crate) async fn ledger_transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<TxResult, StoreError> {
        debug_assert!(!items.is_empty() && items.len() <= 100);
        let mut last = String::new();
        for attempt in 1..=MAX_TX_ATTEMPTS {
            if attempt > 1 {
                backoff(attempt - 1).await;
            }
            let result = self
                .client()
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(TxResult::Committed),
                Err(e) => e,
            };
            let retry = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancel)) => {
                    let codes: Vec<String> = cancel
                        .cancellation_reasons()
                        .iter()
                        .map(|r| r.code().unwrap_or("None").to_string())
                        .collect();
                    if codes.iter().any(|c| c == CONDITION_FAILED) {
                        return Ok(TxResult::ConditionFailed(codes));
                    }
                    if codes.is_empty() {
                        // No reasons at all: treat it as a stale read, which re-reads.
                        return Ok(TxResult::ConditionFailed(codes));
                    }
                    codes.iter().all(|c| is_retryable_reason(c))
                }
                Some(
                    TransactWriteItemsError::ProvisionedThroughputExceededException(_)
                    | TransactWriteItemsError::RequestLimitExceeded(_)
                    | TransactWriteItemsError::ThrottlingException(_)
                    | TransactWriteItemsError::TransactionInProgressException(_)
                    | TransactWriteItemsError::InternalServerError(_),
                ) => true,
                _ => false,
            };
            if !retry {
                return Err(sdk(err));
            }
            last = DisplayErrorContext(&err).to_string();
            tracing::debug!(attempt, error = %last, "ledger transaction retried");
        }
        Err(StoreError::Contention(format!(
            "a ledger transaction was cancelled {MAX_TX_ATTEMPTS} times: {last}"
        )))
    }

    /// The BALANCE item of ledger `pk` and which of `sks` exist, read consistently in one
    /// BatchGetItem — which also reads the subject's plan (Subscriptions table) when `plan_of`
    /// names it, so deciding whether to charge costs no second round trip.
    pub(crate) async fn ledger_read(
        &self,
        pk: &str,
        sks: &[String],
        plan_of: Option<&LedgerKey>,
    ) -> Result<LedgerRead, StoreError> {
        // BatchGetItem takes 100 keys across its tables: BALANCE, the plan and `sks`.
        debug_assert!(sks.len() + 2 <= 100);
        let table = self.ledger_table().to_string();
        let plans = self.table(Table::Subscriptions).to_string();
        let mut keys: Vec<HashMap<String, AttributeValue>> = Vec::with_capacity(sks.len() + 1);
        keys.push(item_key(pk, BALANCE_SK));
        keys.extend(sks.iter().map(|sk| item_key(pk, sk)));
        let mut request = HashMap::from([(
            table.clone(),
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .projection_expression(
                    "#pk, #sk, #b, #p, #tp, #ts, #te, #ap, #as, #ae, #lots, #eid",
                )
                .expression_attribute_names("#pk", "pk")
                .expression_attribute_names("#sk", "sk")
                .expression_attribute_names("#b", "balance")
                .expression_attribute_names("#p", "pool")
                .expression_attribute_names("#tp", "total_purchased")
                .expression_attribute_names("#ts", "total_spent")
                .expression_attribute_names("#te", "total_expired")
                .expression_attribute_names("#ap", "analysis_purchased")
                .expression_attribute_names("#as", "analysis_spent")
                .expression_attribute_names("#ae", "analysis_expired")
                .expression_attribute_names("#lots", "lots")
                .expression_attribute_names("#eid", "entry_id")
                .build()
                .map_err(build)?,
        )]);
        if let Some(key) = plan_of {
            request.insert(
                plans.clone(),
                KeysAndAttributes::builder()
                    .keys(Store::subscription_key(&key.account_id, &key.subject))
                    .consistent_read(true)
                    .build()
                    .map_err(build)?,
            );
        }
        let mut read = LedgerRead::default();
        let mut pending = Some(request);
        for attempt in 1..=MAX_TX_ATTEMPTS {
            let Some(request) = pending.take() else {
                return Ok(read);
            };
            if attempt > 1 {
                backoff(attempt - 1).await;
            }
            let out = self
                .client()
                .batch_get_item()
                .set_request_items(Some(request))
                .send()
                .await
                .map_err(sdk)?;
            let mut responses = out.responses.unwrap_or_default();
            if let Some(plan) = responses
                .remove(&plans)
                .and_then(|items| items.into_iter().next())
            {
                read.plan = Some(serde_dynamo::from_item(plan).map_err(corrupt)?);
            }
            for item in responses.remove(&table).unwrap_or_default() {
                let sk = match item.get("sk") {
                    Some(AttributeValue::S(sk)) => sk.clone(),
                    _ => return Err(StoreError::Corrupt("a ledger item without sk".into())),
                };
                if sk == BALANCE_SK {
                    read.state = Some(self.ledger_state_of(pk, item).await?);
                } else {
                    if item.contains_key("entry_id") {
                        read.paid.insert(sk.clone());
                    }
                    read.found.insert(sk);
                }
            }
            pending = out
                .unprocessed_keys
                .filter(|u| u.values().any(|k| !k.keys().is_empty()));
        }
        match pending {
            None => Ok(read),
            Some(_) => Err(StoreError::Contention(format!(
                "ledger {pk}: keys left unprocessed after {MAX_TX_ATTEMPTS} reads"
            ))),
        }
    }

    /// The key of ledger `pk`'s `BALANCE` item (for readers that fetch it with items of
    /// their own in one BatchGetItem, then pass it to [`Self::ledger_state_of`]).
    pub(crate) fn ledger_balance_key(pk: &str) -> HashMap<String, AttributeValue> {
        item_key(pk, BALANCE_SK)
    }

    /// The state in ledger `pk`'s `BALANCE` item, checked: lots stored before kinds existed
    /// get theirs from their grants (stored once), and an item whose numbers do not add up is
    /// corrupt, never spent from.
    pub(crate) async fn ledger_state_of(
        &self,
        pk: &str,
        item: HashMap<String, AttributeValue>,
    ) -> Result<LedgerState, StoreError> {
        let balance: BalanceItem = serde_dynamo::from_item(item).map_err(corrupt)?;
        let kindless = balance.kindless();
        let kinds = if kindless.is_empty() {
            HashMap::new()
        } else {
            self.store_lot_kinds(pk, &kindless).await?
        };
        let analysis = match balance.analysis() {
            Some(analysis) => analysis,
            None => self.store_analysis_totals(pk, balance.balance).await?,
        };
        let state = balance.state(&kinds, analysis)?;
        if !state.is_consistent() {
            return Err(StoreError::Corrupt(format!(
                "ledger {pk}: the balance item does not add up: {state:?}"
            )));
        }
        Ok(state)
    }

    /// Every item of ledger `pk` whose sort key starts with `prefix`, in sort-key order
    /// (reversed when `newest_first`).
    async fn ledger_query(
        &self,
        pk: &str,
        prefix: &str,
        newest_first: bool,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        for _ in 0..MAX_QUERY_PAGES {
            let out = self
                .client()
                .query()
                .table_name(self.ledger_table())
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":prefix", s(prefix))
                .consistent_read(true)
                .scan_index_forward(!newest_first)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk)?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
        Err(StoreError::Invalid(format!(
            "ledger {pk}: more than {MAX_QUERY_PAGES} pages of {prefix} items"
        )))
    }

    /// The kinds of lots written before kinds existed, read once from each lot's grant (its
    /// `GRANT#` marker names its entry, whose reason says: the report's grants pay analyses)
    /// and stored on the lot, so no later read needs them.
    async fn store_lot_kinds(
        &self,
        pk: &str,
        sources: &[String],
    ) -> Result<HashMap<String, CreditKind>, StoreError> {
        let mut kinds = HashMap::new();
        for source in sources {
            let kind = if self.lot_is_report(pk, source).await? {
                CreditKind::Analysis
            } else {
                CreditKind::Document
            };
            let result = self
                .client()
                .update_item()
                .table_name(self.ledger_table())
                .set_key(Some(item_key(pk, BALANCE_SK)))
                .condition_expression("attribute_exists(#lots.#src)")
                .update_expression("SET #lots.#src.#kind = :kind")
                .expression_attribute_names("#lots", "lots")
                .expression_attribute_names("#src", source)
                .expression_attribute_names("#kind", "kind")
                .expression_attribute_values(":kind", kind_value(kind)?)
                .send()
                .await;
            // A lot gone meanwhile (never: lots are not removed) needs no kind.
            condition_held(result)?;
            kinds.insert(source.clone(), kind);
        }
        Ok(kinds)
    }

    /// The analysis credits' totals of ledger `pk`, whose `BALANCE` item (holding `balance`)
    /// was written before they were kept: added up once from its entries (grants with the
    /// `report` reason, spends with the `analysis` reason, and the write-offs of those grants'
    /// lots), then stored, on condition that the item has not moved meanwhile.
    async fn store_analysis_totals(
        &self,
        pk: &str,
        balance: i64,
    ) -> Result<KindTotals, StoreError> {
        let entries: Vec<Entry> = self
            .ledger_query(pk, ENTRY_PREFIX, false)
            .await?
            .into_iter()
            .map(|item| serde_dynamo::from_item(item).map_err(corrupt))
            .collect::<Result<_, _>>()?;
        let report = crate::stripe::checkout::Purpose::Report.name();
        let sources: HashSet<&str> = entries
            .iter()
            .filter(|e| e.kind == EntryKind::Grant && e.reason == report)
            .filter_map(|e| e.source_id.as_deref())
            .collect();
        let mut totals = KindTotals::default();
        for e in &entries {
            let analysis_lot = e.source_id.as_deref().is_some_and(|s| sources.contains(s));
            match e.kind {
                EntryKind::Grant if analysis_lot => totals.purchased += e.amount,
                EntryKind::Spend if analysis_lot => totals.spent -= e.amount,
                EntryKind::Expiry if analysis_lot => totals.expired -= e.amount,
                _ => {}
            }
        }
        let result = self
            .client()
            .update_item()
            .table_name(self.ledger_table())
            .set_key(Some(item_key(pk, BALANCE_SK)))
            .condition_expression("attribute_not_exists(#ap) AND #b = :b")
            .update_expression("SET #ap = :p, #as = :s, #ae = :e")
            .expression_attribute_names("#ap", "analysis_purchased")
            .expression_attribute_names("#as", "analysis_spent")
            .expression_attribute_names("#ae", "analysis_expired")
            .expression_attribute_names("#b", "balance")
            .expression_attribute_values(":b", n(balance))
            .expression_attribute_values(":p", n(totals.purchased))
            .expression_attribute_values(":s", n(totals.spent))
            .expression_attribute_values(":e", n(totals.expired))
            .send()
            .await;
        if condition_held(result)? {
            Ok(totals)
        } else {
            Err(StoreError::Contention(format!(
                "ledger {pk}: the balance moved while its analysis totals were added up"
            )))
        }
    }

    /// Whether the grant of lot `source_id` had the `report` reason: its `GRANT#` marker
    /// names its entry, whose reason says (2 consistent reads; both items never change).
    async fn lot_is_report(&self, ledger_pk: &str, source_id: &str) -> Result<bool, StoreError> {
        let marker = self
            .client()
            .get_item()
            .table_name(self.ledger_table())
            .set_key(Some(item_key(
                ledger_pk,
                &format!("{GRANT_PREFIX}{source_id}"),
            )))
            .consistent_read(true)
            .projection_expression("entry_id")
            .send()
            .await
            .map_err(sdk)?;
        let entry_id = match marker.item.as_ref().and_then(|i| i.get("entry_id")) {
            Some(AttributeValue::S(id)) => id.clone(),
            _ => {
                return Err(StoreError::Corrupt(format!(
                    "ledger {ledger_pk}: lot {source_id} has no grant marker naming its entry"
                )));
            }
        };
        let entry = self
            .client()
            .get_item()
            .table_name(self.ledger_table())
            .set_key(Some(item_key(
                ledger_pk,
                &format!("{ENTRY_PREFIX}{entry_id}"),
            )))
            .consistent_read(true)
            .projection_expression("reason")
            .send()
            .await
            .map_err(sdk)?;
        match entry.item.as_ref().and_then(|i| i.get("reason")) {
            Some(AttributeValue::S(reason)) => {
                Ok(reason == crate::stripe::checkout::Purpose::Report.name())
            }
            _ => Err(StoreError::Corrupt(format!(
                "ledger {ledger_pk}: the grant entry {entry_id} of lot {source_id} has no reason"
            ))),
        }
    }

    /// A put of a new item: it must not exist yet.
    fn ledger_put(
        &self,
        item: HashMap<String, AttributeValue>,
    ) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(self.ledger_table())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(sk)")
            .build()
            .map_err(build)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

fn entry_put(
    store: &Store,
    pk: &str,
    entry: &Entry,
    analysis_ids: Option<&[String]>,
) -> Result<TransactWriteItem, StoreError> {
    let item = serde_dynamo::to_item(EntryItem {
        pk,
        sk: format!("{ENTRY_PREFIX}{}", entry.id),
        entry,
        analysis_ids,
    })
    .map_err(corrupt)?;
    store.ledger_put(item)
}

/// The entry writing off what is left of an expired lot.
fn expiry_entry(expiry: &rules::Draw, now: i64) -> Entry {
    Entry {
        id: new_entry_id(now),
        kind: EntryKind::Expiry,
        amount: -expiry.amount,
        reason: "expired".to_string(),
        source_id: Some(expiry.source_id.clone()),
        created_at: now,
    }
}

/// The update of `BALANCE` for an access plan, conditioned on every credit it takes: the
/// balance, the pool and each lot it draws from, and each lot it writes off holding exactly
/// what was read (so a write-off happens once).
fn spend_update(store: &Store, pk: &str, plan: &AccessPlan) -> Result<Update, StoreError> {
    let mut names = HashMap::from([
        ("#b".to_string(), "balance".to_string()),
        ("#p".to_string(), "pool".to_string()),
        ("#ts".to_string(), "total_spent".to_string()),
        ("#te".to_string(), "total_expired".to_string()),
    ]);
    let mut values = HashMap::from([
        (":dec".to_string(), n(plan.balance_decrease())),
        (":cost".to_string(), n(plan.cost)),
        (":pool".to_string(), n(plan.from_pool)),
        (":exp".to_string(), n(plan.expired_total())),
    ]);
    let mut condition = vec!["attribute_exists(sk)".to_string(), "#b >= :dec".to_string()];
    let mut set = vec![
        "#b = #b - :dec".to_string(),
        "#ts = #ts + :cost".to_string(),
        "#te = #te + :exp".to_string(),
        "#p = #p - :pool".to_string(),
    ];
    if plan.from_pool > 0 {
        condition.push("#p >= :pool".to_string());
    }
    if !plan.from_lots.is_empty() || !plan.expiries.is_empty() {
        names.insert("#lots".to_string(), "lots".to_string());
        names.insert("#rem".to_string(), "remaining".to_string());
    }
    for (i, draw) in plan.from_lots.iter().enumerate() {
        debug_assert!(draw.amount > 0);
        names.insert(format!("#l{i}"), draw.source_id.clone());
        values.insert(format!(":l{i}"), n(draw.amount));
        condition.push(format!("#lots.#l{i}.#rem >= :l{i}"));
        set.push(format!("#lots.#l{i}.#rem = #lots.#l{i}.#rem - :l{i}"));
    }
    for (i, expiry) in plan.expiries.iter().enumerate() {
        debug_assert!(expiry.amount > 0);
        names.insert(format!("#e{i}"), expiry.source_id.clone());
        values.insert(format!(":e{i}"), n(expiry.amount));
        condition.push(format!("#lots.#e{i}.#rem = :e{i}"));
        set.push(format!("#lots.#e{i}.#rem = :zero"));
    }
    if !plan.expiries.is_empty() {
        values.insert(":zero".to_string(), n(0));
    }
    // The analysis credits' part, kept beside the totals (present: reads store it first).
    for (name, attr, amount) in [
        ("#as", "analysis_spent", plan.analysis.spent),
        ("#ae", "analysis_expired", plan.analysis.expired),
    ] {
        if amount > 0 {
            let value = format!(":{}", &name[1..]);
            names.insert(name.to_string(), attr.to_string());
            values.insert(value.clone(), n(amount));
            condition.push(format!("attribute_exists({name})"));
            set.push(format!("{name} = {name} + {value}"));
        }
    }
    Update::builder()
        .table_name(store.ledger_table())
        .set_key(Some(item_key(pk, BALANCE_SK)))
        .condition_expression(condition.join(" AND "))
        .update_expression(format!("SET {}", set.join(", ")))
        .set_expression_attribute_names(Some(names))
        .set_expression_attribute_values(Some(values))
        .build()
        .map_err(build)
}

/// What [`Store::ledger_spend_lot`] spends: one credit of `lot` at `now`, its entry giving
/// `reason` and `analysis_ids`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LotSpendOf<'a> {
    pub(crate) lot: &'a super::Lot,
    pub(crate) reason: &'a str,
    pub(crate) analysis_ids: &'a [String],
    pub(crate) now: i64,
}

/// A one-credit spend from a lot sent with the caller's own items ([`Store::ledger_spend_lot`]).
#[derive(Debug)]
pub(crate) enum LotSpend {
    /// The lot cannot pay in the state given (expired, empty or unknown): nothing was sent.
    Unpayable,
    Committed,
    /// Some condition failed: `riders_failed[i]` says whether the caller's item `i` did (all
    /// false when the engine gave no reasons); otherwise the ledger's state moved meanwhile.
    ConditionFailed {
        riders_failed: Vec<bool>,
    },
}

impl Store {
    /// Spends one credit of `lot` (chosen from `state`, as read, by
    /// [`LedgerState::next_lot`]) in one transaction with `riders`, the caller's own items
    /// (e.g. the usage meter's marker and counter): the `BALANCE` update conditioned on what
    /// it takes and writes off, the spend entry (`reason`, the lot as `source_id`,
    /// `analysis_ids`) and the expiry entries of the lots written off on the way.
    pub(crate) async fn ledger_spend_lot(
        &self,
        key: &LedgerKey,
        state: &LedgerState,
        spend: LotSpendOf<'_>,
        riders: Vec<TransactWriteItem>,
    ) -> Result<LotSpend, StoreError> {
        let LotSpendOf {
            lot,
            reason,
            analysis_ids,
            now,
        } = spend;
        check_id("a reason", reason)?;
        let Some(plan) = rules::plan_lot_spend(state, lot, now) else {
            return Ok(LotSpend::Unpayable);
        };
        let pk = key.pk();
        let spend = Entry {
            id: new_entry_id(now),
            kind: EntryKind::Spend,
            amount: -plan.cost,
            reason: reason.to_string(),
            source_id: Some(lot.source_id.clone()),
            created_at: now,
        };
        let mut items = Vec::with_capacity(plan.expiries.len() + 2 + riders.len());
        items.push(
            TransactWriteItem::builder()
                .update(spend_update(self, &pk, &plan)?)
                .build(),
        );
        items.push(entry_put(self, &pk, &spend, Some(analysis_ids))?);
        for expiry in &plan.expiries {
            items.push(entry_put(self, &pk, &expiry_entry(expiry, now), None)?);
        }
        let first_rider = items.len();
        let rider_count = riders.len();
        items.extend(riders);
        Ok(match self.ledger_transact(items).await? {
            TxResult::Committed => {
                crate::metrics::credits_spent(1);
                LotSpend::Committed
            }
            TxResult::ConditionFailed(codes) => LotSpend::ConditionFailed {
                riders_failed: (0..rider_count)
                    .map(|i| {
                        codes
                            .get(first_rider + i)
                            .is_some_and(|c| c == CONDITION_FAILED)
                    })
                    .collect(),
            },
        })
    }
}

impl Store {
    /// The subject's spendable balance at `now`: expired credits never count, whether or not
    /// their expiry entry is written yet. One read, no writes.
    pub async fn ledger_balance(&self, key: &LedgerKey, now: i64) -> Result<Balance, StoreError> {
        let read = self.ledger_read(&key.pk(), &[], None).await?;
        Ok(balance_at(read.state.unwrap_or_default(), now))
    }

    /// [`Self::ledger_balance`] and whether the subject's plan gives unlimited document access,
    /// read in the same BatchGetItem (ledger and Subscriptions tables).
    pub async fn ledger_balance_and_plan(
        &self,
        key: &LedgerKey,
        now: i64,
    ) -> Result<(Balance, bool), StoreError> {
        let read = self.ledger_read(&key.pk(), &[], Some(key)).await?;
        let has_unlimited = read
            .plan
            .is_some_and(|p| p.has_unlimited(now, self.access_grace_secs()));
        Ok((
            balance_at(read.state.unwrap_or_default(), now),
            has_unlimited,
        ))
    }

    /// Adds `grant.credits` once per `grant.source_id`, ever: the `GRANT#<source>` marker is
    /// put in the same transaction as the balance and the entry, and a source already granted
    /// answers `AlreadyGranted`. With `purchase_sk`, the transaction also completes that
    /// purchase, which must exist, belong to this source and be pending (or already be
    /// completed: a retried grant is then `AlreadyGranted`, not an error).
    pub async fn ledger_grant(
        &self,
        key: &LedgerKey,
        grant: &Grant<'_>,
        now: i64,
    ) -> Result<GrantOutcome, StoreError> {
        check_id("a grant's source id", grant.source_id)?;
        if grant.reason.len() > MAX_REASON_LEN {
            return Err(StoreError::Invalid(format!(
                "a grant's reason is longer than {MAX_REASON_LEN} bytes"
            )));
        }
        if let Some(sk) = grant.purchase_sk
            && !sk.starts_with(PURCHASE_PREFIX)
        {
            return Err(StoreError::Invalid(format!(
                "`{sk}` is not a purchase sort key"
            )));
        }
        let pk = key.pk();
        let grant_sk = format!("{GRANT_PREFIX}{}", grant.source_id);
        for _ in 0..MAX_DECISIONS {
            let LedgerRead { state, found, .. } = self
                .ledger_read(&pk, std::slice::from_ref(&grant_sk), None)
                .await?;
            if found.contains(&grant_sk) {
                return Ok(GrantOutcome::AlreadyGranted);
            }
            if state
                .as_ref()
                .is_some_and(|s| s.lots.iter().any(|l| l.source_id == grant.source_id))
            {
                return Err(StoreError::Corrupt(format!(
                    "ledger {pk}: a lot of {} exists without its grant marker",
                    grant.source_id
                )));
            }
            let plan = rules::plan_grant(
                state.as_ref(),
                grant.source_id,
                grant.kind,
                grant.credits,
                grant.expires_at,
                now,
            )
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
            let entry = Entry {
                id: new_entry_id(now),
                kind: EntryKind::Grant,
                amount: grant.credits,
                reason: grant.reason.to_string(),
                source_id: Some(grant.source_id.to_string()),
                created_at: now,
            };
            let marker = serde_dynamo::to_item(GrantMarker {
                pk: &pk,
                sk: grant_sk.clone(),
                source_id: grant.source_id,
                credits: grant.credits,
                entry_id: &entry.id,
                granted_at: now,
            })
            .map_err(corrupt)?;
            let mut items = vec![
                self.ledger_put(marker)?,
                entry_put(self, &pk, &entry, None)?,
            ];
            let balance_op = match &state {
                None => {
                    let item = serde_dynamo::to_item(BalanceItem::new(&pk, &plan.after))
                        .map_err(corrupt)?;
                    self.ledger_put(item)?
                }
                Some(before) => {
                    let mut update = Update::builder()
                        .table_name(self.ledger_table())
                        .set_key(Some(item_key(&pk, BALANCE_SK)))
                        .expression_attribute_names("#b", "balance")
                        .expression_attribute_names("#tp", "total_purchased")
                        .expression_attribute_values(":n", n(grant.credits))
                        .expression_attribute_values(":old", n(before.balance));
                    update = match rules::lot_expiry(grant.kind, grant.expires_at) {
                        None => update
                            .expression_attribute_names("#p", "pool")
                            .condition_expression("attribute_exists(sk) AND #b = :old")
                            .update_expression("SET #b = #b + :n, #tp = #tp + :n, #p = #p + :n"),
                        Some(at) if grant.kind == CreditKind::Analysis => update
                            .expression_attribute_names("#lots", "lots")
                            .expression_attribute_names("#src", grant.source_id)
                            .expression_attribute_names("#ap", "analysis_purchased")
                            .expression_attribute_values(":lot", lot_value(grant, at)?)
                            .condition_expression(
                                "attribute_exists(sk) AND #b = :old AND attribute_not_exists(#lots.#src) AND attribute_exists(#ap)",
                            )
                            .update_expression(
                                "SET #b = #b + :n, #tp = #tp + :n, #lots.#src = :lot, #ap = #ap + :n",
                            ),
                        Some(at) => update
                            .expression_attribute_names("#lots", "lots")
                            .expression_attribute_names("#src", grant.source_id)
                            .expression_attribute_values(":lot", lot_value(grant, at)?)
                            .condition_expression(
                                "attribute_exists(sk) AND #b = :old AND attribute_not_exists(#lots.#src)",
                            )
                            .update_expression("SET #b = #b + :n, #tp = #tp + :n, #lots.#src = :lot"),
                    };
                    TransactWriteItem::builder()
                        .update(update.build().map_err(build)?)
                        .build()
                }
            };
            items.push(balance_op);
            if let Some(purchase_sk) = grant.purchase_sk {
                let update = Update::builder()
                    .table_name(self.ledger_table())
                    .set_key(Some(item_key(&pk, purchase_sk)))
                    .condition_expression(
                        "attribute_exists(sk) AND session_id = :src AND (#st = :pending OR #st = :completed)",
                    )
                    .update_expression("SET #st = :completed, completed_at = if_not_exists(completed_at, :now)")
                    .expression_attribute_names("#st", "status")
                    .expression_attribute_values(":src", s(grant.source_id))
                    .expression_attribute_values(":pending", s("pending"))
                    .expression_attribute_values(":completed", s("completed"))
                    .expression_attribute_values(":now", n(now))
                    .build()
                    .map_err(build)?;
                items.push(TransactWriteItem::builder().update(update).build());
            }
            match self.ledger_transact(items).await? {
                TxResult::Committed => {
                    crate::metrics::credits_granted(grant.credits);
                    return Ok(GrantOutcome::Granted {
                        balance: plan.available_after,
                    });
                }
                TxResult::ConditionFailed(codes) => {
                    let failed = |i: usize| codes.get(i).is_some_and(|c| c == CONDITION_FAILED);
                    if failed(0) {
                        return Ok(GrantOutcome::AlreadyGranted);
                    }
                    if grant.purchase_sk.is_some() && failed(3) {
                        return Err(StoreError::ConditionFailed(format!(
                            "purchase {} of ledger {pk} is missing or not pending for {}",
                            grant.purchase_sk.unwrap_or_default(),
                            grant.source_id
                        )));
                    }
                    // The balance moved or was created meanwhile: decide again.
                }
            }
        }
        Err(StoreError::Contention(format!(
            "ledger {pk}: a grant lost {MAX_DECISIONS} races"
        )))
    }

    /// Gives access to `analysis_ids` (distinct, at most [`MAX_ACCESS_IDS`]): documents owned
    /// before are free, each new one costs a credit (none when `charge` says so — for
    /// subscribers with unlimited access, read with the ledger), all or nothing. New documents get their `DOC#` item in the
    /// same transaction as the spend, so concurrent requests for one document charge once;
    /// a request that loses that race re-reads and finds the document owned (free).
    /// Common case: one read and one transaction.
    pub async fn ledger_access(
        &self,
        key: &LedgerKey,
        analysis_ids: &[String],
        charge: Charge,
        now: i64,
    ) -> Result<Access, StoreError> {
        self.ledger_access_answered(key, analysis_ids, charge, now, None)
            .await
            .map(|(access, _)| access)
    }

    /// [`Store::ledger_access`], storing the request's answer (`answer` of the decided
    /// access) in the transaction that spends, when one does: `true` when it did.
    pub async fn ledger_access_answered(
        &self,
        key: &LedgerKey,
        analysis_ids: &[String],
        charge: Charge,
        now: i64,
        answer: Option<AnswerWith<'_, Access>>,
    ) -> Result<(Access, bool), StoreError> {
        if analysis_ids.len() > MAX_ACCESS_IDS {
            return Err(StoreError::Invalid(format!(
                "at most {MAX_ACCESS_IDS} documents per access, got {}",
                analysis_ids.len()
            )));
        }
        let distinct: HashSet<&str> = analysis_ids.iter().map(String::as_str).collect();
        if distinct.len() != analysis_ids.len() {
            return Err(StoreError::Invalid(
                "analysis ids must be distinct".to_string(),
            ));
        }
        for id in analysis_ids {
            check_id("an analysis id", id)?;
        }
        let pk = key.pk();
        let doc_sks: Vec<String> = analysis_ids
            .iter()
            .map(|id| format!("{DOC_PREFIX}{id}"))
            .collect();
        for _ in 0..MAX_DECISIONS {
            let plan_of = (charge == Charge::UnlessUnlimited).then_some(key);
            let LedgerRead {
                state, paid, plan, ..
            } = self.ledger_read(&pk, &doc_sks, plan_of).await?;
            let has_unlimited = match charge {
                Charge::Always => false,
                Charge::Never => true,
                Charge::UnlessUnlimited => {
                    plan.is_some_and(|p| p.has_unlimited(now, self.access_grace_secs()))
                }
            };
            let access = |outcome| Access {
                outcome,
                has_unlimited,
            };
            // Owned: bought with a credit. A `DOC#` item without an entry (written by a plan's
            // access before plan access stopped writing them) owns nothing.
            let owned: HashSet<&str> = analysis_ids
                .iter()
                .zip(&doc_sks)
                .filter(|(_, sk)| paid.contains(*sk))
                .map(|(id, _)| id.as_str())
                .collect();
            let plan =
                match rules::plan_access(state.as_ref(), &owned, analysis_ids, !has_unlimited, now)
                {
                    AccessDecision::Insufficient {
                        required,
                        available,
                    } => {
                        let refused = AccessOutcome::Insufficient {
                            required,
                            available,
                        };
                        return Ok((access(refused), false));
                    }
                    AccessDecision::Plan(plan) => plan,
                };
            let granted = AccessOutcome::Granted {
                accessible: analysis_ids.to_vec(),
                credits_spent: plan.cost,
                remaining_balance: plan.remaining_balance,
            };
            if !plan.writes() {
                return Ok((access(granted), false));
            }
            let mut items = Vec::with_capacity(plan.new_docs.len() + plan.expiries.len() + 2);
            let spend = (plan.cost > 0).then(|| Entry {
                id: new_entry_id(now),
                kind: EntryKind::Spend,
                amount: -plan.cost,
                reason: format!("document access ({})", plan.new_docs.len()),
                source_id: None,
                created_at: now,
            });
            if plan.balance_decrease() > 0 {
                items.push(
                    TransactWriteItem::builder()
                        .update(spend_update(self, &pk, &plan)?)
                        .build(),
                );
            }
            if let Some(entry) = &spend {
                items.push(entry_put(self, &pk, entry, Some(&plan.new_docs))?);
            }
            for expiry in &plan.expiries {
                items.push(entry_put(self, &pk, &expiry_entry(expiry, now), None)?);
            }
            for id in &plan.new_docs {
                let item = serde_dynamo::to_item(DocItem {
                    pk: &pk,
                    sk: format!("{DOC_PREFIX}{id}"),
                    analysis_id: id,
                    granted_at: now,
                    entry_id: spend.as_ref().map(|e| e.id.as_str()),
                })
                .map_err(corrupt)?;
                // New, or replacing an unpaid item a plan's access once wrote.
                let put = Put::builder()
                    .table_name(self.ledger_table())
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(entry_id)")
                    .build()
                    .map_err(build)?;
                items.push(TransactWriteItem::builder().put(put).build());
            }
            let decided = access(granted);
            let answered = match answer {
                Some(answer) => {
                    items.push(answer(&decided)?);
                    true
                }
                None => false,
            };
            match self.ledger_transact(items).await? {
                TxResult::Committed => {
                    crate::metrics::credits_spent(plan.cost);
                    return Ok((decided, answered));
                }
                TxResult::ConditionFailed(codes) if answered && last_failed(&codes) => {
                    return Err(StoreError::ClaimLost);
                }
                // A document bought or credits spent meanwhile: decide again.
                TxResult::ConditionFailed(_) => continue,
            }
        }
        Err(StoreError::Contention(format!(
            "ledger {pk}: an access lost {MAX_DECISIONS} races"
        )))
    }

    /// Every entry of the ledger, oldest first (for tests and audits).
    pub async fn ledger_entries(&self, key: &LedgerKey) -> Result<Vec<Entry>, StoreError> {
        self.ledger_query(&key.pk(), ENTRY_PREFIX, false)
            .await?
            .into_iter()
            .map(|item| serde_dynamo::from_item(item).map_err(corrupt))
            .collect()
    }

    /// Whether `source_id` (a Checkout Session) has granted its credits (its `GRANT#` marker).
    pub async fn ledger_granted(
        &self,
        key: &LedgerKey,
        source_id: &str,
    ) -> Result<bool, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(self.ledger_table())
            .set_key(Some(item_key(
                &key.pk(),
                &format!("{GRANT_PREFIX}{source_id}"),
            )))
            .consistent_read(true)
            .projection_expression("sk")
            .send()
            .await
            .map_err(sdk)?;
        Ok(out.item.is_some())
    }

    /// A purchase's status, `None` when there is no such purchase.
    pub async fn purchase_status(
        &self,
        key: &LedgerKey,
        purchase_sk: &str,
    ) -> Result<Option<PurchaseStatus>, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(self.ledger_table())
            .set_key(Some(item_key(&key.pk(), purchase_sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk)?;
        out.item
            .map(|item| {
                serde_dynamo::from_item::<_, Purchase>(item)
                    .map(|p| p.status)
                    .map_err(corrupt)
            })
            .transpose()
    }

    /// Closes a pending purchase whose Checkout Session ended unpaid (`expired` or `failed`).
    /// `false` when there is no such pending purchase (closed or completed before, or never
    /// recorded): closing is idempotent and never touches a completed purchase.
    pub async fn close_purchase(
        &self,
        key: &LedgerKey,
        purchase_sk: &str,
        session_id: &str,
        status: PurchaseStatus,
        now: i64,
    ) -> Result<bool, StoreError> {
        if !matches!(status, PurchaseStatus::Expired | PurchaseStatus::Failed) {
            return Err(StoreError::Invalid(format!(
                "a purchase closes as expired or failed, not {}",
                status.as_str()
            )));
        }
        let result = self
            .client()
            .update_item()
            .table_name(self.ledger_table())
            .set_key(Some(item_key(&key.pk(), purchase_sk)))
            .condition_expression("attribute_exists(sk) AND session_id = :src AND #st = :pending")
            .update_expression("SET #st = :status, closed_at = :now")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":src", s(session_id))
            .expression_attribute_values(":pending", s(PurchaseStatus::Pending.as_str()))
            .expression_attribute_values(":status", s(status.as_str()))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        condition_held(result)
    }

    /// Records a purchase as pending (whatever `status` and `completed_at` say); a purchase
    /// with the same sort key already recorded is a `ConditionFailed` error.
    pub async fn insert_purchase(
        &self,
        key: &LedgerKey,
        purchase: &Purchase,
    ) -> Result<(), StoreError> {
        check_id("a purchase id", &purchase.id)?;
        check_id("a purchase's session id", &purchase.session_id)?;
        check_id("a purchase's pack type", &purchase.pack_type)?;
        if purchase.credits <= 0 || purchase.price_cents < 0 {
            return Err(StoreError::Invalid(format!(
                "a purchase of {} credits for {} cents",
                purchase.credits, purchase.price_cents
            )));
        }
        let pk = key.pk();
        let pending = Purchase {
            status: PurchaseStatus::Pending,
            completed_at: None,
            ..purchase.clone()
        };
        let item = serde_dynamo::to_item(PurchaseItem {
            pk: &pk,
            sk: purchase.sort_key(),
            purchase: &pending,
        })
        .map_err(corrupt)?;
        self.client()
            .put_item()
            .table_name(self.ledger_table())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(sk)")
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(se) if se.is_conditional_check_failed_exception() => {
                    StoreError::ConditionFailed(format!("purchase {} exists", purchase.id))
                }
                _ => sdk(e),
            })?;
        Ok(())
    }

    /// A page of purchases, newest first (`limit` at most [`MAX_PURCHASE_PAGE`]), with
    /// totals over every completed purchase.
    pub async fn purchases(
        &self,
        key: &LedgerKey,
        limit: usize,
        offset: usize,
    ) -> Result<PurchasePage, StoreError> {
        let limit = limit.min(MAX_PURCHASE_PAGE);
        let all: Vec<Purchase> = self
            .ledger_query(&key.pk(), PURCHASE_PREFIX, true)
            .await?
            .into_iter()
            .map(|item| serde_dynamo::from_item(item).map_err(corrupt))
            .collect::<Result<_, _>>()?;
        let mut total_purchased: i64 = 0;
        let mut total_spent_cents: i64 = 0;
        for p in all.iter().filter(|p| p.status == PurchaseStatus::Completed) {
            total_purchased = total_purchased.saturating_add(p.credits);
            total_spent_cents = total_spent_cents.saturating_add(p.price_cents);
        }
        Ok(PurchasePage {
            purchases: all.into_iter().skip(offset).take(limit).collect(),
            total_purchased,
            total_spent_cents,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_exponential_capped_and_bounded_in_total() {
        assert_eq!(backoff_ceiling_ms(1), BACKOFF_BASE_MS);
        assert_eq!(backoff_ceiling_ms(2), 2 * BACKOFF_BASE_MS);
        assert_eq!(backoff_ceiling_ms(40), BACKOFF_CAP_MS);
        let total: u64 = (1..MAX_TX_ATTEMPTS).map(backoff_ceiling_ms).sum();
        assert!(total <= 1_000, "at most {total} ms of waiting");
    }

    #[test]
    fn only_conflicts_and_throttling_are_resent() {
        for code in ["None", "TransactionConflict", "ThrottlingError"] {
            assert!(is_retryable_reason(code), "{code}");
        }
        for code in [
            CONDITION_FAILED,
            "ValidationError",
            "ItemCollectionSizeLimitExceeded",
        ] {
            assert!(!is_retryable_reason(code), "{code}");
        }
    }

    #[test]
    fn entry_ids_sort_by_time() {
        let early = new_entry_id(1_700_000_000);
        let late = new_entry_id(1_700_000_001);
        assert!(early < late, "{early} < {late}");
        assert_eq!(early.len(), 26);
    }
}
