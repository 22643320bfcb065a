//! The HTTPS listener's TLS (SPEC §3 `server.tls`): rustls with the aws-lc-rs provider,
//! certificate chain and key from PEM (PKCS#8, SEC1 or RSA) via `rustls-pki-types`, ALPN
//! `h2` then `http/1.1`. The `ServerConfig` lives in the config snapshot, so a reload with new
//! certificates serves them to every new connection.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the certificate file holds no PEM certificate")]
    NoCertificate,
    #[error("cannot read the certificate chain: {0}")]
    BadCertificate(#[source] rustls_pki_types::pem::Error),
    #[error("cannot read the private key (PKCS#8, SEC1 or RSA PEM): {0}")]
    BadKey(#[source] rustls_pki_types::pem::Error),
    #[error("the key does not match the certificate, or is not usable: {0}")]
    Rejected(#[source] rustls::Error),
}

/// aws-lc-rs with AES-128-GCM/SHA-256 suites first (TLS 1.3, then 1.2): as strong for TLS
/// (128-bit security, the suite every browser offers first) and cheaper than AES-256/SHA-384,
/// whose SHA-384 key schedule has no hardware help on x86. Everything else stays as rustls
/// ships it, in its order.
fn provider() -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    let first = |s: &rustls::SupportedCipherSuite| {
        matches!(
            s.suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    };
    // A stable sort: the preferred suites move to the front, the rest keep their order.
    provider.cipher_suites.sort_by_key(|s| !first(s));
    provider
}

/// Builds a rustls server config from PEM bytes.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(TlsError::BadCertificate)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(TlsError::BadKey)?;
    let provider = Arc::new(provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rejected)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::Rejected)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Our suite order (AES-128-GCM first, see `provider`), not the client's: OpenSSL-based
    // clients list AES-256 first.
    config.ignore_client_order = true;
    // Stateless resumption tickets (RFC 5077 construction, keys rotated every 6 hours): a
    // returning client skips the key exchange and certificate signature, and the server keeps
    // no per-client state for it.
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(TlsError::Rejected)?;
    Ok(Arc::new(config))
}

/// The `server.tls` section, built.
#[derive(Clone)]
pub struct TlsSettings {
    pub listen: std::net::SocketAddr,
    pub cert_path: std::path::PathBuf,
    pub key_path: std::path::PathBuf,
    pub server_config: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("listen", &self.listen)
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

pub fn paths(settings: &TlsSettings) -> [&Path; 2] {
    [&settings.cert_path, &settings.key_path]
}
