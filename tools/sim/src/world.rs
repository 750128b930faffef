//! The simulated world of one seed: the real routers of every function over one state, the
//! embedded DynamoDB engine (in memory) behind the fault interceptor, the Stripe emulator
//! holding its webhook deliveries for the simulation to deliver, and one clock for both.

use anyhow::Context;
use axum::body::Body;
use devkit::DynamoFaults;
use http::{Method, Request};
use serde_json::Value;
use shared::AppState;
use shared::clock::Clock;
use shared::config::Stage;
use shared::keys::{self, AccountId};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use stripe_emulator::{EmulatorHandle, EmulatorOptions};
use time::OffsetDateTime;
use tower::ServiceExt;

/// The app's clock: real time moved by the emulator's offset, so the API and Stripe agree on
/// "now" to the second while the API keeps sub-second order between its own reads.
#[derive(Debug, Default)]
pub struct SimClock {
    offset_secs: AtomicI64,
}

impl SimClock {
    fn set_offset(&self, secs: i64) {
        self.offset_secs.store(secs, Ordering::SeqCst);
    }
}

impl Clock for SimClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::seconds(self.offset_secs.load(Ordering::SeqCst))
    }
}

/// An API account of the simulation: its id and key.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: AccountId,
    pub key: String,
}

/// What one HTTP request to the API came back with.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Response {
        status: u16,
        body: Value,
    },
    /// The handler was dropped mid-request (a Lambda killed): the client saw no answer.
    Killed,
    /// The handler panicked.
    Panicked(String),
}

impl Answer {
    pub fn status(&self) -> Option<u16> {
        match self {
            Answer::Response { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn body(&self) -> &Value {
        match self {
            Answer::Response { body, .. } => body,
            _ => &Value::Null,
        }
    }

    pub fn short(&self) -> String {
        match self {
            Answer::Response { status, body } => {
                let code = body["error"]["code"].as_str().or(body["error"].as_str());
                match code {
                    Some(code) => format!("{status} {code}"),
                    None => status.to_string(),
                }
            }
            Answer::Killed => "killed".into(),
            Answer::Panicked(m) => format!("PANIC {m}"),
        }
    }
}

/// A request to the API.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub key: String,
    pub body: Option<Value>,
    pub idempotency_key: Option<String>,
    pub headers: Vec<(&'static str, String)>,
}

impl Call {
    pub fn new(method: Method, path: impl Into<String>, key: &str) -> Self {
        Self {
            method,
            path: path.into(),
            key: key.to_string(),
            body: None,
            idempotency_key: None,
            headers: Vec::new(),
        }
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    pub fn idempotency(mut self, key: Option<String>) -> Self {
        self.idempotency_key = key;
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn request(&self) -> anyhow::Result<Request<Body>> {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(&self.path)
            .header("authorization", format!("Bearer {}", self.key));
        if let Some(k) = &self.idempotency_key {
            builder = builder.header("idempotency-key", k);
        }
        for (name, value) in &self.headers {
            builder = builder.header(*name, value);
        }
        let body = match &self.body {
            Some(body) => {
                builder = builder.header("content-type", "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        Ok(builder.body(body)?)
    }
}

/// Drops the wrapped future at its `polls`-th poll that is not ready: a handler killed at a
/// seeded await point.
struct KillAt<F> {
    inner: Pin<Box<F>>,
    polls_left: Option<u32>,
}

impl<F: Future> Future for KillAt<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        match self.inner.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready(Some(out)),
            Poll::Pending => match &mut self.polls_left {
                Some(0) => Poll::Ready(None),
                Some(n) => {
                    *n -= 1;
                    Poll::Pending
                }
                None => Poll::Pending,
            },
        }
    }
}

pub struct World {
    pub engine: devkit::Engine,
    pub stripe: EmulatorHandle,
    pub state: AppState,
    pub router: axum::Router,
    pub dynamo: DynamoFaults,
    pub clock: Arc<SimClock>,
    pub http: reqwest::Client,
    pub accounts: Vec<Account>,
}

impl World {
    pub async fn start(accounts: usize) -> anyhow::Result<Self> {
        let engine = devkit::Engine::memory().await?;
        let stripe = stripe_emulator::start(
            tokio::net::TcpListener::bind("127.0.0.1:0").await?,
            EmulatorOptions {
                // Deliveries are held for the simulation; the URL only names the endpoint.
                webhook_url: Some(format!(
                    "http://sim.invalid{}",
                    shared::stripe::WEBHOOK_PATH
                )),
                hold_deliveries: true,
                ..EmulatorOptions::default()
            },
        )
        .await?;
        let dynamo = DynamoFaults::default();
        let clock = Arc::new(SimClock::default());
        let state = devkit::local_state(
            dynamo.local_client(&engine.endpoint),
            stripe.base_url(),
            clock.clone(),
        )
        .await?;
        let mut list = Vec::new();
        for n in 1..=accounts {
            let id = AccountId::parse(&format!("acct_sim_{n}")).map_err(anyhow::Error::msg)?;
            // Internal keys: the simulation is about money, not about rate limits.
            let (key, _) = keys::issue(
                &state.store,
                clock.as_ref(),
                &id,
                Stage::Test,
                Some(shared::catalog::INTERNAL_RATE_LIMIT),
            )
            .await?;
            list.push(Account {
                id,
                key: key.expose().to_string(),
            });
        }
        let router = local::router(state.clone());
        let world = Self {
            engine,
            stripe,
            state,
            router,
            dynamo,
            clock,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()?,
            accounts: list,
        };
        world.sync_clock();
        Ok(world)
    }

    /// Emulator (and app) time, unix seconds.
    pub fn now(&self) -> i64 {
        self.stripe.now()
    }

    fn sync_clock(&self) {
        let offset = self.stripe.now() - OffsetDateTime::now_utc().unix_timestamp();
        self.clock.set_offset(offset);
    }

    /// Moves Stripe's and the API's time forward together; Stripe runs what falls due.
    pub fn advance(&self, seconds: i64) -> anyhow::Result<()> {
        self.stripe.advance_clock(seconds)?;
        self.sync_clock();
        Ok(())
    }

    /// Sends `call` to the API's router; `kill_at` drops the handler at that pending poll.
    pub async fn send(&self, call: &Call, kill_at: Option<u32>) -> anyhow::Result<Answer> {
        let request = call.request()?;
        let router = self.router.clone();
        let task = tokio::spawn(async move {
            let Some(response) = (KillAt {
                inner: Box::pin(router.oneshot(request)),
                polls_left: kill_at,
            })
            .await
            else {
                return Ok::<_, anyhow::Error>(Answer::Killed);
            };
            let response = match response {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let status = response.status().as_u16();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
            };
            Ok(Answer::Response { status, body })
        });
        match task.await {
            Ok(answer) => answer,
            Err(e) if e.is_panic() => Ok(Answer::Panicked(format!("{e}"))),
            Err(e) => Err(e.into()),
        }
    }

    /// Delivers one webhook payload to the API's webhook route, signed at the current time.
    pub async fn deliver(&self, job: &stripe_emulator::DeliveryJob) -> anyhow::Result<Answer> {
        let signature =
            stripe_emulator::sign_webhook_payload(&job.payload, &job.secret, self.now());
        let request = Request::builder()
            .method(Method::POST)
            .uri(shared::stripe::WEBHOOK_PATH)
            .header("stripe-signature", signature)
            .header("content-type", "application/json")
            .body(Body::from(job.payload.clone()))?;
        let router = self.router.clone();
        let task = tokio::spawn(async move {
            let response = match router.oneshot(request).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            let status = response.status().as_u16();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
            Ok::<_, anyhow::Error>(Answer::Response {
                status,
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            })
        });
        match task.await {
            Ok(answer) => answer,
            Err(e) if e.is_panic() => Ok(Answer::Panicked(format!("{e}"))),
            Err(e) => Err(e.into()),
        }
    }

    /// `GET path` on the emulator's API (the query in `path`), all pages of a list.
    pub async fn stripe_list(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let mut url = format!("{}{path}{sep}limit=100", self.stripe.base_url());
            if let Some(a) = &after {
                url.push_str(&format!("&starting_after={a}"));
            }
            let page: Value = self
                .http
                .get(&url)
                .bearer_auth(shared::secrets::LOCAL_SECRET_KEY)
                .send()
                .await?
                .json()
                .await
                .with_context(|| format!("listing {path}"))?;
            let data = page["data"].as_array().cloned().unwrap_or_default();
            after = data
                .last()
                .and_then(|v| v["id"].as_str())
                .map(str::to_string);
            out.extend(data);
            if page["has_more"] != Value::Bool(true) || after.is_none() {
                return Ok(out);
            }
        }
    }

    /// A form `POST` to an emulator page or control route; the status and body text.
    pub async fn emulator_post(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> anyhow::Result<(u16, String)> {
        let url = if url.starts_with("http") {
            url.to_string()
        } else {
            format!("{}{url}", self.stripe.base_url())
        };
        let response = self.http.post(&url).form(form).send().await?;
        Ok((response.status().as_u16(), response.text().await?))
    }

    /// Arms one emulator fault (see the emulator's `/_emulator/faults`).
    pub async fn arm_stripe_fault(&self, params: &[(&str, &str)]) -> anyhow::Result<()> {
        let (status, body) = self.emulator_post("/_emulator/faults", params).await?;
        anyhow::ensure!(status == 200, "arming {params:?}: {status} {body}");
        Ok(())
    }

    /// How many armed emulator faults have yet to fire.
    pub async fn stripe_faults_remaining(&self) -> anyhow::Result<u32> {
        let url = format!("{}/_emulator/faults", self.stripe.base_url());
        let listed: Value = self.http.get(&url).send().await?.json().await?;
        Ok(listed["data"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| u32::try_from(f["remaining"].as_u64().unwrap_or(0)).unwrap_or(u32::MAX))
            .sum())
    }

    /// Disarms every emulator fault.
    pub async fn clear_stripe_faults(&self) -> anyhow::Result<()> {
        let url = format!("{}/_emulator/faults", self.stripe.base_url());
        self.http.delete(&url).send().await?.error_for_status()?;
        Ok(())
    }

    /// One Stripe subscription as the emulator has it.
    pub async fn stripe_subscription(&self, id: &str) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!("{}/v1/subscriptions/{id}", self.stripe.base_url()))
            .bearer_auth(shared::secrets::LOCAL_SECRET_KEY)
            .send()
            .await?
            .json()
            .await?)
    }

    /// Every item of a DynamoDB table (a scan outside the fault seam).
    pub async fn scan(
        &self,
        table: shared::tables::Table,
    ) -> anyhow::Result<
        Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>,
    > {
        let client = self.engine.client();
        let name = self.state.store.tables().get(table).to_string();
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = client
                .scan()
                .table_name(&name)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(items);
            }
        }
    }
}
