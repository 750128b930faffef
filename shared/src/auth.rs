//! API-key authentication: `Authorization: Bearer hi_live_…|hi_test_…` → SHA-256 → ApiKeys
//! item → account. A warm instance caches found keys for a short TTL, saving a read per
//! request; a revoked key is therefore refused at the latest `CACHE_TTL` after revocation.

use crate::config::Stage;
use crate::domain::Subject;
use crate::error::ApiError;
use crate::keys::{AccountId, ApiKey, KeyRecord};
use crate::store::{Store, StoreError};
use crate::subscriptions::SubscriptionRecord;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use std::sync::Arc;
use std::time::Duration;

/// How long a warm instance trusts a key it has read. ≤ 60 s by design.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
const CACHE_CAPACITY: u64 = 10_000;

/// The authenticated caller. Taking it as a handler argument is what makes a route private.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: AccountId,
    pub mode: Stage,
    /// The account's own subscription item, when this request has read it already: the rate
    /// limiter reads it for the plan's limit. Only a read is given it (see
    /// [`Account::with_own_subscription`]).
    own_subscription: Option<Arc<Option<SubscriptionRecord>>>,
}

/// The same caller, whatever this request has read of it.
impl PartialEq for Account {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.mode == other.mode
    }
}

impl Eq for Account {}

impl Account {
    pub fn new(id: AccountId, mode: Stage) -> Self {
        Self {
            id,
            mode,
            own_subscription: None,
        }
    }

    /// The caller, with its own subscription item as this request read it. The rate limiter
    /// gives it to a read (a safe method) only: a handler that reads the same item (a status,
    /// the usage) takes it instead of reading it again a moment later in the same request,
    /// while a write reads what it decides on after its admission.
    pub fn with_own_subscription(self, record: Option<SubscriptionRecord>) -> Self {
        Self {
            own_subscription: Some(Arc::new(record)),
            ..self
        }
    }

    /// The subscription item of `subject` (its key: `self` for the account's own) under this
    /// account: the one this request read already, or one consistent read.
    pub async fn subscription(
        &self,
        store: &Store,
        subject: &str,
    ) -> Result<Option<SubscriptionRecord>, StoreError> {
        match &self.own_subscription {
            Some(record) if subject == Subject::ACCOUNT_KEY => Ok(record.as_ref().clone()),
            _ => store.subscription(self.id.as_str(), subject).await,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Authenticator {
    stage: Stage,
    cache: moka::sync::Cache<String, KeyRecord>,
}

impl Authenticator {
    pub fn new(stage: Stage) -> Self {
        Self::with_ttl(stage, CACHE_TTL)
    }

    pub fn with_ttl(stage: Stage, ttl: Duration) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(CACHE_CAPACITY)
            .time_to_live(ttl)
            .build();
        Self { stage, cache }
    }

    /// Checks an `Authorization` header value. Only keys that exist are cached: a key
    /// issued a moment ago works at once.
    pub async fn authenticate(
        &self,
        store: &Store,
        header: Option<&str>,
    ) -> Result<Account, ApiError> {
        let record = self.key_record(store, header).await?;
        Ok(Account::new(record.account_id, record.mode))
    }

    /// [`Self::authenticate`], answering the key's record (its hash, its own rate limit).
    pub async fn key_record(
        &self,
        store: &Store,
        header: Option<&str>,
    ) -> Result<KeyRecord, ApiError> {
        let header = header
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .ok_or(ApiError::MissingApiKey)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::InvalidApiKey(
                    "The Authorization header must be `Bearer <API key>`.".into(),
                )
            })?;
        let key = ApiKey::parse(token)
            .map_err(|e| ApiError::InvalidApiKey(format!("Malformed API key: {e}.")))?;
        if key.mode() != self.stage {
            return Err(ApiError::InvalidApiKey(format!(
                "This is a {key_mode}-mode key (hi_{key_mode}_…), but this deployment serves {stage} mode: use a hi_{stage}_ key.",
                key_mode = key.mode().as_str(),
                stage = self.stage.as_str(),
            )));
        }
        let hash = key.hash();
        let record = match self.cache.get(&hash) {
            Some(record) => record,
            None => {
                let record = store
                    .api_key(&hash)
                    .await?
                    .ok_or_else(|| ApiError::InvalidApiKey("Invalid API key.".into()))?;
                self.cache.insert(hash, record.clone());
                record
            }
        };
        if record.revoked_at.is_some() {
            return Err(ApiError::InvalidApiKey(
                "This API key has been revoked.".into(),
            ));
        }
        Ok(record)
    }
}

/// A router state that can authenticate callers: what the [`Account`] extractor needs.
pub trait Authenticates {
    fn authenticator(&self) -> &Authenticator;
    fn key_store(&self) -> &Store;
}

impl<S: Authenticates + Send + Sync> FromRequestParts<S> for Account {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // Checked already by the rate limiter, for this request.
        if let Some(account) = parts.extensions.get::<Account>() {
            return Ok(account.clone());
        }
        let header = match parts.headers.get(AUTHORIZATION) {
            None => None,
            Some(value) => Some(value.to_str().map_err(|_| {
                ApiError::InvalidApiKey("The Authorization header is not valid text.".into())
            })?),
        };
        state
            .authenticator()
            .authenticate(state.key_store(), header)
            .await
    }
}
