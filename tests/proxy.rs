//! Proxying (SPEC §7): identity headers nobody can forge, routing over canonical paths,
//! forwarding headers, streaming, upstream failures.

mod support;

use http::{Method, Request, StatusCode};
use http_body_util::Full;
use support::*;

async fn setup() -> (Upstream, TestGateway) {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    (up, gw)
}

#[tokio::test]
async fn a_logged_in_user_reaches_the_app_with_identity_headers() {
    let (up, gw) = setup().await;
    let c = gw.client();
    c.login("alice", "alice-pw").await;
    let r = c.get("/hello?x=1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-upstream"), Some("yes"));
    let seen = up.last();
    assert_eq!(seen.uri, "/hello?x=1");
    assert_eq!(seen.header("x-forwarded-user"), Some("alice"));
    assert_eq!(seen.header("x-forwarded-email"), Some("alice@example.com"));
    assert_eq!(seen.header("x-forwarded-groups"), Some("admin,staff"));
    gw.stop().await;
}

#[tokio::test]
async fn forged_identity_headers_in_every_spelling_are_replaced() {
    let (up, gw) = setup().await;
    let c = gw.client();
    c.login("bob", "bob-pw").await;
    let spellings = [
        "X-Forwarded-User",
        "x-forwarded-user",
        "X_Forwarded_User",
        "X-FORWARDED-USER",
        "x_forwarded_USER",
    ];
    for spelling in spellings {
        let r = c
            .get_with(
                "/x",
                &[
                    (spelling, "alice"),
                    ("X-Forwarded-Groups", "admin"),
                    ("x_forwarded_email", "alice@example.com"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let seen = up.last();
        assert_eq!(
            seen.header_all("x-forwarded-user"),
            vec!["bob"],
            "{spelling}"
        );
        assert_eq!(
            seen.header_all("x-forwarded-groups"),
            vec!["staff"],
            "{spelling}"
        );
        assert!(
            seen.header("x-forwarded-email").is_none(),
            "bob has no email; a forged one must not pass"
        );
        let loose: Vec<String> = seen
            .names()
            .into_iter()
            .filter(|n| {
                n.replace('_', "-").starts_with("x-forwarded-user")
                    || n.replace('_', "-") == "x-forwarded-email"
            })
            .collect();
        assert_eq!(loose, vec!["x-forwarded-user"], "{spelling}: {loose:?}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn forged_identity_headers_are_stripped_on_public_paths_too() {
    let (up, gw) = setup().await;
    let r = gw
        .client()
        .get_with(
            "/public/logo.png",
            &[
                ("X-Forwarded-User", "admin"),
                ("X_Forwarded_Groups", "admin"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = up.last();
    assert!(
        seen.names().iter().all(|n| !n.contains("forwarded-user")
            && !n.contains("forwarded_user")
            && !n.contains("groups")),
        "{:?}",
        seen.names()
    );
    gw.stop().await;
}

#[tokio::test]
async fn connection_header_cannot_drop_identity() {
    let (up, gw) = setup().await;
    let c = gw.client();
    c.login("alice", "alice-pw").await;
    let r = c
        .get_with(
            "/x",
            &[
                ("connection", "close, X-Forwarded-User, X-Forwarded-Groups"),
                ("keep-alive", "timeout=5"),
                ("te", "trailers"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = up.last();
    assert_eq!(seen.header("x-forwarded-user"), Some("alice"));
    assert_eq!(seen.header("x-forwarded-groups"), Some("admin,staff"));
    assert!(seen.header("te").is_none() && seen.header("keep-alive").is_none());
    let conn = seen.header("connection").unwrap_or("");
    assert!(
        !conn.to_ascii_lowercase().contains("forwarded"),
        "connection: {conn}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn the_gateway_cookies_and_bearer_never_reach_the_app() {
    let (up, gw) = setup().await;
    let c = gw.client();
    c.login("alice", "alice-pw").await;
    c.set_cookie("app_pref", "dark");
    let r = c.get("/x").await;
    assert_eq!(r.status, StatusCode::OK);
    let cookie = up.last().header("cookie").unwrap_or("").to_string();
    assert_eq!(cookie, "app_pref=dark");
    assert!(!cookie.contains("gatehouse"));

    let api = Client::new(gw.addr);
    let tokens = api.login_json("alice", "alice-pw").await;
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().unwrap());
    let r = api.get_with("/api", &[("authorization", &bearer)]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(up.last().header("authorization").is_none());
    assert_eq!(up.last().header("x-forwarded-user"), Some("alice"));
    gw.stop().await;
}

#[tokio::test]
async fn the_gateway_cookies_never_reach_the_app_whatever_else_the_cookie_header_holds() {
    let (up, gw) = setup().await;
    let c = gw.client();
    c.login("alice", "alice-pw").await;
    let access = c.cookie("gatehouse_access").expect("logged in");
    let addr = gw.addr;
    let send = |cookie_lines: Vec<u8>| async move {
        let mut req = b"GET /c HTTP/1.1\r\nHost: app\r\nConnection: close\r\n".to_vec();
        req.extend_from_slice(&cookie_lines);
        req.extend_from_slice(b"\r\n");
        raw(addr, &req).await
    };
    let seen_cookie = |up: &Upstream| {
        up.last()
            .headers
            .get_all("cookie")
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect::<Vec<_>>()
    };

    // UTF-8 in an app cookie: the app's segment is kept byte for byte, ours is not.
    let line = [
        b"Cookie: app=caf\xc3\xa9; gatehouse_access=",
        access.as_bytes(),
        b"\r\n",
    ]
    .concat();
    assert_eq!(raw_status(&send(line).await), 200);
    assert_eq!(seen_cookie(&up), vec![b"app=caf\xc3\xa9".to_vec()]);

    // Not UTF-8 (Latin-1): that header cannot be split safely, so none of it is forwarded;
    // our cookie in a second header still authenticates and is stripped.
    let lines = [
        b"Cookie: app=caf\xe9\r\nCookie: gatehouse_access=".as_slice(),
        access.as_bytes(),
        b"\r\n",
    ]
    .concat();
    assert_eq!(raw_status(&send(lines).await), 200);
    assert!(seen_cookie(&up).is_empty());

    // Ours alone, and ours in a second header next to the app's.
    let line = [b"Cookie: gatehouse_access=", access.as_bytes(), b"\r\n"].concat();
    assert_eq!(raw_status(&send(line).await), 200);
    assert!(seen_cookie(&up).is_empty());
    let lines = [
        b"Cookie: gatehouse_access=".as_slice(),
        access.as_bytes(),
        b"\r\nCookie: app=1\r\n",
    ]
    .concat();
    assert_eq!(raw_status(&send(lines).await), 200);
    assert_eq!(seen_cookie(&up), vec![b"app=1".to_vec()]);
    gw.stop().await;
}

#[tokio::test]
async fn an_apps_own_authorization_header_passes_when_the_cookie_authenticates() {
    let (up, gw) = setup().await;
    let c = gw.client();
    c.login("bob", "bob-pw").await;
    let r = c
        .get_with("/x", &[("authorization", "Basic YXBwOmtleQ==")])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        up.last().header("authorization"),
        Some("Basic YXBwOmtleQ==")
    );
    gw.stop().await;
}

#[tokio::test]
async fn forwarding_headers_are_ours_unless_the_peer_is_trusted() {
    let (up, gw) = setup().await;
    let c = gw.client();
    c.login("bob", "bob-pw").await;
    c.get_with(
        "/x",
        &[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("x_forwarded_for", "7.7.7.7"),
            ("forwarded", "for=6.6.6.6"),
        ],
    )
    .await;
    let seen = up.last();
    assert_eq!(seen.header_all("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some(gw.addr.to_string().as_str())
    );
    assert!(seen.header("forwarded").is_none() && seen.header("x_forwarded_for").is_none());
    assert!(seen.header("x-request-id").is_some_and(|id| id.len() >= 12));
    gw.stop().await;

    let up = Upstream::start().await;
    let yaml = base_yaml(&up.url(), default_routes()).replace(
        "server:\n",
        "server:\n  trusted_proxies: [\"127.0.0.0/8\"]\n",
    );
    let gw = TestGateway::start(&yaml).await;
    let c = gw.client();
    c.login("bob", "bob-pw").await;
    c.get_with(
        "/x",
        &[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
            ("x-request-id", "abc-123"),
        ],
    )
    .await;
    let seen = up.last();
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-request-id"), Some("abc-123"));
    gw.stop().await;
}

#[tokio::test]
async fn unauthenticated_browsers_are_redirected_and_api_clients_get_401() {
    let (up, gw) = setup().await;
    let c = gw.client();
    let r = c.navigate("/reports/q3?year=2026").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(
        r.header("location"),
        Some("/.gatehouse/login?rd=%2Freports%2Fq3%3Fyear%3D2026")
    );
    let r = c.get("/api/items").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "unauthorized");
    let www = r.header("www-authenticate").unwrap();
    assert!(
        www.starts_with("Bearer realm=\"gatehouse\", error=\"invalid_token\""),
        "{www}"
    );
    let r = c
        .send(
            Request::post("/form")
                .header("accept", "text/html")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a POST is not a navigation"
    );
    assert_eq!(up.count(), 0, "the upstream must see nothing");
    gw.stop().await;
}

#[tokio::test]
async fn public_paths_are_served_without_login_but_only_on_segment_boundaries() {
    let (up, gw) = setup().await;
    let c = gw.client();
    assert_eq!(c.get("/public/app.css").await.status, StatusCode::OK);
    assert_eq!(c.get("/favicon.ico").await.status, StatusCode::OK);
    assert_eq!(up.count(), 2);
    assert_eq!(c.get("/publicity").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        c.get("/favicon.ico.bak").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        c.get("/public/../admin").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        c.get("/public/%2e%2e/admin").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(up.count(), 2, "nothing protected reached the upstream");
    gw.stop().await;
}

#[tokio::test]
async fn role_rules_apply_to_the_canonical_path_that_is_forwarded() {
    let (up, gw) = setup().await;
    let bob = gw.client();
    bob.login("bob", "bob-pw").await;
    for path in [
        "/admin",
        "/admin/users",
        "/public/../admin",
        "/public/%2e%2e/admin",
        "//admin",
        "/x/./../admin/",
        "/%61dmin",
        "/admin;jsessionid=1",
    ] {
        let r = bob.get(path).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(up.count(), 0, "bob must not reach /admin in any spelling");
    let r = bob.get("/admin-old").await;
    assert_eq!(r.status, StatusCode::OK, "/admin-old is not under /admin");

    let alice = gw.client();
    alice.login("alice", "alice-pw").await;
    assert_eq!(
        alice.get("/public/%2e%2e/admin").await.status,
        StatusCode::OK
    );
    assert_eq!(
        up.last().uri,
        "/admin",
        "the canonical path is what is forwarded"
    );
    assert_eq!(alice.get("//admin//x").await.status, StatusCode::OK);
    assert_eq!(up.last().uri, "/admin/x");
    gw.stop().await;
}

#[tokio::test]
async fn dangerous_paths_are_400_and_never_forwarded() {
    let (up, gw) = setup().await;
    let c = gw.client();
    c.login("alice", "alice-pw").await;
    for path in [
        "/a%2Fb",
        "/a%2fb",
        "/a%5Cb",
        "/a%00b",
        "/a%23b",
        "/..",
        "/a/../../b",
        "/%2e%2e/x",
        "/a%zz",
    ] {
        let r = c.get(path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}");
    }
    // Backslashes do not survive a well-behaved client: send raw bytes.
    let cookie = format!("gatehouse_access={}", c.cookie("gatehouse_access").unwrap());
    let req =
        format!("GET /a\\b HTTP/1.1\r\nhost: x\r\ncookie: {cookie}\r\nconnection: close\r\n\r\n");
    assert_eq!(raw_status(&raw(gw.addr, req.as_bytes()).await), 400);
    assert_eq!(up.count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn a_raw_fragment_in_the_request_target_is_400_and_never_forwarded() {
    // hyper cuts `#...` off the target before the service sees it; the connection's
    // head tracker (src/accept/heads.rs) reads the raw bytes and marks the request.
    let (up, gw) = setup().await;
    let c = gw.client();
    c.login("bob", "bob-pw").await;
    let cookie = format!("gatehouse_access={}", c.cookie("gatehouse_access").unwrap());
    let req = format!("GET /admin#/../public/ HTTP/1.1\r\nhost: x\r\ncookie: {cookie}\r\nconnection: close\r\n\r\n");
    assert_eq!(raw_status(&raw(gw.addr, req.as_bytes()).await), 400);
    for target in [
        "/public/x#/../../admin",
        "/public/x?a=1#f",
        "/#",
        "http://x/public/y#z",
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        assert_eq!(
            raw_status(&raw(gw.addr, req.as_bytes()).await),
            400,
            "{target}"
        );
    }
    assert_eq!(up.count(), 0);
    assert_alive(gw.addr).await;
    gw.stop().await;
}

#[tokio::test]
async fn on_a_kept_alive_connection_only_the_request_with_the_fragment_is_refused() {
    let (up, gw) = setup().await;
    // A body that looks like a request line with `#` is a body: the next request, with the
    // same path and no fragment, goes through; a later pipelined one with `#` is refused.
    let body = "GET /public/x#y HTTP/1.1\r\nhost: x\r\n\r\n";
    let chunked = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    let stream = format!(
        "POST /public/form HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}\
         GET /public/x HTTP/1.1\r\nhost: x\r\n\r\n\
         POST /public/form HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n{chunked}\
         GET /public/x HTTP/1.1\r\nhost: x\r\n\r\n\
         GET /public/x#y HTTP/1.1\r\nhost: x\r\n\r\n\
         GET /public/z HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let answered = raw(gw.addr, stream.as_bytes()).await;
    let statuses: Vec<u16> = answered
        .split("HTTP/1.1 ")
        .skip(1)
        .filter_map(|r| r.get(..3)?.parse().ok())
        .collect();
    assert_eq!(statuses, [200, 200, 200, 200, 400, 200], "{answered}");
    let uris: Vec<String> = up.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(
        uris,
        [
            "/public/form",
            "/public/x",
            "/public/form",
            "/public/x",
            "/public/z"
        ]
    );
    gw.stop().await;
}

#[tokio::test]
async fn routes_pick_exact_host_then_wildcard_then_default_and_longest_prefix() {
    let a = Upstream::start().await;
    let b = Upstream::start().await;
    let d = Upstream::start().await;
    let routes = format!(
        r#"routes:
  - name: default
    upstream: "{d}"
    public: ["/"]
  - name: exact
    host: app.example.com
    upstream: "{a}"
    public: ["/"]
  - name: exact-api
    host: app.example.com
    path_prefix: /api
    strip_prefix: true
    upstream: "{b}/v1"
    public: ["/"]
  - name: wild
    host: "*.example.com"
    upstream: "{b}"
    public: ["/"]
"#,
        d = d.url(),
        a = a.url(),
        b = b.url()
    );
    let gw = TestGateway::start(&base_yaml("unused", &routes)).await;
    let c = gw.client();
    let host = |h: &'static str| [("host", h)];
    c.get_with("/x", &host("App.Example.com:8443")).await;
    assert_eq!((a.count(), a.last().uri.as_str()), (1, "/x"));
    c.get_with("/api/items?id=1", &host("app.example.com."))
        .await;
    assert_eq!(
        b.last().uri,
        "/v1/items?id=1",
        "strip_prefix under the upstream path"
    );
    c.get_with("/apix", &host("app.example.com")).await;
    assert_eq!(a.count(), 2, "/apix is not under /api");
    c.get_with("/y", &host("other.example.com")).await;
    assert_eq!(b.last().uri, "/y");
    c.get_with("/z", &host("example.com")).await;
    assert_eq!(d.last().uri, "/z");
    gw.stop().await;

    let only = format!(
        "routes:\n  - name: only\n    host: a.test\n    upstream: \"{}\"\n",
        a.url()
    );
    let gw = TestGateway::start(&base_yaml("unused", &only)).await;
    let r = gw.client().get_with("/", &host("b.test")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    gw.stop().await;
}

#[tokio::test]
async fn preserve_host_decides_the_host_the_upstream_sees() {
    let up = Upstream::start().await;
    let routes = "routes:\n  - name: a\n    upstream: \"UPSTREAM\"\n    public: [\"/\"]\n    preserve_host: false\n";
    let gw = TestGateway::start(&base_yaml(&up.url(), routes)).await;
    gw.client()
        .get_with("/", &[("host", "app.example.com")])
        .await;
    assert_eq!(up.last().header("host"), Some(up.addr.to_string().as_str()));
    assert_eq!(
        up.last().header("x-forwarded-host"),
        Some("app.example.com")
    );
    gw.stop().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), &routes.replace("false", "true"))).await;
    gw.client()
        .get_with("/", &[("host", "app.example.com")])
        .await;
    assert_eq!(up.last().header("host"), Some("app.example.com"));
    gw.stop().await;
}

#[tokio::test]
async fn bodies_stream_both_ways() {
    let (up, gw) = setup().await;
    let c = gw.client();
    c.login("alice", "alice-pw").await;
    let big = "x".repeat(3 * 1024 * 1024);
    let r = c
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/echo-body")
                .body(Full::new(bytes::Bytes::from(big.clone())))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.len(), big.len());
    assert_eq!(up.last().body.len(), big.len());

    // The first chunk arrives before the upstream has produced the last one.
    let cookie = format!("gatehouse_access={}", c.cookie("gatehouse_access").unwrap());
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(format!("GET /stream HTTP/1.1\r\nhost: x\r\ncookie: {cookie}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = vec![0u8; 4096];
    let mut got = String::new();
    while !got.contains("first;") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(!got.contains("third"), "the whole body was buffered: {got}");
    assert!(started.elapsed() < std::time::Duration::from_millis(550));
    gw.stop().await;
}

#[tokio::test]
async fn upstream_failures_are_502_and_504_and_the_gateway_keeps_serving() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let up = Upstream::start().await;
    let routes = format!(
        "routes:\n  - name: dead\n    path_prefix: /dead\n    upstream: \"http://{dead_addr}\"\n    public: [\"/\"]\n  - name: live\n    upstream: \"UPSTREAM\"\n    public: [\"/\"]\n"
    );
    let yaml = base_yaml(&up.url(), &routes).replace(
        "server:\n",
        "server:\n  limits:\n    upstream_response_timeout: 1s\n",
    );
    let gw = TestGateway::start(&yaml).await;
    let c = gw.client();
    let r = c.get("/dead/x").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.json()["error"], "upstream_unavailable");
    let r = c.get("/slow").await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(r.json()["error"], "upstream_timeout");
    assert_eq!(c.get("/fine").await.status, StatusCode::OK);
    gw.stop().await;
}

#[tokio::test]
async fn app_cookies_and_headers_come_back_unchanged() {
    let (_up, gw) = setup().await;
    let c = gw.client();
    c.login("bob", "bob-pw").await;
    let r = c.get("/set-app-cookie").await;
    assert_eq!(r.cookie("app_session").as_deref(), Some("xyz"));
    assert!(r.header("x-request-id").is_some());
    gw.stop().await;
}

/// An app behind `preserve_host: false` sees its own address in `Host` and writes it into
/// `Location`; the browser cannot reach that address. The gateway turns such a `Location`
/// into the client's path (nginx's `proxy_redirect default`), undoing `strip_prefix` and the
/// upstream URL's path, on both paths; any other `Location` passes as the app wrote it.
#[tokio::test]
async fn a_redirect_to_the_upstream_itself_becomes_the_client_s_path() {
    let up = Upstream::start().await;
    let routes = format!(
        r#"routes:
  - name: legacy
    path_prefix: /app
    strip_prefix: true
    preserve_host: false
    upstream: "{u}/legacy"
    public: ["/"]
"#,
        u = up.url()
    );
    let gw = TestGateway::start(&base_yaml("unused", &routes)).await;
    let own = format!("http://{}", up.addr);
    let cases = [
        (
            format!("{own}/legacy/landing?x=1#top"),
            "/app/landing?x=1#top".to_string(),
        ),
        (format!("{own}/legacy"), "/app/".to_string()),
        // Not the upstream, or outside its path, or a site-relative one: as written.
        (
            "https://sso.example/login".to_string(),
            "https://sso.example/login".to_string(),
        ),
        (format!("{own}/other"), format!("{own}/other")),
        ("/legacy/x".to_string(), "/legacy/x".to_string()),
    ];
    for lane in [true, false] {
        gw.gw.set_express_lane(lane);
        for (sent, expected) in &cases {
            let r = gw
                .client()
                .get_with("/app/redirect", &[("x-redirect-to", sent)])
                .await;
            assert_eq!(r.status, 302, "lane {lane}: {sent}");
            assert_eq!(
                r.header("location"),
                Some(expected.as_str()),
                "lane {lane}: {sent}"
            );
        }
    }
    assert_eq!(up.last().uri, "/legacy/redirect");
    gw.stop().await;
}
