//! The admin listener (SPEC §6, §9): metrics with the fixed names, health, readiness, and the
//! bearer-protected session API. Nothing of it on the public listener.

mod support;

use http::{Method, Request, StatusCode};
use http_body_util::Full;
use support::*;

const TOKEN: &str = "admin-token-0123456789";

async fn setup() -> (Upstream, TestGateway, Client) {
    let up = Upstream::start().await;
    let yaml = base_yaml(&up.url(), default_routes())
        + &format!("admin:\n  listen: \"127.0.0.1:0\"\n  token: \"{TOKEN}\"\n");
    let gw = TestGateway::start(&yaml).await;
    let admin = Client::new(gw.admin_addr.unwrap());
    (up, gw, admin)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn every_metric_name_is_present_after_some_traffic() {
    let (_up, gw, admin) = setup().await;
    let c = gw.client();
    c.login("alice", "alice-pw").await;
    c.get("/x").await;
    c.get("/admin").await;
    gw.client().get("/y").await;
    gw.client()
        .post_json(
            "/.gatehouse/login",
            serde_json::json!({"username": "alice", "password": "no"}),
        )
        .await;
    c.send(
        Request::post("/.gatehouse/refresh")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    let r = admin.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    for name in [
        "gatehouse_requests_total{",
        "gatehouse_request_duration_seconds_bucket{",
        "gatehouse_auth_decisions_total{result=\"allowed\"}",
        "gatehouse_auth_decisions_total{result=\"unauthenticated\"}",
        "gatehouse_logins_total{result=\"success\",provider=\"local\"}",
        "gatehouse_logins_total{result=\"failure\",provider=\"local\"}",
        "gatehouse_refresh_total{result=\"rotated\"}",
        "gatehouse_sessions_active 1",
        "gatehouse_revocations_active 0",
        "gatehouse_upstream_errors_total{route=\"app\",kind=\"connect\"} 0",
    ] {
        assert!(r.body.contains(name), "{name} missing:\n{}", r.body);
    }
    assert!(
        r.body.contains("route=\"app\",status=\"200\""),
        "{}",
        r.body
    );
    gw.stop().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let (_up, gw, admin) = setup().await;
    assert_eq!(admin.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(admin.get("/readyz").await.status, StatusCode::OK);
    gw.gw.reject_config();
    assert_eq!(
        admin.get("/readyz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    gw.stop().await;
}

#[tokio::test]
async fn the_session_api_lists_and_revokes_with_the_token_only() {
    let (_up, gw, admin) = setup().await;
    let laptop = gw.client();
    laptop.login("alice", "alice-pw").await;
    let phone = gw.client();
    phone.login("alice", "alice-pw").await;
    let bob = gw.client();
    bob.login("bob", "bob-pw").await;

    for auth in [
        None,
        Some("Bearer wrong-token-wrong-token"),
        Some("Basic abc"),
    ] {
        let mut b = Request::get("/admin/sessions?user=alice");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        assert_eq!(
            admin.send(b.body(Full::default()).unwrap()).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let r = admin
        .get_with(
            "/admin/sessions?user=Alice",
            &[("authorization", &bearer(TOKEN))],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let sessions = r.json()["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2);
    let sid = sessions[0]["sid"].as_str().unwrap().to_string();
    assert_eq!(sessions[0]["client_ip"], "127.0.0.1");

    let r = admin
        .send(
            Request::builder()
                .method(Method::DELETE)
                .uri(format!("/admin/sessions/{sid}"))
                .header("authorization", bearer(TOKEN))
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let statuses = [laptop.get("/x").await.status, phone.get("/x").await.status];
    assert!(
        statuses.contains(&StatusCode::UNAUTHORIZED) && statuses.contains(&StatusCode::OK),
        "{statuses:?}"
    );

    let r = admin
        .send(
            Request::post("/admin/revoke")
                .header("authorization", bearer(TOKEN))
                .body(Full::new(bytes::Bytes::from("{\"user\":\"alice\"}")))
                .unwrap(),
        )
        .await;
    assert_eq!(r.json()["revoked"], 1);
    assert_eq!(laptop.get("/x").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(phone.get("/x").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bob.get("/x").await.status, StatusCode::OK);
    gw.stop().await;
}

#[tokio::test]
async fn nothing_of_the_admin_listener_is_on_the_public_one() {
    let (up, gw, _admin) = setup().await;
    let c = gw.client();
    for path in [
        "/metrics",
        "/readyz",
        "/admin/sessions?user=alice",
        "/.gatehouse/metrics",
        "/.gatehouse/admin/sessions",
    ] {
        let r = c.get_with(path, &[("authorization", &bearer(TOKEN))]).await;
        assert!(
            !r.body.contains("gatehouse_requests_total") && !r.body.contains("sessions\""),
            "{path}: {}",
            r.body
        );
        assert_ne!(r.status, StatusCode::OK, "{path}");
    }
    assert_eq!(up.count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn admin_config_is_validated() {
    let up = Upstream::start().await;
    let short = base_yaml(&up.url(), default_routes())
        + "admin:\n  listen: \"127.0.0.1:0\"\n  token: \"short\"\n";
    let err = TestGateway::try_start(&short).await.err().unwrap();
    assert!(err.to_string().contains("admin.token"), "{err}");
    let missing = base_yaml(&up.url(), default_routes()) + "admin:\n  listen: \"127.0.0.1:0\"\n";
    assert!(TestGateway::try_start(&missing).await.is_err());
}

#[tokio::test]
async fn a_revoke_body_that_stalls_gets_408() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start().await;
    let yaml = base_yaml(&up.url(), default_routes()).replace(
        "server:\n",
        "server:\n  limits:\n    header_read_timeout: 1s\n",
    ) + &format!("admin:\n  listen: \"127.0.0.1:0\"\n  token: \"{TOKEN}\"\n");
    let gw = TestGateway::start(&yaml).await;
    let mut s = tokio::net::TcpStream::connect(gw.admin_addr.unwrap())
        .await
        .unwrap();
    let head = format!(
        "POST /admin/revoke HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: 40\r\n\r\n{{\"user\":"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(8), s.read(&mut buf))
        .await
        .expect("no answer to a stalled body")
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let text = String::from_utf8_lossy(&buf[..n]);
    assert_eq!(raw_status(&text), 408, "{text}");
    gw.stop().await;
}
