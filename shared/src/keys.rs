//! API keys: their format, their hash, and issuing, listing and revoking them.
//! Only the SHA-256 of a key is ever stored; the key itself is shown once, when issued.

use crate::catalog::RateLimit;
use crate::clock::{Clock, rfc3339};
use crate::config::Stage;
use crate::store::{Store, StoreError, corrupt, sdk};
use crate::tables::{Table, def};
use aws_sdk_dynamodb::types::AttributeValue;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A key's mode is its Stripe mode: `hi_live_…` keys work on the live stage only.
pub type Mode = Stage;

/// Length of the random part of a key: 40 base62 characters, about 238 bits.
const SECRET_LEN: usize = 40;
/// How much of the random part the listing shows, to tell keys apart.
const PREFIX_SECRET_CHARS: usize = 8;

/// A syntactically valid API key; constructing one is the only check of the format.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    // Never print the secret, even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey({}…)", self.display_prefix())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("API keys look like hi_test_… or hi_live_… followed by letters and digits")]
pub struct MalformedKey;

impl ApiKey {
    pub fn parse(raw: &str) -> Result<Self, MalformedKey> {
        let (_, secret) = split_mode(raw).ok_or(MalformedKey)?;
        if !(20..=100).contains(&secret.len()) || !secret.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(MalformedKey);
        }
        Ok(Self(raw.to_string()))
    }

    pub fn generate(mode: Mode) -> Self {
        let secret: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(SECRET_LEN)
            .map(char::from)
            .collect();
        Self(format!("hi_{}_{secret}", mode.as_str()))
    }

    pub fn mode(&self) -> Mode {
        split_mode(&self.0).map(|(m, _)| m).unwrap_or(Mode::Test)
    }

    /// The hex SHA-256 of the whole key: the only form that is stored.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    /// `hi_test_AbCd1234`: enough to tell keys apart in a listing, useless to an attacker.
    pub fn display_prefix(&self) -> String {
        self.0
            .chars()
            .take("hi_test_".len() + PREFIX_SECRET_CHARS)
            .collect()
    }

    /// The key itself, for showing once to whoever asked for it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

fn split_mode(raw: &str) -> Option<(Mode, &str)> {
    if let Some(rest) = raw.strip_prefix("hi_live_") {
        Some((Mode::Live, rest))
    } else {
        raw.strip_prefix("hi_test_").map(|rest| (Mode::Test, rest))
    }
}

/// An account id: 1–64 characters of `A–Z a–z 0–9 _ -`, chosen by the operator.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(String);

impl AccountId {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(raw.to_string()))
        } else {
            Err(format!(
                "account ids are 1-64 characters of A-Z a-z 0-9 _ -, not `{raw}`"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AccountId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<AccountId> for String {
    fn from(a: AccountId) -> String {
        a.0
    }
}

impl std::fmt::Display for AccountId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The stored form of a key (item of the ApiKeys table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key_hash: String,
    pub account_id: AccountId,
    pub mode: Mode,
    pub key_prefix: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// A limit of this key's own, in place of its plan's (internal and load-testing keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// Creates a key for `account` and stores its hash; the returned key is never stored.
pub async fn issue(
    store: &Store,
    clock: &dyn Clock,
    account: &AccountId,
    mode: Mode,
    rate_limit: Option<RateLimit>,
) -> Result<(ApiKey, KeyRecord), StoreError> {
    let key = ApiKey::generate(mode);
    let record = KeyRecord {
        key_hash: key.hash(),
        account_id: account.clone(),
        mode,
        key_prefix: key.display_prefix(),
        created_at: rfc3339(clock.now()),
        revoked_at: None,
        rate_limit,
    };
    store.insert_api_key(&record).await?;
    Ok((key, record))
}

#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error("no key of account {account} starts with `{prefix}`")]
    NotFound { account: AccountId, prefix: String },
    #[error("`{prefix}` matches {count} keys of account {account}; give more of the key")]
    Ambiguous {
        account: AccountId,
        prefix: String,
        count: usize,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Revokes the one key of `account` that starts with `prefix` (a listed prefix or the key).
pub async fn revoke(
    store: &Store,
    clock: &dyn Clock,
    account: &AccountId,
    prefix: &str,
) -> Result<KeyRecord, RevokeError> {
    let keys = store.api_keys_of(account).await?;
    let matching: Vec<KeyRecord> = match ApiKey::parse(prefix) {
        Ok(full) => keys
            .into_iter()
            .filter(|k| k.key_hash == full.hash())
            .collect(),
        Err(_) => keys
            .into_iter()
            .filter(|k| k.key_prefix.starts_with(prefix) && !prefix.is_empty())
            .collect(),
    };
    match matching.as_slice() {
        [] => Err(RevokeError::NotFound {
            account: account.clone(),
            prefix: prefix.to_string(),
        }),
        [one] => {
            let at = rfc3339(clock.now());
            store.revoke_api_key(&one.key_hash, &at).await?;
            Ok(KeyRecord {
                revoked_at: Some(at),
                ..one.clone()
            })
        }
        many => Err(RevokeError::Ambiguous {
            account: account.clone(),
            prefix: prefix.to_string(),
            count: many.len(),
        }),
    }
}

/// The API-key adapter: the ApiKeys table.
impl Store {
    /// The key with this hash (eventually consistent: a key is read often and changes
    /// rarely; the auth cache holds it for seconds anyway).
    pub async fn api_key(&self, key_hash: &str) -> Result<Option<KeyRecord>, StoreError> {
        let key = std::collections::HashMap::from([(
            "key_hash".to_string(),
            AttributeValue::S(key_hash.to_string()),
        )]);
        self.get_decoded(Table::ApiKeys, key, false).await
    }

    pub async fn insert_api_key(&self, record: &KeyRecord) -> Result<(), StoreError> {
        let item = serde_dynamo::to_item(record).map_err(corrupt)?;
        self.client()
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
            .client()
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
        self.client()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_carry_their_mode() {
        for mode in [Mode::Test, Mode::Live] {
            let key = ApiKey::generate(mode);
            assert_eq!(ApiKey::parse(key.expose()), Ok(key.clone()));
            assert_eq!(key.mode(), mode);
            assert!(key.expose().starts_with(&format!("hi_{}_", mode.as_str())));
            assert_eq!(key.display_prefix().len(), 16);
        }
    }

    #[test]
    fn two_keys_differ() {
        assert_ne!(ApiKey::generate(Mode::Test), ApiKey::generate(Mode::Test));
    }

    #[test]
    fn hash_is_sha256_hex_of_the_whole_key() {
        let key = ApiKey::parse("hi_test_abcdefghijklmnopqrstuvwxyz").expect("valid");
        // echo -n hi_test_abcdefghijklmnopqrstuvwxyz | sha256sum
        assert_eq!(
            key.hash(),
            "95bf681b2c1e7e2143af5ed99a86b2f64640571f98c9c1c2970b5ea46858cff0"
        );
        assert_eq!(key.hash().len(), 64);
        assert_ne!(
            key.hash(),
            ApiKey::parse("hi_live_abcdefghijklmnopqrstuvwxyz")
                .expect("valid")
                .hash()
        );
    }

    #[test]
    fn malformed_keys_are_refused() {
        for raw in [
            "",
            "hi_test_",
            "hi_prod_abcdefghijklmnopqrstuvwxyz",
            "sk_test_abcdefghijklmnopqrstuvwxyz",
            "hi_test_short",
            "hi_test_abcdefghijklmnopqrstuvwxyz!",
        ] {
            assert_eq!(ApiKey::parse(raw), Err(MalformedKey), "{raw}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = ApiKey::generate(Mode::Test);
        assert!(!format!("{key:?}").contains(key.expose()));
    }

    #[test]
    fn account_ids_are_bounded() {
        assert!(AccountId::parse("acme-corp_2").is_ok());
        for bad in ["", "a b", "x".repeat(65).as_str(), "ü"] {
            assert!(AccountId::parse(bad).is_err(), "{bad}");
        }
    }
}
