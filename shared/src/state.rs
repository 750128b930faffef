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

/// What a function does with Stripe, and so what its start fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StripeUse {
    /// It sells the catalog (checkouts, upgrades, the tiers' price ids): Stripe's keys, and
    /// the catalog's prices resolved.
    Sells,
    /// It calls Stripe or checks Stripe's signatures and sells nothing (the webhook, the
    /// reconciler): Stripe's keys. It reads a subscription's plan from its price's catalog
    /// key, never a price id.
    Calls,
    /// It never speaks to Stripe (metering): no secret is read, and its Stripe client holds
    /// no key ([`StripeApi::keyless`]).
    Never,
}

#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub auth: Authenticator,
    pub stripe: StripeApi,
    /// None in a function that never speaks to Stripe ([`StripeUse::Never`]).
    pub stripe_keys: Option<Arc<StripeKeys>>,
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
    /// The state, with the prices of what this function sells resolved: one Stripe call,
    /// which fails naming every lookup key the account lacks (so a function without a price
    /// never starts, rather than answering 500 per purchase). A function that sells nothing
    /// makes no call.
    pub async fn new(
        config: Config,
        dynamodb: aws_sdk_dynamodb::Client,
        stripe_keys: StripeKeys,
        clock: Arc<dyn Clock>,
        uses: StripeUse,
    ) -> Result<Self, StartupError> {
        let stripe = StripeApi::new(&config.stripe_api_base, &stripe_keys.secret_key)?;
        let prices = Self::resolve(stripe.clone(), uses).await?;
        Ok(Self::assemble(
            config,
            dynamodb,
            Some(stripe_keys),
            stripe,
            PriceBook::resolved(prices),
            clock,
        ))
    }

    async fn resolve(stripe: StripeApi, uses: StripeUse) -> Result<Prices, PriceError> {
        Ok(match uses {
            StripeUse::Sells => stripe.resolve_prices(&crate::catalog::sellables()).await?,
            StripeUse::Calls | StripeUse::Never => Prices::default(),
        })
    }

    fn assemble(
        config: Config,
        dynamodb: aws_sdk_dynamodb::Client,
        stripe_keys: Option<StripeKeys>,
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
            stripe_keys: stripe_keys.map(Arc::new),
            prices,
            clock,
            limiter: Limiter::default(),
        }
    }

    /// The deployed state: configuration from the environment and AWS clients from the
    /// Lambda's environment ([`AwsEnv`]); see [`AppState::start`].
    pub async fn from_env(uses: StripeUse) -> Result<(Self, PriceResolution), StartupError> {
        let aws = AwsEnv::from_env()?;
        let config = Config::from_env()?;
        crate::metrics::init(config.stage.as_str());
        Self::start(uses, config, aws).await
    }

    /// A cold start's state: the Stripe keys from Secrets Manager (once per cold start) if
    /// the function `uses` Stripe at all; the DynamoDB client built (CPU: the SDK parses its
    /// endpoint partitions) and its connections opened meanwhile. The prices are not
    /// resolved yet: with the state comes their resolution, which the caller drives beside
    /// the first request (`crate::lambda`); until it ends, a handler that sells waits for it.
    pub async fn start(
        uses: StripeUse,
        config: Config,
        aws: AwsEnv,
    ) -> Result<(Self, PriceResolution), StartupError> {
        // Opened while the keys are fetched and the clients built: the first request makes
        // up to two calls at once (a read beside its lease).
        tokio::spawn(aws.warm_dynamodb(2));
        let fetch = async {
            if uses == StripeUse::Never {
                return Ok((None, StripeApi::keyless()));
            }
            let keys = crate::secrets::load(&config, &aws).await?;
            let stripe = StripeApi::new(&config.stripe_api_base, &keys.secret_key)?;
            Ok::<_, StartupError>((Some(keys), stripe))
        };
        let (fetched, dynamodb) = tokio::join!(fetch, async { aws.dynamodb() });
        let (keys, stripe) = fetched?;
        let (prices, resolution) = PriceBook::resolving(Self::resolve(stripe.clone(), uses));
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
