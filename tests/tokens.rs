//! Token checks over HTTP (SPEC §4): every forged, stale or misused token is 401 and the
//! upstream sees nothing.

mod support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use support::*;

async fn setup() -> (Upstream, TestGateway) {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    (up, gw)
}

fn now() -> u64 {
    gatehouse::clock::now()
}

/// Claims exactly like the gateway's, for bob, in a session that exists.
fn claims(sid: &str) -> serde_json::Value {
    serde_json::json!({
        "iss": "gatehouse", "aud": "gatehouse", "sub": "bob", "sid": sid, "jti": "j",
        "iat": now(), "nbf": now(), "exp": now() + 300, "roles": ["admin"],
    })
}

fn sign(
    alg: Algorithm,
    typ: Option<&str>,
    kid: &str,
    claims: &serde_json::Value,
    key: &[u8],
) -> String {
    let mut h = Header::new(alg);
    h.typ = typ.map(str::to_string);
    h.kid = Some(kid.to_string());
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_secret(key)).unwrap()
}

fn header_of(token: &str) -> serde_json::Value {
    let part = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// A real session of bob: its sid and kid, from a token the gateway issued.
async fn bobs_session(gw: &TestGateway) -> (String, String, String) {
    let t = Client::new(gw.addr).login_json("bob", "bob-pw").await;
    let token = t["access_token"].as_str().unwrap().to_string();
    let payload: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let kid = header_of(&token)["kid"].as_str().unwrap().to_string();
    (token, payload["sid"].as_str().unwrap().to_string(), kid)
}

async fn refused(gw: &TestGateway, up: &Upstream, token: &str, what: &str) {
    let before = up.count();
    let c = Client::new(gw.addr);
    let r = c
        .get_with("/admin", &[("authorization", &format!("Bearer {token}"))])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what} (bearer)");
    c.set_cookie("gatehouse_access", token);
    let r = c.get("/admin").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what} (cookie)");
    assert_eq!(up.count(), before, "{what}: the upstream saw a request");
}

#[tokio::test]
async fn issued_tokens_carry_exactly_the_spec_header_and_claims() {
    let (_up, gw) = setup().await;
    let (token, _, _) = bobs_session(&gw).await;
    let h = header_of(&token);
    assert_eq!(h["typ"], "at+jwt");
    assert_eq!(h["alg"], "HS256");
    assert!(h["kid"].is_string());
    let c: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let mut keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["aud", "email", "exp", "iat", "iss", "jti", "nbf", "roles", "sid", "sub"]
    );
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 300);
    gw.stop().await;
}

#[tokio::test]
async fn forged_and_misused_tokens_are_refused() {
    let (up, gw) = setup().await;
    let (good, sid, kid) = bobs_session(&gw).await;
    let key = SECRET.as_bytes();
    let c = claims(&sid);

    // Control: our own forgery with the right secret and everything right is accepted, so
    // each refusal below is due to the one thing changed.
    let control = sign(Algorithm::HS256, Some("at+jwt"), &kid, &c, key);
    let r = Client::new(gw.addr)
        .get_with("/x", &[("authorization", &format!("Bearer {control}"))])
        .await;
    assert_eq!(r.status, StatusCode::OK);

    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD
            .encode(serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": kid}).to_string()),
        URL_SAFE_NO_PAD.encode(c.to_string())
    );
    refused(&gw, &up, &none, "alg none").await;
    refused(
        &gw,
        &up,
        &sign(Algorithm::HS512, Some("at+jwt"), &kid, &c, key),
        "wrong algorithm",
    )
    .await;
    refused(
        &gw,
        &up,
        &sign(
            Algorithm::HS256,
            Some("at+jwt"),
            &kid,
            &c,
            b"another-secret-another-secret-0123",
        ),
        "wrong key",
    )
    .await;
    refused(
        &gw,
        &up,
        &sign(Algorithm::HS256, Some("at+jwt"), "unknown-kid", &c, key),
        "unknown kid",
    )
    .await;
    refused(
        &gw,
        &up,
        &sign(Algorithm::HS256, None, &kid, &c, key),
        "missing typ",
    )
    .await;
    refused(
        &gw,
        &up,
        &sign(Algorithm::HS256, Some("JWT"), &kid, &c, key),
        "wrong typ",
    )
    .await;
    let mut expired = c.clone();
    expired["exp"] = (now() - 10).into();
    refused(
        &gw,
        &up,
        &sign(Algorithm::HS256, Some("at+jwt"), &kid, &expired, key),
        "expired",
    )
    .await;
    let mut future = c.clone();
    future["nbf"] = (now() + 600).into();
    refused(
        &gw,
        &up,
        &sign(Algorithm::HS256, Some("at+jwt"), &kid, &future, key),
        "nbf in the future",
    )
    .await;
    let mut iss = c.clone();
    iss["iss"] = "someone-else".into();
    refused(
        &gw,
        &up,
        &sign(Algorithm::HS256, Some("at+jwt"), &kid, &iss, key),
        "wrong iss",
    )
    .await;
    let mut aud = c.clone();
    aud["aud"] = "other-app".into();
    refused(
        &gw,
        &up,
        &sign(Algorithm::HS256, Some("at+jwt"), &kid, &aud, key),
        "wrong aud",
    )
    .await;

    // Tampered payload: bob's real token with roles rewritten.
    let parts: Vec<&str> = good.split('.').collect();
    let mut tampered: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    tampered["roles"] = serde_json::json!(["admin"]);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(tampered.to_string()),
        parts[2]
    );
    refused(&gw, &up, &tampered, "tampered payload").await;
    refused(&gw, &up, &"a".repeat(9000), "oversized").await;
    refused(&gw, &up, "not-a-token", "garbage").await;
    assert_alive(gw.addr).await;
    gw.stop().await;
}

#[tokio::test]
async fn expired_tokens_are_told_apart_from_invalid_ones() {
    let (_up, gw) = setup().await;
    let (_, sid, kid) = bobs_session(&gw).await;
    let mut expired = claims(&sid);
    expired["exp"] = (now() - 10).into();
    let t = sign(
        Algorithm::HS256,
        Some("at+jwt"),
        &kid,
        &expired,
        SECRET.as_bytes(),
    );
    let r = Client::new(gw.addr)
        .get_with("/x", &[("authorization", &format!("Bearer {t}"))])
        .await;
    assert!(r.header("www-authenticate").unwrap().contains("expired"));
    let r = Client::new(gw.addr)
        .get_with("/x", &[("authorization", "Bearer x.y.z")])
        .await;
    let www = r.header("www-authenticate").unwrap();
    assert!(www.contains("invalid") && !www.contains("expired"), "{www}");
    gw.stop().await;
}

#[tokio::test]
async fn a_refresh_token_is_never_an_access_token_and_vice_versa() {
    let (up, gw) = setup().await;
    let t = Client::new(gw.addr).login_json("alice", "alice-pw").await;
    let refresh = t["refresh_token"].as_str().unwrap();
    let access = t["access_token"].as_str().unwrap();
    refused(&gw, &up, refresh, "refresh token as access token").await;
    let c = Client::new(gw.addr);
    let r = c
        .post_json(
            "/.gatehouse/refresh",
            serde_json::json!({"refresh_token": access}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    c.set_cookie("gatehouse_refresh", access);
    let r = c
        .post_json("/.gatehouse/refresh", serde_json::json!({}))
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "a JSON body without refresh_token is malformed"
    );
    let r = c
        .send(
            http::Request::post("/.gatehouse/refresh")
                .body(http_body_util::Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "an access token in the refresh cookie"
    );
    gw.stop().await;
}

#[tokio::test]
async fn garbage_cookies_are_treated_as_absent() {
    let (up, gw) = setup().await;
    let c = gw.client();
    let r = c
        .get_with(
            "/public/x",
            &[(
                "cookie",
                "gatehouse_access=%%%; gatehouse_refresh=<x>\\; ;; app=\"quoted value\";theme=dark",
            )],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        up.last().header("cookie"),
        Some("app=\"quoted value\"; theme=dark")
    );
    let r = c.navigate("/private").await;
    assert_eq!(r.status, StatusCode::FOUND);
    gw.stop().await;
}
