//! The DynamoDB tables, defined once. The local stack and the tests create them from here
//! (`bootstrap`), and a test checks that template.yaml declares exactly the same ones.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};

/// The tables the service uses; the discriminant indexes [`TableNames`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    ApiKeys,
    Subscriptions,
    CreditLedger,
    Usage,
    Idempotency,
    RateLimits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    S,
    N,
}

impl AttrType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::S => "S",
            AttrType::N => "N",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct KeyAttr {
    pub name: &'static str,
    pub kind: AttrType,
}

const fn s(name: &'static str) -> KeyAttr {
    KeyAttr {
        name,
        kind: AttrType::S,
    }
}

/// A global secondary index projecting all attributes.
#[derive(Debug, Clone, Copy)]
pub struct Gsi {
    pub name: &'static str,
    pub pk: KeyAttr,
    pub sk: Option<KeyAttr>,
}

#[derive(Debug, Clone, Copy)]
pub struct TableDef {
    pub table: Table,
    /// The resource's logical id in template.yaml.
    pub logical_id: &'static str,
    /// The environment variable that carries the deployed table name.
    pub env_var: &'static str,
    /// The name used when the environment names none (the local stack and tests).
    pub default_name: &'static str,
    pub pk: KeyAttr,
    pub sk: Option<KeyAttr>,
    pub gsis: &'static [Gsi],
    pub ttl_attribute: Option<&'static str>,
    /// Point-in-time recovery, for every table whose loss would lose money (subscriptions,
    /// the ledger, the usage counters a plan pays for) or lock customers out (their keys).
    /// Only the Idempotency and RateLimits tables go without: their items live 24 hours and
    /// a few seconds.
    pub point_in_time_recovery: bool,
}

pub const TABLES: [TableDef; 6] = [
    TableDef {
        table: Table::ApiKeys,
        logical_id: "ApiKeysTable",
        env_var: "API_KEYS_TABLE",
        default_name: "billing-api-keys",
        pk: s("key_hash"),
        sk: None,
        gsis: &[Gsi {
            name: "by-account",
            pk: s("account_id"),
            sk: Some(s("created_at")),
        }],
        ttl_attribute: None,
        point_in_time_recovery: true,
    },
    TableDef {
        table: Table::Subscriptions,
        logical_id: "SubscriptionsTable",
        env_var: "SUBSCRIPTIONS_TABLE",
        default_name: "billing-subscriptions",
        pk: s("account_id"),
        sk: Some(s("subject")),
        gsis: &[
            Gsi {
                name: "by-subscription",
                pk: s("stripe_subscription_id"),
                sk: None,
            },
            Gsi {
                name: "by-customer",
                pk: s("stripe_customer_id"),
                sk: None,
            },
        ],
        ttl_attribute: None,
        point_in_time_recovery: true,
    },
    TableDef {
        table: Table::CreditLedger,
        logical_id: "CreditLedgerTable",
        env_var: "CREDIT_LEDGER_TABLE",
        default_name: "billing-credit-ledger",
        pk: s("pk"),
        sk: Some(s("sk")),
        gsis: &[],
        ttl_attribute: None,
        point_in_time_recovery: true,
    },
    TableDef {
        table: Table::Usage,
        logical_id: "UsageTable",
        env_var: "USAGE_TABLE",
        default_name: "billing-usage",
        pk: s("pk"),
        sk: Some(s("sk")),
        gsis: &[],
        ttl_attribute: None,
        point_in_time_recovery: true,
    },
    TableDef {
        table: Table::Idempotency,
        logical_id: "IdempotencyTable",
        env_var: "IDEMPOTENCY_TABLE",
        default_name: "billing-idempotency",
        pk: s("pk"),
        sk: None,
        gsis: &[],
        ttl_attribute: Some("expires_at"),
        point_in_time_recovery: false,
    },
    TableDef {
        table: Table::RateLimits,
        logical_id: "RateLimitsTable",
        env_var: "RATE_LIMITS_TABLE",
        default_name: "billing-rate-limits",
        pk: s("pk"),
        sk: None,
        gsis: &[],
        // A window's item is read for a few seconds, then only TTL cares about it.
        ttl_attribute: Some("expires_at"),
        point_in_time_recovery: false,
    },
];

pub fn def(table: Table) -> &'static TableDef {
    &TABLES[table as usize]
}

/// The deployed name of each table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames([String; 6]);

impl TableNames {
    /// Names from `lookup(env_var)`, falling back to each table's default name.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        Self(TABLES.map(|d| lookup(d.env_var).unwrap_or_else(|| d.default_name.to_string())))
    }

    pub fn defaults() -> Self {
        Self::from_lookup(|_| None)
    }

    pub fn get(&self, table: Table) -> &str {
        &self.0[table as usize]
    }
}

fn key_schema(
    pk: KeyAttr,
    sk: Option<KeyAttr>,
) -> Result<Vec<KeySchemaElement>, aws_sdk_dynamodb::error::BuildError> {
    let mut keys = vec![
        KeySchemaElement::builder()
            .attribute_name(pk.name)
            .key_type(KeyType::Hash)
            .build()?,
    ];
    if let Some(sk) = sk {
        keys.push(
            KeySchemaElement::builder()
                .attribute_name(sk.name)
                .key_type(KeyType::Range)
                .build()?,
        );
    }
    Ok(keys)
}

impl TableDef {
    /// Every attribute used in a key of the table or of an index, once.
    pub fn key_attributes(&self) -> Vec<KeyAttr> {
        let mut attrs: Vec<KeyAttr> = Vec::new();
        let all = [Some(self.pk), self.sk]
            .into_iter()
            .chain(self.gsis.iter().flat_map(|g| [Some(g.pk), g.sk]))
            .flatten();
        for attr in all {
            if !attrs.iter().any(|a| a.name == attr.name) {
                attrs.push(attr);
            }
        }
        attrs
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("DynamoDB call failed: {0}")]
    Sdk(String),
    #[error("bad table definition: {0}")]
    Definition(#[from] aws_sdk_dynamodb::error::BuildError),
}

fn sdk_err(e: impl std::error::Error) -> BootstrapError {
    BootstrapError::Sdk(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
}

/// Creates every table that does not exist yet; returns the names it created.
/// Used by the local stack and the tests; in AWS the template creates them.
pub async fn bootstrap(client: &Client, names: &TableNames) -> Result<Vec<String>, BootstrapError> {
    let existing = client
        .list_tables()
        .send()
        .await
        .map_err(sdk_err)?
        .table_names
        .unwrap_or_default();
    let mut created = Vec::new();
    for def in &TABLES {
        let name = names.get(def.table);
        if existing.iter().any(|t| t == name) {
            continue;
        }
        let mut req = client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_key_schema(Some(key_schema(def.pk, def.sk)?));
        for attr in def.key_attributes() {
            let kind = match attr.kind {
                AttrType::S => ScalarAttributeType::S,
                AttrType::N => ScalarAttributeType::N,
            };
            req = req.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attr.name)
                    .attribute_type(kind)
                    .build()?,
            );
        }
        for gsi in def.gsis {
            req = req.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(gsi.name)
                    .set_key_schema(Some(key_schema(gsi.pk, gsi.sk)?))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()?,
            );
        }
        req.send().await.map_err(sdk_err)?;
        if let Some(attr) = def.ttl_attribute {
            client
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(attr)
                        .enabled(true)
                        .build()?,
                )
                .send()
                .await
                .map_err(sdk_err)?;
        }
        created.push(name.to_string());
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_index_matches_position() {
        for (i, d) in TABLES.iter().enumerate() {
            assert_eq!(d.table as usize, i, "{} is out of place", d.logical_id);
        }
    }

    #[test]
    fn names_come_from_the_environment_with_defaults() {
        let names =
            TableNames::from_lookup(|k| (k == "USAGE_TABLE").then(|| "prod-usage".to_string()));
        assert_eq!(names.get(Table::Usage), "prod-usage");
        assert_eq!(names.get(Table::ApiKeys), "billing-api-keys");
    }

    #[test]
    fn key_attributes_are_deduplicated() {
        let attrs = def(Table::ApiKeys).key_attributes();
        let names: Vec<_> = attrs.iter().map(|a| a.name).collect();
        assert_eq!(names, ["key_hash", "account_id", "created_at"]);
    }
}
