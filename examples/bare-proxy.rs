//! A bare hyper 1 reverse proxy with no authentication: the load benchmark's "what hyper
//! alone costs" reference, built like Gatehouse's forwarding (legacy pooled client, nodelay)
//! and on the same runtime Gatehouse picks when it has one CPU (current-thread), with the
//! same allocator (mimalloc). With a TLS address, certificate and key it also serves HTTPS
//! (HTTP/1.1 and HTTP/2 by ALPN) with Gatehouse's own rustls settings
//! (`gatehouse::config::tls::server_config`), so HTTPS targets have a hyper-only like too.
//! `cargo run --release --example bare-proxy -- LISTEN UPSTREAM [TLS_LISTEN CERT KEY]`

use std::convert::Infallible;
use std::sync::Arc;

use http::Uri;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Upstream = Client<HttpConnector, Incoming>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:3901".into());
    let upstream: Arc<str> = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:3900".into())
        .into();
    let tls = match (args.next(), args.next(), args.next()) {
        (Some(addr), Some(cert), Some(key)) => {
            let config = gatehouse::config::tls::server_config(
                &std::fs::read(&cert)?,
                &std::fs::read(&key)?,
            )?;
            Some((addr, tokio_rustls::TlsAcceptor::from(config)))
        }
        (None, _, _) => None,
        _ => return Err("a TLS listener needs TLS_LISTEN CERT KEY".into()),
    };
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    // As many idle upstream connections as Gatehouse keeps: the HTTP/2 target has 640
    // requests in flight, and a smaller pool would reconnect for some of them.
    let client: Upstream = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build(connector);
    if let Some((addr, acceptor)) = tls {
        let listener = TcpListener::bind(&addr).await?;
        let (client, upstream) = (client.clone(), upstream.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let (client, upstream, acceptor) =
                    (client.clone(), upstream.clone(), acceptor.clone());
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        serve(stream, client, upstream).await;
                    }
                });
            }
        });
    }
    let listener = TcpListener::bind(&listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(stream, client.clone(), upstream.clone()));
    }
}

/// Serves one client connection (HTTP/1.1, or HTTP/2 by preface), every request proxied to
/// `upstream` as it came.
async fn serve<S>(stream: S, client: Upstream, upstream: Arc<str>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |mut req: Request<Incoming>| {
        let client = client.clone();
        let upstream = upstream.clone();
        async move {
            let pq = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into());
            let Ok(uri) = format!("http://{upstream}{pq}").parse::<Uri>() else {
                let mut r = Response::new(gatehouse::body::empty());
                *r.status_mut() = StatusCode::BAD_REQUEST;
                return Ok::<_, Infallible>(r);
            };
            *req.uri_mut() = uri;
            // An HTTP/2 request goes upstream as HTTP/1.1, as Gatehouse sends it.
            *req.version_mut() = http::Version::HTTP_11;
            Ok(match client.request(req).await {
                Ok(resp) => resp.map(gatehouse::body::stream),
                Err(_) => {
                    let mut r = Response::new(gatehouse::body::empty());
                    *r.status_mut() = StatusCode::BAD_GATEWAY;
                    r
                }
            })
        }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}
