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
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Where the OS keeps its trust store as one PEM bundle: `provided.al2023` (Lambda's image),
/// then Debian and its kin. `SSL_CERT_FILE` comes first.
const BUNDLES: [&str; 2] = [
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/certs/ca-certificates.crt",
];

/// The HTTPS client both AWS clients share: rustls with aws-lc, trusting the OS's root
/// certificates read from its one PEM bundle file. The SDK's default client reads the OS
/// store as `rustls-native-certs` does, the bundle *and* every file of the certificate
/// directory (hundreds), when the first client is built: most of a cold start's extra time.
/// The same roots from one file are the same trust decision. With no readable bundle of
/// valid certificates, `None`: the SDK's default client.
pub fn https_client(lookup: impl Fn(&str) -> Option<String>) -> Option<SharedHttpClient> {
    let candidates = lookup("SSL_CERT_FILE")
        .into_iter()
        .chain(BUNDLES.iter().map(|b| b.to_string()));
    let pem = candidates
        .filter_map(|path| std::fs::read(path).ok())
        .find(|pem| valid_bundle(pem))?;
    let trust = TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(pem);
    Some(
        aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(TlsContext::builder().with_trust_store(trust).build().ok()?)
            .build_https(),
    )
}

/// Whether `pem` is a bundle of certificates that all parse (the SDK's client panics on one
/// that does not, so it is checked here first).
fn valid_bundle(pem: &[u8]) -> bool {
    let certs: Result<Vec<CertificateDer<'_>>, _> = CertificateDer::pem_slice_iter(pem).collect();
    certs.is_ok_and(|c| !c.is_empty() && c.iter().all(|der| webpki_parses(der)))
}

fn webpki_parses(der: &CertificateDer<'_>) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der.clone()).is_ok()
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
    /// Shared by both clients ([`https_client`]); `None`: the SDK's default.
    http: Option<SharedHttpClient>,
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
            http: https_client(&lookup),
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

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        let mut config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(self.region.clone())
            .credentials_provider(self.credentials.clone());
        config.set_endpoint_url(self.dynamodb_endpoint().map(str::to_string));
        if let Some(http) = &self.http {
            config = config.http_client(http.clone());
        }
        aws_sdk_dynamodb::Client::from_conf(config.build())
    }

    pub fn secrets_manager(&self) -> aws_sdk_secretsmanager::Client {
        let mut config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
            .region(self.region.clone())
            .credentials_provider(self.credentials.clone());
        config.set_endpoint_url(self.secrets_endpoint().map(str::to_string));
        if let Some(http) = &self.http {
            config = config.http_client(http.clone());
        }
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
    fn the_trust_store_is_one_valid_bundle_file() {
        let dir = std::env::temp_dir().join(format!("bundle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(!valid_bundle(&std::fs::read(&garbage).unwrap()));
        assert!(!valid_bundle(b""));
        // This machine's own bundle (Debian's, or Lambda's) is one.
        let system = BUNDLES
            .iter()
            .find_map(|b| std::fs::read(b).ok())
            .expect("an OS bundle");
        assert!(valid_bundle(&system));
        let with = |path: &std::path::Path| {
            let path = path.to_string_lossy().to_string();
            move |k: &str| (k == "SSL_CERT_FILE").then(|| path.clone())
        };
        // A bad SSL_CERT_FILE falls through to the OS bundle.
        assert!(https_client(with(&garbage)).is_some());
        std::fs::remove_dir_all(&dir).unwrap();
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
