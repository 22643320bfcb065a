//! SPEC §4 "Time": every expiry is exclusive and server-held times are kept to the
//! millisecond, so no configured lifetime is exceeded — not even by the fraction of a second a
//! whole-second clock would round away. Logins start just after a second boundary, where a
//! whole-second, inclusive expiry would add almost a second.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use serde_json::json;
use support::*;

/// Waits until the wall clock is within the first 50 ms of a second; returns that instant.
async fn at_a_second_boundary() -> SystemTime {
    loop {
        let now = SystemTime::now();
        let ms = now.duration_since(UNIX_EPOCH).unwrap().subsec_millis();
        if ms < 50 {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(u64::from(1000 - ms) + 1)).await;
    }
}

async fn sleep_until(start: SystemTime, after: Duration) {
    let elapsed = start.elapsed().unwrap_or_default();
    if after > elapsed {
        tokio::time::sleep(after - elapsed).await;
    }
}

fn yaml(up: &Upstream, tokens: &str) -> String {
    base_yaml(&up.url(), default_routes()).replace("  access_ttl: 5m\n", tokens)
}

async fn refresh(c: &Client, token: &str) -> Resp {
    c.post_json("/.gatehouse/refresh", json!({ "refresh_token": token }))
        .await
}

#[tokio::test]
async fn a_session_ends_at_session_max_age_not_a_second_later() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml(
        &up,
        "  access_ttl: 1s\n  refresh_ttl: 1h\n  session_max_age: 2s\n",
    ))
    .await;
    let c = gw.client();
    let start = at_a_second_boundary().await;
    let tokens = c.login_json("bob", "bob-pw").await;
    sleep_until(start, Duration::from_millis(1200)).await;
    let r = refresh(&c, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::OK, "inside the session: {}", r.body);
    let next = r.json()["refresh_token"].as_str().unwrap().to_string();
    // 2.4 s after the login: past session_max_age (2 s), still inside the second it ends in.
    sleep_until(start, Duration::from_millis(2400)).await;
    let r = refresh(&c, &next).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "the session outlived session_max_age: {}",
        r.body
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_unused_refresh_token_dies_at_refresh_ttl_not_a_second_later() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml(&up, "  access_ttl: 1s\n  refresh_ttl: 2s\n")).await;
    let c = gw.client();
    let start = at_a_second_boundary().await;
    let tokens = c.login_json("bob", "bob-pw").await;
    sleep_until(start, Duration::from_millis(2400)).await;
    let r = refresh(&c, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "the refresh token outlived refresh_ttl: {}",
        r.body
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_refresh_token_used_in_time_still_works() {
    let up = Upstream::start().await;
    // Used 1.5 s after the login answered: the access token is dead, the refresh token has
    // 3.5 s to spare for a machine slowed by other work (with 2 s it once failed under load).
    let gw = TestGateway::start(&yaml(&up, "  access_ttl: 1s\n  refresh_ttl: 5s\n")).await;
    let c = gw.client();
    let tokens = c.login_json("bob", "bob-pw").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = refresh(&c, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    gw.stop().await;
}
