//! A stateful local Stripe: the subset of Stripe's API the Billing API uses, hosted Checkout
//! and billing portal pages, signed webhooks and a controllable clock.

#![recursion_limit = "256"]

mod api;
mod catalog;
mod checkout;
mod clock;
mod customers;
mod faults;
mod invoices;
mod pages;
mod portal;
mod store;
mod subscriptions;
mod webhooks;
mod wire;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use store::DeliveryJob;
pub use webhooks::{DeliveryAttempt, sign as sign_webhook_payload};

/// The API version the emulator speaks (the one async-stripe 1.0.0-rc.10 pins).
pub const API_VERSION: &str = "2026-09-30.endive";

/// The webhook secret used when none is configured.
/// The local stack's webhook secret, so the API and the emulator agree out of the box.
pub const DEFAULT_WEBHOOK_SECRET: &str = shared::secrets::LOCAL_WEBHOOK_SECRET;

#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// An endpoint that receives every event (like `stripe listen --forward-to`).
    pub webhook_url: Option<String>,
    /// The `whsec_…` secret the `webhook_url` endpoint's signatures use.
    pub webhook_secret: String,
    /// Delay before the first retry of a failed delivery; doubles for each further attempt.
    pub retry_base: Duration,
    /// Attempts per delivery, the first included.
    pub max_attempts: u32,
    /// How long one delivery attempt may take.
    pub attempt_timeout: Duration,
    /// The URL the emulator's pages are reached at, when not `http://<listener address>`.
    pub public_url: Option<String>,
    /// Keep every delivery for [`EmulatorHandle::take_held_deliveries`] instead of sending
    /// it: the caller becomes the delivery network (the simulation drops, duplicates,
    /// reorders and delays them).
    pub hold_deliveries: bool,
    /// Create the catalog's products and prices (and configure the portal) at start, with
    /// the sync `admin stripe-sync` runs against a real account. Off: an empty account, as
    /// a new Stripe account is.
    pub seed_catalog: bool,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        Self {
            webhook_url: None,
            webhook_secret: DEFAULT_WEBHOOK_SECRET.to_owned(),
            retry_base: Duration::from_secs(2),
            max_attempts: 5,
            attempt_timeout: Duration::from_secs(10),
            public_url: None,
            hold_deliveries: false,
            seed_catalog: true,
        }
    }
}

#[derive(Clone)]
pub(crate) struct App {
    pub state: Arc<Mutex<store::State>>,
    pub deliveries: webhooks::DeliveryLog,
    pub faults: faults::Faults,
}

impl App {
    /// Runs `f` with the state locked. A panic while locked cannot leave the emulator dead:
    /// the poisoned lock is taken over.
    pub fn with<R>(&self, f: impl FnOnce(&mut store::State) -> R) -> R {
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }
}

/// A running emulator.
pub struct EmulatorHandle {
    app: App,
    addr: SocketAddr,
    base_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    held: Option<Mutex<UnboundedReceiver<DeliveryJob>>>,
}

/// Reads the emulator's clock (cloneable, for a clock of the caller's that must agree).
#[derive(Clone)]
pub struct EmulatorClock(App);

impl EmulatorClock {
    /// Emulator time in unix seconds.
    pub fn now(&self) -> i64 {
        self.0.with(|s| s.now())
    }
}

impl std::fmt::Debug for EmulatorClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("EmulatorClock").field(&self.now()).finish()
    }
}

impl EmulatorHandle {
    /// A reader of emulator time.
    pub fn clock(&self) -> EmulatorClock {
        EmulatorClock(self.app.clone())
    }

    /// The deliveries queued since the last call, in the order their events happened (only
    /// with [`EmulatorOptions::hold_deliveries`]; empty otherwise).
    pub fn take_held_deliveries(&self) -> Vec<DeliveryJob> {
        let Some(held) = &self.held else {
            return Vec::new();
        };
        let mut rx = held.lock().unwrap_or_else(|p| p.into_inner());
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    /// `http://127.0.0.1:<port>`: the API base for `stripe::ClientBuilder::url`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Emulator time in unix seconds.
    pub fn now(&self) -> i64 {
        self.app.with(|s| s.now())
    }

    /// Moves emulator time forward, running renewals, retries and expiries that fall due.
    pub fn advance_clock(&self, seconds: i64) -> anyhow::Result<i64> {
        self.app.with(|s| {
            let target = s.now().saturating_add(seconds.max(0));
            clock::advance_to(s, target).map_err(|e| anyhow::anyhow!(e.message))?;
            Ok(s.now())
        })
    }

    /// Every webhook delivery attempt so far, oldest first.
    pub fn deliveries(&self) -> Vec<DeliveryAttempt> {
        self.app
            .deliveries
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// Adds a webhook endpoint receiving every event; returns its id.
    pub fn add_webhook_endpoint(&self, url: &str, secret: &str) -> String {
        self.app.with(|s| {
            webhooks::add_endpoint(s, url.to_owned(), secret.to_owned(), vec!["*".into()], None)["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
    }

    /// Stops serving and waits for in-flight requests to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Serves the emulator on `listener` until the handle is shut down or dropped.
pub async fn start(
    listener: tokio::net::TcpListener,
    options: EmulatorOptions,
) -> anyhow::Result<EmulatorHandle> {
    let addr = listener.local_addr()?;
    let base_url = match &options.public_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None if addr.ip().is_unspecified() => format!("http://127.0.0.1:{}", addr.port()),
        None => format!("http://{addr}"),
    };
    let log: webhooks::DeliveryLog = Arc::new(Mutex::new(Vec::new()));
    let (tx, held) = if options.hold_deliveries {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (tx, Some(Mutex::new(rx)))
    } else {
        let tx = webhooks::spawn_dispatcher(
            webhooks::DeliveryConfig {
                retry_base: options.retry_base,
                max_attempts: options.max_attempts.max(1),
                timeout: options.attempt_timeout,
            },
            log.clone(),
        );
        (tx, None)
    };
    let mut state = store::State::new(base_url.clone(), tx);
    catalog::seed_portal(&mut state);
    if let Some(url) = &options.webhook_url {
        webhooks::add_endpoint(
            &mut state,
            url.clone(),
            options.webhook_secret.clone(),
            vec!["*".into()],
            Some("Configured at startup".into()),
        );
    }
    let app = App {
        state: Arc::new(Mutex::new(state)),
        deliveries: log,
        faults: Arc::new(Mutex::new(Vec::new())),
    };
    let router = api::router(app.clone());
    let (stx, srx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, router, srx));
    let handle = EmulatorHandle {
        app,
        addr,
        base_url,
        shutdown: Some(stx),
        task: Some(task),
        held,
    };
    if options.seed_catalog {
        let own = if addr.ip().is_unspecified() {
            format!("http://127.0.0.1:{}", addr.port())
        } else {
            format!("http://{addr}")
        };
        let api = shared::stripe::StripeApi::new(&own, "sk_test_emulator_seed")?;
        shared::stripe::prices::sync(&api, &shared::catalog::sellables(), false).await?;
    }
    Ok(handle)
}

/// Serves `router` on `listener` until `shutdown`, one HTTP/1.1 connection per task. Unlike
/// `axum::serve`, a response marked [`faults::LoseResponse`] is never sent: its connection is
/// closed unanswered (the request has taken effect; the caller sees no answer).
async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    mut shutdown: oneshot::Receiver<()>,
) {
    use tower::ServiceExt;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "stripe emulator: accept failed");
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let router = router.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let router = router.clone();
                    async move {
                        let response =
                            match router.oneshot(request.map(axum::body::Body::new)).await {
                                Ok(response) => response,
                                Err(never) => match never {},
                            };
                        if response
                            .extensions()
                            .get::<faults::LoseResponse>()
                            .is_some()
                        {
                            return Err(LostResponse);
                        }
                        Ok(response)
                    }
                },
            );
            let io = hyper_util::rt::TokioIo::new(stream);
            // An error here is a closed or lost connection: nothing to report.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

/// Why a connection was closed on purpose (a `when=after` fault).
#[derive(Debug)]
struct LostResponse;

impl std::fmt::Display for LostResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("response lost on purpose (emulator fault)")
    }
}

impl std::error::Error for LostResponse {}
