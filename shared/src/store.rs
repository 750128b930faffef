//! The DynamoDB adapter: the only module that builds requests to the SDK, so handlers
//! never touch an `AttributeValue`.

use crate::stripe::SubscriptionSnapshot;
use crate::subscriptions::SubscriptionRecord;
use crate::tables::{Table, TableNames, def};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, TransactWriteItem};
use std::collections::HashMap;

/// A DynamoDB item (or key): attribute name to value.
pub type Item = HashMap<String, AttributeValue>;

/// Sends of one BatchGetItem while it leaves keys unprocessed.
const BATCH_READ_ATTEMPTS: u32 = 5;

/// The fields a Stripe read sets on the item.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncedState<'a> {
    pub snapshot: &'a SubscriptionSnapshot,
    pub synced_at_ms: i64,
    /// `Some` to record a payment failure's message.
    pub payment_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DynamoDB: {0}")]
    Sdk(String),
    #[error("a conditional write failed: {0}")]
    ConditionFailed(String),
    #[error("stored item does not decode: {0}")]
    Corrupt(String),
    /// A value the store refuses before any call (out of bounds, malformed).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// Retries against conflicting writes or throttling ran out; the caller may retry later.
    #[error("contention: {0}")]
    Contention(String),
    /// The request's Idempotency claim was taken over (its lease ran out and a retry of the
    /// same request holds it now): the effect that would have stored its answer is cancelled.
    #[error("the idempotency claim was taken over by a retry")]
    ClaimLost,
}

/// Builds, for a decided outcome, the write that stores the request's answer in the same
/// transaction as its effect (see [`crate::http::idempotency::IdempotencyKey::completion`]).
pub type AnswerWith<'a, T> = &'a (dyn Fn(&T) -> Result<TransactWriteItem, StoreError> + Sync);

/// The adapters' error conversions (this module, the ledger, usage).
pub(crate) fn sdk<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Sdk(DisplayErrorContext(e).to_string())
}

/// A conditional write's outcome: `Ok(true)` when it was applied, `Ok(false)` when its
/// condition did not hold, an error otherwise.
pub(crate) fn condition_held<T, E, R>(result: Result<T, SdkError<E, R>>) -> Result<bool, StoreError>
where
    E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .and_then(|se| se.code())
                .is_some_and(|code| code == "ConditionalCheckFailedException") =>
        {
            Ok(false)
        }
        Err(e) => Err(sdk(e)),
    }
}

pub(crate) fn corrupt(e: serde_dynamo::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

pub(crate) fn build(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Sdk(e.to_string())
}

/// A client for a DynamoDB endpoint other than AWS's (the embedded engine, ministack),
/// which accept any credentials: static ones, region us-east-1.
pub fn local_client(endpoint: &str) -> Client {
    Client::from_conf(local_config(endpoint).build())
}

/// The configuration of [`local_client`], for callers that add to it (e.g. an interceptor):
/// over the functions' own HTTP client ([`crate::aws::AwsHttpClient`]), as deployed.
pub fn local_config(endpoint: &str) -> aws_sdk_dynamodb::config::Builder {
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "static"))
        .endpoint_url(endpoint)
        .http_client(crate::aws::AwsHttpClient::shared())
}

/// The service's tables behind one client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    client: Client,
    /// Shared: the state is cloned for every route at start and into every request.
    tables: std::sync::Arc<TableNames>,
    access_grace_secs: i64,
}

impl Store {
    pub fn new(client: Client, tables: TableNames) -> Self {
        Self {
            client,
            tables: std::sync::Arc::new(tables),
            access_grace_secs: crate::config::DEFAULT_ACCESS_GRACE_SECS,
        }
    }

    /// How long past its period a stored plan still grants access (see
    /// [`SubscriptionRecord::grants_access_at`]).
    pub fn with_access_grace(mut self, grace_secs: i64) -> Self {
        self.access_grace_secs = grace_secs;
        self
    }

    pub fn access_grace_secs(&self) -> i64 {
        self.access_grace_secs
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn tables(&self) -> &TableNames {
        &self.tables
    }

    pub(crate) fn table(&self, table: Table) -> &str {
        self.tables.get(table)
    }

    /// Reads `keys` (each in its table) consistently in one BatchGetItem, re-asking for any
    /// keys left unprocessed (a few times, briefly). Answers the items found, each with the
    /// index of its key in `keys`. At most 100 keys.
    pub(crate) async fn batch_get(
        &self,
        keys: &[(Table, Item)],
    ) -> Result<Vec<(usize, Item)>, StoreError> {
        if keys.is_empty() || keys.len() > 100 {
            return Err(StoreError::Invalid(format!(
                "a batch read of {} keys (1..=100)",
                keys.len()
            )));
        }
        // Which key an item answers: its table and key attributes.
        let key_names = |table: Table| -> Vec<&'static str> {
            let d = def(table);
            std::iter::once(d.pk.name)
                .chain(d.sk.map(|k| k.name))
                .collect()
        };
        let identity = |table: Table, item: &Item| -> Vec<Option<AttributeValue>> {
            key_names(table)
                .into_iter()
                .map(|n| item.get(n).cloned())
                .collect()
        };
        let mut by_table: HashMap<String, (Table, Vec<Item>)> = HashMap::new();
        for (table, key) in keys {
            by_table
                .entry(self.table(*table).to_string())
                .or_insert_with(|| (*table, Vec::new()))
                .1
                .push(key.clone());
        }
        let mut pending: HashMap<String, KeysAndAttributes> = HashMap::new();
        for (name, (_, table_keys)) in &by_table {
            pending.insert(
                name.clone(),
                KeysAndAttributes::builder()
                    .set_keys(Some(table_keys.clone()))
                    .consistent_read(true)
                    .build()
                    .map_err(build)?,
            );
        }
        let mut found = Vec::new();
        for attempt in 0..BATCH_READ_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(10 << attempt)).await;
            }
            let out = self
                .client
                .batch_get_item()
                .set_request_items(Some(std::mem::take(&mut pending)))
                .send()
                .await
                .map_err(sdk)?;
            for (name, items) in out.responses.unwrap_or_default() {
                let Some((table, _)) = by_table.get(&name) else {
                    continue;
                };
                for item in items {
                    let id = identity(*table, &item);
                    let index = keys
                        .iter()
                        .position(|(t, k)| t == table && identity(*t, k) == id)
                        .ok_or_else(|| {
                            StoreError::Corrupt(format!("{name}: an item no key asked for"))
                        })?;
                    found.push((index, item));
                }
            }
            pending = out
                .unprocessed_keys
                .unwrap_or_default()
                .into_iter()
                .filter(|(_, k)| !k.keys().is_empty())
                .collect();
            if pending.is_empty() {
                return Ok(found);
            }
        }
        Err(StoreError::Contention(format!(
            "keys left unprocessed after {BATCH_READ_ATTEMPTS} batch reads"
        )))
    }

    pub(crate) fn subscription_key(
        account: &str,
        subject: &str,
    ) -> std::collections::HashMap<String, AttributeValue> {
        std::collections::HashMap::from([
            (
                "account_id".to_string(),
                AttributeValue::S(account.to_string()),
            ),
            (
                "subject".to_string(),
                AttributeValue::S(subject.to_string()),
            ),
        ])
    }

    /// The item of `table` at `key`, decoded; `None` when there is none.
    pub(crate) async fn get_decoded<T: serde::de::DeserializeOwned>(
        &self,
        table: Table,
        key: Item,
        consistent: bool,
    ) -> Result<Option<T>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(self.table(table))
            .set_key(Some(key))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(sdk)?;
        out.item
            .map(|item| serde_dynamo::from_item(item).map_err(corrupt))
            .transpose()
    }

    /// A subject's plan item (strongly consistent: it decides what a caller may do).
    pub async fn subscription(
        &self,
        account: &str,
        subject: &str,
    ) -> Result<Option<SubscriptionRecord>, StoreError> {
        self.get_decoded(
            Table::Subscriptions,
            Self::subscription_key(account, subject),
            true,
        )
        .await
    }

    /// Records the subject's Stripe customer unless it has one; returns the one it has, so two
    /// racing first requests end up with the same customer.
    pub async fn attach_customer(
        &self,
        account: &str,
        subject: &str,
        customer_id: &str,
    ) -> Result<String, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(self.table(Table::Subscriptions))
            .set_key(Some(Self::subscription_key(account, subject)))
            .update_expression("SET stripe_customer_id = if_not_exists(stripe_customer_id, :c)")
            .expression_attribute_values(":c", AttributeValue::S(customer_id.to_string()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await
            .map_err(sdk)?;
        match out
            .attributes
            .as_ref()
            .and_then(|a| a.get("stripe_customer_id"))
        {
            Some(AttributeValue::S(id)) => Ok(id.clone()),
            _ => Err(StoreError::Corrupt("the customer id was not stored".into())),
        }
    }

    /// One page (up to 100) of the Subscriptions table, for the reconciler's walk; the
    /// cursor of the next page, if any.
    pub async fn subscriptions_page(
        &self,
        cursor: Option<std::collections::HashMap<String, AttributeValue>>,
    ) -> Result<
        (
            Vec<SubscriptionRecord>,
            Option<std::collections::HashMap<String, AttributeValue>>,
        ),
        StoreError,
    > {
        let out = self
            .client
            .scan()
            .table_name(self.table(Table::Subscriptions))
            .limit(100)
            .set_exclusive_start_key(cursor)
            .send()
            .await
            .map_err(sdk)?;
        let records = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| serde_dynamo::from_item(item).map_err(corrupt))
            .collect::<Result<_, _>>()?;
        Ok((records, out.last_evaluated_key))
    }

    /// The first item of the Subscriptions index `index` whose key is `value`.
    async fn subscription_by_index(
        &self,
        index: usize,
        value: &str,
    ) -> Result<Option<SubscriptionRecord>, StoreError> {
        let gsi = &def(Table::Subscriptions).gsis[index];
        let out = self
            .client
            .query()
            .table_name(self.table(Table::Subscriptions))
            .index_name(gsi.name)
            .key_condition_expression("#k = :v")
            .expression_attribute_names("#k", gsi.pk.name)
            .expression_attribute_values(":v", AttributeValue::S(value.to_string()))
            .limit(1)
            .send()
            .await
            .map_err(sdk)?;
        out.items
            .unwrap_or_default()
            .into_iter()
            .next()
            .map(|i| serde_dynamo::from_item(i).map_err(corrupt))
            .transpose()
    }

    /// The plan item holding a Stripe subscription, whichever account it belongs to: callers
    /// must check the account.
    pub async fn subscription_by_stripe_id(
        &self,
        subscription_id: &str,
    ) -> Result<Option<SubscriptionRecord>, StoreError> {
        self.subscription_by_index(0, subscription_id).await
    }

    /// The plan item of a Stripe customer, whichever account it belongs to: callers must
    /// check the account.
    pub async fn subscription_by_customer(
        &self,
        customer_id: &str,
    ) -> Result<Option<SubscriptionRecord>, StoreError> {
        self.subscription_by_index(1, customer_id).await
    }

    /// Writes what a Stripe read says about the subject's plan, unless the item already
    /// reflects a newer read (`synced_at_ms`): state only moves forward. The snapshot is the
    /// subscription [`crate::sync`] chose from all of the customer's, so a read of another
    /// subscription of the same subject may replace it. Returns the item as written, or
    /// `None` when a newer read was stored first.
    pub async fn sync_subscription(
        &self,
        account: &str,
        subject: &str,
        state: &SyncedState<'_>,
    ) -> Result<Option<SubscriptionRecord>, StoreError> {
        let snap = state.snapshot;
        let mut values = std::collections::HashMap::from([
            (
                ":cus".to_string(),
                AttributeValue::S(snap.customer_id.clone()),
            ),
            (":sid".to_string(), AttributeValue::S(snap.id.clone())),
            (
                ":status".to_string(),
                AttributeValue::S(snap.status.as_str().to_string()),
            ),
            (
                ":cape".to_string(),
                AttributeValue::Bool(snap.cancel_at_period_end),
            ),
            (
                ":created".to_string(),
                AttributeValue::N(snap.created.to_string()),
            ),
            (
                ":t".to_string(),
                AttributeValue::N(state.synced_at_ms.to_string()),
            ),
        ]);
        let mut set: Vec<String> = [
            "stripe_customer_id = :cus",
            "stripe_subscription_id = :sid",
            "#status = :status",
            "cancel_at_period_end = :cape",
            "subscription_created = :created",
            "synced_at_ms = :t",
        ]
        .map(str::to_string)
        .into();
        let mut remove = Vec::new();
        let optional = [
            (
                "stripe_item_id",
                ":item",
                snap.item_id.clone().map(AttributeValue::S),
            ),
            (
                "tier",
                ":tier",
                snap.tier.map(|t| AttributeValue::S(t.as_str().to_string())),
            ),
            (
                "current_period_start",
                ":ps",
                snap.current_period_start
                    .map(|v| AttributeValue::N(v.to_string())),
            ),
            (
                "current_period_end",
                ":pe",
                snap.current_period_end
                    .map(|v| AttributeValue::N(v.to_string())),
            ),
        ];
        for (attr, placeholder, value) in optional {
            match value {
                Some(v) => {
                    values.insert(placeholder.to_string(), v);
                    set.push(format!("{attr} = {placeholder}"));
                }
                None => remove.push(attr),
            }
        }
        if let Some(message) = &state.payment_error {
            values.insert(":perr".to_string(), AttributeValue::S(message.clone()));
            set.push("payment_error = :perr".to_string());
        } else if snap.status.is_paid_up() {
            remove.push("payment_error");
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let result = self
            .client
            .update_item()
            .table_name(self.table(Table::Subscriptions))
            .set_key(Some(Self::subscription_key(account, subject)))
            .update_expression(expression)
            .condition_expression("attribute_not_exists(synced_at_ms) OR synced_at_ms <= :t")
            .expression_attribute_names("#status", "status")
            .set_expression_attribute_values(Some(values))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => out
                .attributes
                .map(|item| serde_dynamo::from_item(item).map_err(corrupt))
                .transpose(),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(sdk(e)),
        }
    }

    /// Whether a Stripe event was already processed (and its record has not expired).
    pub async fn event_processed(&self, event_id: &str, now_unix: i64) -> Result<bool, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(self.table(Table::Idempotency))
            .key("pk", AttributeValue::S(format!("evt#{event_id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk)?;
        let expires = out
            .item
            .as_ref()
            .and_then(|i| i.get("expires_at"))
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok());
        Ok(expires.is_some_and(|e| e > now_unix))
    }

    /// Remembers a processed Stripe event until `expires_at` (unix s; the table's TTL).
    pub async fn mark_event_processed(
        &self,
        event_id: &str,
        event_type: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(self.table(Table::Idempotency))
            .item("pk", AttributeValue::S(format!("evt#{event_id}")))
            .item("event_type", AttributeValue::S(event_type.to_string()))
            .item("expires_at", AttributeValue::N(expires_at.to_string()))
            .send()
            .await
            .map_err(sdk)?;
        Ok(())
    }

    /// The subject's open subscription Checkout, as last recorded (strongly consistent).
    pub async fn open_checkout(
        &self,
        account: &str,
        subject: &str,
    ) -> Result<Option<String>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(self.table(Table::Subscriptions))
            .set_key(Some(Self::subscription_key(account, subject)))
            .projection_expression("open_checkout")
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk)?;
        Ok(out
            .item
            .and_then(|i| i.get("open_checkout").and_then(|v| v.as_s().ok()).cloned()))
    }

    /// Records `session_id` as the subject's open subscription Checkout (or clears it), if
    /// the one recorded is still `expected`: the caller has expired `expected` first, so a
    /// failure in between leaves it recorded for a retry to expire. `false` when another
    /// request changed it meanwhile. The subject's item must exist.
    pub async fn set_open_checkout(
        &self,
        account: &str,
        subject: &str,
        expected: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut request = self
            .client
            .update_item()
            .table_name(self.table(Table::Subscriptions))
            .set_key(Some(Self::subscription_key(account, subject)));
        request = match expected {
            Some(old) => request
                .condition_expression("attribute_exists(account_id) AND open_checkout = :old")
                .expression_attribute_values(":old", AttributeValue::S(old.to_string())),
            None => request.condition_expression(
                "attribute_exists(account_id) AND attribute_not_exists(open_checkout)",
            ),
        };
        request = match session_id {
            Some(id) => request
                .update_expression("SET open_checkout = :s")
                .expression_attribute_values(":s", AttributeValue::S(id.to_string())),
            None => request.update_expression("REMOVE open_checkout"),
        };
        condition_held(request.send().await)
    }

    /// Takes a short lease on the subject's plan item so that only one server-side
    /// subscription can be created for it at a time. False when another holds it.
    pub async fn lock_subject(
        &self,
        account: &str,
        subject: &str,
        now: i64,
        lease_secs: i64,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(self.table(Table::Subscriptions))
            .set_key(Some(Self::subscription_key(account, subject)))
            .update_expression("SET locked_until = :until")
            .condition_expression("attribute_exists(account_id) AND (attribute_not_exists(locked_until) OR locked_until < :now)")
            .expression_attribute_values(":until", AttributeValue::N((now + lease_secs).to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .send()
            .await;
        condition_held(result)
    }

    pub async fn unlock_subject(&self, account: &str, subject: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(self.table(Table::Subscriptions))
            .set_key(Some(Self::subscription_key(account, subject)))
            .update_expression("REMOVE locked_until")
            .condition_expression("attribute_exists(account_id)")
            .send()
            .await
            .map_err(sdk)?;
        Ok(())
    }
}
