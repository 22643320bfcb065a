//! Bad input (SPEC §10, §3 `limits`): every malformed request gets a 4xx or a closed
//! connection, never a panic or a hang, and the gateway keeps serving.

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn yaml(up: &Upstream, limits: &str) -> String {
    base_yaml(&up.url(), default_routes())
        .replace("server:\n", &format!("server:\n  limits:\n{limits}"))
}

/// `yaml` with the upstream's 5-second `/slow` page public.
fn with_public_slow(up: &Upstream, limits: &str) -> String {
    yaml(up, limits).replace(
        "public: [\"/public/\", \"/favicon.ico\"]",
        "public: [\"/public/\", \"/favicon.ico\", \"/slow\"]",
    )
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml(&up, "    max_request_header_bytes: 16KiB\n")).await;
    let big = "a".repeat(20 * 1024);
    let req =
        format!("GET /public/x HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\nconnection: close\r\n\r\n");
    assert_eq!(raw_status(&raw(gw.addr, req.as_bytes()).await), 431);
    let many: String = (0..200)
        .map(|i| format!("x-h{i}: {}\r\n", "v".repeat(100)))
        .collect();
    let req = format!("GET /public/x HTTP/1.1\r\nhost: x\r\n{many}connection: close\r\n\r\n");
    assert_eq!(raw_status(&raw(gw.addr, req.as_bytes()).await), 431);
    assert_eq!(up.count(), 0);
    assert_alive(gw.addr).await;
    gw.stop().await;
}

/// The head and body of each response in `raw` (a connection's whole answer), in order.
fn responses(raw: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some((head, after)) = rest.split_once("\r\n\r\n") {
        let length = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_string())
            })
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let length = length.min(after.len());
        out.push((head.to_string(), after[..length].to_string()));
        rest = &after[length..];
    }
    out
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// SPEC §6 and §10: a request head hyper itself would refuse (too large, malformed) gets the
/// gateway's error — a page for a browser, `{"error": …}` for the rest — not a bare status
/// line, on the express lane's connections and on hyper's alike, however the head arrives.
#[tokio::test]
async fn a_refused_request_head_gets_the_gateway_s_error_body_on_either_path() {
    let up = Upstream::start().await;
    let on = yaml(&up, "    max_request_header_bytes: 16KiB\n");
    let off = on.replace("server:\n", "server:\n  express_lane: false\n");
    let big = "a".repeat(20 * 1024);
    for config in [on, off] {
        let gw = TestGateway::start(&config).await;
        let seen_before = up.count();
        let too_large = format!("GET /public/x HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n");
        let browser_too_large = format!(
            "GET /public/x HTTP/1.1\r\nhost: x\r\naccept: text/html\r\nx-big: {big}\r\n\r\n"
        );
        let malformed = "GET /public/x HTTP/1.1\r\nhost: x\r\nbad header: x\r\n\r\n";
        // Not a navigation (SPEC §6): JSON, whatever `Accept` says.
        let post_too_large = browser_too_large.replacen("GET", "POST", 1);
        for (request, status, json) in [
            (
                too_large.as_str(),
                "431",
                Some("request_header_fields_too_large"),
            ),
            (browser_too_large.as_str(), "431", None),
            (
                post_too_large.as_str(),
                "431",
                Some("request_header_fields_too_large"),
            ),
            (malformed, "400", Some("bad_request")),
        ] {
            let answer = raw(gw.addr, request.as_bytes()).await;
            let got = responses(&answer);
            assert_eq!(got.len(), 1, "{answer}");
            let (head, body) = &got[0];
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
            assert_eq!(header(head, "connection"), Some("close"), "{head}");
            let id = header(head, "x-request-id").expect("a request id");
            match json {
                Some(code) => {
                    assert_eq!(header(head, "content-type"), Some("application/json"));
                    assert_eq!(body.trim(), format!("{{\"error\":\"{code}\"}}"));
                }
                None => {
                    assert!(header(head, "content-type")
                        .unwrap()
                        .starts_with("text/html"));
                    assert!(body.contains(id), "the page shows the request id: {body}");
                }
            }
        }
        // After a request that was answered, on the same connection; and a head that arrives
        // in pieces is refused as soon as it is too large.
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(b"GET /public/x HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        for piece in too_large.as_bytes().chunks(6000) {
            tokio::time::sleep(Duration::from_millis(30)).await;
            if s.write_all(piece).await.is_err() {
                break;
            }
        }
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let got = responses(&answer);
        assert_eq!(got.len(), 2, "{answer}");
        assert!(got[0].0.starts_with("HTTP/1.1 200 "), "{answer}");
        assert!(got[1].0.starts_with("HTTP/1.1 431 "), "{answer}");
        assert_eq!(
            got[1].1.trim(),
            "{\"error\":\"request_header_fields_too_large\"}"
        );
        // `HEAD` gets the status and no body.
        let head_request = too_large.replacen("GET", "HEAD", 1);
        let answer = raw(gw.addr, head_request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        assert!(answer.ends_with("\r\n\r\n"), "{answer}");
        // Only the good request reached the app.
        assert_eq!(up.count(), seen_before + 1);
        assert_alive(gw.addr).await;
        gw.stop().await;
    }
}

#[tokio::test]
async fn slow_headers_are_cut_off_after_header_read_timeout() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml(&up, "    header_read_timeout: 1s\n")).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /public/x HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(6), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was not closed");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(up.count(), 0);
    assert_alive(gw.addr).await;
    gw.stop().await;
}

/// Reads until the gateway closes the connection; how long that took (at most `limit`).
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let mut buf = Vec::new();
    match tokio::time::timeout(limit, s.read_to_end(&mut buf)).await {
        Ok(_) => Ok(started.elapsed()),
        Err(_) => Err(format!(
            "still open after {limit:?} (read {:?})",
            String::from_utf8_lossy(&buf)
        )),
    }
}

#[tokio::test]
async fn a_connection_that_never_starts_a_request_is_closed() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml(&up, "    header_read_timeout: 1s\n")).await;
    // Nothing at all, or the start of the HTTP/2 preface and then nothing: either would
    // hold one of `max_connections` for ever if only hyper's HTTP/1 header timer ran.
    for sent in [&b""[..], b"PRI * HTTP/2.0\r\n"] {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(sent).await.unwrap();
        let took = closed_within(&mut s, Duration::from_secs(6)).await.unwrap();
        assert!(took < Duration::from_secs(4), "{sent:?}: {took:?}");
    }
    assert_alive(gw.addr).await;
    gw.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml(
        &up,
        "    header_read_timeout: 20s\n    idle_timeout: 1s\n",
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /public/x HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Kept alive, then idle: closed after idle_timeout, long before header_read_timeout.
    let took = closed_within(&mut s, Duration::from_secs(8)).await.unwrap();
    assert!(took < Duration::from_secs(4), "{took:?}");
    // A fresh connection that sends nothing gets the same limit.
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    let took = closed_within(&mut silent, Duration::from_secs(8))
        .await
        .unwrap();
    assert!(took < Duration::from_secs(4), "{took:?}");
    gw.stop().await;
}

#[tokio::test]
async fn a_request_waiting_on_a_slow_upstream_outlives_idle_timeout() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&with_public_slow(
        &up,
        "    header_read_timeout: 1s\n    idle_timeout: 1s\n",
    ))
    .await;
    // The upstream takes 5 s: waiting for a response is not idleness.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("slow"), "{text}");
    gw.stop().await;
}

#[tokio::test]
async fn a_login_or_refresh_body_that_stalls_gets_408_and_the_connection_closes() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml(&up, "    header_read_timeout: 1s\n")).await;
    for path in ["/.gatehouse/login", "/.gatehouse/refresh"] {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        // 60 bytes declared, 12 sent, then nothing.
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             content-length: 60\r\n\r\n{{\"username\":"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(8), s.read_to_end(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{path}: no answer and not closed"))
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{path}: {:?}",
            started.elapsed()
        );
        let text = String::from_utf8_lossy(&buf);
        assert_eq!(raw_status(&text), 408, "{path}: {text}");
    }
    assert_alive(gw.addr).await;
    gw.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_after_idle_timeout() {
    // An upstream with a 64 MiB answer, far more than the sockets on the way can buffer.
    const SIZE: usize = 64 << 20;
    let big = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let big_addr = big.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = big.accept().await {
            tokio::spawn(async move {
                let mut head = [0u8; 4096];
                let _ = s.read(&mut head).await;
                let start = format!("HTTP/1.1 200 OK\r\ncontent-length: {SIZE}\r\n\r\n");
                if s.write_all(start.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 1 << 16];
                for _ in 0..SIZE / chunk.len() {
                    if s.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let text = base_yaml(&format!("http://{big_addr}"), default_routes())
        .replace("server:\n", "server:\n  limits:\n    idle_timeout: 1s\n");
    let gw = TestGateway::start(&text).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /public/big HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    // Read nothing for a while: the gateway's writes stall.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the connection neither ended nor finished");
    assert!(
        total < SIZE,
        "the whole {total}-byte answer waited for a client that stopped reading"
    );
    assert_alive(gw.addr).await;
    gw.stop().await;
}

/// An HTTP/2 (cleartext, prior knowledge) client connection and the task driving it.
async fn h2_client(
    addr: std::net::SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    (sender, tokio::spawn(conn))
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_idle_timeout_but_not_mid_request() {
    use http_body_util::BodyExt;
    let up = Upstream::start().await;
    let gw = TestGateway::start(&with_public_slow(
        &up,
        "    header_read_timeout: 20s\n    idle_timeout: 1s\n",
    ))
    .await;
    let get = |path: &str| {
        http::Request::get(format!("http://x{path}"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };

    // No request at all after the preface and settings.
    let (_sender, conn) = h2_client(gw.addr).await;
    let started = Instant::now();
    let _ended = tokio::time::timeout(Duration::from_secs(8), conn)
        .await
        .expect("a silent HTTP/2 connection stayed open");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // One request, then nothing: closed idle_timeout after the response.
    let (mut sender, conn) = h2_client(gw.addr).await;
    let r = sender.send_request(get("/public/x")).await.unwrap();
    assert_eq!(r.status(), 200);
    r.into_body().collect().await.unwrap();
    let started = Instant::now();
    let _ended = tokio::time::timeout(Duration::from_secs(8), conn)
        .await
        .expect("an idle HTTP/2 connection stayed open");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // A request on a 5 s upstream is not idleness: it gets its answer.
    let (mut sender, _conn) = h2_client(gw.addr).await;
    let r = tokio::time::timeout(Duration::from_secs(15), sender.send_request(get("/slow")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"slow");
    gw.stop().await;
}

/// The HTTP/2 side of the rule above: a header list over `max_request_header_bytes` gets the
/// gateway's 431, page or JSON, and the connection serves on.
#[tokio::test]
async fn an_http2_header_list_over_the_limit_gets_the_gateway_s_431() {
    use http_body_util::BodyExt;
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml(&up, "    max_request_header_bytes: 16KiB\n")).await;
    let (mut sender, _conn) = h2_client(gw.addr).await;
    let request = |big: usize, accept: &str| {
        http::Request::get("http://x/public/x")
            .header("accept", accept)
            .header("x-big", "a".repeat(big))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let r = sender
        .send_request(request(20 * 1024, "application/json"))
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body = r.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        &body[..],
        b"{\"error\":\"request_header_fields_too_large\"}\n"
    );
    let r = sender
        .send_request(request(20 * 1024, "text/html"))
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains(&id));
    // Under the limit, on the same connection: served.
    let r = sender.send_request(request(1024, "*/*")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.count(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn max_connections_holds_excess_connections_until_one_closes() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml(
        &up,
        "    max_connections: 2\n    header_read_timeout: 30s\n",
    ))
    .await;
    let mut first = TcpStream::connect(gw.addr).await.unwrap();
    let _second = TcpStream::connect(gw.addr).await.unwrap();
    first
        .write_all(b"GET /public/a HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), first.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // A third connection is not served while two are open...
    let mut third = TcpStream::connect(gw.addr).await.unwrap();
    third
        .write_all(b"GET /public/b HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let waiting = tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf)).await;
    assert!(waiting.is_err(), "a third connection was served");
    // ...and is as soon as one closes.
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    gw.stop().await;
}

#[tokio::test]
async fn garbage_requests_get_4xx_and_the_gateway_survives() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml(&up, "    header_read_timeout: 2s\n")).await;
    let cases: [&[u8]; 10] = [
        b"GARBAGE\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\nhost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: x\r\nbad header\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: a b\r\nconnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello",
        b"POST /.gatehouse/login HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-type: application/json\r\n\r\nZZZ\r\n",
        b"GET http://evil.example/admin HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        b"\x00\x01\x02\x03\r\n\r\n",
        b"GET /%ff%fe HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    ];
    for case in cases {
        let resp = raw(gw.addr, case).await;
        let status = raw_status(&resp);
        assert!(
            status == 0 || (400..500).contains(&status),
            "{:?} -> {resp:?}",
            String::from_utf8_lossy(case)
        );
        assert_alive(gw.addr).await;
    }
    assert_eq!(
        up.count(),
        0,
        "nothing unauthenticated reached the upstream"
    );
    gw.stop().await;
}
