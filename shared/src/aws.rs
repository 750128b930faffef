//! The AWS clients of a deployed function, built from the environment Lambda provides: the
//! region (`AWS_REGION`), the role's credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`) and, for runs against other engines, the standard endpoint overrides
//! (`AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_SECRETS_MANAGER`, `AWS_ENDPOINT_URL`).
//!
//! Not `aws_config::load_defaults`: its provider chain (profile files, SSO, STS web identity,
//! ECS, IMDS) is never needed in Lambda, costs cold-start time to probe and half a megabyte
//! in every bootstrap. Lambda sets the role's credentials once per execution environment, so
//! they are read once, like the rest of the configuration.

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region, SharedHttpClient};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::body::SdkBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::time::Duration;

/// How long a connection to AWS may take to open: the SDK's default.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);

/// The HTTPS client both AWS clients share: hyper with rustls (aws-lc), trusting Mozilla's
/// root certificates compiled in (`webpki-roots`), as the Stripe client does. The SDK's
/// default client loads the OS trust store when it is built (the bundle and every file of
/// the certificate directory, each certificate decoded and parsed): most of a cold start's
/// extra time. Compiled-in roots cost nothing to load. The same verification (rustls,
/// webpki), and one trust decision for the whole binary.
#[derive(Clone)]
pub struct AwsHttpClient {
    http: HyperClient<HttpsConnector<TcpConnector>, SdkBody>,
}

impl std::fmt::Debug for AwsHttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AwsHttpClient(webpki roots)")
    }
}

impl AwsHttpClient {
    /// One per process, shared by every AWS client: its connection pool is the process's.
    /// The SDK crates are built without their default HTTPS client, so every AWS client
    /// is given this one.
    pub fn shared() -> SharedHttpClient {
        SharedHttpClient::new(Self::instance().clone())
    }

    /// The process's client (clones share its connection pool).
    fn instance() -> &'static Self {
        static INSTANCE: std::sync::OnceLock<AwsHttpClient> = std::sync::OnceLock::new();
        INSTANCE.get_or_init(Self::new)
    }

    fn new() -> Self {
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        tcp.set_nodelay(true);
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(crate::tls::client_config())
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        Self {
            http: HyperClient::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .build(tls),
        }
    }

    /// Opens a connection to `url` and leaves it in the pool: a `GET` of the root, which
    /// needs no signature (DynamoDB's answers a health line), read to its end so the
    /// kept-alive connection goes back to the pool. What it answers does not matter, and a
    /// failure only means the first call connects itself.
    async fn warm(&self, url: &str) {
        let open = async {
            let request = http::Request::get(url).body(SdkBody::empty())?;
            let response = self.http.request(request).await?;
            http_body_util::BodyExt::collect(response.into_body()).await?;
            Ok::<_, axum::BoxError>(())
        };
        if let Err(e) = open.await {
            tracing::debug!(error = %e, url, "warming a connection to AWS");
        }
    }
}

impl HttpClient for AwsHttpClient {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

impl HttpConnector for AwsHttpClient {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let http = self.http.clone();
        HttpConnectorFuture::new(async move {
            let response = http.request(request).await.map_err(connector_error)?;
            HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// A failed send in the SDK's terms: no connection, or one that broke, is I/O (the SDK
/// retries it); anything else is other.
fn connector_error(e: hyper_util::client::legacy::Error) -> ConnectorError {
    let broken = e.is_connect()
        || std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<hyper::Error>())
            .is_some_and(|h| h.is_incomplete_message() || h.is_closed() || h.is_canceled());
    if broken {
        ConnectorError::io(e.into())
    } else {
        ConnectorError::other(e.into(), None)
    }
}

/// What is missing from the environment.
#[derive(Debug, thiserror::Error)]
#[error("invalid AWS environment: {0}")]
pub struct AwsEnvError(String);

/// The region and endpoint overrides, read once.
#[derive(Debug, Clone)]
pub struct AwsEnv {
    region: Region,
    credentials: Credentials,
    endpoint: Option<String>,
    dynamodb_endpoint: Option<String>,
    secrets_endpoint: Option<String>,
    /// Shared by both clients ([`AwsHttpClient`]).
    http: SharedHttpClient,
}

impl AwsEnv {
    pub fn from_env() -> Result<Self, AwsEnvError> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, AwsEnvError> {
        let region = lookup("AWS_REGION")
            .or_else(|| lookup("AWS_DEFAULT_REGION"))
            .ok_or_else(|| AwsEnvError("AWS_REGION is not set".into()))?;
        let var =
            |name: &str| lookup(name).ok_or_else(|| AwsEnvError(format!("{name} is not set")));
        let credentials = Credentials::new(
            var("AWS_ACCESS_KEY_ID")?,
            var("AWS_SECRET_ACCESS_KEY")?,
            lookup("AWS_SESSION_TOKEN"),
            None,
            "lambda-environment",
        );
        Ok(Self {
            region: Region::new(region),
            credentials,
            endpoint: lookup("AWS_ENDPOINT_URL"),
            dynamodb_endpoint: lookup("AWS_ENDPOINT_URL_DYNAMODB"),
            secrets_endpoint: lookup("AWS_ENDPOINT_URL_SECRETS_MANAGER"),
            http: AwsHttpClient::shared(),
        })
    }

    /// Where DynamoDB calls go: its own override, else the general one, else AWS.
    pub fn dynamodb_endpoint(&self) -> Option<&str> {
        self.dynamodb_endpoint
            .as_deref()
            .or(self.endpoint.as_deref())
    }

    /// Where Secrets Manager calls go: its own override, else the general one, else AWS.
    pub fn secrets_endpoint(&self) -> Option<&str> {
        self.secrets_endpoint
            .as_deref()
            .or(self.endpoint.as_deref())
    }

    /// Opens `connections` connections to DynamoDB at once, ahead of the first call, so that
    /// the first request's calls find them open (in AWS, a TLS handshake each) instead of
    /// opening their own ([`AwsHttpClient`]). Ends when they are open: a cold start spawns
    /// it and waits for nothing. The endpoint is the one DynamoDB calls go to: the override,
    /// else the SDK's resolution for the region.
    pub fn warm_dynamodb(&self, connections: usize) -> impl Future<Output = ()> + Send + 'static {
        let endpoint = self.dynamodb_endpoint().map(str::to_string);
        let region = self.region.to_string();
        async move {
            let Some(url) = Self::dynamodb_url(endpoint, region).await else {
                return;
            };
            let url: std::sync::Arc<str> = url.into();
            let mut opening = tokio::task::JoinSet::new();
            for _ in 0..connections {
                let url = url.clone();
                opening.spawn(async move { AwsHttpClient::instance().warm(&url).await });
            }
            while opening.join_next().await.is_some() {}
        }
    }

    async fn dynamodb_url(endpoint: Option<String>, region: String) -> Option<String> {
        use aws_sdk_dynamodb::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
        if endpoint.is_some() {
            return endpoint;
        }
        let params = Params::builder().region(region).build().ok()?;
        match DefaultResolver::new().resolve_endpoint(&params).await {
            Ok(endpoint) => Some(endpoint.url().to_string()),
            Err(e) => {
                tracing::debug!(error = %e, "resolving DynamoDB's endpoint to warm it");
                None
            }
        }
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        let mut config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(self.region.clone())
            .credentials_provider(self.credentials.clone());
        config.set_endpoint_url(self.dynamodb_endpoint().map(str::to_string));
        config = config.http_client(self.http.clone());
        aws_sdk_dynamodb::Client::from_conf(config.build())
    }

    pub fn secrets_manager(&self) -> aws_sdk_secretsmanager::Client {
        let mut config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
            .region(self.region.clone())
            .credentials_provider(self.credentials.clone());
        config.set_endpoint_url(self.secrets_endpoint().map(str::to_string));
        config = config.http_client(self.http.clone());
        aws_sdk_secretsmanager::Client::from_conf(config.build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    const KEYS: [(&str, &str); 2] = [
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
    ];

    #[test]
    fn needs_a_region_and_credentials() {
        let err = AwsEnv::from_lookup(env(&KEYS)).unwrap_err();
        assert!(err.to_string().contains("AWS_REGION"), "{err}");
        let err = AwsEnv::from_lookup(env(&[("AWS_REGION", "eu-west-1")])).unwrap_err();
        assert!(err.to_string().contains("AWS_ACCESS_KEY_ID"), "{err}");
        let e = AwsEnv::from_lookup(env(&[
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            KEYS[0],
            KEYS[1],
            ("AWS_SESSION_TOKEN", "token"),
        ]))
        .unwrap();
        assert_eq!(e.region.as_ref(), "eu-west-1");
        assert_eq!(e.credentials.session_token(), Some("token"));
    }

    #[test]
    fn a_service_endpoint_overrides_the_general_one() {
        let e = AwsEnv::from_lookup(env(&[
            KEYS[0],
            KEYS[1],
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:2"),
        ]))
        .unwrap();
        assert_eq!(e.dynamodb_endpoint(), Some("http://127.0.0.1:2"));
        assert_eq!(e.secrets_endpoint(), Some("http://127.0.0.1:1"));
        let none =
            AwsEnv::from_lookup(env(&[KEYS[0], KEYS[1], ("AWS_REGION", "us-east-1")])).unwrap();
        assert_eq!(none.dynamodb_endpoint(), None);
    }
}
