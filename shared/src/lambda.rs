//! The Lambda entry point every function's `main` calls.

use crate::state::{AppState, StripeUse};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Initialises logging, builds the state once per cold start and serves `router`'s routes
/// to API Gateway events until the runtime stops.
///
/// The start runs beside the runtime's first poll for an event rather than before it, in
/// two parts: the state (the AWS and Stripe clients), which the first event waits for, and
/// the prices' resolution from Stripe, which runs beside the first event's handler if that
/// is a read (a read that sells waits for the prices) and which the first answer waits for;
/// a write waits for both before it runs ([`Started`]). A cold
/// start pays the longest of the three instead of their sum. A start that fails, either
/// part, ends the process with its error before any answer, as it did before any event.
pub async fn run(
    router: fn(AppState) -> axum::Router,
    uses: StripeUse,
) -> Result<(), lambda_http::Error> {
    crate::telemetry::init();
    let start = async move {
        // The runtime's first poll only opens its connection: these yields let it send its
        // request for an event before the start's CPU work, which then runs while the event
        // is on its way. A yield resumes once the I/O driver has run, and the request takes
        // a few hops (connected, handshaken, written), each a turn of the driver.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        let (state, prices) = AppState::from_env(uses).await?;
        Ok::<_, crate::state::StartupError>((router(state), prices))
    };
    serve_once_started(start, lambda_http::run).await
}

/// Runs `start` beside `serve`, which is given the router `start` builds ([`Started`]).
/// `start` gives the router and the rest of its work (`rest`): reads run once the router
/// exists and writes once `rest` has ended; every answer waits for `rest`. Returns `start`'s or `rest`'s error if either
/// fails (no answer has gone out then), else whatever `serve` returns.
pub async fn serve_once_started<E, R, S>(
    start: impl Future<Output = Result<(axum::Router, R), E>>,
    serve: impl FnOnce(Started) -> S,
) -> Result<(), lambda_http::Error>
where
    E: Into<lambda_http::Error>,
    R: Future<Output = Result<(), E>>,
    S: Future<Output = Result<(), lambda_http::Error>>,
{
    let (phase, started) = tokio::sync::watch::channel(Phase::Starting);
    let start = async move {
        let (router, rest) = start.await.map_err(Into::into)?;
        phase.send_replace(Phase::Routed(router.clone()));
        rest.await.map_err(Into::into)?;
        // Kept open while the process serves: the router stays readable.
        phase.send_replace(Phase::Started(router));
        std::future::pending::<Result<(), lambda_http::Error>>().await
    };
    tokio::select! {
        // The runtime first: its poll for an event is on the wire while the start works.
        biased;
        served = serve(Started(started)) => served,
        failed = start => {
            if let Err(e) = &failed {
                // The process's exit prints the error's structure; the log says what it means.
                tracing::error!(error = %e, "the function could not start");
            }
            failed
        }
    }
}

/// How far the start is.
#[derive(Clone)]
enum Phase {
    Starting,
    /// The routes exist; the rest of the start still runs.
    Routed(axum::Router),
    Started(axum::Router),
}

impl Phase {
    fn router(&self) -> Option<&axum::Router> {
        match self {
            Self::Starting => None,
            Self::Routed(router) | Self::Started(router) => Some(router),
        }
    }
}

/// The routes, once the start has built them. A read (a safe method: its handler changes
/// nothing) runs as soon as they exist, beside the rest of the start, and its answer waits
/// for the whole start; anything else waits for the whole start before it runs, so an
/// instance whose start fails has made no effect.
#[derive(Clone)]
pub struct Started(tokio::sync::watch::Receiver<Phase>);

impl<B> tower::Service<http::Request<B>> for Started
where
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = axum::response::Response;
    type Error = lambda_http::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<axum::response::Response, lambda_http::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let mut phase = self.0.clone();
        let reads = request.method().is_safe();
        Box::pin(async move {
            const FAILED: &str = "the function's start failed";
            let router = phase
                .wait_for(|p| match p {
                    Phase::Routed(_) => reads,
                    Phase::Started(_) => true,
                    Phase::Starting => false,
                })
                .await
                .map_err(|_| FAILED)?
                .router()
                .cloned();
            let Some(router) = router else {
                return Err("the function has not started".into());
            };
            let response = match tower::ServiceExt::oneshot(router, request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            phase
                .wait_for(|p| matches!(p, Phase::Started(_)))
                .await
                .map_err(|_| FAILED)?;
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    use tower::ServiceExt;

    fn hello() -> axum::Router {
        axum::Router::new().route("/", axum::routing::get(|| async { "hello" }))
    }

    fn request() -> http::Request<axum::body::Body> {
        http::Request::get("/")
            .body(axum::body::Body::empty())
            .expect("a request")
    }

    #[tokio::test]
    async fn the_start_runs_beside_the_first_poll_and_the_first_request_waits_for_it() {
        let (polled, poll_seen) = tokio::sync::oneshot::channel();
        let (answered, answer) = tokio::sync::oneshot::channel();
        // The start finishes only once the runtime has polled for its first event: run one
        // after the other, they would wait for each other forever.
        let start = async {
            let _ = poll_seen.await;
            Ok::<_, lambda_http::Error>((hello(), std::future::ready(Ok(()))))
        };
        let serve = |started: Started| async move {
            let _ = polled.send(());
            let response = started.oneshot(request()).await?;
            let _ = answered.send(response.status().as_u16());
            Ok(())
        };
        let served = tokio::time::timeout(Duration::from_secs(5), serve_once_started(start, serve))
            .await
            .expect("the start and the first poll ran together");
        assert!(served.is_ok(), "{served:?}");
        assert_eq!(answer.await.expect("an answer"), 200);
    }

    /// A router whose handler says when it has run, and the rest of a start that ends
    /// (with `outcome`) only once that handler has run: run one after the other, the two
    /// would wait for each other forever.
    fn handler_and_rest(
        outcome: Result<(), &'static str>,
    ) -> (
        axum::Router,
        impl Future<Output = Result<(), &'static str>>,
        Arc<AtomicBool>,
    ) {
        let (handled, handler_seen) = tokio::sync::oneshot::channel::<()>();
        let handled = Arc::new(std::sync::Mutex::new(Some(handled)));
        let router = axum::Router::new().route(
            "/",
            axum::routing::get(move || async move {
                if let Some(handled) = handled.lock().ok().and_then(|mut h| h.take()) {
                    let _ = handled.send(());
                }
                "hello"
            }),
        );
        let rest_done = Arc::new(AtomicBool::new(false));
        let rest = {
            let rest_done = rest_done.clone();
            async move {
                let _ = handler_seen.await;
                tokio::task::yield_now().await;
                rest_done.store(true, Ordering::SeqCst);
                outcome
            }
        };
        (router, rest, rest_done)
    }

    #[tokio::test]
    async fn the_first_handler_runs_beside_the_rest_of_the_start_and_its_answer_waits_for_it() {
        let (router, rest, rest_done) = handler_and_rest(Ok(()));
        let start = async { Ok::<_, &str>((router, rest)) };
        let serve = |started: Started| async move {
            let response = started.oneshot(request()).await?;
            assert!(
                rest_done.load(Ordering::SeqCst),
                "the answer went out before the start had finished"
            );
            assert_eq!(response.status(), 200);
            Ok(())
        };
        let served = tokio::time::timeout(Duration::from_secs(5), serve_once_started(start, serve))
            .await
            .expect("the handler and the rest of the start ran together");
        assert!(served.is_ok(), "{served:?}");
    }

    #[tokio::test]
    async fn a_write_never_runs_on_an_instance_whose_start_fails() {
        let ran = Arc::new(AtomicBool::new(false));
        let router = {
            let ran = ran.clone();
            axum::Router::new().route(
                "/",
                axum::routing::post(move || async move {
                    ran.store(true, Ordering::SeqCst);
                    "done"
                }),
            )
        };
        // The rest fails well after a write could have run beside it.
        let rest = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err::<(), _>("Stripe has no price `billing_pro_monthly`")
        };
        let start = async { Ok::<_, &str>((router, rest)) };
        let serve = |started: Started| async move {
            let write = http::Request::post("/")
                .body(axum::body::Body::empty())
                .expect("a request");
            started.oneshot(write).await?;
            Ok(())
        };
        let served = tokio::time::timeout(Duration::from_secs(5), serve_once_started(start, serve))
            .await
            .expect("the run ended");
        assert!(served.is_err(), "{served:?}");
        assert!(!ran.load(Ordering::SeqCst), "the write ran");
    }

    #[tokio::test]
    async fn a_failed_start_ends_the_run_with_its_error() {
        let start = async {
            Err::<(axum::Router, std::future::Ready<Result<(), &str>>), _>(
                "the AWS environment has no region",
            )
        };
        // The runtime waits for an event that never comes, as on an idle instance.
        let served = serve_once_started(start, |_| std::future::pending()).await;
        let err = served.expect_err("the start failed");
        assert!(err.to_string().contains("no region"), "{err}");
    }

    #[tokio::test]
    async fn a_failed_rest_of_the_start_ends_the_run_before_the_first_answer() {
        let (answered, answer) = tokio::sync::oneshot::channel::<u16>();
        let (router, rest, _) = handler_and_rest(Err("Stripe has no price `billing_pro_monthly`"));
        let start = async { Ok::<_, &str>((router, rest)) };
        let serve = |started: Started| async move {
            let response = started.oneshot(request()).await?;
            let _ = answered.send(response.status().as_u16());
            Ok(())
        };
        let served = tokio::time::timeout(Duration::from_secs(5), serve_once_started(start, serve))
            .await
            .expect("the run ended");
        let err = served.expect_err("the start failed");
        assert!(err.to_string().contains("billing_pro_monthly"), "{err}");
        assert!(answer.await.is_err(), "an answer went out");
    }
}
