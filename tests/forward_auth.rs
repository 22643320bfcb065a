//! Forward-auth `GET /auth` (SPEC §6) and the signed identity assertion.

mod support;

use http::StatusCode;
use support::*;

fn trusted_yaml(up: &Upstream) -> String {
    base_yaml(&up.url(), default_routes()).replace(
        "server:\n",
        "server:\n  trusted_proxies: [\"127.0.0.1/32\"]\n",
    )
}

#[tokio::test]
async fn forward_auth_allows_refuses_and_redirects_like_the_proxy() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&trusted_yaml(&up)).await;
    let alice = gw.client();
    alice.login("alice", "alice-pw").await;
    let bob = gw.client();
    bob.login("bob", "bob-pw").await;
    let anon = gw.client();

    // nginx style: X-Original-URL and X-Original-Method.
    let r = alice
        .get_with(
            "/.gatehouse/auth",
            &[
                ("x-original-url", "http://app.test/admin/users?x=1"),
                ("x-original-method", "POST"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-forwarded-user"), Some("alice"));
    // One URL, an answer per user: no cache may keep it.
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-forwarded-groups"), Some("admin,staff"));
    assert_eq!(r.header("x-forwarded-email"), Some("alice@example.com"));
    // Traefik/Caddy style.
    let fwd = [
        ("x-forwarded-method", "GET"),
        ("x-forwarded-host", "app.test"),
        ("x-forwarded-uri", "/admin"),
    ];
    let r = bob.get_with("/.gatehouse/auth", &fwd).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.header("x-forwarded-user").is_none());
    let r = anon.get_with("/.gatehouse/auth", &fwd).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.header("location"), Some("/.gatehouse/login?rd=%2Fadmin"));
    // Public paths are allowed without a session, with no identity.
    let r = anon
        .get_with(
            "/.gatehouse/auth",
            &[("x-forwarded-uri", "/public/app.css")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("x-forwarded-user").is_none());
    // Canonicalization applies to the original URI too.
    let r = bob
        .get_with(
            "/.gatehouse/auth",
            &[("x-forwarded-uri", "/public/%2e%2e/admin")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = bob
        .get_with("/.gatehouse/auth", &[("x-forwarded-uri", "/a%2Fb")])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // A fragment in the original target is 400 in every header form (not cut and allowed).
    for header in [
        ("x-forwarded-uri", "/public/x#/../../admin"),
        ("x-original-uri", "/admin#x"),
        ("x-original-url", "http://app.test/public/x#y"),
    ] {
        let r = bob.get_with("/.gatehouse/auth", &[header]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{header:?}");
    }
    let r = bob.get_with("/.gatehouse/auth", &[]).await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "no original request: never 2xx"
    );
    assert_eq!(up.count(), 0, "forward-auth never proxies");
    gw.stop().await;
}

#[tokio::test]
async fn forward_auth_refreshes_and_hands_back_the_cookies() {
    let up = Upstream::start().await;
    let yaml = trusted_yaml(&up).replace("  access_ttl: 5m\n", "  access_ttl: 1s\n");
    let gw = TestGateway::start(&yaml).await;
    let c = gw.client();
    c.login("alice", "alice-pw").await;
    // Without its access cookie, the browser has only the refresh cookie: forward-auth must
    // refresh and hand both new cookies back.
    c.clear_cookie("gatehouse_access");
    let r = c
        .get_with("/.gatehouse/auth", &[("x-forwarded-uri", "/dashboard")])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-forwarded-user"), Some("alice"));
    assert!(r.cookie("gatehouse_access").is_some() && r.cookie("gatehouse_refresh").is_some());
    gw.stop().await;
}

#[tokio::test]
async fn an_untrusted_client_spoofing_forward_headers_never_gets_2xx() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    let bob = gw.client();
    bob.login("bob", "bob-pw").await;
    for h in [
        ("x-forwarded-uri", "/public/x"),
        ("x-original-url", "http://x/public/x"),
        ("x-forwarded-host", "other"),
        ("x-forwarded-method", "GET"),
    ] {
        let r = bob.get_with("/.gatehouse/auth", &[h]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{h:?}");
    }
    let anon = gw.client();
    let r = anon
        .get_with("/.gatehouse/auth", &[("x-forwarded-uri", "/public/x")])
        .await;
    assert!(!r.status.is_success());
    assert_alive(gw.addr).await;
    gw.stop().await;
}

#[tokio::test]
async fn the_signed_assertion_verifies_against_jwks_and_cannot_be_forged() {
    gatehouse::install_crypto_providers();
    let up = Upstream::start().await;
    let dir = temp_dir();
    std::fs::write(
        dir.join("k.pem"),
        gatehouse::authenticate::keygen::generate(jsonwebtoken::Algorithm::EdDSA).unwrap(),
    )
    .unwrap();
    let yaml = base_yaml(&up.url(), default_routes()).replace(
        "  algorithm: HS256\n  secret: \"${TEST_SECRET}\"\n",
        "  algorithm: EdDSA\n  signing_key: k.pem\n",
    ) + "identity_headers:\n  assertion: X-Gatehouse-Assertion\n";
    let gw = TestGateway::start_in(dir, &yaml).await.unwrap();
    let c = gw.client();
    c.login("alice", "alice-pw").await;
    let r = c
        .get_with(
            "/x",
            &[
                ("x-gatehouse-assertion", "forged"),
                ("X_Gatehouse_Assertion", "forged"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = up.last();
    let all = seen.header_all("x-gatehouse-assertion");
    assert_eq!(all.len(), 1);
    assert!(seen.header("x_gatehouse_assertion").is_none());
    let jwt = &all[0];
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_str(&c.get("/.gatehouse/jwks.json").await.body).unwrap();
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    assert_eq!(header.typ.as_deref(), Some("gatehouse-assertion+jwt"));
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    v.set_audience(&["app"]);
    v.set_issuer(&["gatehouse"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(
        jwt,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &v,
    )
    .unwrap();
    assert_eq!(data.claims["sub"], "alice");
    assert_eq!(data.claims["roles"], serde_json::json!(["admin", "staff"]));
    assert!(data.claims["exp"].as_u64().unwrap() - data.claims["iat"].as_u64().unwrap() <= 60);
    // An assertion is not an access token.
    let r = Client::new(gw.addr)
        .get_with("/x", &[("authorization", &format!("Bearer {jwt}"))])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Anonymous requests on public paths carry no assertion, forged or not.
    Client::new(gw.addr)
        .get_with("/public/a", &[("x-gatehouse-assertion", "forged")])
        .await;
    assert!(up.last().header("x-gatehouse-assertion").is_none());
    gw.stop().await;
}

/// A proxy sets the forward-auth headers it uses and passes the client's other headers along
/// (nginx's `auth_request` does, Traefik's ForwardAuth too): a client's own spelling naming
/// another path, method or host must never turn a refusal into a 2xx. Each spelling present
/// must describe the same request, and none may come twice.
#[tokio::test]
async fn a_client_s_forward_auth_headers_never_override_the_proxy_s() {
    let up = Upstream::start().await;
    let routes = r#"routes:
  - name: app
    upstream: "UPSTREAM"
    public: ["/public/"]
    rules:
      - path_prefix: /admin
        allow_roles: [admin]
      - path_prefix: /reports
        methods: [GET]
  - name: admin-site
    host: admin.test
    upstream: "UPSTREAM"
    allow_roles: [admin]
"#;
    let yaml = base_yaml(&up.url(), routes).replace(
        "server:\n",
        "server:\n  trusted_proxies: [\"127.0.0.1/32\"]\n",
    );
    let gw = TestGateway::start(&yaml).await;
    let bob = gw.client();
    bob.login("bob", "bob-pw").await;
    let auth = |headers: &'static [(&'static str, &'static str)]| {
        let bob = bob.clone();
        async move { bob.get_with("/.gatehouse/auth", headers).await.status }
    };

    // What the proxy alone says is refused, and what agrees with it is decided the same way.
    let nginx: &[(&str, &str)] = &[
        ("x-original-url", "http://app.test/admin"),
        ("x-original-method", "GET"),
    ];
    assert_eq!(auth(nginx).await, StatusCode::FORBIDDEN);
    assert_eq!(
        auth(&[
            ("x-original-url", "http://app.test/admin"),
            ("x-forwarded-uri", "/admin"),
            ("x-forwarded-host", "APP.test:443"),
            ("x-forwarded-method", "GET"),
            ("x-original-method", "GET"),
        ])
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        auth(&[
            ("x-original-url", "http://app.test/reports/q3"),
            ("x-forwarded-uri", "/reports/q3"),
        ])
        .await,
        StatusCode::OK
    );

    // The client's spelling next to the proxy's, naming something bob may have.
    let forged: [&[(&str, &str)]; 7] = [
        // another path: nginx's X-Original-URL and the client's X-Forwarded-Uri or -URI
        &[
            ("x-original-url", "http://app.test/admin"),
            ("x-forwarded-uri", "/public/x"),
        ],
        &[
            ("x-original-url", "http://app.test/admin"),
            ("x-original-uri", "/public/x"),
        ],
        // Traefik's X-Forwarded-Uri and the client's X-Original-URL
        &[
            ("x-forwarded-uri", "/admin"),
            ("x-original-url", "http://app.test/public/x"),
        ],
        // another method: a DELETE the rule does not list, described as a GET
        &[
            ("x-original-url", "http://app.test/reports/q3"),
            ("x-original-method", "DELETE"),
            ("x-forwarded-method", "GET"),
        ],
        // another host: the admin site, described as the app
        &[
            ("x-original-url", "http://admin.test/"),
            ("x-forwarded-host", "app.test"),
        ],
        // the same header twice: the client's copy and the proxy's
        &[
            ("x-forwarded-uri", "/public/x"),
            ("x-forwarded-uri", "/admin"),
        ],
        &[
            ("x-forwarded-uri", "/reports/q3"),
            ("x-forwarded-method", "GET"),
            ("x-forwarded-method", "DELETE"),
        ],
    ];
    for headers in forged {
        let status = auth(headers).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{headers:?}");
    }
    assert_eq!(up.count(), 0, "forward-auth never proxies");
    gw.stop().await;
}
