//! DynamoDB faults on purpose: an SDK interceptor that fails chosen calls, as a throttled,
//! conflicting or unreachable table would, or loses the answer of a call that took effect.
//! The test app's client always carries one (unarmed, it does nothing); production clients
//! never do.

use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextMut,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use std::sync::{Arc, Mutex};

/// What an armed fault does to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DynamoFault {
    /// The call never leaves (the SDK reports a dispatch-time error): no effect.
    Unreachable,
    /// DynamoDB answers `ThrottlingException` (which the SDK itself retries): no effect.
    Throttle,
    /// A transaction is cancelled with `TransactionConflict` (only `TransactWriteItems`;
    /// other operations get [`DynamoFault::Throttle`]): no effect.
    Conflict,
    /// The call takes effect, then its answer is lost: the SDK sees a 500 (and retries).
    LoseResponse,
}

impl DynamoFault {
    pub const ALL: [DynamoFault; 4] = [
        DynamoFault::Unreachable,
        DynamoFault::Throttle,
        DynamoFault::Conflict,
        DynamoFault::LoseResponse,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DynamoFault::Unreachable => "dynamodb_unreachable",
            DynamoFault::Throttle => "dynamodb_throttle",
            DynamoFault::Conflict => "dynamodb_conflict",
            DynamoFault::LoseResponse => "dynamodb_lost_response",
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    /// `None`: any operation.
    operation: Option<String>,
    /// `Some`: only calls naming this table (`"TableName"` in the request).
    table: Option<String>,
    fault: DynamoFault,
    /// Matching calls to let through first.
    skip: u32,
    /// Matching calls to fail after those.
    fail: u32,
}

/// Armed faults, and the ones that fired. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct DynamoFaults {
    rules: Arc<Mutex<Vec<Rule>>>,
    fired: Arc<Mutex<Vec<(String, DynamoFault)>>>,
}

/// The answer that replaces this attempt's (status, error type, extra JSON), chosen before
/// transmit and applied before deserialization.
#[derive(Debug, Clone, Copy)]
struct Chosen(u16, &'static str, &'static str);

impl Storable for Chosen {
    type Storer = StoreReplace<Self>;
}

/// The operation DynamoDB does not know: a request sent with it has no effect.
const NO_OP_TARGET: &str = "DynamoDB_20120810.DevkitFaultNoOp";

impl DynamoFaults {
    /// After letting `skip` calls of `operation` (`UpdateItem`, `TransactWriteItems`…)
    /// through, fails the next `fail` of them before they are sent.
    pub fn arm(&self, operation: &str, skip: u32, fail: u32) {
        self.arm_fault(Some(operation), DynamoFault::Unreachable, skip, fail);
    }

    /// As [`DynamoFaults::arm`] with the given fault; `operation` `None` matches any call.
    pub fn arm_fault(&self, operation: Option<&str>, fault: DynamoFault, skip: u32, fail: u32) {
        if fail == 0 {
            return;
        }
        self.lock().push(Rule {
            operation: operation.map(str::to_string),
            table: None,
            fault,
            skip,
            fail,
        });
    }

    /// As [`DynamoFaults::arm`], counting only the calls of `operation` on `table` (its
    /// deployed name): other calls of the operation, on other tables, go through.
    pub fn arm_on_table(&self, operation: &str, table: &str, skip: u32, fail: u32) {
        if fail == 0 {
            return;
        }
        self.lock().push(Rule {
            operation: Some(operation.to_string()),
            table: Some(table.to_string()),
            fault: DynamoFault::Unreachable,
            skip,
            fail,
        });
    }

    /// Disarms every fault that has not fired.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The faults that fired since the last call (operation, fault), oldest first.
    pub fn take_fired(&self) -> Vec<(String, DynamoFault)> {
        std::mem::take(&mut *self.fired.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A client for `endpoint` (as [`shared::store::local_client`]) with these faults.
    pub fn local_client(&self, endpoint: &str) -> aws_sdk_dynamodb::Client {
        crate::intercepted_client(endpoint, self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Rule>> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fault the next call of `operation` (whose request body is `body`) takes, if one
    /// is armed for it.
    fn choose(&self, operation: &str, body: &str) -> Option<DynamoFault> {
        let mut rules = self.lock();
        let index = rules.iter().position(|r| {
            r.operation.as_deref().is_none_or(|o| o == operation)
                && r.table
                    .as_deref()
                    .is_none_or(|t| body.contains(&format!("\"TableName\":\"{t}\"")))
        })?;
        let rule = &mut rules[index];
        if rule.skip > 0 {
            rule.skip -= 1;
            return None;
        }
        rule.fail -= 1;
        let fault = rule.fault;
        if rule.fail == 0 {
            rules.remove(index);
        }
        drop(rules);
        self.fired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((operation.to_string(), fault));
        Some(fault)
    }
}

/// DynamoDB's JSON error answer of type `kind` (awsJson1_0 `__type`).
fn error_response(status: u16, kind: &str, extra: &str) -> Response {
    let body = format!(
        r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{kind}","message":"devkit::DynamoFaults"{extra}}}"#
    );
    let mut response = Response::new(
        StatusCode::try_from(status).unwrap_or_else(|_| StatusCode::try_from(500).expect("500")),
        SdkBody::from(body),
    );
    response
        .headers_mut()
        .insert("content-type", "application/x-amz-json-1.0");
    response
}

impl Intercept for DynamoFaults {
    fn name(&self) -> &'static str {
        "DynamoFaults"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg.load::<Metadata>().map_or("unknown", Metadata::name);
        let body = context
            .request()
            .body()
            .bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let Some(fault) = self.choose(operation, &body) else {
            return Ok(());
        };
        let fault = match fault {
            DynamoFault::Conflict if operation != "TransactWriteItems" => DynamoFault::Throttle,
            other => other,
        };
        let answer = match fault {
            DynamoFault::Unreachable => {
                return Err(format!("{operation} failed on purpose (devkit::DynamoFaults)").into());
            }
            DynamoFault::Throttle => Chosen(400, "ThrottlingException", ""),
            DynamoFault::Conflict => Chosen(
                400,
                "TransactionCanceledException",
                r#","CancellationReasons":[{"Code":"TransactionConflict","Message":"Transaction is ongoing for the item"}]"#,
            ),
            DynamoFault::LoseResponse => Chosen(500, "InternalServerError", ""),
        };
        if answer.0 == 400 {
            // Sent as an operation DynamoDB does not know, so it changes nothing; its answer
            // is replaced below.
            context
                .request_mut()
                .headers_mut()
                .insert("x-amz-target", NO_OP_TARGET);
        }
        cfg.interceptor_state().store_put(answer);
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Chosen(status, kind, extra)) = cfg.load::<Chosen>().copied() else {
            return Ok(());
        };
        // One attempt only: the SDK's retry of this call chooses again.
        cfg.interceptor_state().unset::<Chosen>();
        *context.response_mut() = error_response(status, kind, extra);
        Ok(())
    }
}
