//! The TLS configuration of every outgoing connection (DynamoDB, Secrets Manager, Stripe):
//! rustls with aws-lc, trusting Mozilla's root certificates compiled in (`webpki-roots`).
//! Built once per process and shared: a cold start loads no trust store from disk and
//! parses no certificate.

use rustls::{ClientConfig, RootCertStore};
use std::sync::{Arc, OnceLock};

/// The shared configuration (a clone: its parts are reference-counted).
pub fn client_config() -> ClientConfig {
    static CONFIG: OnceLock<ClientConfig> = OnceLock::new();
    CONFIG.get_or_init(build).clone()
}

fn build() -> ClientConfig {
    let roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let builder = match ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    {
        Ok(builder) => builder,
        // Not with aws-lc's provider, which supports TLS 1.2 and 1.3: the process default.
        Err(_) => ClientConfig::builder(),
    };
    builder.with_root_certificates(roots).with_no_client_auth()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_configuration_with_mozillas_roots() {
        let config = client_config();
        assert!(
            config.alpn_protocols.is_empty(),
            "hyper-rustls sets ALPN itself"
        );
        assert!(webpki_roots::TLS_SERVER_ROOTS.len() > 100);
    }
}
