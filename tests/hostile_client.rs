//! Attacks a hostile client tried with raw bytes (SPEC §7): each on both paths (express lane on
//! and off), asserting the exact answer and what the upstream received.
//!
//! - h2c smuggling through a WebSocket route: an `Upgrade: h2c` must never reach the upstream,
//!   nor `HTTP2-Settings`, and nothing is spliced;
//! - servlet path parameters (`..;`, `.;`, `;x`) that Tomcat resolves to another path;
//! - our access token in any `Authorization` spelling;
//! - `Connection: Host` dropping the `Host` that `preserve_host` forwards;
//! - two `Host` headers (or none, in HTTP/1.1), so that a proxy in front and the app behind
//!   could each read another host;
//! - path-override and foreign identity headers (`server.strip_client_headers`).

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Sends one raw request on a fresh connection and reads one response (head and a
/// `Content-Length` body): status and the whole text.
async fn exchange(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return (raw_status(&text), text);
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
            .await
            .expect("an answer within 5 s")
            .unwrap_or(0);
        if n == 0 {
            let text = String::from_utf8_lossy(&got).into_owned();
            return (raw_status(&text), text);
        }
        got.extend_from_slice(&chunk[..n]);
    }
}

/// A client that sends its refresh token as a bearer token (by mistake, or an SDK that does)
/// must not hand it to the app: with it the app could refresh its way into the session, or
/// end the session by presenting it again after its rotation. On a public path (no login
/// needed) and on a protected one (the access cookie logs the request in), in any spelling;
/// an app's own opaque token of the same shape still reaches the app.
#[tokio::test]
async fn our_refresh_token_never_reaches_the_upstream() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    let tokens = gw.client().login_json("alice", "alice-pw").await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let cookie = format!(
        "gatehouse_access={}",
        tokens["access_token"].as_str().unwrap()
    );
    // 32 random bytes in base64url: the refresh token's shape, but the app's own.
    let app_token = "q2Vx9KJbq0n4y1Xw8fZtLr3cH5uA7mNe6sDgPiYoWkT";
    assert_eq!(app_token.len(), refresh.len());
    let spellings = [
        format!("Bearer {refresh}"),
        format!("bearer\t\"{refresh}\""),
        format!("Basic eA==, Bearer {refresh}"),
        format!("DPoP {refresh}"),
    ];
    for lane in [true, false] {
        gw.gw.set_express_lane(lane);
        for path in ["/public/page", "/x"] {
            for spelling in &spellings {
                let (status, text) = exchange(
                    gw.addr,
                    &format!(
                        "GET {path} HTTP/1.1\r\nhost: app\r\ncookie: {cookie}\r\nauthorization: {spelling}\r\nauthorization: Bearer {app_token}\r\n\r\n"
                    ),
                )
                .await;
                assert_eq!(status, 200, "lane {lane}, {path}, {spelling:?}: {text}");
                let seen = up.last();
                for (name, value) in &seen.headers {
                    assert!(
                        !String::from_utf8_lossy(value.as_bytes()).contains(&refresh),
                        "lane {lane}, {path}: the refresh token went upstream in {name} ({spelling:?})"
                    );
                }
                assert_eq!(
                    seen.header("authorization"),
                    Some(format!("Bearer {app_token}").as_str()),
                    "lane {lane}, {path}: the app's own token"
                );
            }
        }
    }
    // It is still the refresh token it was: it refreshes.
    let resp = gw
        .client()
        .post_json(
            "/.gatehouse/refresh",
            serde_json::json!({ "refresh_token": refresh }),
        )
        .await;
    assert_eq!(resp.status, 200);
    gw.stop().await;
}

async fn access_cookie(gw: &TestGateway, user: &str) -> (String, String) {
    let tokens = gw.client().login_json(user, &format!("{user}-pw")).await;
    let token = tokens["access_token"].as_str().unwrap().to_string();
    (format!("gatehouse_access={token}"), token)
}

/// A raw upstream that speaks h2c: it records every byte it receives and answers an
/// `Upgrade: h2c` request with `101` (then keeps reading, as a real h2c server would).
struct H2cUpstream {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
}

impl H2cUpstream {
    async fn start() -> H2cUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    let mut upgraded = false;
                    loop {
                        let mut chunk = [0u8; 4096];
                        let n = match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        log.lock().unwrap().extend_from_slice(&chunk[..n]);
                        mine.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&mine).to_ascii_lowercase();
                        if upgraded || !text.contains("\r\n\r\n") {
                            continue;
                        }
                        let answer = if text.contains("upgrade: h2c") {
                            upgraded = true;
                            "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n"
                        } else {
                            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nplain"
                        };
                        mine.clear();
                        if s.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        H2cUpstream { addr, received }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).to_ascii_lowercase()
    }
}

#[tokio::test]
async fn an_h2c_upgrade_never_reaches_the_upstream_on_a_websocket_route() {
    let up = H2cUpstream::start().await;
    let routes = "routes:\n  - name: app\n    upstream: \"UPSTREAM\"\n    websocket: true\n    rules:\n      - path_prefix: /admin\n        allow_roles: [admin]\n";
    let gw = TestGateway::start(&base_yaml(&format!("http://{}", up.addr), routes)).await;
    let (bob, _) = access_cookie(&gw, "bob").await;
    for lane in [true, false] {
        gw.gw.set_express_lane(lane);
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        let smuggle = format!(
            "GET /innocent HTTP/1.1\r\nhost: app\r\ncookie: {bob}\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        );
        s.write_all(smuggle.as_bytes()).await.unwrap();
        let mut head = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut head))
            .await
            .unwrap()
            .unwrap();
        let head = String::from_utf8_lossy(&head[..n]).into_owned();
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "lane {lane}: the request is answered as a plain one, no 101: {head}"
        );
        // The HTTP/2 request bob would send inside the tunnel.
        let _ = s
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let seen = up.text();
        assert!(seen.contains("get /innocent"), "lane {lane}: {seen}");
        assert!(
            !seen.contains("upgrade"),
            "lane {lane}: Upgrade went upstream: {seen}"
        );
        assert!(!seen.contains("http2-settings"), "lane {lane}: {seen}");
        assert!(
            !seen.contains("pri * http/2.0"),
            "lane {lane}: a tunnel was spliced: {seen}"
        );
        up.received.lock().unwrap().clear();
    }
    assert_alive(gw.addr).await;
    gw.stop().await;
}

#[tokio::test]
async fn servlet_path_parameters_cannot_reach_a_path_the_rules_did_not_check() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    let (bob, _) = access_cookie(&gw, "bob").await;
    let (alice, _) = access_cookie(&gw, "alice").await;
    for lane in [true, false] {
        gw.gw.set_express_lane(lane);
        let before = up.count();
        // Read as `/admin` by Tomcat, Jetty and Spring: refused before routing.
        for (path, cookie) in [
            ("/public/..;/admin", ""),
            ("/public/..;x=y/admin", ""),
            ("/public/%2e%2e;/admin", ""),
            ("/public/..%3B/admin", ""),
            ("/;/admin", bob.as_str()),
            ("/.;/admin", bob.as_str()),
            ("/;jsessionid=1/admin", bob.as_str()),
            ("/x/.;/../admin", bob.as_str()),
        ] {
            let cookie = if cookie.is_empty() {
                String::new()
            } else {
                format!("cookie: {cookie}\r\n")
            };
            let (status, text) = exchange(
                gw.addr,
                &format!("GET {path} HTTP/1.1\r\nhost: app\r\n{cookie}\r\n"),
            )
            .await;
            assert_eq!(status, 400, "lane {lane}: {path}: {text}");
        }
        // A parameter on a named segment is matched as the container reads it: the /admin
        // rule covers these, so bob is refused and alice forwarded with the path as sent.
        for path in ["/admin;jsessionid=1", "/admin;x/panel", "/admin%3Bx/panel"] {
            let req = |c: &str| format!("GET {path} HTTP/1.1\r\nhost: app\r\ncookie: {c}\r\n\r\n");
            assert_eq!(
                exchange(gw.addr, &req(&bob)).await.0,
                403,
                "lane {lane}: {path}"
            );
            assert_eq!(
                up.count(),
                before,
                "lane {lane}: {path} reached the upstream"
            );
        }
        let (status, _) = exchange(
            gw.addr,
            &format!(
                "GET /admin;jsessionid=1/panel HTTP/1.1\r\nhost: app\r\ncookie: {alice}\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(status, 200, "lane {lane}");
        assert_eq!(up.last().uri, "/admin;jsessionid=1/panel");
        assert_eq!(
            up.count(),
            before + 1,
            "lane {lane}: only alice's request went upstream"
        );
    }
    assert_alive(gw.addr).await;
    gw.stop().await;
}

#[tokio::test]
async fn our_access_token_never_reaches_the_upstream_in_any_authorization_spelling() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    let (cookie, token) = access_cookie(&gw, "alice").await;
    let cases = [
        vec!["Basic dXNlcjpwdw==".to_string(), format!("Bearer {token}")],
        vec![format!("Bearer\t{token}")],
        vec![format!("Bearer \"{token}\"")],
        vec![format!("Bearer {token}, Basic eA==")],
        vec![format!("DPoP {token}")],
        vec![format!("bearer    {token}   ")],
        vec![format!("Token token={token}")],
    ];
    for lane in [true, false] {
        gw.gw.set_express_lane(lane);
        for authorizations in &cases {
            let extra: String = authorizations
                .iter()
                .map(|a| format!("authorization: {a}\r\n"))
                .collect();
            for proxy in ["", "proxy-authorization: Bearer "] {
                let proxy = if proxy.is_empty() {
                    String::new()
                } else {
                    format!("{proxy}{token}\r\n")
                };
                let (status, text) = exchange(
                    gw.addr,
                    &format!(
                        "GET /x HTTP/1.1\r\nhost: app\r\ncookie: {cookie}\r\n{extra}{proxy}\r\n"
                    ),
                )
                .await;
                assert_eq!(status, 200, "lane {lane}: {authorizations:?}: {text}");
                let seen = up.last();
                for (name, value) in &seen.headers {
                    assert!(
                        !String::from_utf8_lossy(value.as_bytes()).contains(&token),
                        "lane {lane}: the token went upstream in {name} ({authorizations:?})"
                    );
                }
                assert_eq!(seen.header("x-forwarded-user"), Some("alice"));
            }
        }
        // The app's own credential still reaches it.
        exchange(
            gw.addr,
            &format!("GET /x HTTP/1.1\r\nhost: app\r\ncookie: {cookie}\r\nauthorization: Basic dXNlcjpwdw==\r\n\r\n"),
        )
        .await;
        assert_eq!(
            up.last().header("authorization"),
            Some("Basic dXNlcjpwdw==")
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn connection_cannot_remove_the_host_that_preserve_host_forwards() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    let (cookie, _) = access_cookie(&gw, "alice").await;
    for lane in [true, false] {
        gw.gw.set_express_lane(lane);
        for connection in [
            "Host, close",
            "host",
            "X-Forwarded-Host, Host, X-Request-Id",
        ] {
            let (status, text) = exchange(
                gw.addr,
                &format!("GET /x HTTP/1.1\r\nhost: www.example\r\nconnection: {connection}\r\ncookie: {cookie}\r\nx-request-id: rid-7\r\n\r\n"),
            )
            .await;
            assert_eq!(status, 200, "lane {lane}: {text}");
            let seen = up.last();
            assert_eq!(
                seen.header("host"),
                Some("www.example"),
                "lane {lane}: {connection}"
            );
            assert_eq!(seen.header("x-forwarded-host"), Some("www.example"));
            assert_eq!(seen.header("x-request-id"), Some("rid-7"));
            assert_eq!(seen.header("x-forwarded-user"), Some("alice"));
        }
    }
    gw.stop().await;
}

#[tokio::test]
async fn two_hosts_or_none_in_http_1_1_are_400_and_never_forwarded() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    let (cookie, _) = access_cookie(&gw, "alice").await;
    for lane in [true, false] {
        gw.gw.set_express_lane(lane);
        let before = up.count();
        for (hosts, version) in [
            ("host: www.example\r\nhost: admin.example\r\n", "HTTP/1.1"),
            ("host: www.example\r\nHost: www.example\r\n", "HTTP/1.1"),
            ("host: www.example\r\nhost: admin.example\r\n", "HTTP/1.0"),
            ("", "HTTP/1.1"),
        ] {
            for path in ["/x", "/public/x"] {
                let (status, text) = exchange(
                    gw.addr,
                    &format!("GET {path} {version}\r\n{hosts}cookie: {cookie}\r\nconnection: close\r\n\r\n"),
                )
                .await;
                assert_eq!(status, 400, "lane {lane}: {hosts:?} {version}: {text}");
                assert!(text.contains("{\"error\":\"bad_request\"}"), "{text}");
            }
        }
        assert_eq!(up.count(), before, "lane {lane}: nothing reached the app");
        // HTTP/1.0 may leave `Host` out: served.
        let (status, text) = exchange(
            gw.addr,
            &format!("GET /x HTTP/1.0\r\ncookie: {cookie}\r\n\r\n"),
        )
        .await;
        assert_eq!(status, 200, "lane {lane}: {text}");
    }
    gw.stop().await;
}

/// Two routes told apart by host: one public, one for admins only.
fn two_hosts_yaml(up: &Upstream) -> String {
    base_yaml(
        &up.url(),
        r#"routes:
  - name: open
    host: www.example
    upstream: "UPSTREAM"
    public: ["/"]
  - name: admins
    host: admin.example
    upstream: "UPSTREAM"
    allow_roles: [admin]
"#,
    )
}

#[tokio::test]
async fn an_absolute_target_names_the_host_and_the_app_is_told_that_one() {
    // RFC 9112 §3.2.2: with an absolute-form target, `Host` is ignored. A front proxy that
    // follows the RFC routes on the target; so does the gateway, and the app gets that host.
    let up = Upstream::start().await;
    let gw = TestGateway::start(&two_hosts_yaml(&up)).await;
    for lane in [true, false] {
        gw.gw.set_express_lane(lane);
        let before = up.count();
        let (status, text) = exchange(
            gw.addr,
            "GET http://admin.example/x HTTP/1.1\r\nhost: www.example\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(status, 401, "lane {lane}: {text}");
        assert_eq!(
            up.count(),
            before,
            "lane {lane}: the admin route was not passed"
        );
        let (status, text) = exchange(
            gw.addr,
            "GET http://www.example/x HTTP/1.1\r\nhost: admin.example\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(status, 200, "lane {lane}: {text}");
        let seen = up.last();
        assert_eq!(seen.header("host"), Some("www.example"), "lane {lane}");
        assert_eq!(seen.header("x-forwarded-host"), Some("www.example"));
    }
    gw.stop().await;
}

#[tokio::test]
async fn an_http2_host_header_that_contradicts_the_authority_is_400() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&two_hosts_yaml(&up)).await;
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let request = |host: Option<&str>| {
        let mut r = http::Request::get("http://www.example/x");
        if let Some(host) = host {
            r = r.header("host", host);
        }
        r.body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let before = up.count();
    let r = sender
        .send_request(request(Some("admin.example")))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(up.count(), before);
    // The same host, in another spelling, or none: served.
    for host in [Some("WWW.example:80"), None] {
        let r = sender.send_request(request(host)).await.unwrap();
        assert_eq!(r.status(), 200, "{host:?}");
        assert_eq!(up.last().header("host"), Some("www.example"));
    }
    gw.stop().await;
}

const OVERRIDES: [(&str, &str); 10] = [
    ("X-Original-URL", "/admin/delete-everything"),
    ("X-Rewrite-URL", "/admin"),
    ("X-Forwarded-Prefix", "/evil"),
    ("Remote-User", "admin"),
    ("Remote-Groups", "admins"),
    ("X-Remote-User", "admin"),
    ("X-Auth-Request-User", "admin"),
    ("x_auth_request_email", "admin@example.com"),
    ("X-HTTP-Method-Override", "DELETE"),
    ("X-Forwarded-Preferred-Username", "admin"),
];

#[tokio::test]
async fn path_overrides_and_foreign_identity_headers_are_stripped() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    let (cookie, _) = access_cookie(&gw, "bob").await;
    let extra: String = OVERRIDES
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    for lane in [true, false] {
        gw.gw.set_express_lane(lane);
        for (path, cookie) in [("/x", cookie.as_str()), ("/public/page", "")] {
            let (status, _) = exchange(
                gw.addr,
                &format!("GET {path} HTTP/1.1\r\nhost: app\r\ncookie: {cookie}\r\n{extra}x-app: kept\r\n\r\n"),
            )
            .await;
            assert_eq!(status, 200, "lane {lane}: {path}");
            let seen = up.last();
            for (name, _) in OVERRIDES {
                let loose = name.to_ascii_lowercase().replace('_', "-");
                assert!(
                    !seen.names().iter().any(|n| n.replace('_', "-") == loose),
                    "lane {lane}: {name} reached the upstream on {path}"
                );
            }
            assert_eq!(seen.header("x-app"), Some("kept"));
        }
    }
    gw.stop().await;

    // `add` and `keep` change the list.
    let yaml = base_yaml(&up.url(), default_routes()).replace(
        "server:\n",
        "server:\n  strip_client_headers:\n    add: [\"X-Debug-*\"]\n    keep: [\"X-Forwarded-Prefix\"]\n",
    );
    let gw = TestGateway::start(&yaml).await;
    let (cookie, _) = access_cookie(&gw, "bob").await;
    exchange(
        gw.addr,
        &format!("GET /x HTTP/1.1\r\nhost: app\r\ncookie: {cookie}\r\nx-forwarded-prefix: /base\r\nx-debug-user: admin\r\nremote-user: admin\r\n\r\n"),
    )
    .await;
    let seen = up.last();
    assert_eq!(seen.header("x-forwarded-prefix"), Some("/base"));
    assert!(seen.header("x-debug-user").is_none());
    assert!(seen.header("remote-user").is_none());
    gw.stop().await;

    // Keeping a name that is not on the list is a config error naming the key.
    let yaml = base_yaml(&up.url(), default_routes()).replace(
        "server:\n",
        "server:\n  strip_client_headers:\n    keep: [\"X-Not-There\"]\n",
    );
    let err = TestGateway::try_start(&yaml)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("server.strip_client_headers.keep[0]"), "{err}");
    assert!(err.contains("not in the built-in list"), "{err}");
}

/// A client's trailers (chunked over HTTP/1.1, a last HEADERS frame over HTTP/2) arrive after
/// the header policy ran: they never reach the upstream, so nothing can ride along in them.
#[tokio::test]
async fn request_trailers_never_reach_the_upstream() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    let (cookie, _) = access_cookie(&gw, "alice").await;
    for lane in [true, false] {
        gw.gw.set_express_lane(lane);
        let (status, text) = exchange(
            gw.addr,
            &format!(
                "POST /echo-body HTTP/1.1\r\nhost: app\r\ncookie: {cookie}\r\ntransfer-encoding: chunked\r\nte: trailers\r\ntrailer: x-forwarded-user\r\n\r\n3\r\nabc\r\n0\r\nx-forwarded-user: root\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(status, 200, "lane {lane}: {text}");
        let seen = up.last();
        assert_eq!(seen.body, "abc");
        assert_eq!(
            seen.header_all("x-forwarded-user"),
            vec!["alice"],
            "lane {lane}"
        );
    }
    // HTTP/2 (prior knowledge on the plain listener), with the h2 crate: hyper's client would
    // not send trailers on a request without a body frame to carry them.
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let req = http::Request::post("http://app/echo-body")
        .header("cookie", &cookie)
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut stream) = client.send_request(req, false).unwrap();
    stream
        .send_data(bytes::Bytes::from_static(b"abc"), false)
        .unwrap();
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-forwarded-user", "root".parse().unwrap());
    trailers.insert("cookie", "gatehouse_access=planted".parse().unwrap());
    stream.send_trailers(trailers).unwrap();
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), response)
        .await
        .expect("an answer within 10 s")
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = up.last();
    assert_eq!(seen.body, "abc");
    assert_eq!(seen.header_all("x-forwarded-user"), vec!["alice"]);
    assert!(
        seen.header("cookie").is_none(),
        "{:?}",
        seen.header("cookie")
    );
    gw.stop().await;
}

/// A request body that breaks its own framing (a chunk size that is no number, or a body that
/// ends before its `Content-Length`) is the client's fault: `400`, never a `502` that blames the
/// upstream and counts as an upstream error.
#[tokio::test]
async fn a_request_body_that_breaks_its_framing_is_400_not_an_upstream_error() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    let (cookie, _) = access_cookie(&gw, "alice").await;
    for lane in [true, false] {
        gw.gw.set_express_lane(lane);
        let (status, text) = exchange(
            gw.addr,
            &format!(
                "POST /echo-body HTTP/1.1\r\nhost: app\r\ncookie: {cookie}\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\nxyz\r\n0\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(status, 400, "lane {lane}: {text}");
        // Ends before its length: the client stops sending (half-close) and waits.
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(
            format!(
                "POST /echo-body HTTP/1.1\r\nhost: app\r\ncookie: {cookie}\r\ncontent-length: 10\r\n\r\nabc"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        s.shutdown().await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 400 "),
            "lane {lane}, short body: {text}"
        );
    }
    let metrics = gw.gw.metrics.encode();
    assert!(
        metrics.contains("gatehouse_upstream_errors_total{route=\"app\",kind=\"protocol\"} 0"),
        "{metrics}"
    );
    gw.stop().await;
}
