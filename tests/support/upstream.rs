//! The recording upstream: every request it receives is kept for the test to read; a few
//! paths behave specially (`/slow`, `/echo-body`, `/ws`, ...).
#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;

// ---------------------------------------------------------------- recording upstream

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The body's trailers, if it had any.
    pub trailers: Option<HeaderMap>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }
    /// Every header name, lowercased as hyper stores it.
    pub fn names(&self) -> Vec<String> {
        self.headers
            .keys()
            .map(|k| k.as_str().to_string())
            .collect()
    }
}

pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Recorded>>>,
    task: JoinHandle<()>,
    /// Served over TLS (`url()` is `https://`).
    tls: bool,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn upstream_handle(
    mut req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Recorded>>>,
) -> Result<Response<http_body_util::combinators::BoxBody<Bytes, Infallible>>, Infallible> {
    if req.uri().path() == "/ws" {
        return Ok(websocket_echo(&mut req, &seen));
    }
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    // `/stream-echo` answers before reading: proves the request body streams.
    let (body, trailers) = if path == "/no-read" {
        (Bytes::new(), None)
    } else {
        match body.collect().await {
            Ok(collected) => {
                let trailers = collected.trailers().cloned();
                (collected.to_bytes(), trailers)
            }
            Err(_) => (Bytes::new(), None),
        }
    };
    seen.lock().unwrap().push(Recorded {
        method: parts.method.clone(),
        uri: parts.uri.to_string(),
        headers: parts.headers.clone(),
        body: body.clone(),
        trailers,
    });
    let ok = |b: Bytes| Response::new(Full::new(b).boxed());
    Ok(match path.as_str() {
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            ok(Bytes::from_static(b"slow"))
        }
        "/echo-body" => ok(body),
        // A redirect to wherever the request's `x-redirect-to` says (an app that writes its
        // own address into `Location`).
        p if p.ends_with("/redirect") => {
            let mut r = ok(Bytes::new());
            *r.status_mut() = StatusCode::FOUND;
            if let Some(to) = parts.headers.get("x-redirect-to") {
                r.headers_mut().insert("location", to.clone());
            }
            r
        }
        // Caching directives from the request's `x-cache-control` (an app that lets caches
        // keep its pages).
        p if p.ends_with("/cacheable") => {
            let mut r = ok(Bytes::from_static(b"cacheable"));
            if let Some(cc) = parts.headers.get("x-cache-control") {
                r.headers_mut().insert("cache-control", cc.clone());
            }
            r
        }
        "/set-app-cookie" => {
            let mut r = ok(Bytes::from_static(b"cookie set"));
            r.headers_mut()
                .insert("set-cookie", "app_session=xyz; Path=/".parse().unwrap());
            r
        }
        "/stream" => {
            // Three chunks with pauses: the client must see the first before the last is sent.
            let chunks = futures_stream(vec![
                b"first;".to_vec(),
                b"second;".to_vec(),
                b"third".to_vec(),
            ]);
            Response::new(StreamBody::new(chunks).boxed())
        }
        _ => {
            let mut r = ok(Bytes::from(format!(
                "upstream saw {} {}",
                parts.method, parts.uri
            )));
            r.headers_mut().insert("x-upstream", "yes".parse().unwrap());
            r
        }
    })
}

/// Completes a WebSocket handshake (RFC 6455 §4.2.2) and echoes every byte back.
fn websocket_echo(
    req: &mut Request<Incoming>,
    seen: &Arc<Mutex<Vec<Recorded>>>,
) -> Response<http_body_util::combinators::BoxBody<Bytes, Infallible>> {
    seen.lock().unwrap().push(Recorded {
        method: req.method().clone(),
        uri: req.uri().to_string(),
        headers: req.headers().clone(),
        body: Bytes::new(),
        trailers: None,
    });
    let key = req
        .headers()
        .get("sec-websocket-key")
        .map(|k| k.as_bytes().to_vec())
        .unwrap_or_default();
    let mut input = key;
    input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    use base64::Engine as _;
    let accept = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let mut io = TokioIo::new(upgraded);
            let mut buf = [0u8; 1024];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    });
    let mut r = Response::new(Full::new(Bytes::new()).boxed());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    r.headers_mut()
        .insert("upgrade", "websocket".parse().unwrap());
    r.headers_mut()
        .insert("connection", "upgrade".parse().unwrap());
    r.headers_mut()
        .insert("sec-websocket-accept", accept.parse().unwrap());
    r
}

fn futures_stream(
    chunks: Vec<Vec<u8>>,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        for c in chunks {
            if tx.send(Ok(Frame::data(Bytes::from(c)))).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    tokio_stream_from(rx)
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_core::Stream<Item = T> + Send + Sync + 'static {
    struct S<T>(Mutex<tokio::sync::mpsc::Receiver<T>>);
    impl<T> futures_core::Stream for S<T> {
        type Item = T;
        fn poll_next(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<T>> {
            self.0.lock().unwrap().poll_recv(cx)
        }
    }
    let _ = &mut rx;
    S(Mutex::new(rx))
}

impl Upstream {
    pub async fn start() -> Upstream {
        Upstream::start_with(None).await
    }

    /// The same upstream over TLS (HTTP/1.1), with this certificate chain and key (PEM files).
    pub async fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> Upstream {
        use rustls_pki_types::pem::PemObject;
        let chain = rustls_pki_types::CertificateDer::pem_file_iter(cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Upstream::start_with(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    /// [`Upstream::start_tls`] that also asks for a client certificate issued by `client_ca`
    /// (PEM), and takes connections without one too. Each request it records carries
    /// `x-test-client-certificate: yes` or `no`: whether its connection presented one (rustls
    /// checked it against `client_ca`).
    pub async fn start_mtls(
        cert: &std::path::Path,
        key: &std::path::Path,
        client_ca: &std::path::Path,
    ) -> Upstream {
        use rustls_pki_types::pem::PemObject;
        let chain = rustls_pki_types::CertificateDer::pem_file_iter(cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for ca in rustls_pki_types::CertificateDer::pem_file_iter(client_ca).unwrap() {
            roots.add(ca.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Upstream::start_with(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let is_tls = tls.is_some();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let recorded = s.clone();
                    let svc = service_fn(move |req| upstream_handle(req, recorded.clone()));
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                                .await;
                        }
                        Some(tls) => {
                            let Ok(stream) = tls.accept(stream).await else {
                                return;
                            };
                            let presented = stream.get_ref().1.peer_certificates().is_some();
                            let svc = service_fn(move |mut req: Request<Incoming>| {
                                req.headers_mut().insert(
                                    "x-test-client-certificate",
                                    http::HeaderValue::from_static(if presented {
                                        "yes"
                                    } else {
                                        "no"
                                    }),
                                );
                                upstream_handle(req, s.clone())
                            });
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                                .await;
                        }
                    }
                });
            }
        });
        Upstream {
            addr,
            seen,
            task,
            tls: is_tls,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn last(&self) -> Recorded {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the upstream saw no request")
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
}
