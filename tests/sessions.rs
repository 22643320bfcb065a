//! The session lifecycle (SPEC §4, §5, §7): rotation, grace, reuse detection, transparent
//! refresh, lifetimes, revocation, user changes, key rotation.

mod support;

use std::time::Duration;

use http::StatusCode;
use support::*;

fn yaml_with(up: &Upstream, tokens: &str) -> String {
    base_yaml(&up.url(), default_routes()).replace("  access_ttl: 5m\n  leeway: 0s\n", tokens)
}

async fn sleep_s(s: f64) {
    tokio::time::sleep(Duration::from_secs_f64(s)).await;
}

#[tokio::test]
async fn refresh_rotates_the_token_every_time() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    let c = Client::new(gw.addr);
    let t = c.login_json("bob", "bob-pw").await;
    let r0 = t["refresh_token"].as_str().unwrap().to_string();
    let r = c
        .post_json(
            "/.gatehouse/refresh",
            serde_json::json!({"refresh_token": r0}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let j = r.json();
    let r1 = j["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(r0, r1);
    assert_eq!(j["token_type"], "Bearer");
    assert!(
        r.cookie("gatehouse_access").is_some()
            && r.cookie("gatehouse_refresh").as_deref() == Some(r1.as_str())
    );
    let bearer = format!("Bearer {}", j["access_token"].as_str().unwrap());
    assert_eq!(
        Client::new(gw.addr)
            .get_with("/x", &[("authorization", &bearer)])
            .await
            .status,
        StatusCode::OK
    );

    // The cookie works the same way.
    let browser = gw.client();
    browser.login("alice", "alice-pw").await;
    let before = browser.cookie("gatehouse_refresh").unwrap();
    let r = browser
        .send(
            http::Request::post("/.gatehouse/refresh")
                .body(http_body_util::Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ne!(browser.cookie("gatehouse_refresh").unwrap(), before);
    gw.stop().await;
}

#[tokio::test]
async fn reuse_inside_grace_yields_an_access_token_and_no_new_refresh_token() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    let c = Client::new(gw.addr);
    let r0 = c.login_json("bob", "bob-pw").await["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let first = c
        .post_json(
            "/.gatehouse/refresh",
            serde_json::json!({"refresh_token": r0}),
        )
        .await
        .json();
    let again = c
        .post_json(
            "/.gatehouse/refresh",
            serde_json::json!({"refresh_token": r0}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    let j = again.json();
    assert!(j["access_token"].is_string());
    assert!(j.get("refresh_token").is_none(), "{j}");
    assert!(again.cookie("gatehouse_refresh").is_none());
    // The first successor is still the live one.
    let r1 = first["refresh_token"].as_str().unwrap();
    let next = c
        .post_json(
            "/.gatehouse/refresh",
            serde_json::json!({"refresh_token": r1}),
        )
        .await;
    assert_eq!(next.status, StatusCode::OK);
    gw.stop().await;
}

#[tokio::test]
async fn reused_refresh_token_after_grace_revokes_the_whole_session() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml_with(
        &up,
        "  access_ttl: 5m\n  leeway: 0s\n  refresh_reuse_grace: 1s\n",
    ))
    .await;
    let c = Client::new(gw.addr);
    let t = c.login_json("bob", "bob-pw").await;
    let r0 = t["refresh_token"].as_str().unwrap().to_string();
    let rotated = c
        .post_json(
            "/.gatehouse/refresh",
            serde_json::json!({"refresh_token": r0}),
        )
        .await
        .json();
    let access = rotated["access_token"].as_str().unwrap().to_string();
    let r1 = rotated["refresh_token"].as_str().unwrap().to_string();
    sleep_s(2.1).await;
    // The thief (or the victim) presents the used token: theft.
    let r = c
        .post_json(
            "/.gatehouse/refresh",
            serde_json::json!({"refresh_token": r0}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.set_cookies()
            .iter()
            .filter(|s| s.contains("Max-Age=0"))
            .count(),
        2
    );
    // Every token of the session is dead: the newest refresh token and the access tokens.
    let r = c
        .post_json(
            "/.gatehouse/refresh",
            serde_json::json!({"refresh_token": r1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let before = up.count();
    for token in [&access, t["access_token"].as_str().unwrap()] {
        let r = Client::new(gw.addr)
            .get_with("/x", &[("authorization", &format!("Bearer {token}"))])
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(up.count(), before);
    gw.stop().await;
}

#[tokio::test]
async fn an_expired_access_cookie_is_refreshed_inside_the_proxy() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml_with(&up, "  access_ttl: 1s\n  leeway: 0s\n")).await;
    let c = gw.client();
    c.login("alice", "alice-pw").await;
    let old_access = c.cookie("gatehouse_access").unwrap();
    let old_refresh = c.cookie("gatehouse_refresh").unwrap();
    sleep_s(2.1).await;
    // The browser has dropped the access cookie (Max-Age=1); only the refresh cookie is left.
    c.clear_cookie("gatehouse_access");
    let r = c.navigate("/dashboard").await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the browser must never see the login page"
    );
    assert_eq!(up.last().header("x-forwarded-user"), Some("alice"));
    assert!(up
        .last()
        .header("cookie")
        .is_none_or(|c| !c.contains("gatehouse")));
    let new_access = c.cookie("gatehouse_access").unwrap();
    let new_refresh = c.cookie("gatehouse_refresh").unwrap();
    assert_ne!(new_access, old_access);
    assert_ne!(new_refresh, old_refresh);
    // An expired access cookie that is still sent is refreshed the same way.
    sleep_s(2.1).await;
    let r = c.get("/api/data").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ne!(c.cookie("gatehouse_access").unwrap(), new_access);
    gw.stop().await;
}

#[tokio::test]
async fn twenty_parallel_requests_with_an_expired_access_cookie_all_succeed() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml_with(&up, "  access_ttl: 1s\n  leeway: 0s\n")).await;
    let c = gw.client();
    c.login("alice", "alice-pw").await;
    sleep_s(2.1).await;
    let jar = c.jar.lock().unwrap().clone();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let tab = Client::new(gw.addr);
        *tab.jar.lock().unwrap() = jar.clone();
        tasks.push(tokio::spawn(async move {
            let r = tab.navigate(&format!("/page/{i}")).await;
            (r.status, r.cookie("gatehouse_refresh"), tab)
        }));
    }
    let mut successors = Vec::new();
    let mut last_tab = None;
    for t in tasks {
        let (status, refresh, tab) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        if let Some(r) = refresh {
            successors.push(r);
            last_tab = Some(tab);
        }
    }
    assert_eq!(successors.len(), 1, "one rotation, shared: {successors:?}");
    assert_eq!(
        up.requests()
            .iter()
            .filter(|r| r.header("x-forwarded-user") == Some("alice"))
            .count(),
        20
    );
    // The session is alive: the browser that got the successor keeps working.
    let tab = last_tab.unwrap();
    sleep_s(1.1).await;
    tab.clear_cookie("gatehouse_access");
    assert_eq!(tab.navigate("/after").await.status, StatusCode::OK);
    gw.stop().await;
}

#[tokio::test]
async fn a_failed_transparent_refresh_sends_the_browser_to_login_with_cookies_cleared() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    let c = gw.client();
    c.set_cookie(
        "gatehouse_refresh",
        "forged-refresh-token-value-that-is-unknown-x",
    );
    let r = c.navigate("/x").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(r
        .header("location")
        .unwrap()
        .starts_with("/.gatehouse/login?rd="));
    assert_eq!(
        r.set_cookies()
            .iter()
            .filter(|s| s.contains("Max-Age=0"))
            .count(),
        2
    );
    let r = c.get("/api").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(up.count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn logout_everywhere_ends_every_session_of_the_user_only() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    let laptop = gw.client();
    let phone = gw.client();
    let other = gw.client();
    laptop.login("alice", "alice-pw").await;
    phone.login("alice", "alice-pw").await;
    other.login("bob", "bob-pw").await;
    let r = laptop.post_form("/.gatehouse/logout?all=true", &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(phone.get("/x").await.status, StatusCode::UNAUTHORIZED);
    let r = phone
        .send(
            http::Request::post("/.gatehouse/refresh")
                .body(http_body_util::Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(other.get("/x").await.status, StatusCode::OK);
    gw.stop().await;
}

/// A foreign page that links to (or redirects to, or embeds) `GET /logout?all=true` must not
/// end anyone's sessions: the browser is asked on a page of ours, whose form posts the same
/// logout from our origin. Before, the `GET` ended every session of the user.
#[tokio::test]
async fn a_logout_another_site_starts_ends_nothing_until_the_person_confirms() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    let laptop = gw.client();
    let phone = gw.client();
    laptop.login("alice", "alice-pw").await;
    phone.login("alice", "alice-pw").await;
    let foreign = [
        ("accept", "text/html,application/xhtml+xml"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-mode", "navigate"),
    ];
    let r = laptop
        .get_with("/.gatehouse/logout?all=true&rd=%2Fbye", &foreign)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.set_cookies().is_empty(), "{:?}", r.set_cookies());
    assert!(r.body.contains("Sign out everywhere"), "{}", r.body);
    assert!(r.body.contains("<strong>alice</strong>"), "{}", r.body);
    assert!(
        r.body.contains(
            "<form method=\"post\" action=\"/.gatehouse/logout?all=true&amp;rd=%2Fbye\">"
        ),
        "{}",
        r.body
    );
    assert!(r.header("content-security-policy").is_some());
    // A subresource or a script's fetch from elsewhere (no page to read): 403, nothing ended.
    let r = laptop
        .get_with(
            "/.gatehouse/logout?all=true",
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(laptop.get("/x").await.status, StatusCode::OK);
    assert_eq!(phone.get("/x").await.status, StatusCode::OK);

    // The page's button: a same-origin form post.
    let r = laptop
        .send(
            http::Request::post("/.gatehouse/logout?all=true&rd=%2Fbye")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("accept", "text/html")
                .header("sec-fetch-site", "same-origin")
                .header("origin", format!("http://{}", gw.addr))
                .body(http_body_util::Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.header("location"), Some("/bye"));
    assert_eq!(phone.get("/x").await.status, StatusCode::UNAUTHORIZED);
    gw.stop().await;
}

#[tokio::test]
async fn logout_works_with_only_the_refresh_cookie_left() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    let c = gw.client();
    c.login("bob", "bob-pw").await;
    let refresh = c.cookie("gatehouse_refresh").unwrap();
    c.clear_cookie("gatehouse_access");
    assert_eq!(
        c.post_form("/.gatehouse/logout", &[]).await.status,
        StatusCode::SEE_OTHER
    );
    let r = Client::new(gw.addr)
        .post_json(
            "/.gatehouse/refresh",
            serde_json::json!({"refresh_token": refresh}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    gw.stop().await;
}

#[tokio::test]
async fn removed_disabled_or_repassworded_users_lose_their_sessions_at_once() {
    let up = Upstream::start().await;
    let yaml = base_yaml(&up.url(), default_routes());
    let gw = TestGateway::start(&yaml).await;
    let bob = gw.client();
    bob.login("bob", "bob-pw").await;
    let alice = gw.client();
    alice.login("alice", "alice-pw").await;
    let bobs_refresh = bob.cookie("gatehouse_refresh").unwrap();
    // Remove bob; change alice's password.
    let bob_entry = format!(
        "  - username: bob\n    password_hash: \"{}\"\n    roles: [staff]\n",
        hash_of("bob-pw")
    );
    let edited = yaml
        .replace(&bob_entry, "")
        .replace(&hash_of("alice-pw"), &hash_of("new-alice-pw"));
    assert_ne!(edited, yaml);
    gw.apply(&edited).await;
    assert_eq!(bob.get("/x").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(alice.get("/x").await.status, StatusCode::UNAUTHORIZED);
    let r = Client::new(gw.addr)
        .post_json(
            "/.gatehouse/refresh",
            serde_json::json!({"refresh_token": bobs_refresh}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(up.count(), 0);
    // Disabling works the same way.
    let fresh = gw.client();
    fresh.login("alice", "new-alice-pw").await;
    gw.apply(&edited.replace(
        "    email: alice@example.com\n",
        "    email: alice@example.com\n    disabled: true\n",
    ))
    .await;
    assert_eq!(fresh.get("/x").await.status, StatusCode::UNAUTHORIZED);
    gw.stop().await;
}

#[tokio::test]
async fn a_refresh_carries_the_users_current_roles() {
    let up = Upstream::start().await;
    let yaml = base_yaml(&up.url(), default_routes());
    let gw = TestGateway::start(&yaml).await;
    let c = Client::new(gw.addr);
    let t = c.login_json("bob", "bob-pw").await;
    gw.apply(&yaml.replace(
        "    roles: [staff]\n  - username: carol",
        "    roles: [staff, admin]\n  - username: carol",
    ))
    .await;
    let r = c
        .post_json(
            "/.gatehouse/refresh",
            serde_json::json!({"refresh_token": t["refresh_token"]}),
        )
        .await;
    let bearer = format!("Bearer {}", r.json()["access_token"].as_str().unwrap());
    assert_eq!(
        Client::new(gw.addr)
            .get_with("/admin", &[("authorization", &bearer)])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(up.last().header("x-forwarded-groups"), Some("staff,admin"));
    gw.stop().await;
}

#[tokio::test]
async fn sessions_end_at_session_max_age_and_cookies_never_outlive_them() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml_with(
        &up,
        "  access_ttl: 1s\n  session_max_age: 3s\n  refresh_ttl: 1h\n  leeway: 0s\n",
    ))
    .await;
    let c = gw.client();
    let r = c.login("bob", "bob-pw").await;
    let refresh_cookie = r
        .set_cookies()
        .into_iter()
        .find(|s| s.starts_with("gatehouse_refresh="))
        .unwrap();
    assert!(refresh_cookie.contains("Max-Age=3"), "{refresh_cookie}");
    sleep_s(1.5).await;
    assert_eq!(
        c.get("/x").await.status,
        StatusCode::OK,
        "refreshed inside the session"
    );
    // Expiry is inclusive of its last whole second: wait past it.
    sleep_s(2.8).await;
    let r = c.navigate("/x").await;
    assert_eq!(
        r.status,
        StatusCode::FOUND,
        "the session is over: login again"
    );
    gw.stop().await;
}

#[tokio::test]
async fn refresh_ttl_is_an_idle_limit() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml_with(
        &up,
        "  access_ttl: 1s\n  refresh_ttl: 4s\n  leeway: 0s\n",
    ))
    .await;
    let c = gw.client();
    c.login("bob", "bob-pw").await;
    // Each step waits past the access token's expiry (whole seconds, inclusive), so every
    // request refreshes. At 6.6 s the login's own refresh token (4 s) is long dead: only a
    // refresh that restarts the idle clock keeps the session.
    for step in 1..=3 {
        sleep_s(2.2).await;
        assert_eq!(c.get("/x").await.status, StatusCode::OK, "step {step}");
    }
    sleep_s(5.5).await;
    assert_eq!(
        c.get("/x").await.status,
        StatusCode::UNAUTHORIZED,
        "idle too long"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_token_signed_with_the_previous_key_verifies_after_key_rotation() {
    gatehouse::install_crypto_providers();
    let up = Upstream::start().await;
    let dir = temp_dir();
    let alg = jsonwebtoken::Algorithm::EdDSA;
    std::fs::write(
        dir.join("old.pem"),
        gatehouse::authenticate::keygen::generate(alg).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("new.pem"),
        gatehouse::authenticate::keygen::generate(alg).unwrap(),
    )
    .unwrap();
    let yaml = base_yaml(&up.url(), default_routes()).replace(
        "  algorithm: HS256\n  secret: \"${TEST_SECRET}\"\n",
        "  algorithm: EdDSA\n  signing_key: old.pem\n",
    );
    let gw = TestGateway::start_in(dir, &yaml).await.unwrap();
    let c = Client::new(gw.addr);
    let old = c.login_json("bob", "bob-pw").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let jwks = c.get("/.gatehouse/jwks.json").await.json();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    let old_kid = jwks["keys"][0]["kid"].as_str().unwrap().to_string();

    gw.apply(&yaml.replace(
        "signing_key: old.pem\n",
        "signing_key: new.pem\n  verify_keys: [old.pem]\n",
    ))
    .await;
    let bearer = |t: &str| format!("Bearer {t}");
    assert_eq!(
        Client::new(gw.addr)
            .get_with("/x", &[("authorization", &bearer(&old))])
            .await
            .status,
        StatusCode::OK
    );
    let new = c.login_json("bob", "bob-pw").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let new_kid = jsonwebtoken::decode_header(&new).unwrap().kid.unwrap();
    assert_ne!(new_kid, old_kid);
    let jwks = c.get("/.gatehouse/jwks.json").await.json();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()));
    // Dropping the old key ends its tokens.
    gw.apply(&yaml.replace("signing_key: old.pem\n", "signing_key: new.pem\n"))
        .await;
    assert_eq!(
        Client::new(gw.addr)
            .get_with("/x", &[("authorization", &bearer(&old))])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        Client::new(gw.addr)
            .get_with("/x", &[("authorization", &bearer(&new))])
            .await
            .status,
        StatusCode::OK
    );
    gw.stop().await;
}

/// A refresh inside the proxy puts the session's new cookies on the app's response; a shared
/// cache in front of the gateway that kept it would hand the session to the next visitor. On
/// both paths (the express lane and hyper's), such a response is `private`; without a refresh
/// the app's own directives pass unchanged.
#[tokio::test]
async fn a_response_carrying_refreshed_cookies_is_kept_from_shared_caches() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml_with(&up, "")).await;
    let c = gw.client();
    c.login("alice", "alice-pw").await;
    let public = [("x-cache-control", "public, max-age=600")];
    for lane in [true, false] {
        gw.gw.set_express_lane(lane);
        c.clear_cookie("gatehouse_access");
        let r = c.get_with("/page/cacheable", &public).await;
        assert_eq!(r.status, StatusCode::OK, "lane {lane}");
        assert!(
            r.cookie("gatehouse_refresh").is_some(),
            "lane {lane}: no refresh"
        );
        assert_eq!(
            r.header("cache-control"),
            Some("private, max-age=600"),
            "lane {lane}"
        );
        let r = c.get_with("/page/cacheable", &public).await;
        assert!(r.set_cookies().is_empty(), "lane {lane}");
        assert_eq!(
            r.header("cache-control"),
            Some("public, max-age=600"),
            "lane {lane}"
        );
    }
    gw.stop().await;
}
