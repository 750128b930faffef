//! Counting DynamoDB calls: an SDK interceptor that counts every request a client sends, by
//! operation (`GetItem`, `BatchGetItem`, `TransactWriteItems`, …). `make bench` and the
//! call-count tests attach it to the local stack's client (`ServeOptions::dynamodb_calls`).

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Requests sent, by operation name. Clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct CallCounter {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl CallCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The counts so far, by operation.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.lock().clone()
    }

    /// The counts so far, which start again from zero.
    pub fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.lock())
    }

    pub fn reset(&self) {
        self.lock().clear();
    }

    pub fn total(&self) -> u64 {
        self.lock().values().sum()
    }

    /// A client for `endpoint` (as [`shared::store::local_client`]) whose calls are counted here.
    pub fn local_client(&self, endpoint: &str) -> aws_sdk_dynamodb::Client {
        crate::intercepted_client(endpoint, self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        // A panic elsewhere while holding the lock leaves the counts usable.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    /// Once per request sent: a retried call counts once per attempt (each is a round trip).
    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg.load::<Metadata>().map_or("unknown", Metadata::name);
        let mut counts = self.lock();
        match counts.get_mut(operation) {
            Some(n) => *n += 1,
            None => {
                counts.insert(operation.to_string(), 1);
            }
        }
        Ok(())
    }
}

/// One event of a [`CallLog`]: a request sent, or its answer read, with its operation and
/// table (`"TableName"` of the request; empty for the operations across tables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEvent {
    pub answered: bool,
    pub operation: String,
    pub table: String,
}

/// The order in which a client's requests are sent and answered: for tests of what runs
/// beside what. Clones share the log.
#[derive(Debug, Clone, Default)]
pub struct CallLog {
    events: Arc<Mutex<Vec<CallEvent>>>,
}

/// The request's table, carried from its sending to its answer.
#[derive(Debug, Clone)]
struct SentTable(String);

impl aws_smithy_types::config_bag::Storable for SentTable {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

impl CallLog {
    /// The events so far, which start again from none.
    pub fn take(&self) -> Vec<CallEvent> {
        std::mem::take(&mut *self.lock())
    }

    /// A client for `endpoint` (as [`shared::store::local_client`]) whose calls are logged here.
    pub fn local_client(&self, endpoint: &str) -> aws_sdk_dynamodb::Client {
        crate::intercepted_client(endpoint, self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<CallEvent>> {
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, answered: bool, cfg: &ConfigBag, table: String) {
        let operation = cfg.load::<Metadata>().map_or("unknown", Metadata::name);
        self.lock().push(CallEvent {
            answered,
            operation: operation.to_string(),
            table,
        });
    }
}

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "CallLog"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let table = context
            .request()
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            .and_then(|v| v["TableName"].as_str().map(str::to_string))
            .unwrap_or_default();
        self.push(false, cfg, table.clone());
        cfg.interceptor_state().store_put(SentTable(table));
        Ok(())
    }

    fn read_before_deserialization(
        &self,
        _context: &aws_sdk_dynamodb::config::interceptors::BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let table = cfg
            .load::<SentTable>()
            .map(|t| t.0.clone())
            .unwrap_or_default();
        self.push(true, cfg, table);
        Ok(())
    }
}
