//! The HTTP client under [`super::StripeApi`]: async-stripe's request builders (paths, form
//! encoding) sent over one kept-alive hyper connection pool with rustls, one attempt per call.
//!
//! Why not async-stripe's own `Client`: it parses every error body into async-stripe's
//! complete `ApiErrors`, whose optional payment intent, payment method and source reach half of
//! Stripe's object graph — 3 MB of parsers in every function that calls Stripe. Here an error
//! body is read for the two fields we act on. It also opens a new TLS connection per call
//! (`pool_max_idle_per_host(0)`); this pool keeps connections between a warm Lambda's calls,
//! and a call whose pooled connection turns out dead (closed while the Lambda was frozen)
//! is sent once more on a fresh one — safe, since every call that changes something carries
//! an Idempotency-Key and the others change nothing that matters twice (a portal session).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};
use std::fmt::Display;
use std::time::Duration;
use stripe_client_core::{CustomizedStripeRequest, StripeClient, StripeClientErr, StripeMethod};

const USER_AGENT_VALUE: &str = concat!("billing-api/", env!("CARGO_PKG_VERSION"));

/// How a call failed, before it is put in the API's terms ([`super::StripeFailure`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// Stripe answered with its error object.
    #[error("Stripe answered {status} ({kind}): {message:?}")]
    Stripe {
        status: u16,
        /// Stripe's error `type`: `card_error`, `invalid_request_error`, `api_error`…
        kind: String,
        message: Option<String>,
        /// The request parameter Stripe blames, when it names one.
        param: Option<String>,
        /// Stripe's error `code` (`resource_missing`, `card_declined`…), when it gives one.
        code: Option<String>,
    },
    /// No answer: connection, TLS or protocol failure, or the timeout.
    #[error("no answer from Stripe: {0}")]
    Transport(String),
    /// An answer we could not read: a success we cannot parse, or an error status without
    /// Stripe's error object (a proxy, a wrong `STRIPE_API_BASE`).
    #[error("an unreadable answer from Stripe: {0}")]
    Unreadable(String),
}

impl StripeClientErr for ClientError {
    fn deserialize_err(msg: impl Display) -> Self {
        ClientError::Unreadable(msg.to_string())
    }
}

/// Stripe's error envelope, `{"error": {"type": …, "message": …}}`, reduced to what we use.
#[derive(miniserde::Deserialize)]
struct ErrorEnvelope {
    error: ErrorObject,
}

#[derive(miniserde::Deserialize)]
struct ErrorObject {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
    param: Option<String>,
    code: Option<String>,
}

#[derive(Clone)]
pub struct HttpClient {
    http: HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// `https://api.stripe.com` or the emulator's base, without a trailing slash.
    api_base: String,
    authorization: HeaderValue,
    version: HeaderValue,
    timeout: Duration,
}

impl HttpClient {
    pub fn new(api_base: &str, secret_key: &str, timeout: Duration) -> Result<Self, ClientError> {
        let mut authorization = HeaderValue::try_from(format!("Bearer {secret_key}"))
            .map_err(|_| ClientError::Transport("the Stripe key is not a valid header".into()))?;
        authorization.set_sensitive(true);
        let version = HeaderValue::from_static(stripe_shared::version::VERSION.as_str());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(crate::tls::client_config())
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            http: HyperClient::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            api_base: api_base.trim_end_matches('/').to_string(),
            authorization,
            version,
            timeout,
        })
    }

    /// One request, up to the whole body of the answer. `Err` means no answer came.
    async fn attempt(
        &self,
        request: hyper::Request<Full<Bytes>>,
    ) -> Result<(hyper::StatusCode, Bytes), String> {
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }

    /// [`Self::attempt`], and once more if no answer came (a pooled connection found dead).
    async fn send(
        &self,
        build: impl Fn() -> Result<hyper::Request<Full<Bytes>>, ClientError>,
    ) -> Result<(hyper::StatusCode, Bytes), ClientError> {
        match self.attempt(build()?).await {
            Ok(answer) => Ok(answer),
            Err(first) => {
                tracing::warn!(error = %first, "no answer from Stripe; sending once more");
                self.attempt(build()?).await.map_err(ClientError::Transport)
            }
        }
    }
}

impl StripeClient for HttpClient {
    type Err = ClientError;

    async fn execute(&self, request: CustomizedStripeRequest) -> Result<Bytes, ClientError> {
        let (request, config) = request.into_pieces();
        let mut uri = format!("{}/v1{}", self.api_base, request.path);
        if let Some(query) = &request.query {
            uri.push('?');
            uri.push_str(query);
        }
        let method = match request.method {
            StripeMethod::Get => hyper::Method::GET,
            StripeMethod::Post => hyper::Method::POST,
            StripeMethod::Delete => hyper::Method::DELETE,
        };
        let body = Bytes::from(request.body.clone().unwrap_or_default());
        let key = config
            .request_strategy
            .as_ref()
            .and_then(|s| s.get_key())
            .map(|key| bound_key(key.as_str(), method.as_str(), &request.path, &body));
        let build = || {
            let mut builder = hyper::Request::builder()
                .method(method.clone())
                .uri(uri.as_str())
                .header(AUTHORIZATION, self.authorization.clone())
                .header(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE))
                .header(
                    HeaderName::from_static("stripe-version"),
                    self.version.clone(),
                );
            if let Some(key) = &key {
                builder = builder.header(HeaderName::from_static("idempotency-key"), key.as_str());
            }
            if request.body.is_some() {
                builder = builder.header(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                );
            }
            builder
                .body(Full::new(body.clone()))
                .map_err(|e| ClientError::Transport(format!("building the request: {e}")))
        };
        let timeout = budgeted(config.timeout.unwrap_or(self.timeout))?;
        let (status, body) = tokio::time::timeout(timeout, self.send(build))
            .await
            .map_err(|_| ClientError::Transport(format!("no answer within {timeout:?}")))??;
        if status.is_success() {
            return Ok(body);
        }
        let Some(error) = std::str::from_utf8(&body)
            .ok()
            .and_then(|text| miniserde::json::from_str::<ErrorEnvelope>(text).ok())
            .map(|e| e.error)
        else {
            return Err(ClientError::Unreadable(format!(
                "HTTP {status} without Stripe's error object"
            )));
        };
        Err(ClientError::Stripe {
            status: status.as_u16(),
            kind: error.kind.unwrap_or_else(|| "unknown".into()),
            message: error.message,
            param: error.param,
            code: error.code,
        })
    }
}

/// The Idempotency-Key actually sent: the caller's key bound to the request's method, path
/// and parameters (form pairs sorted, so their order cannot matter). A key can then never
/// reach Stripe with other parameters than the ones it was first used with — which Stripe
/// refuses (`idempotency_error`) — while a retry of the same call sends the same key and gets
/// Stripe's stored answer back. `hi_` and 64 hex digits, within Stripe's 255.
pub fn bound_key(key: &str, method: &str, path: &str, body: &[u8]) -> String {
    let mut pairs: Vec<&[u8]> = body
        .split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .collect();
    pairs.sort_unstable();
    let mut hasher = Sha256::new();
    for part in [key.as_bytes(), method.as_bytes(), path.as_bytes()]
        .into_iter()
        .chain(pairs)
    {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    format!("hi_{}", hex::encode(hasher.finalize()))
}

tokio::task_local! {
    /// When the current request must be done with Stripe (see [`with_budget`]).
    static DEADLINE: tokio::time::Instant;
}

/// Runs `request` with `budget` for all of its Stripe calls together: each call waits at most
/// its own timeout and never past the deadline, and a call that would start with less than
/// [`MIN_CALL`] left fails at once as unavailable (the client retries with its
/// Idempotency-Key). So the calls of one request end inside the function's timeout.
pub async fn with_budget<F: std::future::Future>(budget: Duration, request: F) -> F::Output {
    DEADLINE
        .scope(tokio::time::Instant::now() + budget, request)
        .await
}

/// The least time worth starting a Stripe call with.
pub const MIN_CALL: Duration = Duration::from_millis(500);

/// `timeout`, cut to what is left of the current request's budget.
fn budgeted(timeout: Duration) -> Result<Duration, ClientError> {
    let Ok(deadline) = DEADLINE.try_with(|d| *d) else {
        return Ok(timeout);
    };
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    if left < MIN_CALL {
        return Err(ClientError::Transport(
            "the request's time for Stripe calls is spent".into(),
        ));
    }
    Ok(timeout.min(left))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_keys_differ_by_parameters_not_by_their_order() {
        let a = bound_key("k", "POST", "/subscriptions/sub_1", b"a=1&b=2");
        assert_eq!(
            a,
            bound_key("k", "POST", "/subscriptions/sub_1", b"b=2&a=1")
        );
        assert_eq!(a.len(), 67);
        for other in [
            bound_key("k", "POST", "/subscriptions/sub_1", b"a=1&b=3"),
            bound_key("k2", "POST", "/subscriptions/sub_1", b"a=1&b=2"),
            bound_key("k", "POST", "/subscriptions/sub_2", b"a=1&b=2"),
            bound_key("k", "DELETE", "/subscriptions/sub_1", b"a=1&b=2"),
        ] {
            assert_ne!(a, other);
        }
    }

    #[tokio::test]
    async fn a_spent_budget_refuses_the_call_and_a_small_one_cuts_its_timeout() {
        let eight = Duration::from_secs(8);
        assert_eq!(budgeted(eight).ok(), Some(eight));
        let cut = with_budget(Duration::from_secs(2), async { budgeted(eight) }).await;
        assert!(cut.is_ok_and(|t| t <= Duration::from_secs(2)));
        let spent = with_budget(Duration::from_millis(100), async { budgeted(eight) }).await;
        assert!(matches!(spent, Err(ClientError::Transport(_))));
    }
}
