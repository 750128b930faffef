//! The Lambda entry point every function's `main` calls.

use crate::state::{AppState, Sells};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Initialises logging, builds the state once per cold start and serves `router`'s routes
/// to API Gateway events until the runtime stops.
///
/// The start (the AWS and Stripe clients, the prices resolved from Stripe) runs beside the
/// runtime's first poll for an event rather than before it, and the first event waits for
/// it: a cold start pays the longer of the two instead of both. A start that fails ends the
/// process with its error, as it did before any event.
pub async fn run(
    router: fn(AppState) -> axum::Router,
    sells: Sells,
) -> Result<(), lambda_http::Error> {
    crate::telemetry::init();
    let start = async move { AppState::from_env(sells).await.map(router) };
    serve_once_started(start, lambda_http::run).await
}

/// Runs `start` beside `serve`, which is given the router `start` builds ([`Started`]):
/// returns `start`'s error if it fails, else whatever `serve` returns.
pub async fn serve_once_started<E, S>(
    start: impl Future<Output = Result<axum::Router, E>>,
    serve: impl FnOnce(Started) -> S,
) -> Result<(), lambda_http::Error>
where
    E: Into<lambda_http::Error>,
    S: Future<Output = Result<(), lambda_http::Error>>,
{
    let (ready, started) = tokio::sync::watch::channel(None);
    let start = async move {
        let router = start.await.map_err(Into::into)?;
        // Kept open while the process serves: the router stays readable.
        let _ = ready.send(Some(router));
        std::future::pending::<Result<(), lambda_http::Error>>().await
    };
    tokio::select! {
        // The runtime first: its poll for an event is on the wire while the start works.
        biased;
        served = serve(Started(started)) => served,
        failed = start => failed,
    }
}

/// The routes, once the start has built them: each request waits for them first.
#[derive(Clone)]
pub struct Started(tokio::sync::watch::Receiver<Option<axum::Router>>);

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
        let mut started = self.0.clone();
        Box::pin(async move {
            let router = started
                .wait_for(Option::is_some)
                .await
                .map_err(|_| "the function's start failed")?
                .clone();
            let Some(router) = router else {
                return Err("the function has not started".into());
            };
            match tower::ServiceExt::oneshot(router, request).await {
                Ok(response) => Ok(response),
                Err(never) => match never {},
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            Ok::<_, lambda_http::Error>(hello())
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

    #[tokio::test]
    async fn a_failed_start_ends_the_run_with_its_error() {
        let start = async { Err::<axum::Router, _>("Stripe has no price `billing_pro_monthly`") };
        // The runtime waits for an event that never comes, as on an idle instance.
        let served = serve_once_started(start, |_| std::future::pending()).await;
        let err = served.expect_err("the start failed");
        assert!(err.to_string().contains("billing_pro_monthly"), "{err}");
    }
}
