//! What every handler shares: configuration, the store, the key cache, Stripe and the
//! clock. Built once per cold start.

use crate::auth::{Authenticates, Authenticator};
use crate::aws::AwsEnv;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::ratelimit::Limiter;
use crate::secrets::StripeKeys;
use crate::store::Store;
use crate::stripe::StripeApi;
use crate::stripe::prices::{PriceBook, PriceError, Prices};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Whether a function sells the catalog (checkouts, upgrades, the tiers' price ids), and so
/// resolves its prices at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sells {
    Catalog,
    /// Metering, the webhook, the reconciler: they read a subscription's plan from its
    /// price's catalog key, never a price id, and start without a Stripe call.
    Nothing,
}

#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub auth: Authenticator,
    pub stripe: StripeApi,
    pub stripe_keys: Arc<StripeKeys>,
    /// The catalog's lookup keys resolved to this Stripe account's price ids, at start.
    pub prices: PriceBook,
    pub clock: Arc<dyn Clock>,
    /// This instance's share of each key's rate-limit window.
    pub limiter: Limiter,
}

impl Authenticates for AppState {
    fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    fn key_store(&self) -> &Store {
        &self.store
    }
}

/// The resolution of a state's prices ([`AppState::from_env`]), to drive once.
pub type PriceResolution = Pin<Box<dyn Future<Output = Result<(), StartupError>> + Send>>;

/// Why the state could not be built at cold start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Aws(#[from] crate::aws::AwsEnvError),
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
    #[error(transparent)]
    Stripe(#[from] crate::stripe::StripeFailure),
    #[error(transparent)]
    Prices(#[from] PriceError),
}

impl AppState {
    /// The state, with the prices of what this function `sells` resolved: one Stripe call,
    /// which fails naming every lookup key the account lacks (so a function without a price
    /// never starts, rather than answering 500 per purchase). A function that sells nothing
    /// makes no call.
    pub async fn new(
        config: Config,
        dynamodb: aws_sdk_dynamodb::Client,
        stripe_keys: StripeKeys,
        clock: Arc<dyn Clock>,
        sells: Sells,
    ) -> Result<Self, StartupError> {
        let stripe = StripeApi::new(&config.stripe_api_base, &stripe_keys.secret_key)?;
        let prices = Self::resolve(stripe.clone(), sells).await?;
        Ok(Self::assemble(
            config,
            dynamodb,
            stripe_keys,
            stripe,
            PriceBook::resolved(prices),
            clock,
        ))
    }

    async fn resolve(stripe: StripeApi, sells: Sells) -> Result<Prices, PriceError> {
        Ok(match sells {
            Sells::Catalog => stripe.resolve_prices(&crate::catalog::sellables()).await?,
            Sells::Nothing => Prices::default(),
        })
    }

    fn assemble(
        config: Config,
        dynamodb: aws_sdk_dynamodb::Client,
        stripe_keys: StripeKeys,
        stripe: StripeApi,
        prices: PriceBook,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let store =
            Store::new(dynamodb, config.tables.clone()).with_access_grace(config.access_grace_secs);
        Self {
            auth: Authenticator::new(config.stage),
            config: Arc::new(config),
            store,
            stripe,
            stripe_keys: Arc::new(stripe_keys),
            prices,
            clock,
            limiter: Limiter::default(),
        }
    }

    /// The deployed state: configuration from the environment, AWS clients from the
    /// Lambda's environment ([`AwsEnv`]) and the Stripe keys from Secrets Manager (once per
    /// cold start); the DynamoDB client is built (CPU: the SDK parses its endpoint
    /// partitions) while the keys are fetched. The prices are not resolved yet: with the
    /// state comes their resolution, which the caller drives beside the first request
    /// (`crate::lambda`); until it ends, a handler that sells waits for it.
    pub async fn from_env(sells: Sells) -> Result<(Self, PriceResolution), StartupError> {
        let aws = AwsEnv::from_env()?;
        // Opened while the keys are fetched and the clients built: the first request makes
        // up to two calls at once (a read beside its lease).
        tokio::spawn(aws.warm_dynamodb(2));
        let config = Config::from_env()?;
        crate::metrics::init(config.stage.as_str());
        let fetch = async {
            let keys = crate::secrets::load(&config, &aws).await?;
            let stripe = StripeApi::new(&config.stripe_api_base, &keys.secret_key)?;
            Ok::<_, StartupError>((keys, stripe))
        };
        let (fetched, dynamodb) = tokio::join!(fetch, async { aws.dynamodb() });
        let (keys, stripe) = fetched?;
        let (prices, resolution) = PriceBook::resolving(Self::resolve(stripe.clone(), sells));
        let resolution: PriceResolution =
            Box::pin(async move { resolution.await.map_err(StartupError::from) });
        let state = Self::assemble(
            config,
            dynamodb,
            keys,
            stripe,
            prices,
            Arc::new(SystemClock),
        );
        Ok((state, resolution))
    }
}
