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
            .with_provider_and_webpki_roots(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| ClientError::Transport(format!("TLS setup: {e}")))?
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
        let key = config.request_strategy.as_ref().and_then(|s| s.get_key());
        let body = Bytes::from(request.body.clone().unwrap_or_default());
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
        let timeout = config.timeout.unwrap_or(self.timeout);
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
        })
    }
}
