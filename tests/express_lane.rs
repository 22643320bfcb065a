//! The express lane (src/accept/lane.rs) against hyper's path, on the same gateway: every
//! request is sent once with the lane off and once with it on, and the client's answer and
//! what the upstream received must be the same. The lane's own counter says which requests it
//! took, so a request it must hand to hyper (the gateway's own pages, streamed bodies, odd
//! heads) is checked both for the answer and for the lane keeping its hands off, and one it
//! serves (refusals and redirects included) for being served there.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A response as compared: status, headers without the per-request ones, decoded body.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    status: StatusCode,
    headers: Vec<(String, String)>,
    body: Bytes,
    request_id: bool,
}

fn comparable(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers
        .iter()
        .filter(|(n, _)| !matches!(n.as_str(), "date" | "x-request-id"))
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    // Order between different names carries no meaning (RFC 9110 §5.3); a stable sort keeps
    // the order of one name's values, which does.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Sends requests one after another on one connection and reads each answer.
async fn on_one_connection(addr: SocketAddr, reqs: Vec<Request<Full<Bytes>>>) -> Vec<Seen> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut out = Vec::new();
    for req in reqs {
        sender.ready().await.expect("the connection stays open");
        let resp = tokio::time::timeout(Duration::from_secs(20), sender.send_request(req))
            .await
            .expect("an answer within 20 s")
            .expect("an answer");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("a whole body").to_bytes();
        assert!(
            parts.headers.contains_key("date"),
            "every answer has a Date"
        );
        out.push(Seen {
            status: parts.status,
            request_id: parts.headers.contains_key("x-request-id"),
            headers: comparable(&parts.headers),
            body,
        });
    }
    out
}

/// A request as the upstream received it: method, target, comparable headers (the generated
/// request id's value masked), body.
type Received = (Method, String, Vec<(String, String)>, Bytes);

fn received(up: &Upstream, from: usize) -> Vec<Received> {
    up.requests()[from..]
        .iter()
        .map(|r| {
            assert!(r.headers.contains_key("x-request-id"));
            (
                r.method.clone(),
                r.uri.clone(),
                comparable(&r.headers),
                r.body.clone(),
            )
        })
        .collect()
}

struct Both {
    answers: Vec<Seen>,
    lane_took: u64,
}

/// Sends `make()`'s requests with the lane off, then on; asserts the answers and what the
/// upstream saw are the same; returns how many requests the lane took.
async fn differential(
    gw: &TestGateway,
    up: &Upstream,
    make: impl Fn() -> Vec<Request<Full<Bytes>>>,
) -> Both {
    gw.gw.set_express_lane(false);
    let before = up.count();
    let off = on_one_connection(gw.addr, make()).await;
    let seen_off = received(up, before);
    gw.gw.set_express_lane(true);
    let before = up.count();
    let took = gw.gw.lane_served();
    let on = on_one_connection(gw.addr, make()).await;
    let seen_on = received(up, before);
    let lane_took = gw.gw.lane_served() - took;
    gw.gw.set_express_lane(false);
    assert_eq!(off, on, "the client's answers differ with the lane on");
    assert_eq!(seen_off, seen_on, "the upstream saw different requests");
    assert!(
        on.iter().all(|s| s.request_id),
        "every answer has a request id"
    );
    Both {
        answers: on,
        lane_took,
    }
}

fn get(path: &str, cookie: &str, extra: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::get(path).header("host", "gw.example");
    if !cookie.is_empty() {
        b = b.header("cookie", cookie);
    }
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    b.body(Full::default()).unwrap()
}

async fn logged_in(gw: &TestGateway, user: &str, pw: &str) -> String {
    let c = gw.client();
    c.login(user, pw).await;
    let jar = c.jar.lock().unwrap();
    jar.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Logs the session of `cookies` (as `logged_in` gives them) out, from another connection.
async fn log_out(gw: &TestGateway, cookies: &str) {
    let c = gw.client();
    for pair in cookies.split("; ") {
        let (k, v) = pair.split_once('=').unwrap();
        c.set_cookie(k, v);
    }
    assert_eq!(
        c.post_form("/.gatehouse/logout", &[]).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn authenticated_gets_are_forwarded_exactly_as_hyper_forwards_them() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    let alice = logged_in(&gw, "alice", "alice-pw").await;
    let cookies = format!("app_session=s1; {alice}; theme=dark");
    let both = differential(&gw, &up, || {
        vec![
            get("/x", &alice, &[]),
            // Forged identity and forwarding headers in every spelling, mixed case, repeats.
            get(
                "/report?q=1&b=%2F",
                &cookies,
                &[
                    ("X-Forwarded-User", "mallory"),
                    ("x_forwarded_user", "mallory"),
                    ("X-FORWARDED-ROLES", "admin"),
                    ("X-Forwarded-For", "6.6.6.6"),
                    ("Forwarded", "for=6.6.6.6"),
                    ("X-Real-IP", "6.6.6.6"),
                    ("X-Forwarded-Host", "evil.example"),
                    ("X-Forwarded-Proto", "https"),
                    ("Accept", "text/html"),
                    ("X-Custom", "one"),
                    ("x-custom", "two"),
                ],
            ),
            // Dot segments and doubled slashes go upstream canonical.
            get(
                "/a/./b/../c//d",
                &alice,
                &[("x-request-id", "client-chosen-id-1")],
            ),
            Request::head("/x")
                .header("host", "gw.example")
                .header("cookie", &alice)
                .body(Full::default())
                .unwrap(),
            get("/admin/panel", &alice, &[]),
            get("/stream", &alice, &[]),
            // A second Cookie header with the app's cookie.
            get("/x", &alice, &[("cookie", "app=2")]),
        ]
    })
    .await;
    assert_eq!(both.lane_took, 7, "the lane took every request here");
    assert!(both.answers.iter().all(|a| a.status == StatusCode::OK));
    assert_eq!(both.answers[5].body, "first;second;third");
    // And what went upstream is right in itself, not only alike.
    let last = up.last();
    assert_eq!(last.header("x-forwarded-user"), Some("alice"));
    assert_eq!(last.header_all("cookie"), vec!["app=2".to_string()]);
    let forged = &up.requests()[up.count() - 6];
    assert_eq!(
        forged.header_all("x-forwarded-user"),
        vec!["alice".to_string()]
    );
    assert_eq!(forged.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(forged.header("x-forwarded-host"), Some("gw.example"));
    assert_eq!(forged.header("x-forwarded-proto"), Some("http"));
    assert!(forged.header("forwarded").is_none() && forged.header("x-real-ip").is_none());
    assert!(!forged.names().iter().any(|n| n == "x_forwarded_user"));
    assert_eq!(forged.header("cookie"), Some("app_session=s1; theme=dark"));
    assert_eq!(
        up.requests()[up.count() - 5].header("x-request-id"),
        Some("client-chosen-id-1")
    );
    assert_eq!(up.requests()[up.count() - 5].uri, "/a/c/d");
    gw.stop().await;
}

#[tokio::test]
async fn refusals_redirects_and_odd_heads_get_hyper_s_answers() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    let alice = logged_in(&gw, "alice", "alice-pw").await;
    let bob = logged_in(&gw, "bob", "bob-pw").await;
    let revoked = logged_in(&gw, "alice", "alice-pw").await;
    log_out(&gw, &revoked).await;
    let access = |cookies: &str| {
        cookies
            .split("; ")
            .find(|p| p.starts_with("gatehouse_access=") || p.contains("access"))
            .unwrap()
            .to_string()
    };
    let alice_access = access(&alice);
    let tampered = {
        let mut t = alice_access.clone();
        let last = t.pop().unwrap();
        t.push(if last == 'A' { 'B' } else { 'A' });
        t
    };
    let bearer_token = alice_access.split_once('=').unwrap().1.to_string();
    // A refresh cookie that does not verify: a transparent refresh that fails (401, cookies
    // cleared).
    let refresh_name = alice
        .split("; ")
        .find_map(|p| p.split_once('=').filter(|(n, _)| n.contains("refresh")))
        .unwrap()
        .0;
    let bad_refresh = format!("{refresh_name}=not-a-refresh-token");
    let both = differential(&gw, &up, || {
        vec![
            get("/x", "", &[]),
            get("/x", "", &[("accept", "text/html")]),
            get("/x", &tampered, &[]),
            get("/x", &access(&revoked), &[]),
            get("/admin/panel", &bob, &[]),
            get("/x", &bad_refresh, &[]),
            get("/public/page", "", &[]),
            get("/public/page", &alice, &[]),
            get("/.gatehouse/healthz", &alice, &[]),
            get("/%2e%2e/etc", &alice, &[]),
            get("/x%23y", &alice, &[]),
            get(
                "/x",
                "",
                &[("authorization", &format!("Bearer {bearer_token}"))],
            ),
            Request::post("/x")
                .header("host", "gw.example")
                .header("cookie", &alice)
                .body(Full::from("a body"))
                .unwrap(),
            get("/x", &alice, &[("content-length", "0")]),
            get("/x", &alice, &[("expect", "100-continue")]),
            get("/x", &alice, &[("te", "trailers")]),
            // Still answered by the lane after all those, on the same connection.
            get("/x", &alice, &[]),
        ]
    })
    .await;
    let statuses: Vec<u16> = both.answers.iter().map(|a| a.status.as_u16()).collect();
    assert_eq!(
        statuses,
        vec![401, 302, 401, 401, 403, 401, 200, 200, 200, 400, 400, 200, 200, 200, 200, 200, 200]
    );
    // The refusals, redirects and public paths are the lane's; the gateway's own page hands
    // the connection to hyper for good, so count on fresh connections too.
    assert_eq!(
        both.lane_took, 8,
        "the lane answers up to the gateway's own page, hyper after it"
    );
    // The lane answers every plain request to an app, whatever the decision (the one hyper's
    // path takes): forwarded, refused, redirected; the gateway's own pages are hyper's.
    for (req, lanes) in [
        (get("/x", "", &[]), 1),
        (get("/x", "", &[("accept", "text/html")]), 1),
        (get("/x", &tampered, &[]), 1),
        (get("/x", &access(&revoked), &[]), 1),
        (get("/admin/panel", &bob, &[]), 1),
        (get("/x", &bad_refresh, &[]), 1),
        (
            Request::head("/x")
                .header("host", "gw.example")
                .header("accept", "text/html")
                .body(Full::default())
                .unwrap(),
            1,
        ),
        (get("/x%23y", &alice, &[]), 1),
        (get("/x", &alice, &[("content-length", "0")]), 1),
        (get("/x", &alice, &[("expect", "100-continue")]), 0),
        (get("/.gatehouse/healthz", &alice, &[]), 0),
        (get("/public/page", &alice, &[]), 1),
        (get("/public/page", "", &[]), 1),
    ] {
        let path = req.uri().to_string();
        gw.gw.set_express_lane(true);
        let took = gw.gw.lane_served();
        on_one_connection(gw.addr, vec![req]).await;
        assert_eq!(gw.gw.lane_served() - took, lanes, "the lane on {path}");
    }
    // HEAD refusals: the page's head without its body, framed as hyper frames it.
    let head = |accept: &str| {
        Request::head("/x")
            .header("host", "gw.example")
            .header("accept", accept)
            .body(Full::default())
            .unwrap()
    };
    let both = differential(&gw, &up, || vec![head("text/html"), head("*/*")]).await;
    let statuses: Vec<u16> = both.answers.iter().map(|a| a.status.as_u16()).collect();
    assert_eq!((statuses, both.lane_took), (vec![302, 401], 2));
    // Copies of the access cookie, and one that is not token-shaped: which copy counts is
    // hyper's path's call (the first token-shaped one), on a fresh connection each.
    let (name, _) = alice_access.split_once('=').unwrap();
    let garbage = format!("{name}=not*a*token");
    let bob_access = access(&bob);
    for (cookie, status) in [
        (garbage.clone(), 401),
        (format!("{garbage}; {alice_access}"), 200),
        (format!("{alice_access}; {bob_access}"), 200),
        (format!("{bob_access}; {alice_access}"), 200),
    ] {
        let both = differential(&gw, &up, || vec![get("/admin/panel", &cookie, &[])]).await;
        // Bob may not see /admin: a 200 there means Alice's copy counted.
        let expected = if cookie.starts_with(&bob_access) {
            403
        } else {
            status
        };
        assert_eq!(both.answers[0].status.as_u16(), expected, "{cookie}");
        assert_eq!(both.lane_took, 1, "the lane on {cookie}");
    }
    gw.gw.set_express_lane(false);
    gw.stop().await;
}

/// Reads one raw HTTP/1.1 response (head and Content-Length or chunked body) from `s`.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(u16, Vec<u8>)> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(n)) = resp.parse(buf) {
            let code = resp.code.unwrap();
            let length = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| {
                    std::str::from_utf8(h.value)
                        .unwrap()
                        .parse::<usize>()
                        .unwrap()
                });
            let chunked = resp
                .headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
            loop {
                if let Some(len) = length {
                    if buf.len() >= n + len {
                        let body = buf[n..n + len].to_vec();
                        buf.drain(..n + len);
                        return Some((code, body));
                    }
                } else if chunked {
                    if let Some(end) = buf[n..].windows(5).position(|w| w == b"0\r\n\r\n") {
                        let body = buf[n..n + end].to_vec();
                        buf.drain(..n + end + 5);
                        return Some((code, body));
                    }
                } else {
                    buf.drain(..n);
                    return Some((code, Vec::new()));
                }
                if !read_more(s, buf).await {
                    return None;
                }
            }
        }
        if !read_more(s, buf).await {
            return None;
        }
    }
}

async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
        Ok(Ok(n)) if n > 0 => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        _ => false,
    }
}

#[tokio::test]
async fn pipelined_requests_keep_their_order_across_the_hand_off() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    let alice = logged_in(&gw, "alice", "alice-pw").await;
    gw.gw.set_express_lane(true);
    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: gw\r\nCookie: {alice}\r\n\r\n").into_bytes()
    };
    let mut all = Vec::new();
    all.extend(get("/one"));
    all.extend(get("/two"));
    // A body that looks like a request: once hyper has the connection, it must frame it.
    let body = format!("GET /smuggled HTTP/1.1\r\nHost: gw\r\nCookie: {alice}\r\n\r\n");
    all.extend(
        format!(
            "POST /three HTTP/1.1\r\nHost: gw\r\nCookie: {alice}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    );
    all.extend(get("/four#frag"));
    all.extend(get("/five"));
    let took = gw.gw.lane_served();
    let before = up.count();
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(&all).await.unwrap();
    let mut buf = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (code, _) = read_response(&mut s, &mut buf).await.expect("an answer");
        statuses.push(code);
    }
    assert_eq!(statuses, vec![200, 200, 200, 400, 200]);
    // The POST's body came with it and is framed by its Content-Length: the request inside it
    // is never parsed as one.
    assert_eq!(
        gw.gw.lane_served() - took,
        3,
        "the lane took the first three"
    );
    let uris: Vec<String> = up.requests()[before..]
        .iter()
        .map(|r| r.uri.clone())
        .collect();
    assert_eq!(uris, vec!["/one", "/two", "/three", "/five"]);
    assert_eq!(up.requests()[before + 2].body, body.as_bytes());
    gw.gw.set_express_lane(false);
    gw.stop().await;
}

/// A case: its name, what the client writes (in parts), the answers expected, and how many
/// requests the lane takes (`None` where either path may serve it).
type BodyCase = (&'static str, Vec<Vec<u8>>, Vec<u16>, Option<u64>);

/// Writes `parts` on a fresh connection (pausing between them), reads `answers` raw answers;
/// returns them with what the upstream received and how many requests the lane took.
async fn raw_exchange(
    gw: &TestGateway,
    up: &Upstream,
    parts: &[Vec<u8>],
    answers: usize,
) -> (Vec<(u16, Vec<u8>)>, Vec<Received>, u64) {
    let before = up.count();
    let took = gw.gw.lane_served();
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s.write_all(part).await.unwrap();
    }
    let mut buf = Vec::new();
    let mut got = Vec::new();
    for _ in 0..answers {
        got.push(read_response(&mut s, &mut buf).await.expect("an answer"));
    }
    // The upstream records a request once it has read its body: give a refused one's
    // absence the same chance to show.
    tokio::time::sleep(Duration::from_millis(20)).await;
    (got, received(up, before), gw.gw.lane_served() - took)
}

#[tokio::test]
async fn bodies_that_come_with_their_head_are_forwarded_exactly_as_hyper_forwards_them() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    let alice = logged_in(&gw, "alice", "alice-pw").await;
    let req = |method: &str, path: &str, extra: &str, body: &[u8]| -> Vec<u8> {
        let mut r = format!(
            "{method} {path} HTTP/1.1\r\nHost: gw.example\r\nCookie: {alice}\r\n{extra}\r\n"
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    };
    let len = |n: usize| format!("Content-Length: {n}\r\n");
    let max = vec![b'm'; 64 * 1024];
    let over = vec![b'o'; 64 * 1024 + 1];
    // (what the client writes, in parts; answers expected; requests the lane takes: None where
    // either path may serve it, by how the kernel hands over a 64 KiB body)
    let cases: Vec<BodyCase> = vec![
        (
            "POST",
            vec![req("POST", "/echo-body", &len(6), b"a body")],
            vec![200],
            Some(1),
        ),
        (
            "PUT empty",
            vec![req("PUT", "/echo-body", &len(0), b"")],
            vec![200],
            Some(1),
        ),
        (
            "PATCH",
            vec![req("PATCH", "/x", &len(3), b"abc")],
            vec![200],
            Some(1),
        ),
        (
            "DELETE",
            vec![req("DELETE", "/x", &len(2), b"{}")],
            vec![200],
            Some(1),
        ),
        (
            "OPTIONS",
            vec![req("OPTIONS", "/x", "", b"")],
            vec![200],
            Some(1),
        ),
        (
            "GET with a body",
            vec![req("GET", "/echo-body", &len(4), b"body")],
            vec![200],
            Some(1),
        ),
        (
            "POST without a length",
            vec![req("POST", "/echo-body", "", b"")],
            vec![200],
            Some(1),
        ),
        (
            "leading zeros",
            vec![req(
                "POST",
                "/echo-body",
                "Content-Length: 007\r\n",
                b"seven!!",
            )],
            vec![200],
            Some(1),
        ),
        (
            "three on one connection",
            vec![[
                req("POST", "/echo-body", &len(5), b"first"),
                req("GET", "/x", "", b""),
                req("PUT", "/echo-body", &len(6), b"second"),
            ]
            .concat()],
            vec![200, 200, 200],
            Some(3),
        ),
        (
            "64 KiB",
            vec![req("POST", "/echo-body", &len(max.len()), &max)],
            vec![200],
            None,
        ),
        (
            "over 64 KiB",
            vec![req("POST", "/echo-body", &len(over.len()), &over)],
            vec![200],
            Some(0),
        ),
        (
            "a body that comes later",
            vec![req("POST", "/echo-body", &len(5), b""), b"later".to_vec()],
            vec![200],
            Some(0),
        ),
        (
            "a signed length",
            vec![req(
                "POST",
                "/echo-body",
                "Content-Length: +6\r\n",
                b"a body",
            )],
            vec![400],
            Some(0),
        ),
        (
            "a list of lengths",
            vec![req(
                "POST",
                "/echo-body",
                "Content-Length: 6, 6\r\n",
                b"a body",
            )],
            vec![400],
            Some(0),
        ),
        (
            "two lengths",
            vec![req(
                "POST",
                "/echo-body",
                "Content-Length: 6\r\nContent-Length: 6\r\n",
                b"a body",
            )],
            vec![200],
            Some(0),
        ),
        (
            "a long length",
            vec![req(
                "POST",
                "/echo-body",
                "Content-Length: 000006\r\n",
                b"a body",
            )],
            vec![200],
            Some(0),
        ),
        (
            "chunked",
            vec![req(
                "POST",
                "/echo-body",
                "Transfer-Encoding: chunked\r\n",
                b"3\r\nabc\r\n0\r\n\r\n",
            )],
            vec![200],
            Some(0),
        ),
        (
            "expect",
            vec![req(
                "POST",
                "/echo-body",
                &format!("Expect: 100-continue\r\n{}", len(2)),
                b"hi",
            )],
            vec![100, 200],
            Some(0),
        ),
        (
            "TRACE",
            vec![req("TRACE", "/x", "", b"")],
            vec![200],
            Some(0),
        ),
    ];
    for (name, parts, statuses, lane) in cases {
        gw.gw.set_express_lane(false);
        let (off, seen_off, _) = raw_exchange(&gw, &up, &parts, statuses.len()).await;
        gw.gw.set_express_lane(true);
        let (on, seen_on, took) = raw_exchange(&gw, &up, &parts, statuses.len()).await;
        gw.gw.set_express_lane(false);
        assert_eq!(
            off, on,
            "{name}: the client's answers differ with the lane on"
        );
        assert_eq!(
            seen_off, seen_on,
            "{name}: the upstream saw different requests"
        );
        let got: Vec<u16> = on.iter().map(|(code, _)| *code).collect();
        assert_eq!(got, statuses, "{name}");
        if let Some(lane) = lane {
            assert_eq!(took, lane, "{name}: requests the lane took");
        }
    }
    // The bodies arrived whole, and were answered whole.
    let (answers, seen, _) = raw_exchange(
        &gw,
        &up,
        &[req("POST", "/echo-body", &len(6), b"a body")],
        1,
    )
    .await;
    assert_eq!(answers[0].1, b"a body");
    assert_eq!(seen[0].3, "a body");
    assert_eq!(
        seen[0]
            .2
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.as_str()),
        Some("6")
    );
    // A refusal with a body is the lane's answer too, and the upstream sees nothing; the
    // body is consumed, so the next request on the connection is read from after it.
    let refused = format!("POST /x HTTP/1.1\r\nHost: gw.example\r\n{}\r\nabc", len(3)).into_bytes();
    let then = req("GET", "/x", "", b"");
    gw.gw.set_express_lane(true);
    let (answers, seen, took) = raw_exchange(&gw, &up, &[[refused, then].concat()], 2).await;
    gw.gw.set_express_lane(false);
    let statuses: Vec<u16> = answers.iter().map(|(code, _)| *code).collect();
    assert_eq!((statuses, seen.len(), took), (vec![401, 200], 1, 2));
    gw.stop().await;
}

#[tokio::test]
async fn an_http2_preface_after_the_lane_s_answers_is_not_http2() {
    // hyper tells HTTP/1 from HTTP/2 by a connection's first bytes; a preface after HTTP/1
    // requests is an HTTP/1 request it refuses. Handed over by the lane, it must not become
    // HTTP/2 either (it did: the lane's hand-off gave hyper the preface as first bytes).
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    let alice = logged_in(&gw, "alice", "alice-pw").await;
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    for first in [
        format!("GET /x HTTP/1.1\r\nHost: gw\r\nCookie: {alice}\r\n\r\n"),
        "GET /x HTTP/1.1\r\nHost: gw\r\n\r\n".to_string(),
    ] {
        let mut after = Vec::new();
        for lane in [false, true] {
            gw.gw.set_express_lane(lane);
            let took = gw.gw.lane_served();
            let mut s = TcpStream::connect(gw.addr).await.unwrap();
            s.write_all(&[first.as_bytes(), preface].concat())
                .await
                .unwrap();
            let mut buf = Vec::new();
            let (code, _) = read_response(&mut s, &mut buf).await.expect("an answer");
            assert!(code == 200 || code == 401);
            // Then whatever comes until the connection closes (an HTTP/2 SETTINGS frame, if
            // hyper took the preface for one).
            while read_more(&mut s, &mut buf).await {}
            // The refusal's request id and date are its own.
            let text = String::from_utf8_lossy(&buf).into_owned();
            let kept: Vec<&str> = text
                .split("\r\n")
                .filter(|l| !l.starts_with("x-request-id:") && !l.starts_with("date:"))
                .collect();
            after.push(kept.join("\r\n").into_bytes());
            assert_eq!(gw.gw.lane_served() - took, u64::from(lane), "lane: {lane}");
        }
        gw.gw.set_express_lane(false);
        assert_eq!(after[0], after[1], "after {first:?}: lane off, then on");
        assert!(
            !after[1].starts_with(&[0, 0]),
            "no HTTP/2 frame: {:?}",
            after[1]
        );
    }
    gw.stop().await;
}

/// An upstream that answers each request with a canned raw response chosen by its path.
async fn raw_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let path = loop {
                        let mut h = [httparse::EMPTY_HEADER; 64];
                        let mut req = httparse::Request::new(&mut h);
                        if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
                            let path = req.path.unwrap().to_string();
                            buf.drain(..n);
                            break path;
                        }
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    };
                    let (answer, close): (&[u8], bool) = match path.as_str() {
                        "/close-delimited" => (b"HTTP/1.1 200 OK\r\nx-a: 1\r\n\r\nuntil the end", true),
                        "/http10" => (b"HTTP/1.0 200 OK\r\n\r\nold style", true),
                        "/chunked" => (
                            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-t\r\n\r\n4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nx-t: 1\r\n\r\n",
                            false,
                        ),
                        "/early-hints" => (
                            b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
                            false,
                        ),
                        "/no-content" => (b"HTTP/1.1 204 No Content\r\nx-b: 2\r\n\r\n", false),
                        "/not-modified" => (
                            b"HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\ncontent-length: 9\r\n\r\n",
                            false,
                        ),
                        "/reason" => (b"HTTP/1.1 200 Fine Thanks\r\ncontent-length: 1\r\n\r\nx", false),
                        "/hop" => (
                            b"HTTP/1.1 200 OK\r\nConnection: x-secret\r\nx-secret: 1\r\nKeep-Alive: timeout=5\r\nx-kept: 1\r\ncontent-length: 1\r\n\r\ny",
                            false,
                        ),
                        "/conflicting-length" => (
                            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nxx",
                            true,
                        ),
                        "/unasked-upgrade" => (b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n", true),
                        "/garbage" => (b"NOT HTTP AT ALL\r\n\r\n", true),
                        "/hang-up" => (b"", true),
                        "/big" => {
                            let body = "z".repeat(300_000);
                            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                            let mut all = head.into_bytes();
                            all.extend_from_slice(body.as_bytes());
                            let _ = s.write_all(&all).await;
                            continue;
                        }
                        _ => (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nplain", false),
                    };
                    if s.write_all(answer).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn upstream_framing_and_failures_are_relayed_as_hyper_relays_them() {
    let (addr, accepted) = raw_upstream().await;
    let gw = TestGateway::start(&base_yaml(&format!("http://{addr}"), default_routes())).await;
    let alice = logged_in(&gw, "alice", "alice-pw").await;
    let paths = [
        "/plain",
        "/chunked",
        "/early-hints",
        "/no-content",
        "/not-modified",
        "/reason",
        "/hop",
        "/big",
        "/plain",
    ];
    for path in paths {
        gw.gw.set_express_lane(false);
        let off = on_one_connection(gw.addr, vec![get(path, &alice, &[])]).await;
        gw.gw.set_express_lane(true);
        let took = gw.gw.lane_served();
        let on = on_one_connection(gw.addr, vec![get(path, &alice, &[])]).await;
        assert_eq!(gw.gw.lane_served() - took, 1, "{path}: the lane took it");
        assert_eq!(off, on, "{path}: answers differ");
    }
    // Each of these ends its upstream connection; compare one per connection.
    for path in [
        "/close-delimited",
        "/http10",
        "/conflicting-length",
        "/unasked-upgrade",
        "/garbage",
        "/hang-up",
    ] {
        gw.gw.set_express_lane(false);
        let off = on_one_connection(gw.addr, vec![get(path, &alice, &[])]).await;
        gw.gw.set_express_lane(true);
        let on = on_one_connection(gw.addr, vec![get(path, &alice, &[])]).await;
        assert_eq!(off, on, "{path}: answers differ");
    }
    gw.gw.set_express_lane(true);
    let answers = on_one_connection(
        gw.addr,
        [
            "/reason",
            "/hop",
            "/chunked",
            "/no-content",
            "/plain",
            "/conflicting-length",
        ]
        .iter()
        .map(|p| get(p, &alice, &[]))
        .collect(),
    )
    .await;
    assert_eq!(answers[0].status.as_u16(), 200);
    assert!(answers[1]
        .headers
        .iter()
        .all(|(n, _)| n != "x-secret" && n != "keep-alive"));
    assert!(answers[1].headers.iter().any(|(n, _)| n == "x-kept"));
    assert_eq!(answers[2].body, "wikipedia");
    assert_eq!(answers[3].status, StatusCode::NO_CONTENT);
    assert_eq!(answers[4].body, "plain");
    assert_eq!(answers[5].status, StatusCode::BAD_GATEWAY);
    // Kept-alive upstream connections were reused rather than opened per request.
    let opened = accepted.load(Ordering::SeqCst);
    let again = on_one_connection(
        gw.addr,
        (0..20).map(|_| get("/plain", &alice, &[])).collect(),
    )
    .await;
    assert!(again.iter().all(|a| a.body == "plain"));
    assert!(
        accepted.load(Ordering::SeqCst) <= opened + 1,
        "the lane pools upstream connections"
    );
    gw.gw.set_express_lane(false);
    gw.stop().await;
}

#[tokio::test]
async fn an_unreachable_or_slow_upstream_gets_the_same_502_and_504() {
    // A port nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let up = Upstream::start().await;
    let routes = format!(
        "{}  - name: dead\n    host: dead.example\n    upstream: \"http://{dead}\"\n",
        default_routes()
    );
    let yaml = base_yaml(&up.url(), &routes).replace(
        "server:\n  listen: \"127.0.0.1:0\"\n",
        "server:\n  listen: \"127.0.0.1:0\"\n  limits:\n    upstream_response_timeout: 1s\n",
    );
    let gw = TestGateway::start(&yaml).await;
    let alice = logged_in(&gw, "alice", "alice-pw").await;
    let dead_get = || {
        Request::get("/x")
            .header("host", "dead.example")
            .header("cookie", &alice)
            .body(Full::default())
            .unwrap()
    };
    let both = differential(&gw, &up, || {
        vec![dead_get(), get("/slow", &alice, &[]), dead_get()]
    })
    .await;
    let statuses: Vec<u16> = both.answers.iter().map(|a| a.status.as_u16()).collect();
    assert_eq!(statuses, vec![502, 504, 502]);
    assert_eq!(both.lane_took, 3);
    gw.stop().await;
}

#[tokio::test]
async fn a_raw_fragment_right_after_the_lane_s_requests_is_still_refused() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    let alice = logged_in(&gw, "alice", "alice-pw").await;
    gw.gw.set_express_lane(true);
    let req = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: gw\r\nCookie: {alice}\r\n\r\n");
    let before = up.count();
    let took = gw.gw.lane_served();
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let all = format!("{}{}{}", req("/one"), req("/admin#x"), req("/three"));
    s.write_all(all.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(read_response(&mut s, &mut buf).await.expect("an answer").0);
    }
    // The `#` request is the first hyper sees on this connection: the raw-`#` reader, which
    // starts counting heads where the lane handed over, must still find it.
    assert_eq!(statuses, vec![200, 400, 200]);
    assert_eq!(gw.gw.lane_served() - took, 1);
    let uris: Vec<String> = up.requests()[before..]
        .iter()
        .map(|r| r.uri.clone())
        .collect();
    assert_eq!(uris, vec!["/one", "/three"]);
    gw.gw.set_express_lane(false);
    gw.stop().await;
}

/// The access cookie alone (no refresh cookie, so nothing is refreshed behind the test's back).
fn access_only(cookies: &str) -> String {
    cookies
        .split("; ")
        .find(|p| p.contains("access"))
        .unwrap()
        .to_string()
}

async fn status_on(s: &mut TcpStream, buf: &mut Vec<u8>, cookie: &str) -> u16 {
    status_of(s, buf, "/x", cookie).await
}

async fn status_of(s: &mut TcpStream, buf: &mut Vec<u8>, path: &str, cookie: &str) -> u16 {
    let req = format!("GET {path} HTTP/1.1\r\nHost: gw\r\nCookie: {cookie}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    read_response(s, buf).await.expect("an answer").0
}

#[tokio::test]
async fn a_transparent_refresh_is_served_in_the_lane_and_the_connection_stays_there() {
    let up = Upstream::start().await;
    let yaml =
        base_yaml(&up.url(), default_routes()).replace("  access_ttl: 5m\n", "  access_ttl: 2s\n");
    let gw = TestGateway::start(&yaml).await;
    let logged_in_at = std::time::Instant::now();
    let cookies = logged_in(&gw, "alice", "alice-pw").await;
    // The access token expires (2 s, whole seconds, no leeway); the refresh cookie is good.
    past(logged_in_at, Duration::from_secs(3)).await;
    gw.gw.set_express_lane(true);
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let took = gw.gw.lane_served();
    let before = up.count();
    let resp = sender.send_request(get("/x", &cookies, &[])).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let rotated: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .collect();
    assert_eq!(
        rotated.len(),
        2,
        "new access and refresh cookies: {rotated:?}"
    );
    let _ = resp.into_body().collect().await.unwrap();
    assert_eq!(up.count() - before, 1);
    assert_eq!(up.last().header("x-forwarded-user"), Some("alice"));
    assert!(
        up.last().header("cookie").is_none(),
        "no gateway cookie upstream"
    );
    // The new cookies work on the same connection, which is still the lane's.
    sender.ready().await.unwrap();
    let resp = sender
        .send_request(get("/x", &rotated.join("; "), &[]))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let _ = resp.into_body().collect().await.unwrap();
    assert_eq!(
        gw.gw.lane_served() - took,
        2,
        "the lane refreshed, then kept the connection"
    );
    gw.gw.set_express_lane(false);
    gw.stop().await;
}

#[tokio::test]
async fn a_connection_s_repeated_cookie_is_still_checked_for_revocation_expiry_and_reload() {
    let up = Upstream::start().await;
    let yaml =
        base_yaml(&up.url(), default_routes()).replace("  access_ttl: 5m\n", "  access_ttl: 2s\n");
    let gw = TestGateway::start(&yaml).await;
    gw.gw.set_express_lane(true);
    // Each case: two requests on one connection (the second repeats the first's Cookie
    // bytes), then a change, then the same bytes again.
    let open = || async {
        let cookies = logged_in(&gw, "alice", "alice-pw").await;
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        let mut buf = Vec::new();
        let took = gw.gw.lane_served();
        let access = access_only(&cookies);
        assert_eq!(status_on(&mut s, &mut buf, &access).await, 200);
        assert_eq!(status_on(&mut s, &mut buf, &access).await, 200);
        assert_eq!(gw.gw.lane_served() - took, 2, "the lane took both");
        (cookies, access, s, buf)
    };
    // 0. Another user's cookie on the same connection is that user's. (Each token is used
    // right after its login: a 2 s token with a whole-second `exp` may have only a second
    // left, and an argon2 hash on a busy machine can take that.)
    let (_, alice, mut s, mut buf) = open().await;
    assert_eq!(status_of(&mut s, &mut buf, "/admin/x", &alice).await, 200);
    let bob = access_only(&logged_in(&gw, "bob", "bob-pw").await);
    assert_eq!(
        status_of(&mut s, &mut buf, "/admin/x", &bob).await,
        403,
        "bob"
    );
    // 1. The session is revoked (logout on another connection).
    // (`later`, for case 2, is opened first, so that `access` is as fresh as can be: its 401
    // must be the revocation's, not its expiry's.)
    let (_, later_access, mut later, mut later_buf) = open().await;
    let (cookies, access, mut s, mut buf) = open().await;
    log_out(&gw, &cookies).await;
    assert_eq!(status_on(&mut s, &mut buf, &access).await, 401, "revoked");
    // 2. The token expires (2 s, no leeway).
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(
        status_on(&mut later, &mut later_buf, &later_access).await,
        401,
        "expired"
    );
    // 3. A reload replaces the signing secret: the token no longer verifies.
    let (_, access, mut s, mut buf) = open().await;
    gw.apply(&yaml.replace(
        "secret: \"${TEST_SECRET}\"",
        "secret: \"another-secret-of-enough-length-0123456789abcdef\"",
    ))
    .await;
    assert_eq!(
        status_on(&mut s, &mut buf, &access).await,
        401,
        "signed with the old secret"
    );
    gw.gw.set_express_lane(false);
    gw.stop().await;
}

/// A request sent through `differential`: path, Cookie, other headers, the status expected.
type Case<'a> = (&'a str, String, Vec<(&'a str, String)>, u16);

/// The access token of `cookies` (as `logged_in` gives them), for `Authorization: Bearer`.
fn token_of(cookies: &str) -> String {
    access_only(cookies).split_once('=').unwrap().1.to_string()
}

#[tokio::test]
async fn bearer_requests_are_forwarded_exactly_as_hyper_forwards_them() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    let alice_cookies = logged_in(&gw, "alice", "alice-pw").await;
    let bob_cookies = logged_in(&gw, "bob", "bob-pw").await;
    let alice = token_of(&alice_cookies);
    let bob_access = access_only(&bob_cookies);
    let bearer = format!("Bearer {alice}");
    let spaced = format!("  bearer   {alice} ");
    let mixed = format!("app=1; {bob_access}; theme=dark");
    let both = differential(&gw, &up, || {
        vec![
            get("/x", "", &[("authorization", &bearer)]),
            // The bearer token is tried first: Alice's, not Bob's cookie, decides /admin.
            get(
                "/admin/panel",
                &mixed,
                &[("Authorization", &bearer), ("X-Forwarded-User", "mallory")],
            ),
            get("/x", "", &[("authorization", &spaced)]),
            Request::head("/x")
                .header("host", "gw.example")
                .header("authorization", &bearer)
                .body(Full::default())
                .unwrap(),
        ]
    })
    .await;
    assert_eq!(both.lane_took, 4, "the lane took every request here");
    assert!(both.answers.iter().all(|a| a.status == StatusCode::OK));
    // What went upstream is right in itself: no token, Alice's identity, the app's cookies.
    let admin = &up.requests()[up.count() - 3];
    assert_eq!(admin.uri, "/admin/panel");
    assert!(
        admin.header("authorization").is_none(),
        "the token went upstream"
    );
    assert_eq!(
        admin.header_all("x-forwarded-user"),
        vec!["alice".to_string()]
    );
    assert_eq!(admin.header("cookie"), Some("app=1; theme=dark"));
    assert!(up.last().header("authorization").is_none());

    // Requests whose `Authorization` is hyper's path's, each on a fresh connection: the
    // answer and what went upstream are the same with the lane on, and the lane took none.
    let alice_access = access_only(&alice_cookies);
    let tampered = {
        let mut t = alice.clone();
        let last = t.pop().unwrap();
        t.push(if last == 'A' { 'B' } else { 'A' });
        t
    };
    let revoked_cookies = logged_in(&gw, "alice", "alice-pw").await;
    let revoked = token_of(&revoked_cookies);
    log_out(&gw, &revoked_cookies).await;
    let bob = token_of(&bob_cookies);
    let cases: Vec<Case> = vec![
        // A bearer that fails verification: the access cookie decides.
        (
            "/x",
            alice_access.clone(),
            vec![("authorization", format!("Bearer {tampered}"))],
            200,
        ),
        (
            "/x",
            String::new(),
            vec![("authorization", format!("Bearer {tampered}"))],
            401,
        ),
        (
            "/x",
            String::new(),
            vec![("authorization", format!("Bearer {revoked}"))],
            401,
        ),
        // Bob may not see /admin.
        (
            "/admin/panel",
            String::new(),
            vec![("authorization", format!("Bearer {bob}"))],
            403,
        ),
        // Not a bearer token: the app's own credential, forwarded with the cookie's identity.
        (
            "/x",
            alice_access.clone(),
            vec![("authorization", "Basic dXNlcjpwdw==".to_string())],
            200,
        ),
        (
            "/x",
            String::new(),
            vec![("authorization", "Basic dXNlcjpwdw==".to_string())],
            401,
        ),
        // Two `Authorization` headers.
        (
            "/x",
            String::new(),
            vec![
                ("authorization", bearer.clone()),
                ("authorization", bearer.clone()),
            ],
            200,
        ),
        (
            "/x",
            String::new(),
            vec![
                ("authorization", bearer.clone()),
                ("proxy-authorization", bearer.clone()),
            ],
            200,
        ),
    ];
    for (path, cookie, headers, status) in &cases {
        let extra: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let both = differential(&gw, &up, || vec![get(path, cookie, &extra)]).await;
        assert_eq!(
            both.answers[0].status.as_u16(),
            *status,
            "{path} {headers:?}"
        );
        // Every one is the lane's: forwarded or refused, the same decision and answer.
        assert_eq!(both.lane_took, 1, "the lane on {path} {headers:?}");
    }
    // The app's own `Authorization` reached it next to the cookie's identity.
    let requests = up.requests();
    let basic: Vec<_> = requests
        .iter()
        .filter(|r| r.header("authorization") == Some("Basic dXNlcjpwdw=="))
        .collect();
    assert_eq!(basic.len(), 2, "once with the lane off, once on");
    assert!(basic
        .iter()
        .all(|r| r.header("x-forwarded-user") == Some("alice")));
    // No other request carried a token upstream.
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.header("authorization").is_some())
            .count(),
        2
    );
    gw.stop().await;
}

/// `server.express_lane` decides where new connections start; a reload switches it.
#[tokio::test]
async fn server_express_lane_is_read_from_the_config_and_reloaded() {
    let up = Upstream::start().await;
    let on = base_yaml(&up.url(), default_routes());
    let off = on.replace("server:\n", "server:\n  express_lane: false\n");
    let gw = TestGateway::start(&off).await;
    let alice = logged_in(&gw, "alice", "alice-pw").await;
    let before = gw.gw.lane_served();
    on_one_connection(gw.addr, vec![get("/x", &alice, &[])]).await;
    assert_eq!(gw.gw.lane_served(), before, "off in the config");
    gw.apply(&on).await;
    if gatehouse::config::express_lane_allowed(gatehouse::config::process_env) {
        on_one_connection(gw.addr, vec![get("/x", &alice, &[])]).await;
        assert_eq!(gw.gw.lane_served(), before + 1, "on after the reload");
    }
    gw.stop().await;
}
