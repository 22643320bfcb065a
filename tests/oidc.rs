//! Login through an identity provider (SPEC §11) against a hostile provider of our own: every
//! ID token, state and logout token a real provider would never send must end with no session
//! and nothing forwarded upstream. The real provider (oidc-provider) is in `oidc_provider.rs`.

mod support;

use http::StatusCode;
use serde_json::{json, Map, Value};
use support::oidc::{self, now, HostileProvider, Script, Signing};
use support::*;
use tokio::net::TcpListener;

/// A gateway whose config has `public_url` pointing at itself and the `oidc` section given
/// (`ISSUER` replaced by the provider's issuer).
async fn gateway(up: &Upstream, issuer: &str, oidc_yaml: &str) -> TestGateway {
    gateway_edited(up, issuer, oidc_yaml, |yaml| yaml).await
}

/// [`gateway`] with the whole config edited by `edit` first.
async fn gateway_edited(
    up: &Upstream,
    issuer: &str,
    oidc_yaml: &str,
    edit: impl FnOnce(String) -> String,
) -> TestGateway {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let yaml = base_yaml(&up.url(), &format!("{}{oidc_yaml}", default_routes()))
        .replace(
            "  listen: \"127.0.0.1:0\"\n",
            &format!("  listen: \"127.0.0.1:0\"\n  public_url: \"http://127.0.0.1:{port}\"\n"),
        )
        .replace("ISSUER", issuer);
    TestGateway::start_on(listener, temp_dir(), &edit(yaml))
        .await
        .unwrap_or_else(|e| panic!("config refused: {e}"))
}

const PROVIDERS: &str = r#"oidc:
  providers:
    - id: hostile
      name: "Hostile IdP"
      issuer: "ISSUER"
      client_id: gatehouse
      client_secret: "s3cret"
      username_claim: preferred_username
      roles_claim: groups
      role_map: { "idp-admins": "admin" }
    - id: second
      name: "Second IdP"
      issuer: "ISSUER"
      client_id: gatehouse
      username_claim: email
"#;

/// A script that sets (or, with `null`, removes) these ID-token claims.
fn with(v: Value) -> Script {
    Script {
        claims: claims(v),
        ..Script::default()
    }
}

fn claims(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Starts a login at `id`, scripts the provider for it, and comes back to the callback.
async fn round_trip(client: &Client, idp: &HostileProvider, id: &str, mut script: Script) -> Resp {
    let started = oidc::start(client, id, "/dashboard?tab=2").await;
    if script.nonce.is_none() {
        script.nonce = Some(started.nonce.clone());
    }
    script.challenge = Some(started.challenge.clone());
    idp.script(script);
    client
        .navigate(&format!(
            "/.gatehouse/oidc/{id}/callback?code=c-{}&state={}&iss={}",
            started.state,
            started.state,
            form_urlencoded::byte_serialize(idp.issuer.as_bytes()).collect::<String>()
        ))
        .await
}

/// No session: no access cookie in the jar, and a protected page sends the browser to login.
async fn assert_no_session(client: &Client, up: &Upstream, before: usize, case: &str) {
    assert!(
        client.cookie("gatehouse_access").is_none() && client.cookie("gatehouse_refresh").is_none(),
        "{case}: a session cookie was set"
    );
    let r = client.navigate("/dashboard").await;
    assert_eq!(r.status, StatusCode::FOUND, "{case}: {}", r.body);
    assert_eq!(up.count(), before, "{case}: something reached the upstream");
}

#[tokio::test]
async fn a_provider_login_ends_in_an_ordinary_session_with_pkce_and_client_authentication() {
    let up = Upstream::start().await;
    let idp = HostileProvider::start().await;
    let gw = gateway(&up, &idp.issuer, PROVIDERS).await;
    let client = gw.client();

    // The login page offers the provider next to the password form.
    let page = client.navigate("/.gatehouse/login?rd=/dashboard").await;
    assert!(
        page.body.contains("Sign in with Hostile IdP"),
        "{}",
        page.body
    );
    assert!(page
        .body
        .contains("/.gatehouse/oidc/hostile/start?rd=%2Fdashboard"));
    assert!(page.body.contains("name=\"password\""));

    let started = oidc::start(&client, "hostile", "/dashboard?tab=2").await;
    assert!(started
        .location
        .starts_with(&format!("{}/authorize?", idp.issuer)));
    for (k, v) in [
        ("response_type", "code"),
        ("client_id", "gatehouse"),
        ("code_challenge_method", "S256"),
        ("scope", "openid email profile"),
    ] {
        assert_eq!(
            oidc::query_param(&started.location, k).as_deref(),
            Some(v),
            "{k}"
        );
    }
    assert_eq!(
        oidc::query_param(&started.location, "redirect_uri").unwrap(),
        format!("http://{}/.gatehouse/oidc/hostile/callback", gw.addr)
    );
    assert!(
        started.state.len() >= 22 && started.nonce.len() >= 22,
        "128 bits at least"
    );
    let state_cookie = client.cookie("gatehouse_oidc").expect("the state cookie");
    assert!(
        !state_cookie.contains(&started.state),
        "the cookie is sealed"
    );
    // The state cookie is the gateway's: never sent on to the app.
    client.set_cookie("app_pref", "dark");
    assert_eq!(client.navigate("/public/page").await.status, StatusCode::OK);
    assert_eq!(up.last().header("cookie"), Some("app_pref=dark"));

    idp.script(Script {
        nonce: Some(started.nonce.clone()),
        challenge: Some(started.challenge.clone()),
        refresh_token: Some("idp-refresh-1".into()),
        claims: claims(json!({"groups": ["idp-admins", "staff"]})),
        ..Script::default()
    });
    let r = client
        .navigate(&format!(
            "/.gatehouse/oidc/hostile/callback?code=abc&state={}",
            started.state
        ))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.header("location"), Some("/dashboard?tab=2"));
    assert!(client.cookie("gatehouse_access").is_some());
    assert!(client.cookie("gatehouse_refresh").is_some());
    assert!(
        client.cookie("gatehouse_oidc").is_none(),
        "the used state leaves the cookie"
    );
    let token_request = idp.token_requests().pop().unwrap();
    assert!(token_request.contains("code_verifier="), "{token_request}");
    assert!(
        token_request.contains("auth=Basic "),
        "client_secret_basic: {token_request}"
    );

    // An ordinary session: identity headers upstream, roles mapped, rules apply.
    let r = client.navigate("/admin/panel").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let seen = up.last();
    assert_eq!(seen.header("x-forwarded-user"), Some("dana"));
    assert_eq!(seen.header("x-forwarded-email"), Some("dana@example.com"));
    assert_eq!(seen.header("x-forwarded-groups"), Some("admin,staff"));
    let info = client.get("/.gatehouse/userinfo").await.json();
    assert_eq!(info["user"], "dana");

    // The IdP's refresh token is kept sealed in the session record, never in the clear.
    let sessions = gw.gw.store().sessions_of("dana").await.unwrap();
    let link = sessions[0].idp.clone().expect("a provider session");
    assert_eq!(
        (link.provider.as_str(), link.sub.as_str()),
        ("hostile", "user-1")
    );
    assert_eq!(link.sid.as_deref(), Some("idp-session-1"));
    let sealed = link.refresh_token.expect("kept");
    assert!(!sealed.contains("idp-refresh-1"));

    // Metrics count provider logins by provider.
    let metrics = gw.gw.metrics.encode();
    assert!(
        metrics.contains("gatehouse_logins_total{result=\"success\",provider=\"hostile\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn every_bad_id_token_ends_with_no_session_and_nothing_forwarded() {
    let up = Upstream::start().await;
    let idp = HostileProvider::start().await;
    let gw = gateway(&up, &idp.issuer, PROVIDERS).await;
    let t = now();
    let cases: Vec<(&str, Script, StatusCode)> = vec![
        (
            "wrong iss",
            with(json!({"iss": "http://127.0.0.1:1"})),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong aud",
            with(json!({"aud": "someone-else"})),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "two audiences, no azp",
            with(json!({"aud": ["gatehouse", "other"]})),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong azp",
            with(json!({"azp": "other"})),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "expired",
            with(json!({"iat": t - 7200, "exp": t - 3600})),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "issued in the future",
            with(json!({"iat": t + 3600, "exp": t + 7200})),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "no exp",
            with(json!({"exp": null})),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "missing nonce",
            with(json!({"nonce": null})),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong nonce",
            Script {
                nonce: Some("not-the-one".into()),
                ..Script::default()
            },
            StatusCode::UNAUTHORIZED,
        ),
        (
            "alg none",
            Script {
                signing: Signing::None,
                ..Script::default()
            },
            StatusCode::UNAUTHORIZED,
        ),
        (
            "HS256 signed with the public key",
            Script {
                signing: Signing::HmacWithPublicKey,
                ..Script::default()
            },
            StatusCode::UNAUTHORIZED,
        ),
        (
            "unknown kid",
            Script {
                signing: Signing::UnknownKey,
                ..Script::default()
            },
            StatusCode::UNAUTHORIZED,
        ),
        (
            "no sub",
            with(json!({"sub": null})),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "a logout token as ID token",
            Script {
                claims: claims(
                    json!({"events": {"http://schemas.openid.net/event/backchannel-logout": {}}}),
                ),
                ..Script::default()
            },
            StatusCode::UNAUTHORIZED,
        ),
        (
            "unverified email",
            with(json!({"email_verified": false})),
            StatusCode::FORBIDDEN,
        ),
        (
            "email with two @",
            with(json!({"email": "dana@evil.com@example.com"})),
            StatusCode::FORBIDDEN,
        ),
        (
            "username of a local user",
            with(json!({"preferred_username": "Alice"})),
            StatusCode::FORBIDDEN,
        ),
        (
            "header injection in the name",
            with(json!({"preferred_username": "dana\r\nX-Forwarded-User: alice"})),
            StatusCode::FORBIDDEN,
        ),
    ];
    for (case, script, status) in cases {
        let before = up.count();
        let client = gw.client();
        let r = round_trip(&client, &idp, "hostile", script).await;
        assert_eq!(r.status, status, "{case}: {}", r.body);
        assert!(
            r.body.contains("Back to sign-in"),
            "{case}: an error page: {}",
            r.body
        );
        assert_no_session(&client, &up, before, case).await;
    }
    assert!(gw.gw.store().sessions_of("dana").await.unwrap().is_empty());
    assert!(gw.gw.store().sessions_of("alice").await.unwrap().is_empty());
}

#[tokio::test]
async fn state_is_one_use_bound_to_its_provider_and_to_this_browser() {
    let up = Upstream::start().await;
    let idp = HostileProvider::start().await;
    let gw = gateway(&up, &idp.issuer, PROVIDERS).await;
    let good = |s: &oidc::Started| Script {
        nonce: Some(s.nonce.clone()),
        challenge: Some(s.challenge.clone()),
        ..Script::default()
    };

    // No state cookie: another browser's callback URL.
    let victim = gw.client();
    let started = oidc::start(&victim, "hostile", "/").await;
    idp.script(good(&started));
    let attacker = gw.client();
    let before = up.count();
    let r = attacker
        .navigate(&format!(
            "/.gatehouse/oidc/hostile/callback?code=x&state={}",
            started.state
        ))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_no_session(&attacker, &up, before, "missing state cookie").await;

    // A code and state from one provider replayed at another provider's callback (mix-up).
    let r = victim
        .navigate(&format!(
            "/.gatehouse/oidc/second/callback?code=x&state={}",
            started.state
        ))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    // An `iss` naming another issuer (RFC 9207).
    let r = victim
        .navigate(&format!(
            "/.gatehouse/oidc/hostile/callback?code=x&state={}&iss=http%3A%2F%2Fevil.example",
            started.state
        ))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_no_session(&victim, &up, before, "mix-up").await;

    // A missing state parameter.
    let r = victim
        .navigate("/.gatehouse/oidc/hostile/callback?code=x")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Replayed state: succeed once, then put the old cookie back and come again.
    let browser = gw.client();
    let started = oidc::start(&browser, "hostile", "/").await;
    let cookie = browser.cookie("gatehouse_oidc").unwrap();
    idp.script(good(&started));
    let callback = format!(
        "/.gatehouse/oidc/hostile/callback?code=first&state={}",
        started.state
    );
    assert_eq!(
        browser.navigate(&callback).await.status,
        StatusCode::SEE_OTHER
    );
    let replay = gw.client();
    replay.set_cookie("gatehouse_oidc", &cookie);
    let before = up.count();
    let r = replay
        .navigate(&callback.replace("code=first", "code=second"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_no_session(&replay, &up, before, "replayed state").await;

    // Several tabs logging in at once do not break each other.
    let tabs = gw.client();
    let one = oidc::start(&tabs, "hostile", "/one").await;
    let two = oidc::start(&tabs, "hostile", "/two").await;
    idp.script(good(&one));
    let r = tabs
        .navigate(&format!(
            "/.gatehouse/oidc/hostile/callback?code=t1&state={}",
            one.state
        ))
        .await;
    assert_eq!(
        (r.status, r.header("location")),
        (StatusCode::SEE_OTHER, Some("/one"))
    );
    idp.script(good(&two));
    let r = tabs
        .navigate(&format!(
            "/.gatehouse/oidc/hostile/callback?code=t2&state={}",
            two.state
        ))
        .await;
    assert_eq!(
        (r.status, r.header("location")),
        (StatusCode::SEE_OTHER, Some("/two"))
    );

    // A forged cookie (not sealed by us) is no state at all.
    let forger = gw.client();
    forger.set_cookie("gatehouse_oidc", "eyJwIjoiaG9zdGlsZSJ9");
    let r = forger
        .navigate("/.gatehouse/oidc/hostile/callback?code=x&state=anything")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // `rd` is validated as for password logins.
    let open = gw.client();
    let started = oidc::start(&open, "hostile", "//evil.example/x").await;
    idp.script(good(&started));
    let r = open
        .navigate(&format!(
            "/.gatehouse/oidc/hostile/callback?code=rd&state={}",
            started.state
        ))
        .await;
    assert_eq!(r.header("location"), Some("/"));
}

#[tokio::test]
async fn allow_lists_refuse_with_403_and_a_linked_local_user_signs_in_as_themselves() {
    let up = Upstream::start().await;
    let idp = HostileProvider::start().await;
    let providers = r#"oidc:
  providers:
    - id: strict
      issuer: "ISSUER"
      client_id: gatehouse
      allowed_email_domains: ["Example.ORG"]
    - id: roles
      issuer: "ISSUER"
      client_id: gatehouse
      roles_claim: groups
      role_map: { "idp-staff": "staff" }
      allowed_roles: [staff]
    - id: linked
      issuer: "ISSUER"
      client_id: gatehouse
      username_claim: preferred_username
"#;
    let gw = gateway(&up, &idp.issuer, providers).await;

    let client = gw.client();
    let before = up.count();
    let r = round_trip(&client, &idp, "strict", Script::default()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_no_session(&client, &up, before, "domain not allowed").await;

    let client = gw.client();
    let r = round_trip(&client, &idp, "roles", with(json!({"groups": ["other"]}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_no_session(&client, &up, before, "role not allowed").await;
    let client = gw.client();
    let r = round_trip(&client, &idp, "roles", with(json!({"groups": "idp-staff"}))).await;
    assert_eq!(
        r.status,
        StatusCode::SEE_OTHER,
        "a single string is a list of one"
    );

    // `bob` is a local user who does not name the provider: refused. With `oidc: linked`
    // he signs in as himself, with his local roles.
    let client = gw.client();
    let r = round_trip(
        &client,
        &idp,
        "linked",
        with(json!({"preferred_username": "bob"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let linked_yaml = std::fs::read_to_string(gw.dir.join("gateway.yaml"))
        .unwrap()
        .replace(
            "    roles: [staff]\n  - username: carol",
            "    roles: [staff]\n    oidc: linked\n  - username: carol",
        );
    gw.apply(&linked_yaml).await;
    let client = gw.client();
    let r = round_trip(
        &client,
        &idp,
        "linked",
        with(json!({"preferred_username": "bob"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    client.navigate("/dashboard").await;
    assert_eq!(up.last().header("x-forwarded-user"), Some("bob"));
    assert_eq!(up.last().header("x-forwarded-groups"), Some("staff"));
}

#[tokio::test]
async fn back_channel_logout_revokes_at_once_and_refuses_bad_or_replayed_tokens() {
    let up = Upstream::start().await;
    let idp = HostileProvider::start().await;
    let gw = gateway(&up, &idp.issuer, PROVIDERS).await;
    let client = gw.client();
    let r = round_trip(&client, &idp, "hostile", Script::default()).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(client.navigate("/dashboard").await.status, StatusCode::OK);

    let t = now();
    let logout = |extra: Value| {
        let mut c = json!({
            "iss": idp.issuer, "aud": "gatehouse", "iat": t, "exp": t + 120,
            "jti": format!("jti-{}", extra), "sub": "user-1", "sid": "idp-session-1",
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        });
        for (k, v) in claims(extra) {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(&k);
            } else {
                c[k] = v;
            }
        }
        c
    };
    let post = |token: String| {
        let client = gw.client();
        async move {
            client
                .send(
                    Client::request(
                        http::Method::POST,
                        "/.gatehouse/oidc/hostile/backchannel-logout",
                    )
                    .header("content-type", "application/x-www-form-urlencoded")
                    // From the provider's servers: no browser, and an Origin is no reason to refuse.
                    .header("origin", "http://idp.example")
                    .body(http_body_util::Full::new(bytes::Bytes::from(format!(
                        "logout_token={token}"
                    ))))
                    .unwrap(),
                )
                .await
        }
    };
    for (case, token) in [
        (
            "nonce",
            idp.sign(
                &logout(json!({"nonce": "n"})),
                &Signing::Good,
                Some("logout+jwt"),
            ),
        ),
        (
            "no events",
            idp.sign(&logout(json!({"events": null})), &Signing::Good, None),
        ),
        (
            "wrong event",
            idp.sign(&logout(json!({"events": {"x": {}}})), &Signing::Good, None),
        ),
        (
            "wrong aud",
            idp.sign(&logout(json!({"aud": "other"})), &Signing::Good, None),
        ),
        (
            "no sub or sid",
            idp.sign(
                &logout(json!({"sub": null, "sid": null})),
                &Signing::Good,
                None,
            ),
        ),
        (
            "no jti",
            idp.sign(&logout(json!({"jti": null})), &Signing::Good, None),
        ),
        (
            "alg none",
            idp.sign(&logout(json!({})), &Signing::None, None),
        ),
        (
            "public key as HMAC secret",
            idp.sign(&logout(json!({})), &Signing::HmacWithPublicKey, None),
        ),
        ("garbage", "not.a.jwt".to_string()),
    ] {
        let r = post(token).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{case}: {}", r.body);
        assert_eq!(r.json()["error"], "invalid_request");
        assert_eq!(
            client.navigate("/dashboard").await.status,
            StatusCode::OK,
            "{case} revoked"
        );
    }

    let good = idp.sign(&logout(json!({})), &Signing::Good, Some("logout+jwt"));
    let r = post(good.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // At once: the access token is refused, and the refresh cookie cannot bring it back.
    let r = client.navigate("/dashboard").await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    assert!(gw.gw.store().sessions_of("dana").await.unwrap().is_empty());
    // The same token again: its jti was seen.
    let r = post(good).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_provider_that_is_down_leaves_password_logins_working() {
    let up = Upstream::start().await;
    let closed = unused_port();
    let gw = gateway(&up, &format!("http://127.0.0.1:{closed}"), PROVIDERS).await;
    let client = gw.client();
    assert_eq!(
        client.login("alice", "alice-pw").await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(client.navigate("/dashboard").await.status, StatusCode::OK);
    let other = gw.client();
    let r = other.navigate("/.gatehouse/oidc/hostile/start?rd=/").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(r.body.contains("cannot be reached"), "{}", r.body);
    let r = other.get("/.gatehouse/oidc/hostile/start").await;
    assert_eq!(r.json()["error"], "provider_unavailable");
    // An unknown provider id is a 404.
    assert_eq!(
        other.navigate("/.gatehouse/oidc/nope/start").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn password_login_false_shows_only_the_providers_and_refuses_passwords() {
    let up = Upstream::start().await;
    let idp = HostileProvider::start().await;
    let gw = gateway(
        &up,
        &idp.issuer,
        &PROVIDERS.replace("oidc:\n", "oidc:\n  password_login: false\n"),
    )
    .await;
    let client = gw.client();
    let page = client.navigate("/.gatehouse/login").await;
    assert!(page.body.contains("Sign in with Hostile IdP"));
    assert!(page.body.contains("Sign in with Second IdP"));
    assert!(!page.body.contains("name=\"password\""), "{}", page.body);
    let r = client
        .post_form(
            "/.gatehouse/login",
            &[("username", "alice"), ("password", "alice-pw"), ("rd", "/")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(client.cookie("gatehouse_access").is_none());
    let r = client
        .post_json(
            "/.gatehouse/login",
            json!({"username": "alice", "password": "alice-pw"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"], "password_login_disabled");
}

#[test]
fn check_fetches_each_providers_discovery_and_names_the_one_that_fails() {
    let dir = temp_dir();
    let closed = unused_port();
    let yaml = base_yaml(
        "http://127.0.0.1:9",
        &format!("{}{PROVIDERS}", default_routes()),
    )
    .replace(
        "  listen: \"127.0.0.1:0\"\n",
        "  listen: \"127.0.0.1:0\"\n  public_url: \"https://app.example.com\"\n",
    )
    .replace("ISSUER", &format!("http://127.0.0.1:{closed}"))
    .replace("${TEST_SECRET}", SECRET);
    let path = dir.join("gateway.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("oidc provider `hostile`"), "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

/// With `SameSite=Strict` cookies the callback answers with a page that goes on to `rd` by
/// itself: a 303 there would end a chain begun on the provider's site, and browsers send no
/// Strict cookie with it (`tests/browser.rs` shows the loop in Chromium).
#[tokio::test]
async fn with_strict_cookies_the_callback_goes_on_through_a_page_of_ours() {
    let up = Upstream::start().await;
    let idp = HostileProvider::start().await;
    let gw = gateway_edited(&up, &idp.issuer, PROVIDERS, |yaml| {
        yaml.replace(
            "cookies:\n  secure: false\n",
            "cookies:\n  secure: false\n  same_site: strict\n",
        )
    })
    .await;
    let client = gw.client();
    let r = round_trip(&client, &idp, "hostile", Script::default()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.header("location").is_none());
    assert!(
        r.body
            .contains("<meta http-equiv=\"refresh\" content=\"0; url=/dashboard?tab=2\">"),
        "{}",
        r.body
    );
    assert!(r.body.contains("href=\"/dashboard?tab=2\""), "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let cookies = r.set_cookies();
    for name in ["gatehouse_access=", "gatehouse_refresh="] {
        let cookie = cookies.iter().find(|c| c.starts_with(name)).expect(name);
        assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    }
    // The session is an ordinary one.
    let r = client.navigate("/dashboard").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(up.last().header("x-forwarded-user"), Some("dana"));
}

#[tokio::test]
async fn the_state_cookie_is_host_only_lax_http_only_and_short_lived() {
    let up = Upstream::start().await;
    let idp = HostileProvider::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let yaml = base_yaml(&up.url(), &format!("{}{PROVIDERS}", default_routes()))
        .replace(
            "  listen: \"127.0.0.1:0\"\n",
            &format!("  listen: \"127.0.0.1:0\"\n  public_url: \"http://127.0.0.1:{port}\"\n"),
        )
        .replace("cookies:\n  secure: false\n", "cookies:\n  secure: true\n")
        .replace("ISSUER", &idp.issuer);
    let gw = TestGateway::start_on(listener, temp_dir(), &yaml)
        .await
        .unwrap();
    let r = gw
        .client()
        .navigate("/.gatehouse/oidc/hostile/start?rd=/x")
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    let cookie = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-gatehouse_oidc="))
        .expect("the __Host- state cookie");
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=600",
    ] {
        assert!(cookie.contains(attr), "{attr} missing: {cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn a_flood_of_logins_at_a_down_provider_is_not_a_flood_of_fetches() {
    // A "provider" that accepts connections and closes them at once, counting them.
    let down = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", down.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = down.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(socket);
        }
    });
    let up = Upstream::start().await;
    let gw = gateway(&up, &issuer, PROVIDERS).await;
    let started = std::time::Instant::now();
    for _ in 0..40 {
        let r = gw.client().get("/.gatehouse/oidc/hostile/start").await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    let elapsed = started.elapsed();
    let fetches = accepted.load(std::sync::atomic::Ordering::SeqCst);
    // Background retries (two providers: 1 s, 2 s, ... apart) and at most one inline attempt
    // per provider every 5 s — not one per request.
    assert!(
        fetches <= 2 * (4 + elapsed.as_secs() as usize),
        "{fetches} connections to the provider for 40 logins in {elapsed:?}"
    );
}

/// A provider that takes a while to answer issues its tokens in a later second than the
/// browser's request reached the gateway. With `leeway: 0s` (the test gateway's) such a token
/// was refused as "issued in the future" at the callback, and at a recheck the session was
/// ended: the gateway judged `iat` by the time it read before asking the provider.
#[tokio::test]
async fn a_slow_provider_s_tokens_are_judged_by_the_time_they_arrive() {
    let up = Upstream::start().await;
    let idp = HostileProvider::start().await;
    let yaml = PROVIDERS.replacen(
        "      role_map: { \"idp-admins\": \"admin\" }\n",
        "      role_map: { \"idp-admins\": \"admin\" }\n      recheck_interval: 1s\n",
        1,
    );
    let gw = gateway_edited(&up, &idp.issuer, &yaml, |y| {
        y.replace("  access_ttl: 5m\n", "  access_ttl: 1s\n")
    })
    .await;
    let client = gw.client();
    let slow = std::time::Duration::from_millis(1100);
    let r = round_trip(
        &client,
        &idp,
        "hostile",
        Script {
            delay: Some(slow),
            refresh_token: Some("idp-refresh-1".into()),
            ..Script::default()
        },
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "callback: {}", r.body);
    assert!(client.cookie("gatehouse_access").is_some());

    // Past the access token's life and the recheck interval: the refresh asks the (slow)
    // provider, whose fresh ID token must not end the session.
    let sid = gw.gw.store().sessions_of("dana").await.unwrap()[0]
        .sid
        .clone();
    let checked = gw.gw.store().sessions_of("dana").await.unwrap()[0]
        .idp
        .as_ref()
        .unwrap()
        .checked_at;
    idp.script(Script {
        delay: Some(slow),
        refresh_token: Some("idp-refresh-2".into()),
        ..Script::default()
    });
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let r = client.navigate("/dashboard").await;
    assert_eq!(r.status, StatusCode::OK, "after the recheck: {}", r.body);
    assert!(!gw.gw.store().is_revoked(&sid), "the session was ended");
    let after = gw.gw.store().sessions_of("dana").await.unwrap();
    assert!(
        after[0].idp.as_ref().unwrap().checked_at > checked,
        "the refresh asked the provider"
    );
}

/// `logout: idp` at a provider that ends sessions on another origin than its issuer's: the 403
/// page's *Sign out* forms post to the gateway, which sends the browser on to that endpoint,
/// and browsers apply the page's CSP `form-action` to the redirect (Chromium stops it; see
/// `browser.rs`). So the page must allow the endpoint's origin, not only the issuer's.
#[tokio::test]
async fn the_sign_out_forms_may_go_on_to_an_end_session_endpoint_on_another_origin() {
    let up = Upstream::start().await;
    let idp = HostileProvider::start_with(|d| {
        let elsewhere = d["issuer"]
            .as_str()
            .unwrap()
            .replace("127.0.0.1", "localhost");
        d["end_session_endpoint"] = json!(format!("{elsewhere}/session/end"));
    })
    .await;
    let elsewhere = format!("http://localhost:{}", idp.addr.port());
    let gw = gateway(
        &up,
        &idp.issuer,
        "oidc:\n  providers:\n    - id: corp\n      name: Corp\n      issuer: \"ISSUER\"\n      \
         client_id: gatehouse\n      username_claim: preferred_username\n      logout: idp\n",
    )
    .await;
    let client = gw.client();
    let r = round_trip(&client, &idp, "corp", Script::default()).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);

    // dana is no admin: the 403 page, whose forms may be sent on to both origins.
    let r = client.navigate("/admin").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let csp = r.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains(&format!("form-action 'self' {} {elsewhere};", idp.issuer)),
        "{csp}"
    );
    // And that is where the logout sends the browser.
    let r = client.post_form("/.gatehouse/logout", &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let location = r.header("location").unwrap_or_default();
    assert!(
        location.starts_with(&format!("{elsewhere}/session/end?")),
        "{location}"
    );
}

/// The claims of a JWT, unverified (the test reads what the gateway sent on).
fn jwt_claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// `logout: idp` sends the session's latest ID token as `id_token_hint`: IdentityServer,
/// Connect2id and Okta honour `post_logout_redirect_uri` only with it. It is kept sealed with
/// the session, replaced by the one a recheck brings, and not kept at all for a provider whose
/// logout stays local.
#[tokio::test]
async fn logout_at_the_provider_sends_the_latest_id_token_as_its_hint() {
    let up = Upstream::start().await;
    let idp = HostileProvider::start().await;
    let providers =
        "oidc:\n  providers:\n    - id: corp\n      name: Corp\n      issuer: \"ISSUER\"\n      \
         client_id: gatehouse\n      username_claim: preferred_username\n      logout: idp\n      \
         recheck_interval: 1s\n    - id: plain\n      name: Plain\n      issuer: \"ISSUER\"\n      \
         client_id: gatehouse\n";
    let gw = gateway_edited(&up, &idp.issuer, providers, |y| {
        y.replace("  access_ttl: 5m\n", "  access_ttl: 1s\n")
    })
    .await;
    let store = gw.gw.store();

    // A provider whose logout is local: no ID token kept.
    let r = round_trip(&gw.client(), &idp, "plain", Script::default()).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let plain = store.sessions_of("dana@example.com").await.unwrap();
    assert_eq!(plain[0].idp.as_ref().unwrap().id_token, None);

    let client = gw.client();
    let first = Script {
        refresh_token: Some("idp-refresh-1".into()),
        claims: claims(json!({"name": "first"})),
        ..Script::default()
    };
    let r = round_trip(&client, &idp, "corp", first).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let kept = store.sessions_of("dana").await.unwrap()[0]
        .idp
        .clone()
        .unwrap()
        .id_token
        .expect("kept for logout: idp");
    assert!(!kept.contains("eyJ"), "sealed, not a JWT in the clear");

    // A recheck brings a fresh ID token, which replaces the first.
    idp.script(Script {
        refresh_token: Some("idp-refresh-2".into()),
        claims: claims(json!({"name": "second"})),
        ..Script::default()
    });
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(client.navigate("/dashboard").await.status, StatusCode::OK);

    let r = client.post_form("/.gatehouse/logout", &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let location = r.header("location").unwrap_or_default().to_string();
    assert!(
        location.starts_with(&format!("{}/logout?", idp.issuer)),
        "{location}"
    );
    let hint = oidc::query_param(&location, "id_token_hint").expect("id_token_hint");
    let sent = jwt_claims(&hint);
    assert_eq!(sent["name"], "second", "the latest ID token: {sent}");
    assert_eq!(sent["sub"], "user-1");
    assert_eq!(sent["aud"], "gatehouse");
    assert_eq!(
        oidc::query_param(&location, "client_id").as_deref(),
        Some("gatehouse")
    );
}

/// A mistyped password on the page *Sign in as someone else* led to does not forget why the
/// page was shown: the page that comes back still asks the provider for another account.
#[tokio::test]
async fn a_failed_password_on_the_switch_page_still_asks_for_another_account() {
    let up = Upstream::start().await;
    let idp = HostileProvider::start().await;
    let gw = gateway(&up, &idp.issuer, PROVIDERS).await;
    let client = gw.client();
    let page = client
        .navigate("/.gatehouse/login?rd=%2Fadmin&switch_account=1")
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(oidc::provider_link(&page.body).contains("switch_account=1"));

    // The browser sends the form as the page made it, with a wrong password.
    let mut fields = oidc::hidden_fields(&page.body);
    fields.push(("username".into(), "alice".into()));
    fields.push(("password".into(), "not-her-password".into()));
    let form: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let again = client.post_form("/.gatehouse/login", &form).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{}", again.body);
    let start = oidc::provider_link(&again.body);
    assert!(start.contains("switch_account=1"), "{start}");
    assert!(start.contains("rd=%2Fadmin"), "{start}");
    let r = client.navigate(&start).await;
    let authorize = r.header("location").unwrap().to_string();
    assert_eq!(
        oidc::query_param(&authorize, "prompt").as_deref(),
        Some("login"),
        "{authorize}"
    );

    // A plain failed attempt asks for nothing more.
    let plain = client
        .post_form(
            "/.gatehouse/login",
            &[("rd", "/"), ("username", "alice"), ("password", "nope")],
        )
        .await;
    assert_eq!(plain.status, StatusCode::UNAUTHORIZED);
    assert!(!plain.body.contains("switch_account"), "{}", plain.body);
}

/// *Sign in as someone else* on the 403 page ends our session, but not the provider's: the
/// provider would sign the same person in again at once, and the 403 would come back. So the
/// login page it leads to asks the provider for another account (`prompt`), in a way the
/// provider says it takes: `login` when it lists nothing, `select_account` when it lists that,
/// nothing when it lists neither (a value it does not take would fail the sign-in there).
#[tokio::test]
async fn sign_in_as_someone_else_asks_the_provider_for_another_account() {
    for (listed, prompt) in [
        (None, Some("login")),
        (
            Some(json!(["none", "login", "consent", "select_account"])),
            Some("select_account"),
        ),
        (Some(json!(["none", "consent"])), None),
    ] {
        let up = Upstream::start().await;
        let idp = HostileProvider::start_with(|d| {
            if let Some(listed) = &listed {
                d["prompt_values_supported"] = listed.clone();
            }
        })
        .await;
        let gw = gateway(&up, &idp.issuer, PROVIDERS).await;
        let client = gw.client();
        let r = round_trip(&client, &idp, "hostile", Script::default()).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);

        // dana is no admin: the 403 page's second form.
        let page = client.navigate("/admin/panel?tab=2").await;
        assert_eq!(page.status, StatusCode::FORBIDDEN);
        let form = oidc::switch_user_action(&page.body);
        let r = client.post_form(&form, &[]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        let login = r.header("location").unwrap().to_string();
        let page = client.navigate(&login).await;
        assert_eq!(page.status, StatusCode::OK);
        let start = oidc::provider_link(&page.body);
        let r = client.navigate(&start).await;
        assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
        let authorize = r.header("location").unwrap().to_string();
        assert_eq!(
            oidc::query_param(&authorize, "prompt").as_deref(),
            prompt,
            "{listed:?}: {authorize}"
        );
        // And back to the page refused, once someone is signed in.
        assert!(start.contains("rd=%2Fadmin%2Fpanel%3Ftab%3D2"), "{start}");

        // A plain sign-in asks for nothing more.
        let page = client.navigate("/.gatehouse/login?rd=/").await;
        let r = client.navigate(&oidc::provider_link(&page.body)).await;
        let authorize = r.header("location").unwrap().to_string();
        assert_eq!(oidc::query_param(&authorize, "prompt"), None, "{authorize}");
    }
}
