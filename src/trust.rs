//! Whom the gateway's own TLS connections trust: identity providers (`oidc::http`) and
//! `https://` upstreams (`forward::client`). The system's CA store, or the bundle
//! `SSL_CERT_FILE` names (read by `rustls-native-certs`), loaded once per process, off the
//! async threads, at the first connection that needs it. HTTP/1.1 only: no ALPN.
//!
//! A route may bring its own ([`ClientTls`], `upstream_tls:`): CAs to trust instead of the
//! system's, the name the upstream's certificate must carry, and a client certificate to
//! present (mutual TLS). Built with the config, so a reload reads the files again. Redis's
//! (`store.redis.tls:`) is checked the same way and handed to redis-rs, and so are the system's
//! CAs for a `rediss://` URL without it ([`system_roots_pem`]): redis-rs would otherwise read
//! the system's store on the async threads at every connection.

use std::sync::Arc;

static CONNECTOR: std::sync::OnceLock<Option<tokio_rustls::TlsConnector>> =
    std::sync::OnceLock::new();

/// Loads the CA certificates: blocking file reads. `None` only if rustls refuses its own
/// default protocol versions with aws-lc-rs, which it does not.
fn load() -> Option<tokio_rustls::TlsConnector> {
    let roots = system_roots();
    if roots.is_empty() {
        tracing::warn!(
            "no CA certificates found on this system: https identity providers and upstreams \
             cannot be verified (install ca-certificates, or point SSL_CERT_FILE at a bundle)"
        );
    }
    let config = builder()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The system's CA certificates (or `SSL_CERT_FILE`'s, `SSL_CERT_DIR`'s): blocking reads.
fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    roots
}

/// [`system_roots`] as PEM, for redis-rs, which takes its CAs as PEM: only the certificates
/// rustls takes as trust anchors (redis-rs refuses the whole set for one it cannot use).
/// Blocking reads: called while the config is built, off the async threads.
pub fn system_roots_pem() -> Vec<u8> {
    use base64::Engine as _;
    let mut pem = Vec::new();
    for cert in rustls_native_certs::load_native_certs().certs {
        if rustls::RootCertStore::empty().add(cert.clone()).is_err() {
            continue;
        }
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.extend_from_slice(line);
            pem.push(b'\n');
        }
        pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    pem
}

fn builder(
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, rustls::Error> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
}

/// The connector every outgoing TLS connection uses; `None` if it cannot be built.
pub async fn connector() -> Option<tokio_rustls::TlsConnector> {
    if let Some(tls) = CONNECTOR.get() {
        return tls.clone();
    }
    let built = tokio::task::spawn_blocking(load).await.ok().flatten();
    CONNECTOR.get_or_init(|| built).clone()
}

/// A TLS client section's settings: a route's own for its `https://` upstream
/// (`upstream_tls:`), or Redis's (`store.redis.tls:`, checked here, used by redis-rs).
pub struct ClientTls {
    /// Tells this route's connections apart from every other route's in the upstream pool:
    /// a connection that presented one route's client certificate, or checked another name,
    /// is never lent to another route. New with every config built.
    pub id: u64,
    /// Trusts the CAs of `ca` (else the system's) and presents the client certificate, if any.
    pub connector: tokio_rustls::TlsConnector,
    /// The name the upstream's certificate must carry, if not the upstream's host.
    pub server_name: Option<rustls_pki_types::ServerName<'static>>,
    /// The files it was read from, watched for changes like the config.
    pub paths: Vec<std::path::PathBuf>,
    /// For `gatehouse check`: "own CAs, name app.internal, client certificate".
    pub summary: String,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("id", &self.id)
            .field("server_name", &self.server_name)
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl PartialEq for ClientTls {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for ClientTls {}

/// What a TLS client section says, read from its files.
pub struct ClientTlsFiles<'a> {
    /// PEM: the CAs to trust instead of the system's.
    pub ca: Option<&'a [u8]>,
    /// PEM: the certificate chain and key to present.
    pub client: Option<(&'a [u8], &'a [u8])>,
    pub server_name: Option<&'a str>,
    pub paths: Vec<std::path::PathBuf>,
}

/// Why a TLS client section cannot be used; the key it concerns and a sentence.
#[derive(Debug)]
pub struct ClientTlsError {
    pub key: &'static str,
    pub message: String,
}

/// Builds a TLS client section's settings. Blocking (the system's CAs are read when no `ca`
/// is given): called while the config is built, off the async threads.
pub fn client_tls(files: ClientTlsFiles<'_>) -> Result<ClientTls, ClientTlsError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let fail = |key: &'static str, message: String| ClientTlsError { key, message };
    let roots = match files.ca {
        None => system_roots(),
        Some(pem) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<_, _>>()
                .map_err(|e| fail("ca", format!("cannot read the CA certificates: {e}")))?;
            if certs.is_empty() {
                return Err(fail("ca", "the file holds no PEM certificate".into()));
            }
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| fail("ca", format!("not a CA certificate rustls can use: {e}")))?;
            }
            roots
        }
    };
    let server_name = files
        .server_name
        .map(|name| {
            let bare = name.trim_start_matches('[').trim_end_matches(']');
            ServerName::try_from(bare.to_string()).map_err(|_| {
                fail(
                    "server_name",
                    format!("`{name}` is not a DNS name or an IP address"),
                )
            })
        })
        .transpose()?;
    let builder = builder()
        .map_err(|e| fail("ca", format!("{e}")))?
        .with_root_certificates(roots);
    let config = match files.client {
        None => builder.with_no_client_auth(),
        Some((cert_pem, key_pem)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    fail(
                        "client_cert",
                        format!("cannot read the certificate chain: {e}"),
                    )
                })?;
            if chain.is_empty() {
                return Err(fail(
                    "client_cert",
                    "the file holds no PEM certificate".into(),
                ));
            }
            let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
                fail(
                    "client_key",
                    format!("cannot read the private key (PKCS#8, SEC1 or RSA PEM): {e}"),
                )
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                fail(
                    "client_key",
                    format!("the key does not match client_cert, or is not usable: {e}"),
                )
            })?
        }
    };
    let summary = [
        Some(
            if files.ca.is_some() {
                "own CAs"
            } else {
                "system CAs"
            }
            .to_string(),
        ),
        server_name.as_ref().map(|n| format!("name {}", n.to_str())),
        files.client.map(|_| "client certificate".to_string()),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ");
    Ok(ClientTls {
        id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        summary,
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        server_name,
        paths: files.paths,
    })
}
