//! Prints the size of the per-request future and keeps it from growing unnoticed. hyper's
//! path boxes it once per request (`accept::serve_inner`), so its size is memory per request
//! in flight and the cost of that allocation, no longer bytes moved on every poll; 3.6 KB
//! since hyper's path and the express lane share `gateway::proxy` (3 KB before).

mod support;

use std::convert::Infallible;

use support::*;

#[tokio::test]
async fn the_request_future_stays_small() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    let g = gw.gw.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let probe = tokio::spawn(async move {
        let (stream, peer) = listener.accept().await.unwrap();
        let size = std::sync::Arc::new(std::sync::Mutex::new(0usize));
        let s = size.clone();
        let svc = hyper::service::service_fn(move |req| {
            let conn = gatehouse::runtime::Conn { peer, tls: false };
            *s.lock().unwrap() = gatehouse::gateway::request_future_size(g.clone(), req, conn);
            async { Ok::<_, Infallible>(http::Response::new(gatehouse::body::empty())) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
            .await;
        let n = *size.lock().unwrap();
        n
    });
    Client::new(addr).get("/x").await;
    let size = probe.await.unwrap();
    println!("request future: {size} bytes");
    assert!(
        size > 0 && size <= 3712,
        "the request future grew to {size} bytes"
    );
    gw.stop().await;
}
