//! The local stack: the embedded DynamoDB engine on its own port (so any DynamoDB tool can
//! look inside), tables bootstrapped, the development key, and every function's routes on
//! one HTTP port. State lives in a SQLite file under the stack's directory.

use crate::devkey;
use anyhow::Context;
use devkit::Engine;
use shared::clock::SystemClock;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const DB_FILE: &str = "dynamodb.sqlite";
/// Where the Stripe emulator listens inside the local stack.
pub const STRIPE_API_BASE: &str = "http://127.0.0.1:12111";

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub dir: PathBuf,
    pub api_addr: SocketAddr,
    pub dynamodb_addr: SocketAddr,
}

pub struct Stack {
    pub api_url: String,
    pub dynamodb_endpoint: String,
    pub api_key: shared::keys::ApiKey,
    engine: Engine,
    api_shutdown: oneshot::Sender<()>,
    api_task: JoinHandle<std::io::Result<()>>,
}

impl Stack {
    pub async fn start(options: &ServeOptions) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&options.dir)
            .with_context(|| format!("creating {}", options.dir.display()))?;
        let engine = Engine::file(&options.dir.join(DB_FILE), options.dynamodb_addr).await?;
        let state =
            devkit::local_state(engine.client(), STRIPE_API_BASE, Arc::new(SystemClock)).await?;
        let api_key = devkey::ensure(&state.store, state.clock.as_ref(), &options.dir).await?;
        let listener = tokio::net::TcpListener::bind(options.api_addr)
            .await
            .with_context(|| {
                format!(
                    "binding the API to {} (set PORT to use another)",
                    options.api_addr
                )
            })?;
        let api_url = format!("http://{}", listener.local_addr()?);
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
            engine,
            api_shutdown,
            api_task,
        })
    }

    /// Stops the API, then the engine, letting requests in flight finish.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.api_shutdown.send(());
        self.api_task.await??;
        self.engine.stop().await
    }
}
