//! What every handler shares: configuration, the store, the key cache and the clock.
//! Built once per cold start.

use crate::auth::Authenticator;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::store::Store;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub auth: Authenticator,
    pub clock: Arc<dyn Clock>,
}

impl AppState {
    pub fn new(config: Config, dynamodb: aws_sdk_dynamodb::Client, clock: Arc<dyn Clock>) -> Self {
        let store = Store::new(dynamodb, config.tables.clone());
        let auth = Authenticator::new(config.stage);
        Self {
            config: Arc::new(config),
            store,
            auth,
            clock,
        }
    }

    /// The deployed state: configuration from the environment, AWS clients from the
    /// Lambda's role.
    pub async fn from_env() -> Result<Self, crate::config::ConfigError> {
        let config = Config::from_env()?;
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Ok(Self::new(
            config,
            aws_sdk_dynamodb::Client::new(&aws),
            Arc::new(SystemClock),
        ))
    }
}
