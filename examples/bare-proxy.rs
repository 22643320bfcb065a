//! A bare hyper 1 reverse proxy with no authentication: the load benchmark's "what hyper
//! alone costs" reference, built like Gatehouse's forwarding (legacy pooled client, nodelay)
//! and on the same runtime Gatehouse picks when it has one CPU (current-thread), with the
//! same allocator (mimalloc).
//! `cargo run --release --example bare-proxy -- LISTEN UPSTREAM`

use std::convert::Infallible;

use http::Uri;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:3901".into());
    let upstream = args.next().unwrap_or_else(|| "127.0.0.1:3900".into());
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(connector);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
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
        });
    }
}
