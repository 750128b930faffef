//! The endpoints the warm section loads, what each one reads and writes in DynamoDB, the
//! fewest calls its logic allows, and its floor: the same calls, made directly.

use crate::seed::Seeded;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, ReturnValue};
use shared::tables::Table;
use std::collections::HashMap;

/// One request the bench sends again and again, on the seeded data (see `seed`).
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    pub method: &'static str,
    /// With its query string.
    pub path: &'static str,
    pub body: Option<&'static str>,
    /// The function that serves it.
    pub function: &'static str,
    /// What the request is, in the seeded state.
    pub case: &'static str,
    /// The fewest DynamoDB calls (round trips) the endpoint's logic allows with a warm key
    /// cache, and why.
    pub min_calls: u32,
    pub min_reason: &'static str,
    pub floor: Floor,
    /// Signed as a Stripe webhook delivery instead of carrying the API key.
    pub webhook: bool,
}

impl Endpoint {
    /// `GET /v1/billing/tiers`: the route, without the query string.
    pub fn name(&self) -> String {
        let path = self.path.split('?').next().unwrap_or(self.path);
        format!("{} {path}", self.method)
    }
}

/// The DynamoDB calls an endpoint makes on the seeded data, as it makes them (order and
/// concurrency included), without HTTP, routing, auth, (de)serialization or handler logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Floor {
    /// No DynamoDB call: the floor is zero.
    None,
    /// GetItem Subscriptions, then GetItem Usage (the period's analyses counter).
    PlanThenCounter,
    /// BatchGetItem CreditLedger (BALANCE) + Subscriptions (the plan), one call.
    BalanceAndPlan,
    /// Query CreditLedger (PURCHASE#…, newest first).
    Purchases,
    /// BatchGetItem CreditLedger (BALANCE and the DOC# items) + Subscriptions (the plan).
    BalanceDocumentsAndPlan,
    /// GetItem Subscriptions, then BatchGetItem Usage (both counters) + CreditLedger (BALANCE).
    PlanThenCountersAndBalance,
    /// BatchGetItem Usage (the markers, the free-tier counter) + Subscriptions + CreditLedger.
    AnalysisFacts,
    /// GetItem Subscriptions, then UpdateItem Usage (the chat counter, +1).
    PlanThenChatCount,
    /// GetItem Idempotency (the event's dedupe record).
    EventRecord,
}

const ACCESS_BODY: &str =
    r#"{"external_user_id": "user_123", "analysis_ids": ["ana_bench_1", "ana_bench_2"]}"#;
const ANALYSIS_BODY: &str =
    r#"{"analysis_id": "ana_bench_repeat", "external_user_id": "user_123"}"#;
const CHAT_BODY: &str = r#"{"external_user_id": "user_123"}"#;

/// At least the endpoints of the budget, with the key cache warm (a cold key costs one
/// GetItem on ApiKeys more, once per key and instance every `auth::CACHE_TTL`).
pub const ENDPOINTS: [Endpoint; 10] = [
    Endpoint {
        method: "GET",
        path: "/v1/billing/tiers",
        body: None,
        function: "billing",
        case: "the catalog",
        min_calls: 0,
        min_reason: "a constant catalog; the caller's key is cached",
        floor: Floor::None,
        webhook: false,
    },
    Endpoint {
        method: "GET",
        path: "/v1/credits/packs",
        body: None,
        function: "credits",
        case: "the catalog",
        min_calls: 0,
        min_reason: "a constant catalog; the caller's key is cached",
        floor: Floor::None,
        webhook: false,
    },
    Endpoint {
        method: "GET",
        path: "/v1/subscriptions?external_user_id=user_123",
        body: None,
        function: "subscriptions",
        case: "Pro, in its period",
        min_calls: 2,
        min_reason: "2 reads in sequence (DESIGN.md): the plan, then its period's counter, whose key is the plan's period start",
        floor: Floor::PlanThenCounter,
        webhook: false,
    },
    Endpoint {
        method: "GET",
        path: "/v1/credits/balance?external_user_id=user_123",
        body: None,
        function: "credits",
        case: "5 credits bought, 2 spent",
        min_calls: 1,
        min_reason: "the balance and the plan are independent: one BatchGetItem reads both tables",
        floor: Floor::BalanceAndPlan,
        webhook: false,
    },
    Endpoint {
        method: "GET",
        path: "/v1/credits/history?external_user_id=user_123&limit=50&offset=0",
        body: None,
        function: "credits",
        case: "1 completed purchase",
        min_calls: 1,
        min_reason: "1 Query of the user's purchases (one page)",
        floor: Floor::Purchases,
        webhook: false,
    },
    Endpoint {
        method: "POST",
        path: "/v1/credits/access",
        body: Some(ACCESS_BODY),
        function: "credits",
        case: "both documents already unlocked",
        min_calls: 1,
        min_reason: "1 read + 1 transaction per DESIGN.md, and no transaction when nothing is new; the read is one BatchGetItem over the ledger and the plan",
        floor: Floor::BalanceDocumentsAndPlan,
        webhook: false,
    },
    Endpoint {
        method: "GET",
        path: "/v1/usage?external_user_id=user_123",
        body: None,
        function: "usage",
        case: "Pro, in its period",
        min_calls: 2,
        min_reason: "the plan decides which counters (its period's); then one BatchGetItem can read both counters and the ledger balance",
        floor: Floor::PlanThenCountersAndBalance,
        webhook: false,
    },
    Endpoint {
        method: "POST",
        path: "/v1/usage/analyses",
        body: Some(ANALYSIS_BODY),
        function: "usage",
        case: "an analysis_id counted before",
        min_calls: 1,
        min_reason: "1 read answers a repeat: one BatchGetItem reads the analysis marker with everything a new analysis's decision needs (plan, free-tier counter, ledger)",
        floor: Floor::AnalysisFacts,
        webhook: false,
    },
    Endpoint {
        method: "POST",
        path: "/v1/usage/chat-messages",
        body: Some(CHAT_BODY),
        function: "usage",
        case: "Pro: unlimited, counted",
        min_calls: 2,
        min_reason: "the plan decides the counter and its limit, then 1 conditional update counts the message",
        floor: Floor::PlanThenChatCount,
        webhook: false,
    },
    Endpoint {
        method: "POST",
        path: shared::stripe::WEBHOOK_PATH,
        body: None,
        function: "stripe-webhook",
        case: "a duplicate delivery (signed)",
        min_calls: 1,
        min_reason: "1 read of the event's dedupe record answers a duplicate",
        floor: Floor::EventRecord,
        webhook: true,
    },
];

/// What the floor's calls need: a client of the same engine and the seeded keys.
#[derive(Debug, Clone)]
pub struct FloorContext {
    pub client: Client,
    pub seeded: Seeded,
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn pk_sk(pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

impl FloorContext {
    fn table(&self, table: Table) -> &str {
        self.seeded.tables.get(table)
    }

    /// One request's DynamoDB calls for `floor`. Items, projections and consistency are the
    /// store's (`shared::store`, `shared::ledger::store`, `shared::metering::store`).
    pub async fn run(&self, floor: Floor) -> anyhow::Result<()> {
        match floor {
            Floor::None => {}
            Floor::PlanThenCounter => {
                self.plan().await?;
                self.counter("COUNT#ANALYSES#").await?;
            }
            Floor::BalanceAndPlan => {
                self.ledger(&[], true).await?;
            }
            Floor::Purchases => {
                self.client
                    .query()
                    .table_name(self.table(Table::CreditLedger))
                    .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                    .expression_attribute_values(":pk", s(&self.seeded.ledger_pk))
                    .expression_attribute_values(":prefix", s("PURCHASE#"))
                    .consistent_read(true)
                    .scan_index_forward(false)
                    .send()
                    .await?;
            }
            Floor::BalanceDocumentsAndPlan => {
                let docs: Vec<String> = crate::seed::DOCUMENTS
                    .iter()
                    .map(|d| format!("DOC#{d}"))
                    .collect();
                self.ledger(&docs, true).await?;
            }
            Floor::PlanThenCountersAndBalance => {
                self.plan().await?;
                let usage = &self.seeded.usage_pk;
                let period = &self.seeded.period_key;
                self.batch(&[
                    (
                        Table::Usage,
                        pk_sk(usage, &format!("COUNT#ANALYSES#{period}")),
                    ),
                    (Table::Usage, pk_sk(usage, &format!("COUNT#CHAT#{period}"))),
                    (
                        Table::CreditLedger,
                        pk_sk(&self.seeded.ledger_pk, "BALANCE"),
                    ),
                ])
                .await?;
            }
            Floor::AnalysisFacts => {
                // `Store::analysis_facts`: the subject's and the account's markers of the
                // analysis, the plan, the account's free-tier counter and the ledger.
                let account = format!("{}#self", self.seeded.account_id);
                let marker = format!("ANALYSIS#{}", crate::seed::REPEATED_ANALYSIS);
                let free = format!(
                    "COUNT#ANALYSES#{}",
                    shared::metering::Plan::Free
                        .period(time::OffsetDateTime::now_utc().unix_timestamp())
                        .key
                );
                self.batch(&[
                    (Table::Usage, pk_sk(&self.seeded.usage_pk, &marker)),
                    (
                        Table::Subscriptions,
                        HashMap::from([
                            ("account_id".to_string(), s(&self.seeded.account_id)),
                            ("subject".to_string(), s(&self.seeded.subject)),
                        ]),
                    ),
                    (Table::Usage, pk_sk(&account, &free)),
                    (
                        Table::CreditLedger,
                        pk_sk(&self.seeded.ledger_pk, "BALANCE"),
                    ),
                    (Table::Usage, pk_sk(&account, &marker)),
                ])
                .await?;
            }
            Floor::PlanThenChatCount => {
                self.plan().await?;
                self.client
                    .update_item()
                    .table_name(self.table(Table::Usage))
                    .set_key(Some(pk_sk(
                        &self.seeded.usage_pk,
                        &format!("COUNT#CHAT#{}", self.seeded.period_key),
                    )))
                    .update_expression("SET #u = :now ADD #c :one")
                    .expression_attribute_names("#c", "count")
                    .expression_attribute_names("#u", "updated_at")
                    .expression_attribute_values(":one", AttributeValue::N("1".into()))
                    .expression_attribute_values(
                        ":now",
                        AttributeValue::N(
                            time::OffsetDateTime::now_utc().unix_timestamp().to_string(),
                        ),
                    )
                    .return_values(ReturnValue::UpdatedNew)
                    .send()
                    .await?;
            }
            Floor::EventRecord => {
                self.client
                    .get_item()
                    .table_name(self.table(Table::Idempotency))
                    .key("pk", s(&format!("evt#{}", crate::seed::DUPLICATE_EVENT)))
                    .consistent_read(true)
                    .send()
                    .await?;
            }
        }
        Ok(())
    }

    /// The subject's plan item (`Store::subscription`).
    async fn plan(&self) -> anyhow::Result<()> {
        self.client
            .get_item()
            .table_name(self.table(Table::Subscriptions))
            .key("account_id", s(&self.seeded.account_id))
            .key("subject", s(&self.seeded.subject))
            .consistent_read(true)
            .send()
            .await?;
        Ok(())
    }

    /// `keys`, each in its table, in one consistent BatchGetItem (`Store::batch_get`).
    async fn batch(&self, keys: &[(Table, HashMap<String, AttributeValue>)]) -> anyhow::Result<()> {
        let mut by_table: HashMap<&str, Vec<HashMap<String, AttributeValue>>> = HashMap::new();
        for (table, key) in keys {
            by_table
                .entry(self.table(*table))
                .or_default()
                .push(key.clone());
        }
        let mut batch = self.client.batch_get_item();
        for (table, keys) in by_table {
            batch = batch.request_items(
                table,
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()?,
            );
        }
        let out = batch.send().await?;
        anyhow::ensure!(
            out.unprocessed_keys.is_none_or(|u| u.is_empty()),
            "the engine left keys unprocessed"
        );
        Ok(())
    }

    /// A usage counter of the subscription's period (`Store::usage_count`).
    async fn counter(&self, prefix: &str) -> anyhow::Result<()> {
        self.usage_item(&format!("{prefix}{}", self.seeded.period_key))
            .await
    }

    async fn usage_item(&self, sk: &str) -> anyhow::Result<()> {
        self.client
            .get_item()
            .table_name(self.table(Table::Usage))
            .set_key(Some(pk_sk(&self.seeded.usage_pk, sk)))
            .consistent_read(true)
            .send()
            .await?;
        Ok(())
    }

    /// The ledger's BALANCE item and `sks` in one BatchGetItem, with the subject's plan item
    /// when `with_plan` (`Store::ledger_read`).
    async fn ledger(&self, sks: &[String], with_plan: bool) -> anyhow::Result<()> {
        let pk = &self.seeded.ledger_pk;
        let mut keys = vec![pk_sk(pk, "BALANCE")];
        keys.extend(sks.iter().map(|sk| pk_sk(pk, sk)));
        let request = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .projection_expression("#pk, #sk, #b, #p, #tp, #ts, #te, #lots")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#sk", "sk")
            .expression_attribute_names("#b", "balance")
            .expression_attribute_names("#p", "pool")
            .expression_attribute_names("#tp", "total_purchased")
            .expression_attribute_names("#ts", "total_spent")
            .expression_attribute_names("#te", "total_expired")
            .expression_attribute_names("#lots", "lots")
            .build()?;
        let mut batch = self
            .client
            .batch_get_item()
            .request_items(self.table(Table::CreditLedger), request);
        if with_plan {
            let plan = KeysAndAttributes::builder()
                .keys(HashMap::from([
                    ("account_id".to_string(), s(&self.seeded.account_id)),
                    ("subject".to_string(), s(&self.seeded.subject)),
                ]))
                .consistent_read(true)
                .build()?;
            batch = batch.request_items(self.table(Table::Subscriptions), plan);
        }
        let out = batch.send().await?;
        anyhow::ensure!(
            out.unprocessed_keys.is_none_or(|u| u.is_empty()),
            "the engine left keys unprocessed"
        );
        Ok(())
    }
}
