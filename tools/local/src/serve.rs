//! The local stack: the embedded DynamoDB engine on its own port (so any DynamoDB tool can
//! look inside), tables bootstrapped, the development key, the Stripe emulator with its
//! webhooks aimed at the API, and every function's routes on one HTTP port. DynamoDB state
//! lives in a SQLite file under the stack's directory; the emulator's state is in memory.

use crate::devkey;
use anyhow::Context;
use devkit::Engine;
use shared::clock::SystemClock;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use stripe_emulator::{EmulatorHandle, EmulatorOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const DB_FILE: &str = "dynamodb.sqlite";
/// Where the Stripe emulator listens inside the local stack.
pub const STRIPE_API_BASE: &str = "http://127.0.0.1:12111";
pub use shared::stripe::WEBHOOK_PATH;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub dir: PathBuf,
    pub api_addr: SocketAddr,
    pub dynamodb_addr: SocketAddr,
    pub stripe_addr: SocketAddr,
    /// The emulator's webhook delivery schedule (first retry after this, doubling).
    pub webhook_retry_base: Duration,
    pub webhook_max_attempts: u32,
    /// When set, the API's DynamoDB client counts its calls here (`make bench`, the
    /// call-count tests); the engine itself is unchanged.
    pub dynamodb_calls: Option<devkit::CallCounter>,
}

impl ServeOptions {
    /// The stack `make dev` runs: the fixed local ports, state in `dir`.
    pub fn local(dir: PathBuf, api_port: u16, dynamodb_port: u16, stripe_port: u16) -> Self {
        let at = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        Self {
            dir,
            api_addr: at(api_port),
            dynamodb_addr: at(dynamodb_port),
            stripe_addr: at(stripe_port),
            webhook_retry_base: Duration::from_secs(2),
            webhook_max_attempts: 5,
            dynamodb_calls: None,
        }
    }
}

pub struct Stack {
    pub api_url: String,
    pub dynamodb_endpoint: String,
    pub api_key: shared::keys::ApiKey,
    pub stripe: EmulatorHandle,
    engine: Engine,
    api_shutdown: oneshot::Sender<()>,
    api_task: JoinHandle<std::io::Result<()>>,
}

impl Stack {
    pub async fn start(options: &ServeOptions) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&options.dir)
            .with_context(|| format!("creating {}", options.dir.display()))?;
        let engine = Engine::file(&options.dir.join(DB_FILE), options.dynamodb_addr).await?;
        // Bind both HTTP ports first: the API needs the emulator's URL and the emulator the API's.
        let listener = tokio::net::TcpListener::bind(options.api_addr)
            .await
            .with_context(|| {
                format!(
                    "binding the API to {} (set PORT to use another)",
                    options.api_addr
                )
            })?;
        let api_url = format!("http://{}", listener.local_addr()?);
        let stripe_listener = tokio::net::TcpListener::bind(options.stripe_addr)
            .await
            .with_context(|| {
                format!(
                    "binding the Stripe emulator to {} (set STRIPE_PORT to use another)",
                    options.stripe_addr
                )
            })?;
        let stripe = stripe_emulator::start(
            stripe_listener,
            EmulatorOptions {
                webhook_url: Some(format!("{api_url}{WEBHOOK_PATH}")),
                retry_base: options.webhook_retry_base,
                max_attempts: options.webhook_max_attempts,
                ..EmulatorOptions::default()
            },
        )
        .await?;
        let client = match &options.dynamodb_calls {
            Some(counter) => counter.local_client(&engine.endpoint),
            None => engine.client(),
        };
        let state = devkit::local_state(client, stripe.base_url(), Arc::new(SystemClock)).await?;
        let api_key = devkey::ensure(&state.store, state.clock.as_ref(), &options.dir).await?;
        let (api_shutdown, rx) = oneshot::channel::<()>();
        let app = crate::router(state);
        let api_task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
        });
        Ok(Self {
            api_url,
            dynamodb_endpoint: engine.endpoint.clone(),
            api_key,
            stripe,
            engine,
            api_shutdown,
            api_task,
        })
    }

    /// Stops the API, the emulator, then the engine, letting requests in flight finish.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.api_shutdown.send(());
        self.api_task.await??;
        self.stripe.shutdown().await;
        self.engine.stop().await
    }
}
