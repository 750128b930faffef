//! The rate limiter's DynamoDB adapter: one item per key and window in the RateLimits table
//! (`pk = "<key hash>#<window index>"`, `used`, `expires_at` for TTL), leased from with one
//! conditional update.

use super::Lease;
use crate::store::{Store, StoreError, sdk};
use crate::tables::Table;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

/// How long a window item outlives its window before TTL may delete it.
const KEEP_SECS: i64 = 60;

impl Store {
    /// Leases `tokens` of key `key_hash`'s window `window` (ending at `ends_unix`), unless
    /// the window's count would pass `quota`: one UpdateItem, `ADD used :tokens` on
    /// condition `used <= quota − tokens`.
    pub async fn rate_lease(
        &self,
        key_hash: &str,
        window: i64,
        ends_unix: i64,
        tokens: u32,
        quota: u32,
    ) -> Result<Lease, StoreError> {
        if tokens == 0 || tokens > quota {
            return Err(StoreError::Invalid(format!(
                "a lease of {tokens} tokens of a quota of {quota}"
            )));
        }
        let update = self
            .client()
            .update_item()
            .table_name(self.tables().get(Table::RateLimits))
            .key("pk", AttributeValue::S(format!("{key_hash}#{window}")))
            .update_expression("ADD #u :n SET #e = :e")
            .condition_expression("attribute_not_exists(#u) OR #u <= :max")
            .expression_attribute_names("#u", "used")
            .expression_attribute_names("#e", "expires_at")
            .expression_attribute_values(":n", AttributeValue::N(tokens.to_string()))
            .expression_attribute_values(":max", AttributeValue::N((quota - tokens).to_string()))
            .expression_attribute_values(
                ":e",
                AttributeValue::N((ends_unix + KEEP_SECS).to_string()),
            )
            .return_values(ReturnValue::UpdatedNew);
        match update.send().await {
            Ok(out) => {
                let used = match out.attributes.as_ref().and_then(|a| a.get("used")) {
                    Some(AttributeValue::N(n)) => n.parse::<u32>().unwrap_or(quota),
                    _ => quota,
                };
                Ok(Lease::Granted { tokens, used })
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(Lease::Refused { tokens })
            }
            Err(e) => Err(sdk(e)),
        }
    }
}
