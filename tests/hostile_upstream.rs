//! SPEC §7 "Upstream responses belong to their request", against an upstream that misbehaves
//! on purpose: a raw-socket server that answers every request correctly enough to be used and
//! then does something a broken or hostile app does — more bytes in a later TCP segment, a body
//! after `HEAD`/`204`/`304`, both `Transfer-Encoding` and `Content-Length`, our cookie names in
//! `Set-Cookie`, …
//!
//! Every scenario runs on both paths (express lane on and off) with two users on separate
//! client connections in quick succession, well within the pool's reuse window: every response
//! must carry the marker of its own request (`X-Marker`, and the body for `GET`), and nothing
//! the upstream sent unasked (`STALE`) may reach any client.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the hostile upstream does around each answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Misbehaviour {
    /// A whole second response, in a later segment.
    ExtraResponseLater,
    /// More body bytes than `Content-Length` said, in a later segment.
    LongBodyLater,
    /// More body bytes than `Content-Length` said, in the same segment.
    LongBodyAtOnce,
    /// A body after a `HEAD` answer (the request is a `HEAD`).
    BodyAfterHead,
    /// A body after `204 No Content`.
    BodyAfter204,
    /// A body after `304 Not Modified`.
    BodyAfter304,
    /// `Transfer-Encoding: chunked` and a `Content-Length`, then late bytes.
    ChunkedWithLength,
    /// A chunked answer, then a late extra response.
    ChunkedThenExtra,
    /// Two different `Content-Length` values.
    TwoLengths,
    /// A chunk size that is not hex.
    BadChunkSize,
    /// 40 informational responses before the real one.
    InformationalFlood,
    /// `101 Switching Protocols` to a request that asked for no upgrade.
    UnaskedUpgrade,
    /// HTTP/1.0, body delimited by closing the connection.
    CloseDelimited,
    /// A response head larger than any client should read (1 MiB of headers).
    HugeHead,
    /// `Set-Cookie` for the gateway's cookies (every spelling) next to the app's own.
    OurCookies,
    /// `Content-Length` as a list of one repeated value, on two lines (RFC 9110 §8.6).
    ListedLength,
    /// `Transfer-Encoding: gzip, chunked`: a coding hyper does not decode.
    CodedChunked,
    /// `Transfer-Encoding: gzip` alone: the body ends when the upstream closes.
    CodedUntilClose,
    /// A chunked body with trailers that name our cookie and an identity header.
    Trailers,
    /// `204 No Content` that announces a body (`Content-Length: 5`) and sends none.
    LengthOn204,
}

use Misbehaviour::*;

/// What a client must see for a misbehaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// 200 with its own marker.
    Own,
    /// `status` with its own marker (no body).
    OwnStatus(u16),
    /// The gateway refuses the upstream's answer: 502.
    BadGateway,
    /// 502, or a head with its own marker followed by a broken body (the connection closes):
    /// what is certain is that nobody receives anything that is not theirs.
    BadGatewayOrBroken,
}

fn expectation(m: Misbehaviour) -> Expect {
    match m {
        BodyAfter204 | LengthOn204 => Expect::OwnStatus(204),
        BodyAfter304 => Expect::OwnStatus(304),
        TwoLengths | UnaskedUpgrade | HugeHead | CodedChunked | CodedUntilClose => {
            Expect::BadGateway
        }
        BadChunkSize => Expect::BadGatewayOrBroken,
        _ => Expect::Own,
    }
}

const STALE: &str = "STALE";

/// A response whose every byte says it is `marker`'s.
fn sized(status: &str, marker: &str, body: &str, extra: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nx-marker: {marker}\r\n{extra}content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn chunked(marker: &str, extra: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nx-marker: {marker}\r\n{extra}transfer-encoding: chunked\r\n\r\n{:x}\r\n{marker}\r\n0\r\n\r\n",
        marker.len()
    )
}

/// The bytes sent at once, the bytes sent 10 ms later, and whether to close after.
fn script(m: Misbehaviour, marker: &str) -> (String, Option<String>, bool) {
    let stale_response = sized("200 OK", STALE, STALE, "");
    match m {
        ExtraResponseLater => (sized("200 OK", marker, marker, ""), Some(stale_response), false),
        LongBodyLater => (
            sized("200 OK", marker, marker, ""),
            Some(format!("{STALE}{STALE}")),
            false,
        ),
        LongBodyAtOnce => (
            format!("{}{stale_response}", sized("200 OK", marker, marker, "")),
            None,
            false,
        ),
        BodyAfterHead => (
            sized("200 OK", marker, "", "")
                .replace("content-length: 0", &format!("content-length: {}", STALE.len())),
            Some(STALE.to_string()),
            false,
        ),
        BodyAfter204 => (
            format!("HTTP/1.1 204 No Content\r\nx-marker: {marker}\r\n\r\n"),
            Some(stale_response),
            false,
        ),
        BodyAfter304 => (
            format!("HTTP/1.1 304 Not Modified\r\nx-marker: {marker}\r\ncontent-length: 5\r\n\r\n"),
            Some(STALE.to_string()),
            false,
        ),
        ChunkedWithLength => (
            chunked(marker, &format!("content-length: {}\r\n", marker.len() + 40)),
            Some(stale_response),
            false,
        ),
        ChunkedThenExtra => (chunked(marker, ""), Some(stale_response), false),
        TwoLengths => (
            format!(
                "HTTP/1.1 200 OK\r\nx-marker: {marker}\r\ncontent-length: {}\r\ncontent-length: 5\r\n\r\n{marker}",
                marker.len()
            ),
            None,
            true,
        ),
        BadChunkSize => (
            format!("HTTP/1.1 200 OK\r\nx-marker: {marker}\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{STALE}\r\n0\r\n\r\n"),
            None,
            true,
        ),
        InformationalFlood => (
            format!(
                "{}{}",
                "HTTP/1.1 103 Early Hints\r\nlink: </x>; rel=preload\r\n\r\n".repeat(40),
                sized("200 OK", marker, marker, "")
            ),
            None,
            false,
        ),
        UnaskedUpgrade => (
            format!("HTTP/1.1 101 Switching Protocols\r\nx-marker: {marker}\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n{STALE}"),
            None,
            true,
        ),
        CloseDelimited => (
            format!("HTTP/1.0 200 OK\r\nx-marker: {marker}\r\n\r\n{marker}"),
            None,
            true,
        ),
        HugeHead => (
            format!(
                "HTTP/1.1 200 OK\r\nx-marker: {marker}\r\n{}content-length: 0\r\n\r\n",
                format!("x-pad: {}\r\n", "p".repeat(1000)).repeat(1024)
            ),
            None,
            true,
        ),
        OurCookies => (
            sized(
                "200 OK",
                marker,
                marker,
                "set-cookie: gatehouse_access=planted; Path=/\r\n\
                 set-cookie: app=1; Path=/\r\n\
                 set-cookie: __Host-gatehouse_refresh=planted; Path=/; Secure\r\n\
                 set-cookie: __Secure-gatehouse_access=planted; Path=/; Secure\r\n\
                 set-cookie: gatehouse_oidc=planted; Path=/\r\n\
                 set-cookie:gatehouse_refresh=; Max-Age=0\r\n\
                 set-cookie: theme=dark\r\n",
            ),
            None,
            false,
        ),
        ListedLength => (
            format!(
                "HTTP/1.1 200 OK\r\nx-marker: {marker}\r\ncontent-length: {n}, {n}\r\ncontent-length: {n}\r\n\r\n{marker}",
                n = marker.len()
            ),
            Some(stale_response),
            false,
        ),
        CodedChunked => (
            chunked(marker, "").replace("transfer-encoding: chunked", "transfer-encoding: gzip, chunked"),
            Some(stale_response),
            false,
        ),
        CodedUntilClose => (
            format!("HTTP/1.1 200 OK\r\nx-marker: {marker}\r\ntransfer-encoding: gzip\r\n\r\n{marker}"),
            Some(STALE.to_string()),
            true,
        ),
        LengthOn204 => (
            format!("HTTP/1.1 204 No Content\r\nx-marker: {marker}\r\ncontent-length: 5\r\n\r\n"),
            None,
            false,
        ),
        Trailers => (
            chunked(marker, "trailer: set-cookie, x-forwarded-user\r\n").replace(
                "0\r\n\r\n",
                "0\r\nset-cookie: gatehouse_access=planted\r\nx-forwarded-user: root\r\n\r\n",
            ),
            Some(stale_response),
            false,
        ),
    }
}

/// A raw-socket upstream following one [`Misbehaviour`]. Each request's marker is its path and
/// the user the gateway named in `X-Forwarded-User`.
struct HostileUpstream {
    addr: SocketAddr,
    /// Markers of the requests it received, in order.
    seen: Arc<Mutex<Vec<String>>>,
}

impl HostileUpstream {
    async fn start(m: Misbehaviour) -> HostileUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, m, log.clone()));
            }
        });
        HostileUpstream { addr, seen }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn serve(mut stream: TcpStream, m: Misbehaviour, seen: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let path = head.split_whitespace().nth(1).unwrap_or("?").to_string();
        let user = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("x-forwarded-user")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| "anonymous".into());
        let marker = format!("{user}{path}");
        seen.lock().unwrap().push(marker.clone());
        let (now, later, close) = script(m, &marker);
        if stream.write_all(now.as_bytes()).await.is_err() {
            return;
        }
        if let Some(later) = later {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if stream.write_all(later.as_bytes()).await.is_err() {
                return;
            }
        }
        if close {
            return;
        }
    }
}

/// A client connection of one user.
struct UserConn {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    token: String,
}

/// What one request got back.
#[derive(Debug)]
enum Got {
    Answer {
        status: StatusCode,
        marker: Option<String>,
        body: Result<Bytes, String>,
        set_cookies: Vec<String>,
        content_length: Option<String>,
    },
    /// The connection failed before a response head.
    NoAnswer(String),
}

impl UserConn {
    async fn open(addr: SocketAddr, token: &str) -> UserConn {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        UserConn {
            sender,
            token: token.to_string(),
        }
    }

    async fn send(&mut self, method: &Method, path: &str) -> Got {
        if let Err(e) = self.sender.ready().await {
            return Got::NoAnswer(e.to_string());
        }
        let req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header("host", "app.test")
            .header("cookie", format!("gatehouse_access={}", self.token))
            .body(Empty::new())
            .unwrap();
        let sent = tokio::time::timeout(Duration::from_secs(10), self.sender.send_request(req))
            .await
            .expect("an answer within 10 s");
        let resp = match sent {
            Ok(resp) => resp,
            Err(e) => return Got::NoAnswer(e.to_string()),
        };
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout(Duration::from_secs(10), body.collect())
            .await
            .expect("the body within 10 s")
            .map(|b| b.to_bytes())
            .map_err(|e| e.to_string());
        let text = |name: &str| {
            parts
                .headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect::<Vec<_>>()
        };
        Got::Answer {
            status: parts.status,
            marker: text("x-marker").into_iter().next(),
            body,
            set_cookies: text("set-cookie"),
            content_length: text("content-length").into_iter().next(),
        }
    }
}

async fn access_token(gw: &TestGateway, user: &str) -> String {
    let tokens = gw.client().login_json(user, &format!("{user}-pw")).await;
    tokens["access_token"].as_str().unwrap().to_string()
}

/// Checks one answer against what its request must get; `what` names it in failures.
fn check(m: Misbehaviour, method: &Method, got: &Got, marker: &str, what: &str) {
    let ctx = format!("{m:?}, {what} ({marker})");
    if let Got::Answer {
        marker: Some(seen), ..
    } = got
    {
        assert_eq!(
            seen, marker,
            "{ctx}: a response that is not this request's: {got:?}"
        );
    }
    if let Got::Answer { body: Ok(body), .. } = got {
        let body = String::from_utf8_lossy(body);
        assert!(
            !body.contains(STALE),
            "{ctx}: unasked bytes reached a client: {got:?}"
        );
    }
    match (expectation(m), got) {
        (Expect::Own, Got::Answer { status, body, .. }) => {
            assert_eq!(*status, StatusCode::OK, "{ctx}: {got:?}");
            let body = body
                .as_ref()
                .unwrap_or_else(|e| panic!("{ctx}: body failed: {e}"));
            let expected = if *method == Method::HEAD { "" } else { marker };
            assert_eq!(body, expected.as_bytes(), "{ctx}: {got:?}");
        }
        (Expect::OwnStatus(code), Got::Answer { status, body, .. }) => {
            assert_eq!(status.as_u16(), code, "{ctx}: {got:?}");
            assert_eq!(body.as_deref().ok(), Some(&b""[..]), "{ctx}: {got:?}");
        }
        (Expect::BadGateway, Got::Answer { status, .. }) => {
            assert_eq!(*status, StatusCode::BAD_GATEWAY, "{ctx}: {got:?}");
        }
        (Expect::BadGatewayOrBroken, Got::Answer { status, body, .. }) => {
            assert!(
                *status == StatusCode::BAD_GATEWAY || body.is_err(),
                "{ctx}: {got:?}"
            );
        }
        // The head may or may not have left before the body failed.
        (Expect::BadGatewayOrBroken, Got::NoAnswer(_)) => {}
        (_, Got::NoAnswer(e)) => panic!("{ctx}: no answer: {e}"),
    }
}

/// Alice sends two requests on one connection (the second after the upstream's late bytes
/// arrived), closes it, and Bob sends one 60 ms later on a connection of his own — well within
/// the pool's reuse window; three rounds, on the express lane and on hyper's path.
async fn no_response_reaches_the_wrong_user(m: Misbehaviour, method: Method) {
    for lane in [true, false] {
        let up = HostileUpstream::start(m).await;
        let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
        gw.gw.set_express_lane(lane);
        let alice = access_token(&gw, "alice").await;
        let bob = access_token(&gw, "bob").await;
        let path = if lane { "lane" } else { "hyper" };
        for round in 0..3 {
            let mut a = UserConn::open(gw.addr, &alice).await;
            let p1 = format!("/{path}/{round}/a1");
            let got = a.send(&method, &p1).await;
            check(m, &method, &got, &format!("alice{p1}"), "alice's first");
            tokio::time::sleep(Duration::from_millis(60)).await;
            let p2 = format!("/{path}/{round}/a2");
            // After a broken body the client connection is closed: a new one.
            if matches!(&got, Got::Answer { body: Err(_), .. }) {
                a = UserConn::open(gw.addr, &alice).await;
            }
            let got = a.send(&method, &p2).await;
            check(m, &method, &got, &format!("alice{p2}"), "alice's second");
            drop(a);
            tokio::time::sleep(Duration::from_millis(60)).await;
            let mut b = UserConn::open(gw.addr, &bob).await;
            let p3 = format!("/{path}/{round}/b1");
            let got = b.send(&method, &p3).await;
            check(m, &method, &got, &format!("bob{p3}"), "bob's");
            // Late bytes land while no request waits on their connection (bytes that arrive
            // while one waits are, to HTTP/1, that request's answer: no proxy can tell).
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        assert!(
            !up.seen.lock().unwrap().is_empty(),
            "{m:?}: the upstream was reached"
        );
        assert_alive(gw.addr).await;
        gw.stop().await;
    }
}

/// Alice's answer to one `GET path` from an upstream following `m`, on the express lane and
/// on hyper's path (`true`, `false`), each from a gateway of its own.
async fn alice_s_answers(m: Misbehaviour, path: &str) -> Vec<(bool, Got)> {
    let mut answers = Vec::new();
    for lane in [true, false] {
        let up = HostileUpstream::start(m).await;
        let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
        gw.gw.set_express_lane(lane);
        let alice = access_token(&gw, "alice").await;
        let got = UserConn::open(gw.addr, &alice)
            .await
            .send(&Method::GET, path)
            .await;
        answers.push((lane, got));
        gw.stop().await;
    }
    answers
}

#[tokio::test]
async fn a_second_response_in_a_later_segment_reaches_nobody() {
    no_response_reaches_the_wrong_user(ExtraResponseLater, Method::GET).await;
}

#[tokio::test]
async fn a_body_longer_than_its_length_later_reaches_nobody() {
    no_response_reaches_the_wrong_user(LongBodyLater, Method::GET).await;
}

#[tokio::test]
async fn a_body_longer_than_its_length_at_once_reaches_nobody() {
    no_response_reaches_the_wrong_user(LongBodyAtOnce, Method::GET).await;
}

#[tokio::test]
async fn a_body_after_head_reaches_nobody() {
    no_response_reaches_the_wrong_user(BodyAfterHead, Method::HEAD).await;
}

#[tokio::test]
async fn a_body_after_204_reaches_nobody() {
    no_response_reaches_the_wrong_user(BodyAfter204, Method::GET).await;
}

#[tokio::test]
async fn a_body_after_304_reaches_nobody() {
    no_response_reaches_the_wrong_user(BodyAfter304, Method::GET).await;
}

#[tokio::test]
async fn chunked_with_content_length_is_forwarded_without_the_length() {
    no_response_reaches_the_wrong_user(ChunkedWithLength, Method::GET).await;
    // And the client never sees the upstream's stale length next to the decoded body.
    for (lane, got) in alice_s_answers(ChunkedWithLength, "/cl").await {
        match got {
            Got::Answer { content_length, .. } => assert_ne!(
                content_length.as_deref(),
                Some("48"),
                "lane {lane}: the upstream's length next to a decoded body"
            ),
            Got::NoAnswer(e) => panic!("lane {lane}: {e}"),
        }
    }
}

#[tokio::test]
async fn late_bytes_after_a_chunked_body_reach_nobody() {
    no_response_reaches_the_wrong_user(ChunkedThenExtra, Method::GET).await;
}

#[tokio::test]
async fn two_different_content_lengths_are_502() {
    no_response_reaches_the_wrong_user(TwoLengths, Method::GET).await;
}

#[tokio::test]
async fn a_bad_chunk_size_breaks_only_its_own_response() {
    no_response_reaches_the_wrong_user(BadChunkSize, Method::GET).await;
}

#[tokio::test]
async fn a_flood_of_informational_responses_is_skipped() {
    no_response_reaches_the_wrong_user(InformationalFlood, Method::GET).await;
}

#[tokio::test]
async fn an_unasked_101_is_502_and_nothing_is_spliced() {
    no_response_reaches_the_wrong_user(UnaskedUpgrade, Method::GET).await;
}

#[tokio::test]
async fn a_close_delimited_http_1_0_body_is_relayed_whole() {
    no_response_reaches_the_wrong_user(CloseDelimited, Method::GET).await;
}

#[tokio::test]
async fn a_huge_response_head_is_502() {
    no_response_reaches_the_wrong_user(HugeHead, Method::GET).await;
}

#[tokio::test]
async fn an_upstream_never_sets_the_gateway_s_cookies() {
    no_response_reaches_the_wrong_user(OurCookies, Method::GET).await;
    for (lane, got) in alice_s_answers(OurCookies, "/c").await {
        let Got::Answer { set_cookies, .. } = got else {
            panic!("lane {lane}: no answer");
        };
        assert_eq!(
            set_cookies,
            vec!["app=1; Path=/".to_string(), "theme=dark".to_string()],
            "lane {lane}: only the app's own cookies reach the browser"
        );
    }
}

#[tokio::test]
async fn a_length_listed_twice_goes_on_as_one_value() {
    no_response_reaches_the_wrong_user(ListedLength, Method::GET).await;
    for (lane, got) in alice_s_answers(ListedLength, "/len").await {
        let Got::Answer { content_length, .. } = got else {
            panic!("lane {lane}: no answer");
        };
        assert_eq!(content_length.as_deref(), Some("9"), "lane {lane}");
    }
}

#[tokio::test]
async fn a_transfer_coding_other_than_chunked_is_502() {
    no_response_reaches_the_wrong_user(CodedChunked, Method::GET).await;
    no_response_reaches_the_wrong_user(CodedUntilClose, Method::GET).await;
}

#[tokio::test]
async fn a_204_that_announces_a_body_goes_on_without_one() {
    no_response_reaches_the_wrong_user(LengthOn204, Method::GET).await;
}

#[tokio::test]
async fn trailers_reach_nobody() {
    no_response_reaches_the_wrong_user(Trailers, Method::GET).await;
}

/// What one HTTP/2 request got back, as the gateway sent it: status, headers, body, trailers.
/// The `h2` crate rather than hyper's client, which hides some of what arrives.
async fn h2_get(
    addr: SocketAddr,
    token: &str,
    path: &str,
) -> (StatusCode, http::HeaderMap, Bytes, Option<http::HeaderMap>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let req = Request::get(format!("http://app.test{path}"))
        .header("cookie", format!("gatehouse_access={token}"))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(req, true).unwrap();
    let exchange = async {
        let (parts, mut body) = response.await?.into_parts();
        let mut data = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        let trailers = body.trailers().await?;
        Ok::<_, h2::Error>((parts.status, parts.headers, Bytes::from(data), trailers))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("an answer within 10 s")
        .unwrap_or_else(|e| panic!("{path}: the HTTP/2 exchange failed: {e}"))
}

/// HTTP/2 clients get what HTTP/1 clients get: the response policy applies to the whole
/// response, trailers included, and a head HTTP/2 could not carry as the upstream wrote it is
/// put in HTTP/2's terms instead of resetting the stream.
#[tokio::test]
async fn http2_clients_get_what_http1_clients_get() {
    for m in [
        ListedLength,
        Trailers,
        OurCookies,
        ChunkedWithLength,
        CodedChunked,
        LengthOn204,
    ] {
        let up = HostileUpstream::start(m).await;
        let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
        let alice = access_token(&gw, "alice").await;
        let (status, headers, body, trailers) = h2_get(gw.addr, &alice, "/h2").await;
        if m == CodedChunked {
            assert_eq!(status, StatusCode::BAD_GATEWAY, "{m:?}");
            gw.stop().await;
            continue;
        }
        if m == LengthOn204 {
            assert_eq!(status, StatusCode::NO_CONTENT, "{m:?}");
            assert_eq!(body, "", "{m:?}");
            assert!(
                headers.get("content-length").is_none(),
                "{m:?}: {headers:?}"
            );
            gw.stop().await;
            continue;
        }
        assert_eq!(status, StatusCode::OK, "{m:?}");
        assert_eq!(body, "alice/h2", "{m:?}");
        assert!(trailers.is_none(), "{m:?}: trailers relayed: {trailers:?}");
        let length = headers.get("content-length").map(|v| v.to_str().unwrap());
        assert!(
            length.is_none() || length == Some("8"),
            "{m:?}: content-length {length:?}"
        );
        for cookie in headers.get_all("set-cookie") {
            assert!(
                !cookie.to_str().unwrap().contains("planted"),
                "{m:?}: {cookie:?}"
            );
        }
        gw.stop().await;
    }
}
