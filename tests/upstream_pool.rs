//! The upstream connection pool (SPEC §7): keep-alive connections are reused, a connection the
//! upstream closed is never used for a request, and a response still streaming never holds up
//! another request. The upstream here is a hand-written HTTP/1.1 server, so that how it treats
//! its connections is exactly what each test says.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Barrier, Notify};

#[derive(Clone, Copy)]
enum Mode {
    /// Answers every request and keeps the connection open.
    KeepAlive,
    /// Answers one request as if keeping the connection, then closes it without saying so.
    SilentClose,
    /// Answers one request with `Connection: close`, then closes.
    SaysClose,
}

struct RawUpstream {
    url: String,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    /// `/hold` sends its head and first chunk, then waits for this before finishing.
    release: Arc<Notify>,
}

/// `/burst/…` requests are answered only once [`BURST`] of them have arrived: that many are
/// in flight at once, each on its own upstream connection.
const BURST: usize = 300;

impl RawUpstream {
    async fn start(mode: Mode) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let burst = Arc::new(Barrier::new(BURST));
        let (c, r, n) = (connections.clone(), requests.clone(), release.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, mode, r.clone(), n.clone(), burst.clone()));
            }
        });
        RawUpstream {
            url,
            connections,
            requests,
            release,
        }
    }
}

async fn serve(
    mut stream: TcpStream,
    mode: Mode,
    requests: Arc<AtomicUsize>,
    release: Arc<Notify>,
    burst: Arc<Barrier>,
) {
    let mut buf = Vec::new();
    loop {
        // Requests here have no body: the head ends the request.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        requests.fetch_add(1, Ordering::SeqCst);
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        if path == "/hold" {
            let start = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n";
            if stream.write_all(start.as_bytes()).await.is_err() {
                return;
            }
            release.notified().await;
            if stream.write_all(b"4\r\nlast\r\n0\r\n\r\n").await.is_err() {
                return;
            }
            continue;
        }
        if path.starts_with("/burst/") {
            burst.wait().await;
        }
        let body = format!("saw {path}");
        let connection = match mode {
            Mode::SaysClose => "Connection: close\r\n",
            Mode::KeepAlive | Mode::SilentClose => "",
        };
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{connection}\r\n{body}",
            body.len()
        );
        if stream.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
        if !matches!(mode, Mode::KeepAlive) {
            return;
        }
    }
}

async fn gateway(up: &RawUpstream) -> TestGateway {
    let routes = "routes:\n  - name: app\n    upstream: \"UPSTREAM\"\n    public: [\"/\"]\n";
    TestGateway::start(&base_yaml(&up.url, routes)).await
}

/// Twenty requests in a row, each answered by the upstream with its own path.
async fn send_20_one_after_another(gw: &TestGateway, up: &RawUpstream) {
    let c = gw.client();
    for i in 0..20 {
        let r = c.get(&format!("/n/{i}")).await;
        assert_eq!(r.status, StatusCode::OK, "request {i}: {}", r.body);
        assert_eq!(r.body, format!("saw /n/{i}"));
    }
    assert_eq!(up.requests.load(Ordering::SeqCst), 20);
}

#[tokio::test]
async fn sequential_requests_reuse_one_upstream_connection() {
    let up = RawUpstream::start(Mode::KeepAlive).await;
    let gw = gateway(&up).await;
    send_20_one_after_another(&gw, &up).await;
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_never_used_again() {
    for mode in [Mode::SilentClose, Mode::SaysClose] {
        let up = RawUpstream::start(mode).await;
        let gw = gateway(&up).await;
        send_20_one_after_another(&gw, &up).await;
        assert_eq!(up.connections.load(Ordering::SeqCst), 20);
        gw.stop().await;
    }
}

#[tokio::test]
async fn a_response_still_streaming_does_not_hold_up_another_request() {
    let up = RawUpstream::start(Mode::KeepAlive).await;
    let gw = gateway(&up).await;
    // Warm the pool so that the streaming request takes the one pooled connection.
    assert_eq!(gw.client().get("/warm").await.status, StatusCode::OK);

    let mut held = TcpStream::connect(gw.addr).await.unwrap();
    held.write_all(b"GET /hold HTTP/1.1\r\nHost: app\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut held, "first", "the held response starts").await;

    // The held response is mid-body on its upstream connection; this one must not wait for it.
    let r = tokio::time::timeout(Duration::from_secs(10), gw.client().get("/other"))
        .await
        .expect("a request queued behind a streaming response");
    assert_eq!(r.body, "saw /other");
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);

    up.release.notify_one();
    let rest = read_until(&mut held, "0\r\n\r\n", "the held response finishes").await;
    assert!(rest.contains("last"));

    // Both connections are back in the pool and ready: more requests open none.
    for i in 0..5 {
        assert_eq!(
            gw.client().get(&format!("/again/{i}")).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
    gw.stop().await;
}

#[tokio::test]
async fn every_connection_a_burst_opened_is_reused_by_the_next_burst() {
    let up = RawUpstream::start(Mode::KeepAlive).await;
    let gw = gateway(&up).await;
    for wave in 0..2 {
        let requests: Vec<_> = (0..BURST)
            .map(|i| {
                let c = gw.client();
                tokio::spawn(async move { c.get(&format!("/burst/{wave}/{i}")).await })
            })
            .collect();
        for (i, request) in requests.into_iter().enumerate() {
            let r = tokio::time::timeout(Duration::from_secs(30), request)
                .await
                .expect("a burst request timed out")
                .unwrap();
            assert_eq!(r.body, format!("saw /burst/{wave}/{i}"));
        }
        // The upstream answered only with all of the burst in flight, so each had its own
        // connection; the second burst finds every one of them idle in the pool.
        assert_eq!(
            up.connections.load(Ordering::SeqCst),
            BURST,
            "upstream connections after burst {wave}"
        );
        // A connection is reusable once hyper's task for it has seen its response end, which
        // can trail the client's last byte by a moment.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.stop().await;
}

/// Reads from `stream` until what has arrived contains `needle` (at most 10 s per read);
/// panics with `what` if the stream stalls or closes first.
async fn read_until(stream: &mut TcpStream, needle: &str, what: &str) -> String {
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains(needle) {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("{what}: timed out"))
            .unwrap();
        assert!(n > 0, "{what}: the connection closed");
        got.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}
