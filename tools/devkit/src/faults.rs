//! DynamoDB faults on purpose: an SDK interceptor that fails chosen calls before they are
//! sent, as a throttled or unreachable table would. The test app's client always carries one
//! (unarmed, it does nothing); production clients never do.

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
struct Rule {
    operation: String,
    /// Matching calls to let through first.
    skip: u32,
    /// Matching calls to fail after those.
    fail: u32,
}

/// Armed faults, by operation. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct DynamoFaults {
    rules: Arc<Mutex<Vec<Rule>>>,
}

impl DynamoFaults {
    /// After letting `skip` calls of `operation` (`UpdateItem`, `TransactWriteItems`…)
    /// through, fails the next `fail` of them.
    pub fn arm(&self, operation: &str, skip: u32, fail: u32) {
        self.lock().push(Rule {
            operation: operation.to_string(),
            skip,
            fail,
        });
    }

    /// A client for `endpoint` (as [`shared::store::local_client`]) with these faults.
    pub fn local_client(&self, endpoint: &str) -> aws_sdk_dynamodb::Client {
        crate::intercepted_client(endpoint, self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Rule>> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Intercept for DynamoFaults {
    fn name(&self) -> &'static str {
        "DynamoFaults"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg.load::<Metadata>().map_or("unknown", Metadata::name);
        let mut rules = self.lock();
        let Some(index) = rules.iter().position(|r| r.operation == operation) else {
            return Ok(());
        };
        let rule = &mut rules[index];
        if rule.skip > 0 {
            rule.skip -= 1;
            return Ok(());
        }
        rule.fail -= 1;
        if rule.fail == 0 {
            rules.remove(index);
        }
        Err(format!("{operation} failed on purpose (devkit::DynamoFaults)").into())
    }
}
