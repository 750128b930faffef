//! The embedded DynamoDB-compatible engine (dynoxide) served over HTTP, and a spawned API
//! on a random port: what `make dev` and every integration test run against.

pub mod calls;
pub mod faults;
pub mod ministack;
pub mod runtime_api;
use anyhow::Context;
pub use calls::{CallCounter, CallLog};
pub use faults::DynamoFaults;
use shared::AppState;
use shared::clock::{Clock, SystemClock};
use shared::config::{Config, Stage};
use shared::keys::{self, AccountId};
use shared::secrets::StripeKeys;
use shared::state::StripeUse;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use stripe_emulator::{EmulatorHandle, EmulatorOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A dynoxide engine serving the DynamoDB protocol on a local port.
pub struct Engine {
    pub endpoint: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), String>>,
}

impl Engine {
    /// A fresh in-memory database on a random port: one per test.
    pub async fn memory() -> anyhow::Result<Self> {
        let db = dynoxide::Database::memory().context("opening an in-memory database")?;
        Self::serve(db, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// A database kept in the SQLite file at `path`, served on `addr`.
    ///
    /// Its commits are durable across a crash of this process, not of the machine: dynoxide
    /// keeps the file in WAL mode, and this sets `synchronous = NORMAL`, which SQLite
    /// recommends for WAL (a commit is written to the log without an fsync; the log is synced
    /// at checkpoints). With SQLite's default (FULL) every commit waited for an fsync (about
    /// 1 ms on these machines) while holding the engine's one connection, so every read of
    /// any item queued behind a write's disk flush, which DynamoDB never does. The local
    /// data is a development copy; losing the last commits to a power cut is acceptable.
    pub async fn file(path: &Path, addr: SocketAddr) -> anyhow::Result<Self> {
        let path_str = path.to_str().context("database path is not UTF-8")?;
        let db = dynoxide::Database::new(path_str)
            .with_context(|| format!("opening {}", path.display()))?;
        // dynoxide's one handle on the pragmas: it sets `synchronous = NORMAL` and puts
        // cache_size, temp_store and mmap_size back to SQLite's defaults, which it never
        // changed (there was no bulk loading to end).
        db.disable_bulk_loading()
            .context("setting the engine's commits to synchronous = NORMAL")?;
        Self::serve(db, addr).await
    }

    async fn serve(db: dynoxide::Database, addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the DynamoDB engine to {addr}"))?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(dynoxide::server::serve_with_shutdown(listener, db, async {
            let _ = rx.await;
        }));
        Ok(Self {
            endpoint,
            shutdown: Some(tx),
            task,
        })
    }

    /// Stops accepting requests, lets running ones finish, and closes the database.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await?.map_err(anyhow::Error::msg)
    }

    pub fn client(&self) -> aws_sdk_dynamodb::Client {
        shared::store::local_client(&self.endpoint)
    }
}

/// A client for the engine at `endpoint` (as [`shared::store::local_client`]) whose calls go
/// through `interceptor` (a [`CallCounter`], [`DynamoFaults`]).
pub fn intercepted_client(
    endpoint: &str,
    interceptor: impl aws_sdk_dynamodb::config::Intercept + 'static,
) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        shared::store::local_config(endpoint)
            .interceptor(interceptor)
            .build(),
    )
}

/// Stores `tier` as the plan of `account`'s `subject` (`self`: the account's own), active
/// and in its first hour, as a Stripe read would: for tests and benches that need a plan
/// without a Checkout.
pub async fn store_plan(
    store: &shared::store::Store,
    account: &str,
    subject: &str,
    tier: shared::catalog::Tier,
    now: i64,
) -> anyhow::Result<()> {
    let snapshot = shared::stripe::SubscriptionSnapshot {
        id: format!("sub_{account}_{}", tier.as_str()),
        customer_id: format!("cus_{account}"),
        status: shared::subscriptions::SubscriptionStatus::Active,
        tier: Some(tier),
        item_id: None,
        // Made up, like the subscription: no Stripe object stands behind this plan.
        price_id: tier.info().lookup_key.map(|k| format!("price_{k}")),
        current_period_start: Some(now - 3600),
        current_period_end: Some(now + 30 * 86_400),
        cancel_at_period_end: false,
        created: now - 3600,
        metadata: std::collections::HashMap::new(),
        default_payment_method: None,
    };
    let synced = shared::store::SyncedState {
        snapshot: &snapshot,
        synced_at_ms: now * 1000,
        payment_error: None,
    };
    store
        .sync_subscription(account, subject, &synced)
        .await?
        .context("the plan was not written")?;
    Ok(())
}

/// The Stripe keys of the local stack: any test key works with the emulator, and the
/// webhook secret is the emulator's.
pub fn local_stripe_keys() -> StripeKeys {
    StripeKeys {
        secret_key: shared::secrets::LOCAL_SECRET_KEY.to_string(),
        webhook_secret: shared::secrets::LOCAL_WEBHOOK_SECRET.to_string(),
    }
}

/// The tables of a local (test-stage) API over `client`, created: for tests of the store
/// alone (no Stripe, no started state).
pub async fn local_store(client: aws_sdk_dynamodb::Client) -> anyhow::Result<shared::store::Store> {
    let config = Config::local("http://127.0.0.1:9");
    shared::tables::bootstrap(&client, &config.tables).await?;
    Ok(shared::store::Store::new(client, config.tables))
}

/// A started local state over `client` whose Stripe is an emulator of its own (seeded by
/// the sync, as every local Stripe is): for tests that need the state of a started
/// function but make no Stripe call. Keep the handle: the emulator stops with it.
pub async fn state_with_emulator(
    client: aws_sdk_dynamodb::Client,
) -> anyhow::Result<(AppState, EmulatorHandle)> {
    let stripe = stripe_emulator::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        EmulatorOptions::default(),
    )
    .await?;
    let state = local_state(client, stripe.base_url(), Arc::new(SystemClock)).await?;
    Ok((state, stripe))
}

/// The state of a local (test-stage) API over `client`, with its tables created.
pub async fn local_state(
    client: aws_sdk_dynamodb::Client,
    stripe_api_base: &str,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<AppState> {
    let config = Config::local(stripe_api_base);
    shared::tables::bootstrap(&client, &config.tables).await?;
    Ok(AppState::new(config, client, local_stripe_keys(), clock, StripeUse::Sells).await?)
}

use shared::stripe::WEBHOOK_PATH;

/// An API on a random port over its own in-memory database and its own Stripe emulator
/// (delivering webhooks to the API's webhook route), with one account and key.
pub struct TestApp {
    pub address: String,
    pub account: AccountId,
    pub api_key: String,
    pub state: AppState,
    pub http: reqwest::Client,
    pub engine: Engine,
    pub stripe: EmulatorHandle,
    /// Fails chosen DynamoDB calls of the app on purpose (unarmed: none).
    pub dynamodb_faults: DynamoFaults,
}

impl TestApp {
    pub async fn spawn(router: fn(AppState) -> axum::Router) -> Self {
        Self::spawn_with(router).await
    }

    /// As [`TestApp::spawn`], for a router built by a closure (e.g. one capturing test state).
    pub async fn spawn_with(router: impl FnOnce(AppState) -> axum::Router) -> Self {
        Self::spawn_with_clock(Arc::new(SystemClock), router).await
    }

    /// As [`TestApp::spawn_with`], with the given clock in the app's state.
    pub async fn spawn_with_clock(
        clock: Arc<dyn Clock>,
        router: impl FnOnce(AppState) -> axum::Router,
    ) -> Self {
        Self::try_spawn(clock, router)
            .await
            .expect("spawning the test app")
    }

    async fn try_spawn(
        clock: Arc<dyn Clock>,
        router: impl FnOnce(AppState) -> axum::Router,
    ) -> anyhow::Result<Self> {
        let engine = Engine::memory().await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = format!("http://{}", listener.local_addr()?);
        let stripe = stripe_emulator::start(
            tokio::net::TcpListener::bind("127.0.0.1:0").await?,
            EmulatorOptions {
                webhook_url: Some(format!("{address}{WEBHOOK_PATH}")),
                retry_base: Duration::from_millis(50),
                max_attempts: 6,
                ..EmulatorOptions::default()
            },
        )
        .await?;
        let dynamodb_faults = DynamoFaults::default();
        let client = dynamodb_faults.local_client(&engine.endpoint);
        let state = local_state(client, stripe.base_url(), clock).await?;
        let account = AccountId::parse("acct_test_1").map_err(anyhow::Error::msg)?;
        // The tests' key is an internal one (its own, generous limit): tests of the plans'
        // limits issue keys of their own (`issue_key`).
        let (key, _) = keys::issue(
            &state.store,
            state.clock.as_ref(),
            &account,
            Stage::Test,
            Some(shared::catalog::INTERNAL_RATE_LIMIT),
        )
        .await?;
        let app = router(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self {
            address,
            account,
            api_key: key.expose().to_string(),
            state,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            engine,
            stripe,
            dynamodb_faults,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// `GET path` with this app's key.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.get_with(path, Some(&self.api_key)).await
    }

    /// `GET path` with the given key, or none.
    pub async fn get_with(&self, path: &str, key: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(self.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send().await.expect("request reaches the test app")
    }

    /// `method path` with this app's key and, when given, a JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> reqwest::Response {
        self.send_as(&self.api_key, method, path, body).await
    }

    /// `method path` with the given key and, when given, a JSON body.
    pub async fn send_as(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> reqwest::Response {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request reaches the test app")
    }

    /// Every event the emulator has emitted, newest first (up to 100).
    pub async fn stripe_events(&self) -> Vec<serde_json::Value> {
        let list: serde_json::Value = self
            .http
            .get(format!("{}/v1/events?limit=100", self.stripe.base_url()))
            .bearer_auth("sk_test_local")
            .send()
            .await
            .expect("the emulator answers")
            .json()
            .await
            .expect("a JSON list");
        list["data"].as_array().cloned().unwrap_or_default()
    }

    /// The webhook signing secret the app checks events against.
    pub fn webhook_secret(&self) -> &str {
        self.state
            .stripe_keys
            .as_deref()
            .map(|k| k.webhook_secret.as_str())
            .expect("a test app is built with Stripe's keys")
    }

    /// Delivers `event` to the API's webhook route as Stripe would: signed (by async-stripe's
    /// own signer) with the app's webhook secret, at the app's clock time.
    pub async fn deliver_event(&self, event: &serde_json::Value) -> reqwest::Response {
        let payload = event.to_string();
        let now = self.state.clock.now().unix_timestamp();
        let signature = stripe_webhook::Webhook::generate_test_header(
            &payload,
            self.webhook_secret(),
            Some(now),
        );
        self.http
            .post(self.url(WEBHOOK_PATH))
            .header("stripe-signature", signature)
            .header("content-type", "application/json")
            .body(payload)
            .send()
            .await
            .expect("request reaches the test app")
    }

    /// Deletes the Idempotency table's records whose key starts with `pk_prefix` (`evt#` for
    /// processed Stripe events, `""` for all): what a lost dedupe record looks like.
    pub async fn forget_idempotency_records(&self, pk_prefix: &str) -> usize {
        let table = self
            .state
            .store
            .tables()
            .get(shared::tables::Table::Idempotency)
            .to_string();
        let client = self.state.store.client();
        let items = client
            .scan()
            .table_name(&table)
            .send()
            .await
            .expect("scan")
            .items
            .unwrap_or_default();
        let mut deleted = 0;
        for item in items {
            let Some(pk) = item
                .get("pk")
                .filter(|v| v.as_s().is_ok_and(|pk| pk.starts_with(pk_prefix)))
            else {
                continue;
            };
            client
                .delete_item()
                .table_name(&table)
                .key("pk", pk.clone())
                .send()
                .await
                .expect("delete");
            deleted += 1;
        }
        deleted
    }

    /// `method path` on the Stripe emulator with the local secret key; form parameters
    /// (the query for a GET). The status and the JSON answer.
    pub async fn stripe_call(
        &self,
        method: reqwest::Method,
        path: &str,
        params: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        let url = format!("{}{path}", self.stripe.base_url());
        let request = if method == reqwest::Method::GET {
            let url = reqwest::Url::parse_with_params(&url, params).expect("a valid URL");
            self.http.get(url)
        } else {
            self.http.request(method, url).form(params)
        };
        let response = request
            .bearer_auth(shared::secrets::LOCAL_SECRET_KEY)
            .send()
            .await
            .expect("the emulator answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    /// Turns the emulator's webhook deliveries to this app off (events emitted meanwhile are
    /// never delivered: a lost webhook) or back on.
    pub async fn set_webhooks(&self, enabled: bool) {
        let (_, list) = self
            .stripe_call(reqwest::Method::GET, "/v1/webhook_endpoints", &[])
            .await;
        for endpoint in list["data"].as_array().into_iter().flatten() {
            let id = endpoint["id"].as_str().unwrap_or_default();
            let disabled = if enabled { "false" } else { "true" };
            let (status, body) = self
                .stripe_call(
                    reqwest::Method::POST,
                    &format!("/v1/webhook_endpoints/{id}"),
                    &[("disabled", disabled)],
                )
                .await;
            assert_eq!(status, 200, "{body}");
        }
    }

    /// Waits until every event the emulator has emitted so far was delivered to the app:
    /// a test that then turns webhooks off knows no earlier delivery is still on its way.
    pub async fn settle_webhooks(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let delivered: std::collections::HashSet<String> = self
                .stripe
                .deliveries()
                .into_iter()
                .filter(|d| d.succeeded)
                .map(|d| d.event_id)
                .collect();
            let events = self.stripe_events().await;
            if events
                .iter()
                .all(|e| e["id"].as_str().is_some_and(|id| delivered.contains(id)))
            {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "webhook deliveries did not settle"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Arms an emulator fault (`/_emulator/faults`: `method`, `path_prefix`, `when`,
    /// `count`, `status`).
    pub async fn stripe_fault(&self, params: &[(&str, &str)]) {
        let response = self
            .http
            .post(format!("{}/_emulator/faults", self.stripe.base_url()))
            .form(params)
            .send()
            .await
            .expect("the emulator answers");
        assert_eq!(response.status(), 200, "arming {params:?}");
    }

    /// Pays a Checkout Session on the emulator's page with the card that succeeds.
    pub async fn pay(&self, checkout_url: &str) {
        let paid = self
            .http
            .post(checkout_url)
            .form(&[("card_number", "4242 4242 4242 4242")])
            .send()
            .await
            .expect("the emulator's page answers");
        assert_eq!(paid.status(), 303, "paying {checkout_url}");
    }

    /// Issues another key, for another account or mode, limited by its account's plan.
    pub async fn issue_key(&self, account: &str, mode: Stage) -> String {
        let account = AccountId::parse(account).expect("valid account id");
        let (key, _) = keys::issue(
            &self.state.store,
            self.state.clock.as_ref(),
            &account,
            mode,
            None,
        )
        .await
        .expect("issuing a key");
        key.expose().to_string()
    }
}
