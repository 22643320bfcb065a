//! Test harness: the real gateway on 127.0.0.1:0 in front of a real recording upstream, over
//! real sockets. No mocks of our own components.
#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

pub mod binary;
pub mod client;
pub mod external;
pub mod gateway;
pub mod oidc;
pub mod raw;
pub mod upstream;

pub use client::*;
pub use gateway::*;
pub use raw::*;
pub use upstream::*;

pub const SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// Password hashes are expensive; make each once per test binary.
pub fn hash_of(password: &str) -> String {
    static CACHE: OnceLock<Mutex<BTreeMap<String, String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap();
    cache
        .entry(password.to_string())
        .or_insert_with(|| {
            gatehouse::authenticate::users::hash_password(password.as_bytes()).unwrap()
        })
        .clone()
}

/// A gateway config for forward-auth tests: loopback proxies trusted and a 1 s refresh grace,
/// so a test can wait past it. Access tokens keep the default lifetime: a test that wants a
/// refresh drops the access cookie as a browser does at its Max-Age, and a slow login on a
/// busy machine never turns into an unasked-for refresh.
pub fn forward_auth_yaml(up: &Upstream) -> String {
    base_yaml(&up.url(), default_routes())
        .replace(
            "server:\n",
            "server:\n  trusted_proxies: [\"127.0.0.1/32\"]\n",
        )
        .replace(
            "  access_ttl: 5m\n",
            "  access_ttl: 5m\n  refresh_reuse_grace: 1s\n",
        )
}

/// Waits until `span` has passed since `since`: for windows the gateway keeps by the clock
/// (the reuse grace, a lockout), measured from an instant taken after the gateway's answer,
/// so the gateway's own start of the window is never later. No fixed sleep.
pub async fn past(since: std::time::Instant, span: Duration) {
    tokio::time::sleep_until((since + span + Duration::from_millis(20)).into()).await;
}

/// Twice: the proxy in front must deliver both refreshed cookies, and the rotated refresh
/// token must keep working — the second round comes after the reuse grace (1 s) of the first
/// rotation, where a lost rotated cookie would trip reuse detection.
pub async fn refreshed_cookies_reach_the_browser(client: &Client, path: &str) {
    let mut rotated_at = None;
    for round in 0..2 {
        if let Some(at) = rotated_at {
            past(at, Duration::from_secs(1)).await;
        }
        client.clear_cookie("gatehouse_access");
        let old_refresh = client.cookie("gatehouse_refresh").unwrap();
        let r = client.get(path).await;
        rotated_at = Some(std::time::Instant::now());
        assert_eq!(r.status, http::StatusCode::OK, "round {round}");
        assert!(
            r.cookie("gatehouse_access").is_some(),
            "round {round}: {:?}",
            r.set_cookies()
        );
        let new_refresh = r
            .cookie("gatehouse_refresh")
            .expect("the rotated refresh cookie reached the browser");
        assert_ne!(new_refresh, old_refresh);
    }
}
