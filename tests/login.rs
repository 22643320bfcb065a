//! Login, logout, userinfo and the login page (SPEC §6), with the attempts to get through
//! wrongly next to each allow-path.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;

async fn setup() -> (Upstream, TestGateway) {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    (up, gw)
}

/// For tests that fail many logins on purpose from one IP.
async fn setup_lenient() -> (Upstream, TestGateway) {
    let up = Upstream::start().await;
    let yaml = base_yaml(&up.url(), default_routes()) + "login:\n  max_failures: 1000\n";
    let gw = TestGateway::start(&yaml).await;
    (up, gw)
}

#[tokio::test]
async fn the_login_page_is_a_self_contained_labelled_form() {
    let (_up, gw) = setup().await;
    let r = gw
        .client()
        .get("/.gatehouse/login?rd=%2Freports%3Fq%3D1")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let b = &r.body;
    assert!(b.contains(r#"<form method="post" action="/.gatehouse/login">"#));
    assert!(b.contains(r#"<label for="username">"#) && b.contains(r#"id="username""#));
    assert!(b.contains(r#"<label for="password">"#) && b.contains(r#"type="password""#));
    assert!(b.contains(r#"name="rd" value="/reports?q=1""#));
    assert!(
        !b.contains("<script")
            && !b.contains("src=")
            && !b.contains("http://")
            && !b.contains("https://")
    );
    assert!(r
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'none'"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    // The JSON that carries tokens is never read as anything else either.
    let login = gw
        .client()
        .post_json(
            "/.gatehouse/login",
            serde_json::json!({"username": "alice", "password": "alice-pw"}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK);
    assert_eq!(login.header("x-content-type-options"), Some("nosniff"));
    gw.stop().await;
}

#[tokio::test]
async fn the_login_page_escapes_what_it_echoes() {
    let (_up, gw) = setup().await;
    let r = gw
        .client()
        .get("/.gatehouse/login?rd=%2F%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        .await;
    assert!(!r.body.contains("<script>"), "{}", r.body);
    let r = gw
        .client()
        .post_form(
            "/.gatehouse/login",
            &[
                ("username", "<img src=x onerror=alert(1)>"),
                ("password", "x"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(!r.body.contains("<img"), "{}", r.body);
    gw.stop().await;
}

#[tokio::test]
async fn a_form_login_sets_both_cookies_and_returns_to_rd() {
    let (up, gw) = setup().await;
    let c = gw.client();
    let r = c
        .post_form(
            "/.gatehouse/login",
            &[
                ("username", "alice"),
                ("password", "alice-pw"),
                ("rd", "/reports?q=1"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/reports?q=1"));
    // No cache may keep an answer that carries a session.
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let cookies = r.set_cookies();
    let access = cookies
        .iter()
        .find(|c| c.starts_with("gatehouse_access="))
        .unwrap();
    let refresh = cookies
        .iter()
        .find(|c| c.starts_with("gatehouse_refresh="))
        .unwrap();
    for attr in ["HttpOnly", "Path=/", "SameSite=Lax"] {
        assert!(
            access.contains(attr) && refresh.contains(attr),
            "{attr}: {cookies:?}"
        );
    }
    assert!(access.contains("Max-Age=300"), "{access}");
    assert!(refresh.contains("Max-Age=604800"), "{refresh}");
    assert_eq!(c.get("/reports?q=1").await.status, StatusCode::OK);
    assert_eq!(up.last().header("x-forwarded-user"), Some("alice"));
    gw.stop().await;
}

#[tokio::test]
async fn usernames_are_case_and_space_insensitive() {
    let (_up, gw) = setup().await;
    let t = gw.client().login_json("  ALICE ", "alice-pw").await;
    assert!(t["access_token"].is_string());
    gw.stop().await;
}

#[tokio::test]
async fn wrong_unknown_and_disabled_logins_get_one_generic_answer() {
    let (up, gw) = setup_lenient().await;
    let c = gw.client();
    let mut bodies = Vec::new();
    for (user, pw) in [
        ("alice", "wrong"),
        ("nobody", "alice-pw"),
        ("carol", "carol-pw"),
    ] {
        let r = c
            .post_form(
                "/.gatehouse/login",
                &[("username", "same"), ("password", pw)],
            )
            .await;
        let _ = user;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let r2 = c
            .post_form("/.gatehouse/login", &[("username", user), ("password", pw)])
            .await;
        assert_eq!(r2.status, StatusCode::UNAUTHORIZED, "{user}");
        assert!(r2.body.contains("Invalid username or password."), "{user}");
        assert!(r2.set_cookies().is_empty(), "{user} got cookies");
        bodies.push(r2.body.replace(user, "USER"));
        let j = c
            .post_json(
                "/.gatehouse/login",
                serde_json::json!({"username": user, "password": pw}),
            )
            .await;
        assert_eq!(j.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            j.json(),
            serde_json::json!({"error": "invalid_credentials"})
        );
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "failure pages differ"
    );
    assert_eq!(up.count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn a_json_login_returns_tokens_that_work_as_bearer() {
    let (up, gw) = setup().await;
    let c = Client::new(gw.addr);
    let r = c
        .post_json(
            "/.gatehouse/login",
            serde_json::json!({"username": "bob", "password": "bob-pw"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let j = r.json();
    assert_eq!(j["token_type"], "Bearer");
    assert_eq!(j["expires_in"], 300);
    assert!(j["refresh_token"].as_str().is_some_and(|t| t.len() == 43));
    assert!(r.cookie("gatehouse_access").is_some());
    let fresh = Client::new(gw.addr);
    let bearer = format!("Bearer {}", j["access_token"].as_str().unwrap());
    assert_eq!(
        fresh
            .get_with("/api", &[("authorization", &bearer)])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(up.last().header("x-forwarded-user"), Some("bob"));
    let info = fresh
        .get_with("/.gatehouse/userinfo", &[("authorization", &bearer)])
        .await;
    assert_eq!(info.status, StatusCode::OK);
    let info = info.json();
    assert_eq!(
        (info["user"].as_str(), info["roles"].clone()),
        (Some("bob"), serde_json::json!(["staff"]))
    );
    assert!(info["session_expires_at"].as_u64().unwrap() > 1_700_000_000);
    gw.stop().await;
}

#[tokio::test]
async fn userinfo_without_a_session_is_401() {
    let (_up, gw) = setup().await;
    let r = gw.client().get("/.gatehouse/userinfo").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "unauthorized");
    gw.stop().await;
}

#[tokio::test]
async fn brute_force_locks_the_user_and_the_right_password_stays_refused() {
    let up = Upstream::start().await;
    let yaml =
        base_yaml(&up.url(), default_routes()) + "login:\n  max_failures: 3\n  lockout: 1m\n";
    let gw = TestGateway::start(&yaml).await;
    let c = gw.client();
    for _ in 0..3 {
        let r = c
            .post_json(
                "/.gatehouse/login",
                serde_json::json!({"username": "Alice", "password": "guess"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = c
        .post_json(
            "/.gatehouse/login",
            serde_json::json!({"username": "alice", "password": "alice-pw"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(r.set_cookies().is_empty());
    let r = c
        .post_form(
            "/.gatehouse/login",
            &[("username", " ALICE"), ("password", "alice-pw")],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "canonical username shares the counter"
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_unknown_user_costs_the_same_time_as_a_wrong_password() {
    let (_up, gw) = setup_lenient().await;
    let c = gw.client();
    let time = |user: &'static str| {
        let c = c.clone();
        async move {
            let t = Instant::now();
            let r = c
                .post_json(
                    "/.gatehouse/login",
                    serde_json::json!({"username": user, "password": "nope"}),
                )
                .await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
            t.elapsed()
        }
    };
    // The fastest of several interleaved tries: the hash is the same work every time, and
    // whatever else the machine runs (argon2 runs at idle priority) can only add to it.
    let (mut known, mut unknown) = (Duration::MAX, Duration::MAX);
    for _ in 0..6 {
        known = known.min(time("bob").await);
        unknown = unknown.min(time("nobody-at-all").await);
    }
    let (k, u) = (known.as_secs_f64(), unknown.as_secs_f64());
    // Generous: an unknown user without the dummy hash would be >10x faster.
    assert!(
        u > k / 3.0 && u < k * 3.0,
        "known {k:.4}s vs unknown {u:.4}s"
    );
    gw.stop().await;
}

#[tokio::test]
async fn cross_site_posts_are_refused() {
    let (_up, gw) = setup().await;
    let c = gw.client();
    let form = Bytes::from("username=alice&password=alice-pw");
    let post = |headers: Vec<(&'static str, String)>| {
        let mut b = Request::post("/.gatehouse/login")
            .header("content-type", "application/x-www-form-urlencoded");
        for (k, v) in headers {
            b = b.header(k, v);
        }
        b.body(Full::new(form.clone())).unwrap()
    };
    let r = c
        .send(post(vec![("origin", "https://evil.example".into())]))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = c.send(post(vec![("origin", "null".into())])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = c
        .send(post(vec![("sec-fetch-site", "cross-site".into())]))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.set_cookies().is_empty());
    for path in ["/.gatehouse/refresh", "/.gatehouse/logout"] {
        let r = c
            .send(
                Request::post(path)
                    .header("origin", "https://evil.example")
                    .body(Full::default())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
    }
    let own = format!("http://{}", gw.addr);
    let r = c
        .send(post(vec![
            ("origin", own),
            ("sec-fetch-site", "same-origin".into()),
        ]))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    gw.stop().await;
}

/// Behind a TLS-terminating proxy the browser's origin is `https://app.example` while the
/// gateway hears plain HTTP, often with the proxy's own `Host` (nginx's default is the
/// upstream's address). From a trusted proxy, `X-Forwarded-Proto/-Host` say what the browser
/// saw: a same-origin login is let in, a cross-site one still refused; from anyone else those
/// headers are not believed. Default ports are the same origin as none.
#[tokio::test]
async fn the_same_origin_check_believes_a_trusted_proxy_s_forwarded_host() {
    let up = Upstream::start().await;
    let trusting = base_yaml(&up.url(), default_routes()).replace(
        "server:\n",
        "server:\n  trusted_proxies: [\"127.0.0.1/32\"]\n",
    );
    let post = |headers: &[(&str, &str)]| {
        let mut b = Request::post("/.gatehouse/login")
            .header("content-type", "application/x-www-form-urlencoded");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Full::new(Bytes::from("username=alice&password=alice-pw")))
            .unwrap()
    };
    let behind_proxy = [
        ("host", "127.0.0.1:8080"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "app.example"),
    ];
    let with_origin = |origin: &'static str| {
        let mut h = behind_proxy.to_vec();
        h.push(("origin", origin));
        h
    };
    let gw = TestGateway::start(&trusting).await;
    let c = gw.client();
    for (origin, status) in [
        ("https://app.example", StatusCode::SEE_OTHER),
        ("https://app.example:443", StatusCode::SEE_OTHER),
        ("http://app.example", StatusCode::FORBIDDEN),
        ("https://evil.example", StatusCode::FORBIDDEN),
        ("http://127.0.0.1:8080", StatusCode::FORBIDDEN),
    ] {
        let r = c.send(post(&with_origin(origin))).await;
        assert_eq!(r.status, status, "trusted proxy, origin {origin}");
    }
    // `Host` with the default port is the origin without it.
    let r = c
        .send(post(&[
            ("host", "app.example:80"),
            ("origin", "http://app.example"),
        ]))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    gw.stop().await;

    // Not from a trusted proxy: the forwarded headers say nothing.
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    let c = gw.client();
    let r = c.send(post(&with_origin("https://app.example"))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = c.send(post(&with_origin("http://127.0.0.1:8080"))).await;
    assert_eq!(
        r.status,
        StatusCode::SEE_OTHER,
        "its own Host is its origin"
    );
    gw.stop().await;
}

#[tokio::test]
async fn bad_login_bodies_are_4xx_and_harmless() {
    let (_up, gw) = setup().await;
    let c = gw.client();
    let big = "a".repeat(9 * 1024);
    let r = c
        .post_form(
            "/.gatehouse/login",
            &[("username", "alice"), ("password", &big)],
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let r = c
        .send(
            Request::post("/.gatehouse/login")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from("{\"username\": \"alice\", ")))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = c
        .post_json("/.gatehouse/login", serde_json::json!({"user": "alice"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = c
        .post_form("/.gatehouse/login", &[("username", "alice")])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = c
        .send(
            Request::post("/.gatehouse/login")
                .header("content-type", "text/plain")
                .body(Full::new(Bytes::from("hi")))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = c
        .send(
            Request::post("/.gatehouse/login")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from_static(
                    b"username=\xff\xfe&password=x",
                )))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // A body that is promised but never sent ends in 413 up front, not a hang.
    let resp = raw(gw.addr, b"POST /.gatehouse/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 999999\r\nconnection: close\r\n\r\n").await;
    assert_eq!(raw_status(&resp), 413);
    assert_alive(gw.addr).await;
    gw.stop().await;
}

fn location_is_local(loc: &str) -> bool {
    let b = loc.as_bytes();
    (loc == "/" || (b.first() == Some(&b'/') && !matches!(b.get(1), Some(b'/') | Some(b'\\'))))
        && !loc.chars().any(|c| c.is_control() || c == ' ' || c == '\\')
}

#[tokio::test]
async fn no_open_redirect_payload_leaves_the_origin_after_login_or_logout() {
    let (_up, gw) = setup().await;
    let corpus = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/openredirects.txt"
    ))
    .unwrap();
    let payloads: Vec<&str> = corpus.lines().collect();
    assert_eq!(payloads.len(), 559);
    let c = gw.client();
    // Logged-in logins would lock the account after failures; use successful logins.
    for (i, rd) in payloads.iter().enumerate() {
        let r = c
            .post_form(
                "/.gatehouse/login",
                &[("username", "alice"), ("password", "alice-pw"), ("rd", rd)],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "line {}", i + 1);
        let loc = r.header("location").unwrap_or("");
        assert!(location_is_local(loc), "line {}: {rd:?} -> {loc:?}", i + 1);
        let q: String = form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        let r = c.get(&format!("/.gatehouse/logout?rd={q}")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "line {}", i + 1);
        let loc = r.header("location").unwrap_or("");
        assert!(
            location_is_local(loc),
            "logout line {}: {rd:?} -> {loc:?}",
            i + 1
        );
        let page = c.get(&format!("/.gatehouse/login?rd={q}")).await;
        assert!(!page.body.contains("value=\"//"), "line {}", i + 1);
    }
    gw.stop().await;
}

#[tokio::test]
async fn logout_revokes_the_session_and_clears_cookies() {
    let (up, gw) = setup().await;
    let c = gw.client();
    c.login("alice", "alice-pw").await;
    let stolen = c.cookie("gatehouse_access").unwrap();
    let r = c.post_form("/.gatehouse/logout", &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/.gatehouse/login"));
    assert!(
        r.set_cookies()
            .iter()
            .filter(|c| c.contains("Max-Age=0"))
            .count()
            == 2
    );
    assert!(c.cookie("gatehouse_access").is_none());
    // The old access token, replayed before its exp, is refused.
    let before = up.count();
    let replay = Client::new(gw.addr);
    let r = replay
        .get_with("/x", &[("authorization", &format!("Bearer {stolen}"))])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.header("www-authenticate").unwrap().contains("revoked"));
    replay.set_cookie("gatehouse_access", &stolen);
    assert_eq!(replay.navigate("/x").await.status, StatusCode::FOUND);
    assert_eq!(up.count(), before);

    let api = Client::new(gw.addr);
    let t = api.login_json("bob", "bob-pw").await;
    let bearer = format!("Bearer {}", t["access_token"].as_str().unwrap());
    let r = api
        .send(
            Request::post("/.gatehouse/logout")
                .header("authorization", &bearer)
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        Client::new(gw.addr)
            .get_with("/x", &[("authorization", &bearer)])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    gw.stop().await;
}

#[tokio::test]
async fn the_login_page_clears_stale_cookies() {
    let (_up, gw) = setup().await;
    let c = gw.client();
    c.set_cookie("gatehouse_access", "stale.token.value");
    c.set_cookie("gatehouse_refresh", "stale");
    let r = c.get("/.gatehouse/login").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.set_cookies()
            .iter()
            .filter(|s| s.contains("Max-Age=0"))
            .count(),
        2
    );
    gw.stop().await;
}

#[tokio::test]
async fn the_gateway_endpoints_answer_the_right_methods() {
    let (_up, gw) = setup().await;
    let c = gw.client();
    let r = c.get("/.gatehouse/healthz").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "ok\n"));
    assert_eq!(
        c.get("/.gatehouse/nothing-here").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.get("/.gatehouse/refresh").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        c.get("/.gatehouse/jwks.json").await.status,
        StatusCode::NOT_FOUND,
        "HS256 has no public keys"
    );
    let _ = Duration::ZERO;
    gw.stop().await;
}
