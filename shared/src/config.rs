//! Configuration from the environment, read once per cold start.

use crate::tables::TableNames;

/// Which Stripe mode this deployment serves; API keys of the other mode are refused.
/// An API key's mode (`hi_live_…` / `hi_test_…`) is the same notion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Test,
    Live,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Test => "test",
            Stage::Live => "live",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "test" => Some(Stage::Test),
            "live" => Some(Stage::Live),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub stage: Stage,
    pub tables: TableNames,
    /// Stripe's API base: `https://api.stripe.com`, or the local emulator.
    pub stripe_api_base: String,
    /// Secrets Manager secret holding the Stripe keys (absent locally).
    pub stripe_secret_id: Option<String>,
    /// How long after `current_period_end` a plan still grants access without a newer
    /// Stripe read (`ACCESS_GRACE_HOURS`, default 72: Stripe's webhook retry window).
    pub access_grace_secs: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

pub const DEFAULT_STRIPE_API_BASE: &str = "https://api.stripe.com";
/// Three days: Stripe retries a failed webhook delivery for up to three days.
pub const DEFAULT_ACCESS_GRACE_SECS: i64 = 3 * 86_400;

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let stage = match lookup("STAGE") {
            None => Stage::Test,
            Some(s) => Stage::parse(&s)
                .ok_or_else(|| ConfigError(format!("STAGE must be `test` or `live`, not `{s}`")))?,
        };
        Ok(Self {
            stage,
            tables: TableNames::from_lookup(&lookup),
            stripe_api_base: lookup("STRIPE_API_BASE")
                .unwrap_or_else(|| DEFAULT_STRIPE_API_BASE.into()),
            stripe_secret_id: lookup("STRIPE_SECRET_ID"),
            access_grace_secs: match lookup("ACCESS_GRACE_HOURS") {
                None => DEFAULT_ACCESS_GRACE_SECS,
                Some(h) => h
                    .parse::<i64>()
                    .ok()
                    .filter(|h| (0..=24 * 30).contains(h))
                    .map(|h| h * 3600)
                    .ok_or_else(|| {
                        ConfigError(format!(
                            "ACCESS_GRACE_HOURS must be a whole number of hours from 0 to 720, not `{h}`"
                        ))
                    })?,
            },
        })
    }

    /// The local stack's configuration: test stage, default table names.
    pub fn local(stripe_api_base: impl Into<String>) -> Self {
        Self {
            stage: Stage::Test,
            tables: TableNames::defaults(),
            stripe_api_base: stripe_api_base.into(),
            stripe_secret_id: None,
            access_grace_secs: DEFAULT_ACCESS_GRACE_SECS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_the_test_stage() {
        let c = Config::from_lookup(|_| None).expect("config");
        assert_eq!(c.stage, Stage::Test);
        assert_eq!(c.stripe_api_base, DEFAULT_STRIPE_API_BASE);
        assert_eq!(c.access_grace_secs, 3 * 86_400);
    }

    #[test]
    fn reads_the_access_grace_in_hours() {
        let c = Config::from_lookup(|k| (k == "ACCESS_GRACE_HOURS").then(|| "12".into()));
        assert_eq!(c.expect("config").access_grace_secs, 12 * 3600);
        for bad in ["-1", "721", "3d", ""] {
            assert!(
                Config::from_lookup(|k| (k == "ACCESS_GRACE_HOURS").then(|| bad.into())).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn reads_stage_and_refuses_unknown_ones() {
        let live = Config::from_lookup(|k| (k == "STAGE").then(|| "live".into())).expect("config");
        assert_eq!(live.stage, Stage::Live);
        let err = Config::from_lookup(|k| (k == "STAGE").then(|| "prod".into())).unwrap_err();
        assert!(err.to_string().contains("prod"));
    }
}
