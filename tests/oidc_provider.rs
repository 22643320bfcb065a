//! Login through a real, OpenID-certified provider (panva's `oidc-provider`, pinned in
//! `tests/oidc/package.json`, run by node): the whole flow over HTTP, the refresh recheck that
//! ends the session of a user the provider disabled, back-channel logout reaching a second
//! replica through Redis, and RP-initiated logout. Skipped loudly without node or the package
//! (`npm ci` in `tests/oidc`); required in CI.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::{json, Value};
use support::external;
use support::oidc::{self, RealProvider};
use support::*;
use tokio::net::TcpListener;

const CLIENT_SECRET: &str = "real-client-secret-0123456789";

fn accounts() -> Value {
    json!({
        "erin": {"email": "erin@example.com", "email_verified": true,
                 "preferred_username": "erin", "groups": ["idp-admins", "staff"]},
        "frank": {"email": "frank@example.com", "email_verified": true,
                  "preferred_username": "frank", "groups": ["staff"]},
    })
}

/// The client registration for gateways on these ports (back-channel logout to the first).
fn client(ports: &[u16]) -> Value {
    let base = |p: &u16| format!("http://127.0.0.1:{p}/.gatehouse");
    json!([{
        "client_id": "gatehouse",
        "client_secret": CLIENT_SECRET,
        "redirect_uris": ports.iter().map(|p| format!("{}/oidc/real/callback", base(p))).collect::<Vec<_>>(),
        "post_logout_redirect_uris": ports.iter().map(|p| format!("{}/login", base(p))).collect::<Vec<_>>(),
        "backchannel_logout_uri": format!("{}/oidc/real/backchannel-logout", base(&ports[0])),
    }])
}

fn yaml(up: &Upstream, port: u16, issuer: &str, extra: &str) -> String {
    base_yaml(
        &up.url(),
        &format!(
            r#"{routes}oidc:
  providers:
    - id: real
      name: "Test IdP"
      issuer: "{issuer}"
      client_id: gatehouse
      client_secret: "{CLIENT_SECRET}"
      scopes: [openid, email, profile]
      username_claim: preferred_username
      roles_claim: groups
      role_map: {{ "idp-admins": "admin" }}
      recheck_interval: 1s
      logout: idp
{extra}"#,
            routes = default_routes()
        ),
    )
    .replace(
        "  listen: \"127.0.0.1:0\"\n",
        &format!("  listen: \"127.0.0.1:0\"\n  public_url: \"http://127.0.0.1:{port}\"\n"),
    )
    .replace("  access_ttl: 5m\n", "  access_ttl: 1s\n")
}

async fn bind() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// The upstream, the real provider and one gateway registered with it (on `port`); `None`
/// when the provider cannot run here (said loudly, a failure in CI).
async fn with_provider() -> Option<(Upstream, RealProvider, TestGateway, u16)> {
    let up = Upstream::start().await;
    let (listener, port) = bind().await;
    let idp = RealProvider::start(client(&[port]), accounts()).await?;
    let gw = TestGateway::start_on(listener, temp_dir(), &yaml(&up, port, &idp.issuer, ""))
        .await
        .unwrap();
    Some((up, idp, gw, port))
}

/// A browser's whole sign-in: the gateway's start, the provider's login form, back to the
/// gateway's callback. Returns the callback's answer.
async fn sign_in(gateway: &Client, idp: &RealProvider, account: &str, rd: &str) -> Resp {
    let started = oidc::start(gateway, "real", rd).await;
    let callback = idp.sign_in(&started.location, account).await;
    assert!(
        callback.starts_with("/.gatehouse/oidc/real/callback?"),
        "{callback}"
    );
    gateway.navigate(&callback).await
}

#[tokio::test]
async fn a_real_provider_login_refreshes_rechecks_and_ends_when_the_provider_disables_the_user() {
    let Some((up, idp, gw, _port)) = with_provider().await else {
        return;
    };
    let browser = gw.client();

    let r = browser.navigate("/reports/q3").await;
    assert_eq!(r.status, StatusCode::FOUND);
    let r = sign_in(&browser, &idp, "erin", "/reports/q3").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.header("location"), Some("/reports/q3"));
    let r = browser.navigate("/reports/q3").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let seen = up.last();
    assert_eq!(seen.header("x-forwarded-user"), Some("erin"));
    assert_eq!(seen.header("x-forwarded-email"), Some("erin@example.com"));
    assert_eq!(seen.header("x-forwarded-groups"), Some("admin,staff"));
    assert!(seen
        .header("cookie")
        .is_none_or(|c| !c.contains("gatehouse")));
    let first = gw.gw.store().sessions_of("erin").await.unwrap()[0].clone();
    let checked = first.idp.as_ref().unwrap().checked_at;
    assert!(
        first.idp.as_ref().unwrap().refresh_token.is_some(),
        "the IdP gave a refresh token"
    );

    // Past access_ttl and recheck_interval: the refresh asks the provider, which agrees.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = browser.navigate("/reports/q3").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.cookie("gatehouse_access").is_some(),
        "refreshed in the proxy"
    );
    let after = gw.gw.store().sessions_of("erin").await.unwrap()[0].clone();
    assert!(
        after.idp.as_ref().unwrap().checked_at > checked,
        "rechecked at the IdP"
    );

    // The provider disables the user: the next refresh past the interval ends the session.
    idp.disable("erin").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = browser.navigate("/reports/q3").await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    assert!(gw.gw.store().sessions_of("erin").await.unwrap().is_empty());
    assert!(gw.gw.store().is_revoked(&first.sid));
}

#[tokio::test]
async fn logout_idp_sends_the_browser_on_to_end_the_providers_session() {
    let Some((_up, idp, gw, port)) = with_provider().await else {
        return;
    };
    let browser = gw.client();
    let r = sign_in(&browser, &idp, "frank", "/").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    // The browser's *Sign out* form: a same-origin POST; its answer's `Location`.
    let sign_out = async |path: &str| {
        let r = browser
            .send(
                Client::request(http::Method::POST, path)
                    .header("accept", "text/html")
                    .header("origin", format!("http://127.0.0.1:{port}"))
                    .body(http_body_util::Full::default())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        r.header("location").unwrap().to_string()
    };
    let location = sign_out("/.gatehouse/logout").await;
    assert!(
        location.starts_with(&format!("{}/session/end?", idp.issuer)),
        "{location}"
    );
    assert_eq!(
        oidc::query_param(&location, "post_logout_redirect_uri").unwrap(),
        format!("http://127.0.0.1:{port}/.gatehouse/login")
    );
    // With the ID token it issued as the hint, which it checks (a hint it did not issue is
    // its 400), and accepts: its logout confirmation page.
    assert!(
        oidc::query_param(&location, "id_token_hint").is_some(),
        "{location}"
    );
    let at_idp = Client::new(idp.addr())
        .get(&oidc::strip_any_origin(&location))
        .await;
    assert_eq!(at_idp.status, StatusCode::OK, "{}", at_idp.body);
    assert!(gw.gw.store().sessions_of("frank").await.unwrap().is_empty());

    // *Sign in as someone else* (the 403 page's second form): the page the person was refused
    // rides through the provider's logout as `state`, and the login page it comes back to
    // takes it as `rd`.
    let r = sign_in(&browser, &idp, "frank", "/").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let location =
        sign_out("/.gatehouse/logout?rd=%2F.gatehouse%2Flogin%3Frd%3D%252Fadmin%253Fx%253D1").await;
    assert_eq!(
        oidc::query_param(&location, "state").as_deref(),
        Some("/admin?x=1"),
        "{location}"
    );
    let back = browser
        .navigate("/.gatehouse/login?state=%2Fadmin%3Fx%3D1")
        .await;
    assert!(
        back.body
            .contains("<input type=\"hidden\" name=\"rd\" value=\"/admin?x=1\">"),
        "{}",
        back.body
    );
}

#[tokio::test]
async fn back_channel_logout_from_the_provider_reaches_the_other_replica_within_a_second() {
    let Some(redis_bin) = external::find("redis-server", &["/usr/bin/redis-server"]) else {
        return;
    };
    let redis_port = external::free_port();
    let mut cmd = Command::new(redis_bin);
    cmd.args([
        "--port",
        &redis_port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
    ]);
    let redis = external::Process::spawn(cmd, redis_port);
    redis.wait_listening(Duration::from_secs(10)).await;

    let up = Upstream::start().await;
    let (l1, p1) = bind().await;
    let (l2, p2) = bind().await;
    let Some(idp) = RealProvider::start(client(&[p1, p2]), accounts()).await else {
        return;
    };
    let store = format!(
        "store:\n  backend: redis\n  redis:\n    url: \"redis://127.0.0.1:{redis_port}/0\"\n    key_prefix: \"bcl:\"\n"
    );
    // Access tokens that outlive the test: with `yaml`'s 1 s (whole seconds, so as little as
    // a few milliseconds) the bearer token could expire before replica B saw it, and B's 401
    // after the logout would prove nothing.
    let long_lived = |port| {
        yaml(&up, port, &idp.issuer, &store).replace("  access_ttl: 1s\n", "  access_ttl: 5m\n")
    };
    let a = TestGateway::start_on(l1, temp_dir(), &long_lived(p1))
        .await
        .unwrap();
    let b = TestGateway::start_on(l2, temp_dir(), &long_lived(p2))
        .await
        .unwrap();
    for gw in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !gw.gw.is_ready() {
            assert!(Instant::now() < deadline, "the replica never became ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let browser = a.client();
    let r = sign_in(&browser, &idp, "erin", "/").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let token = browser.cookie("gatehouse_access").unwrap();
    let on_b = || {
        let c = b.client();
        let token = token.clone();
        async move {
            c.get_with(
                "/dashboard",
                &[("authorization", &format!("Bearer {token}"))],
            )
            .await
            .status
        }
    };
    assert_eq!(
        on_b().await,
        StatusCode::OK,
        "the session works on the other replica"
    );

    // The provider ends the IdP session: it posts its logout token to replica A.
    let started = Instant::now();
    let sid = idp.backchannel_logout("gatehouse", "erin").await;
    assert!(!sid.is_empty());
    let deadline = started + Duration::from_secs(2);
    loop {
        if on_b().await == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica B still accepts the token after 2s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    eprintln!(
        "back-channel logout: replica B refused the token {took:?} after the provider sent it"
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(b.gw.store().sessions_of("erin").await.unwrap().is_empty());
}

/// Where the browser (with `idp` as its cookies at the provider) ends up from `authorize`:
/// `Ok(the callback)` when the provider sends it straight back, `Err(the page)` when the
/// provider shows a page of its own.
async fn at_the_provider(idp: &Client, authorize: &str) -> Result<String, String> {
    let mut url = oidc::strip_any_origin(authorize);
    for _ in 0..12 {
        let r = idp.get(&url).await;
        if !r.status.is_redirection() {
            return Err(r.body);
        }
        let next = r.header("location").unwrap().to_string();
        let path = oidc::strip_any_origin(&next);
        if path.starts_with("/.gatehouse/") {
            return Ok(path);
        }
        url = path;
    }
    panic!("the provider kept redirecting");
}

/// With `logout: local`, *Sign in as someone else* ends our session and not the provider's.
/// Asked plainly, this provider then signs the same person in again without a word (the 403
/// comes straight back); asked from that login page, it shows its sign-in form.
#[tokio::test]
async fn sign_in_as_someone_else_makes_the_real_provider_ask_for_the_account() {
    let up = Upstream::start().await;
    let (listener, port) = bind().await;
    let Some(idp) = RealProvider::start(client(&[port]), accounts()).await else {
        return;
    };
    let text = yaml(&up, port, &idp.issuer, "").replace("      logout: idp\n", "");
    let gw = TestGateway::start_on(listener, temp_dir(), &text)
        .await
        .unwrap();
    let idp_browser = Client::new(idp.addr());
    let browser = gw.client();
    let started = oidc::start(&browser, "real", "/").await;
    let callback = idp
        .sign_in_with(&idp_browser, &started.location, "frank")
        .await;
    assert_eq!(
        browser.navigate(&callback).await.status,
        StatusCode::SEE_OTHER
    );

    // What a plain sign-in does while the provider's session lives: straight back.
    let plain = oidc::start(&gw.client(), "real", "/").await;
    assert!(
        at_the_provider(&idp_browser, &plain.location).await.is_ok(),
        "the provider asked even without prompt"
    );

    // frank is no admin: the 403 page's *Sign in as someone else*.
    let page = browser.navigate("/admin").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let form = oidc::switch_user_action(&page.body);
    let r = browser
        .send(
            Client::request(http::Method::POST, &form)
                .header("accept", "text/html")
                .header("origin", format!("http://127.0.0.1:{port}"))
                .body(http_body_util::Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let login = browser.navigate(r.header("location").unwrap()).await;
    let start = oidc::provider_link(&login.body);
    let r = browser.navigate(&start).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    let authorize = r.header("location").unwrap();
    assert_eq!(
        oidc::query_param(authorize, "prompt").as_deref(),
        Some("login")
    );
    let page = at_the_provider(&idp_browser, authorize)
        .await
        .expect_err("the provider signed frank in again without asking");
    assert!(page.contains("name=\"login\""), "{page}");
}
