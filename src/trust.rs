//! Whom the gateway's own TLS connections trust: identity providers (`oidc::http`) and
//! `https://` upstreams (`forward::client`). The system's CA store, or the bundle
//! `SSL_CERT_FILE` names (read by `rustls-native-certs`), loaded once per process, off the
//! async threads, at the first connection that needs it. HTTP/1.1 only: no ALPN.

use std::sync::Arc;

static CONNECTOR: std::sync::OnceLock<Option<tokio_rustls::TlsConnector>> =
    std::sync::OnceLock::new();

/// Loads the CA certificates: blocking file reads. `None` only if rustls refuses its own
/// default protocol versions with aws-lc-rs, which it does not.
fn load() -> Option<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    let loaded = rustls_native_certs::load_native_certs();
    for cert in loaded.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        tracing::warn!(
            "no CA certificates found on this system: https identity providers and upstreams \
             cannot be verified (install ca-certificates, or point SSL_CERT_FILE at a bundle)"
        );
    }
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The connector every outgoing TLS connection uses; `None` if it cannot be built.
pub async fn connector() -> Option<tokio_rustls::TlsConnector> {
    if let Some(tls) = CONNECTOR.get() {
        return tls.clone();
    }
    let built = tokio::task::spawn_blocking(load).await.ok().flatten();
    CONNECTOR.get_or_init(|| built).clone()
}
