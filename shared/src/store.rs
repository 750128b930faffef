//! The DynamoDB adapter: the only module that builds requests to the SDK, so handlers
//! never touch an `AttributeValue`.

use crate::keys::{AccountId, KeyRecord};
use crate::tables::{Table, TableNames, def};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DynamoDB: {0}")]
    Sdk(String),
    #[error("a conditional write failed: {0}")]
    ConditionFailed(String),
    #[error("stored item does not decode: {0}")]
    Corrupt(String),
}

impl From<StoreError> for crate::ApiError {
    fn from(e: StoreError) -> Self {
        crate::ApiError::internal(e)
    }
}

fn sdk<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Sdk(DisplayErrorContext(e).to_string())
}

fn corrupt(e: serde_dynamo::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A client for a DynamoDB endpoint other than AWS's (the embedded engine, ministack),
/// which accept any credentials: static ones, region us-east-1.
pub fn local_client(endpoint: &str) -> Client {
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "static"))
        .endpoint_url(endpoint)
        .build();
    Client::from_conf(config)
}

/// The service's tables behind one client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    client: Client,
    tables: TableNames,
}

impl Store {
    pub fn new(client: Client, tables: TableNames) -> Self {
        Self { client, tables }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn tables(&self) -> &TableNames {
        &self.tables
    }

    fn table(&self, table: Table) -> &str {
        self.tables.get(table)
    }

    pub async fn api_key(&self, key_hash: &str) -> Result<Option<KeyRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(self.table(Table::ApiKeys))
            .key("key_hash", AttributeValue::S(key_hash.to_string()))
            .send()
            .await
            .map_err(sdk)?;
        out.item
            .map(|item| serde_dynamo::from_item(item).map_err(corrupt))
            .transpose()
    }

    pub async fn insert_api_key(&self, record: &KeyRecord) -> Result<(), StoreError> {
        let item = serde_dynamo::to_item(record).map_err(corrupt)?;
        self.client
            .put_item()
            .table_name(self.table(Table::ApiKeys))
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(key_hash)")
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(se) if se.is_conditional_check_failed_exception() => {
                    StoreError::ConditionFailed("an API key with this hash exists".into())
                }
                _ => sdk(e),
            })?;
        Ok(())
    }

    /// Every key of an account, oldest first (revoked ones included).
    pub async fn api_keys_of(&self, account: &AccountId) -> Result<Vec<KeyRecord>, StoreError> {
        let index = def(Table::ApiKeys).gsis[0].name;
        let pages: Vec<_> = self
            .client
            .query()
            .table_name(self.table(Table::ApiKeys))
            .index_name(index)
            .key_condition_expression("account_id = :a")
            .expression_attribute_values(":a", AttributeValue::S(account.to_string()))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(sdk)?;
        pages
            .into_iter()
            .map(|item| serde_dynamo::from_item(item).map_err(corrupt))
            .collect()
    }

    /// Marks a key revoked; a key revoked earlier keeps its first revocation time.
    pub async fn revoke_api_key(&self, key_hash: &str, at: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(self.table(Table::ApiKeys))
            .key("key_hash", AttributeValue::S(key_hash.to_string()))
            .update_expression("SET revoked_at = if_not_exists(revoked_at, :at)")
            .condition_expression("attribute_exists(key_hash)")
            .expression_attribute_values(":at", AttributeValue::S(at.to_string()))
            .send()
            .await
            .map_err(sdk)?;
        Ok(())
    }
}
