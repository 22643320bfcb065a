//! Audit events (SPEC §9) reach target `audit`, and no log line ever holds a token, cookie
//! value, password or hash.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use http::StatusCode;
use support::*;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static Buffer {
    static LOGS: OnceLock<Buffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .json()
            .with_env_filter("debug")
            .with_writer(move || writer.clone())
            .init();
        buffer
    })
}

fn text() -> String {
    String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned()
}

#[tokio::test]
async fn audit_events_are_logged_and_secrets_never_are() {
    logs();
    let up = Upstream::start().await;
    let yaml = base_yaml(&up.url(), default_routes()).replace(
        "  access_ttl: 5m\n",
        "  access_ttl: 5m\n  refresh_reuse_grace: 1s\n",
    ) + "login:\n  max_failures: 2\n";
    let gw = TestGateway::start(&yaml).await;
    let mut secrets: Vec<String> = vec![
        "alice-pw".into(),
        "bob-pw".into(),
        "wrong-password-xyz".into(),
        SECRET.into(),
    ];
    secrets.push(hash_of("alice-pw"));

    let c = Client::new(gw.addr);
    let t = c.login_json("alice", "alice-pw").await;
    let r0 = t["refresh_token"].as_str().unwrap().to_string();
    secrets.push(t["access_token"].as_str().unwrap().to_string());
    secrets.push(r0.clone());
    let rotated = c
        .post_json(
            "/.gatehouse/refresh",
            serde_json::json!({"refresh_token": r0}),
        )
        .await
        .json();
    secrets.push(rotated["access_token"].as_str().unwrap().to_string());
    secrets.push(rotated["refresh_token"].as_str().unwrap().to_string());
    past(std::time::Instant::now(), std::time::Duration::from_secs(1)).await;
    let r = c
        .post_json(
            "/.gatehouse/refresh",
            serde_json::json!({"refresh_token": r0}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let b = gw.client();
    let login = b.login("bob", "bob-pw").await;
    secrets.extend(login.cookie("gatehouse_access"));
    secrets.extend(login.cookie("gatehouse_refresh"));
    b.get_with(
        "/x",
        &[("authorization", "Bearer not.a.valid-token-secret")],
    )
    .await;
    b.post_form("/.gatehouse/logout?all=true", &[]).await;
    for _ in 0..3 {
        c.post_json(
            "/.gatehouse/login",
            serde_json::json!({"username": "mallory", "password": "wrong-password-xyz"}),
        )
        .await;
    }
    gw.stop().await;

    let logs = text();
    for event in [
        "login_succeeded",
        "login_failed",
        "login_locked",
        "refresh_rotated",
        "refresh_reuse_detected",
        "logout",
        "sessions_revoked",
    ] {
        let found = logs.lines().any(|l| {
            l.contains("\"target\":\"audit\"") && l.contains(&format!("\"event\":\"{event}\""))
        });
        assert!(found, "no audit event {event}");
    }
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret leaked into the logs: {}…",
            &secret[..8.min(secret.len())]
        );
    }
    assert!(logs.contains("\"status\":401"), "request lines are logged");
}
