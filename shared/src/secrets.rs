//! Secrets: the Stripe keys, from Secrets Manager in AWS (once per cold start) or the
//! environment locally.
//!
//! In AWS, `STRIPE_SECRET_ID` names a Secrets Manager secret whose SecretString is JSON:
//! `{"stripe_secret_key": "sk_…", "stripe_webhook_secret": "whsec_…"}` (other keys are
//! ignored). Without it, `STRIPE_SECRET_KEY` and `STRIPE_WEBHOOK_SECRET` are read from the
//! environment; on the test stage only, they default to the local Stripe emulator's
//! `sk_test_local` and `whsec_local_emulator_secret`.
//!
//! Either way the keys are validated against the stage: a live key (`sk_live_…`/`rk_live_…`)
//! is refused on the test stage and a test key on the live stage. Errors name where the value
//! came from and what is wrong with it, never the value itself; [`StripeKeys`]' `Debug` shows
//! only the prefixes.

use crate::aws::AwsEnv;
use crate::config::{Config, Stage};
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use serde_json::Value;
use std::fmt;

/// The JSON keys of the Secrets Manager secret.
pub const SECRET_KEY_FIELD: &str = "stripe_secret_key";
pub const WEBHOOK_SECRET_FIELD: &str = "stripe_webhook_secret";

/// The environment variables read when no secret is configured.
pub const SECRET_KEY_ENV: &str = "STRIPE_SECRET_KEY";
pub const WEBHOOK_SECRET_ENV: &str = "STRIPE_WEBHOOK_SECRET";

/// Test-stage defaults: what the local Stripe emulator accepts and signs with.
pub const LOCAL_SECRET_KEY: &str = "sk_test_local";
pub const LOCAL_WEBHOOK_SECRET: &str = "whsec_local_emulator_secret";

/// Stripe's API key and the webhook endpoint's signing secret. Load once per cold start
/// and keep it; `Debug` redacts both.
#[derive(Clone, PartialEq, Eq)]
pub struct StripeKeys {
    pub secret_key: String,
    pub webhook_secret: String,
}

impl fmt::Debug for StripeKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeKeys")
            .field("secret_key", &Redacted(&self.secret_key))
            .field("webhook_secret", &Redacted(&self.webhook_secret))
            .finish()
    }
}

/// Shows a key's well-known prefix (`sk_test_…`, `whsec_…`) and nothing of the rest.
struct Redacted<'a>(&'a str);

const KNOWN_PREFIXES: [&str; 5] = ["sk_test_", "sk_live_", "rk_test_", "rk_live_", "whsec_"];

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match KNOWN_PREFIXES.iter().find(|p| self.0.starts_with(**p)) {
            Some(prefix) => write!(f, "\"{prefix}…\""),
            None => f.write_str("\"<redacted>\""),
        }
    }
}

/// Why the Stripe keys could not be loaded. Messages name the secret (or environment
/// variable) and the problem; they never contain a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("Secrets Manager secret `{secret_id}` does not exist (or is not visible to this role)")]
    NotFound { secret_id: String },

    #[error(
        "Secrets Manager secret `{secret_id}` has no SecretString (is it a binary secret?); \
         it must be JSON with `{SECRET_KEY_FIELD}` and `{WEBHOOK_SECRET_FIELD}`"
    )]
    NoSecretString { secret_id: String },

    #[error("Secrets Manager secret `{secret_id}` is not the expected JSON: {problem}")]
    InvalidJson { secret_id: String, problem: String },

    #[error("Secrets Manager secret `{secret_id}` has no `{key}` key")]
    MissingKey {
        secret_id: String,
        key: &'static str,
    },

    #[error("reading Secrets Manager secret `{secret_id}` failed: {message}")]
    Sdk { secret_id: String, message: String },

    #[error(
        "{var} is not set: on the {} stage it is required (or set STRIPE_SECRET_ID to read \
         the keys from Secrets Manager)",
        stage.as_str()
    )]
    MissingEnv { var: &'static str, stage: Stage },

    #[error("{origin}: {problem}")]
    InvalidSecretKey { origin: String, problem: String },

    #[error(
        "{origin}: a {key_mode}-mode Stripe key is refused on the {} stage",
        stage.as_str()
    )]
    ModeMismatch {
        origin: String,
        key_mode: &'static str,
        stage: Stage,
    },

    #[error("{origin}: {problem}")]
    InvalidWebhookSecret { origin: String, problem: String },
}

/// The Stripe keys for `config`: from the Secrets Manager secret `config.stripe_secret_id`
/// when set (with the function's AWS environment), otherwise from the environment (see
/// [`from_lookup`]).
pub async fn load(config: &Config, aws: &AwsEnv) -> Result<StripeKeys, SecretsError> {
    match &config.stripe_secret_id {
        Some(secret_id) => load_from(&aws.secrets_manager(), secret_id, config.stage).await,
        None => from_env(config.stage),
    }
}

/// Reads and validates the secret `secret_id` (a name or an ARN) with `client`.
pub async fn load_from(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
    stage: Stage,
) -> Result<StripeKeys, SecretsError> {
    let output = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|err| match err.as_service_error() {
            Some(GetSecretValueError::ResourceNotFoundException(_)) => SecretsError::NotFound {
                secret_id: secret_id.to_string(),
            },
            _ => SecretsError::Sdk {
                secret_id: secret_id.to_string(),
                message: DisplayErrorContext(&err).to_string(),
            },
        })?;
    let Some(secret_string) = output.secret_string() else {
        return Err(SecretsError::NoSecretString {
            secret_id: secret_id.to_string(),
        });
    };
    from_secret_string(secret_id, secret_string, stage)
}

/// Parses and validates a secret's SecretString.
fn from_secret_string(
    secret_id: &str,
    secret_string: &str,
    stage: Stage,
) -> Result<StripeKeys, SecretsError> {
    let invalid = |problem: String| SecretsError::InvalidJson {
        secret_id: secret_id.to_string(),
        problem,
    };
    // serde_json's own messages may quote the input: only its category and position are used.
    let value: Value = serde_json::from_str(secret_string).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Eof => "it ends early",
            _ => "it is not valid JSON",
        };
        invalid(format!("{what} (line {}, column {})", e.line(), e.column()))
    })?;
    let Value::Object(fields) = value else {
        return Err(invalid(format!(
            "expected a JSON object, found {}",
            json_kind(&value)
        )));
    };
    let field = |key: &'static str| -> Result<String, SecretsError> {
        match fields.get(key) {
            None => Err(SecretsError::MissingKey {
                secret_id: secret_id.to_string(),
                key,
            }),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(invalid(format!(
                "`{key}` must be a string, found {}",
                json_kind(other)
            ))),
        }
    };
    let keys = StripeKeys {
        secret_key: field(SECRET_KEY_FIELD)?,
        webhook_secret: field(WEBHOOK_SECRET_FIELD)?,
    };
    validate(
        &keys,
        stage,
        &format!("Secrets Manager secret `{secret_id}`, key `{SECRET_KEY_FIELD}`"),
        &format!("Secrets Manager secret `{secret_id}`, key `{WEBHOOK_SECRET_FIELD}`"),
    )?;
    Ok(keys)
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The keys from the process environment (empty values count as unset).
pub fn from_env(stage: Stage) -> Result<StripeKeys, SecretsError> {
    from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()), stage)
}

/// The keys from `STRIPE_SECRET_KEY` and `STRIPE_WEBHOOK_SECRET` as `lookup` answers them.
/// On the test stage a missing one defaults to the local emulator's; on the live stage both
/// are required.
pub fn from_lookup(
    lookup: impl Fn(&str) -> Option<String>,
    stage: Stage,
) -> Result<StripeKeys, SecretsError> {
    let get = |var: &'static str, local: &str| match (lookup(var), stage) {
        (Some(value), _) => Ok(value),
        (None, Stage::Test) => Ok(local.to_string()),
        (None, Stage::Live) => Err(SecretsError::MissingEnv { var, stage }),
    };
    let keys = StripeKeys {
        secret_key: get(SECRET_KEY_ENV, LOCAL_SECRET_KEY)?,
        webhook_secret: get(WEBHOOK_SECRET_ENV, LOCAL_WEBHOOK_SECRET)?,
    };
    validate(
        &keys,
        stage,
        &format!("environment variable {SECRET_KEY_ENV}"),
        &format!("environment variable {WEBHOOK_SECRET_ENV}"),
    )?;
    Ok(keys)
}

/// Checks the keys' shapes and that the secret key's mode is the stage's.
fn validate(
    keys: &StripeKeys,
    stage: Stage,
    secret_key_origin: &str,
    webhook_origin: &str,
) -> Result<(), SecretsError> {
    let bad_key = |problem: &str| SecretsError::InvalidSecretKey {
        origin: secret_key_origin.to_string(),
        problem: problem.to_string(),
    };
    let key = keys.secret_key.as_str();
    if !(key.starts_with("sk_") || key.starts_with("rk_")) {
        return Err(bad_key(
            "not a Stripe secret or restricted key (it must start with `sk_` or `rk_`)",
        ));
    }
    let (key_mode, rest) = if let Some(rest) = key[3..].strip_prefix("live_") {
        (Stage::Live, rest)
    } else if let Some(rest) = key[3..].strip_prefix("test_") {
        (Stage::Test, rest)
    } else {
        return Err(bad_key(
            "the key's mode is neither live nor test (expected `sk_live_`, `sk_test_`, `rk_live_` or `rk_test_`)",
        ));
    };
    if rest.is_empty() {
        return Err(bad_key("the key is empty after its prefix"));
    }
    if key.chars().any(char::is_whitespace) {
        return Err(bad_key("the key contains whitespace"));
    }
    if key_mode != stage {
        return Err(SecretsError::ModeMismatch {
            origin: secret_key_origin.to_string(),
            key_mode: key_mode.as_str(),
            stage,
        });
    }

    let bad_webhook = |problem: &str| SecretsError::InvalidWebhookSecret {
        origin: webhook_origin.to_string(),
        problem: problem.to_string(),
    };
    let Some(rest) = keys.webhook_secret.strip_prefix("whsec_") else {
        return Err(bad_webhook(
            "not a Stripe webhook signing secret (it must start with `whsec_`)",
        ));
    };
    if rest.is_empty() {
        return Err(bad_webhook("the secret is empty after `whsec_`"));
    }
    if rest.chars().any(char::is_whitespace) {
        return Err(bad_webhook("the secret contains whitespace"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        }
    }

    const LIVE_KEY: &str = "sk_live_51AbCdEfGhIjKlMnOp";
    const TEST_KEY: &str = "rk_test_51ZyXwVuTsRqPoNm";
    const WHSEC: &str = "whsec_Q2hhbmdlTWVQbGVhc2U";

    #[test]
    fn reads_the_environment() {
        let keys = from_lookup(
            env(&[(SECRET_KEY_ENV, TEST_KEY), (WEBHOOK_SECRET_ENV, WHSEC)]),
            Stage::Test,
        )
        .expect("valid keys");
        assert_eq!(keys.secret_key, TEST_KEY);
        assert_eq!(keys.webhook_secret, WHSEC);

        let live = from_lookup(
            env(&[(SECRET_KEY_ENV, LIVE_KEY), (WEBHOOK_SECRET_ENV, WHSEC)]),
            Stage::Live,
        )
        .expect("valid live keys");
        assert_eq!(live.secret_key, LIVE_KEY);
    }

    #[test]
    fn defaults_to_the_emulators_keys_on_the_test_stage_only() {
        let keys = from_lookup(|_| None, Stage::Test).expect("defaults");
        assert_eq!(keys.secret_key, "sk_test_local");
        assert_eq!(keys.webhook_secret, "whsec_local_emulator_secret");

        // One set, one defaulted.
        let keys = from_lookup(env(&[(SECRET_KEY_ENV, TEST_KEY)]), Stage::Test).expect("keys");
        assert_eq!(keys.secret_key, TEST_KEY);
        assert_eq!(keys.webhook_secret, LOCAL_WEBHOOK_SECRET);
    }

    #[test]
    fn the_live_stage_requires_both_variables() {
        let err = from_lookup(|_| None, Stage::Live).unwrap_err();
        assert!(
            matches!(
                err,
                SecretsError::MissingEnv {
                    var: SECRET_KEY_ENV,
                    stage: Stage::Live
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("STRIPE_SECRET_KEY"), "{err}");

        let err = from_lookup(env(&[(SECRET_KEY_ENV, LIVE_KEY)]), Stage::Live).unwrap_err();
        assert!(
            matches!(
                err,
                SecretsError::MissingEnv {
                    var: WEBHOOK_SECRET_ENV,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn refuses_a_key_of_the_other_mode_without_quoting_it() {
        let err = from_lookup(
            env(&[(SECRET_KEY_ENV, LIVE_KEY), (WEBHOOK_SECRET_ENV, WHSEC)]),
            Stage::Test,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                SecretsError::ModeMismatch {
                    key_mode: "live",
                    stage: Stage::Test,
                    ..
                }
            ),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("STRIPE_SECRET_KEY"), "{message}");
        assert!(!message.contains(LIVE_KEY), "{message}");

        let err = from_lookup(
            env(&[(SECRET_KEY_ENV, TEST_KEY), (WEBHOOK_SECRET_ENV, WHSEC)]),
            Stage::Live,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                SecretsError::ModeMismatch {
                    key_mode: "test",
                    stage: Stage::Live,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn refuses_malformed_keys() {
        for bad in [
            "pk_test_123",
            "sk_123",
            "sk_test_",
            "sk_test_abc\n",
            "whsec_abc",
        ] {
            let err = from_lookup(env(&[(SECRET_KEY_ENV, bad)]), Stage::Test).unwrap_err();
            assert!(
                matches!(err, SecretsError::InvalidSecretKey { .. }),
                "{bad:?}: {err:?}"
            );
            assert!(!err.to_string().contains(bad), "{err}");
        }
        for bad in ["sk_test_123", "whsec_", "whsec_abc def", "secret"] {
            let err = from_lookup(env(&[(WEBHOOK_SECRET_ENV, bad)]), Stage::Test).unwrap_err();
            assert!(
                matches!(err, SecretsError::InvalidWebhookSecret { .. }),
                "{bad:?}: {err:?}"
            );
            assert!(err.to_string().contains("STRIPE_WEBHOOK_SECRET"), "{err}");
        }
    }

    #[test]
    fn secret_strings_parse_and_errors_never_quote_them() {
        let ok = format!(
            r#"{{"stripe_secret_key": "{TEST_KEY}", "stripe_webhook_secret": "{WHSEC}", "other": 1}}"#
        );
        let keys = from_secret_string("billing/stripe", &ok, Stage::Test).expect("keys");
        assert_eq!(keys.secret_key, TEST_KEY);

        let cases = [
            (
                format!(r#"{{"stripe_secret_key": "{TEST_KEY}""#),
                "InvalidJson",
            ),
            (format!(r#""{TEST_KEY}""#), "InvalidJson"),
            (
                format!(r#"{{"stripe_secret_key": "{TEST_KEY}", "stripe_webhook_secret": 7}}"#),
                "InvalidJson",
            ),
            (
                format!(r#"{{"stripe_secret_key": "{TEST_KEY}"}}"#),
                "MissingKey",
            ),
        ];
        for (input, variant) in cases {
            let err = from_secret_string("billing/stripe", &input, Stage::Test).unwrap_err();
            assert!(format!("{err:?}").starts_with(variant), "{input}: {err:?}");
            let message = err.to_string();
            assert!(message.contains("billing/stripe"), "{message}");
            assert!(!message.contains(TEST_KEY), "{message}");
            assert!(!format!("{err:?}").contains(TEST_KEY), "{err:?}");
        }
    }

    #[test]
    fn debug_shows_only_prefixes() {
        let keys = StripeKeys {
            secret_key: LIVE_KEY.into(),
            webhook_secret: WHSEC.into(),
        };
        let shown = format!("{keys:?} {keys:#?}");
        assert!(
            !shown.contains(LIVE_KEY) && !shown.contains(WHSEC),
            "{shown}"
        );
        assert!(
            shown.contains("sk_live_…") && shown.contains("whsec_…"),
            "{shown}"
        );

        let odd = StripeKeys {
            secret_key: "hunter2".into(),
            webhook_secret: String::new(),
        };
        assert!(!format!("{odd:?}").contains("hunter2"));
    }
}
