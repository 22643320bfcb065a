//! The durable memory store (`store.path`, SPEC §8): sessions, rotations and revocations
//! survive a restart by SIGTERM and a `kill -9` under load.

mod support;
use support::binary;
use support::external;

use std::time::Duration;

use binary::{config, start, start_on_one_cpu, Binary};
use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;

fn durable(up: &Upstream, port: u16, admin: u16) -> String {
    config(up, port, admin, default_routes()) + "store:\n  backend: memory\n  path: sessions.redb\n"
}

async fn wait_exit(bin: &mut Binary) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while bin.child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// State made before a restart, checked after it.
struct Before {
    alice: Client,
    bob_refresh: serde_json::Value,
    revoked_access: String,
}

async fn make_state(addr: std::net::SocketAddr) -> Before {
    let alice = Client::new(addr);
    alice.login("alice", "alice-pw").await;
    let api = Client::new(addr);
    let t = api.login_json("bob", "bob-pw").await;
    let rotated = api
        .post_json(
            "/.gatehouse/refresh",
            serde_json::json!({"refresh_token": t["refresh_token"]}),
        )
        .await
        .json();
    let gone = api.login_json("alice", "alice-pw").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = api
        .send(
            Request::post("/.gatehouse/logout")
                .header("authorization", format!("Bearer {gone}"))
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    Before {
        alice,
        bob_refresh: rotated["refresh_token"].clone(),
        revoked_access: gone,
    }
}

async fn check_state(addr: std::net::SocketAddr, before: &Before) {
    let alice = Client::new(addr);
    *alice.jar.lock().unwrap() = before.alice.jar.lock().unwrap().clone();
    assert_eq!(
        alice.get("/x").await.status,
        StatusCode::OK,
        "alice's session"
    );
    alice.clear_cookie("gatehouse_access");
    assert_eq!(
        alice.get("/x").await.status,
        StatusCode::OK,
        "alice's refresh token"
    );
    let r = Client::new(addr)
        .post_json(
            "/.gatehouse/refresh",
            serde_json::json!({"refresh_token": before.bob_refresh}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "bob's rotated refresh token");
    let r = Client::new(addr)
        .get_with(
            "/x",
            &[(
                "authorization",
                &format!("Bearer {}", before.revoked_access),
            )],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "the revocation");
}

#[tokio::test]
async fn sessions_and_revocations_survive_sigterm() {
    let up = Upstream::start().await;
    let dir = temp_dir();
    let (port, admin) = (external::free_port(), external::free_port());
    let text = durable(&up, port, admin);
    // First on one CPU (the single-threaded runtime), then on all: both flavours drain on
    // SIGTERM and load the database.
    let mut bin = start_on_one_cpu(&dir, &text, port, admin).await;
    assert!(bin.log().contains("current_thread"), "{}", bin.log());
    let before = make_state(bin.addr).await;
    bin.signal("TERM");
    wait_exit(&mut bin).await;
    drop(bin);
    let bin = start(&dir, &text, port, admin).await;
    check_state(bin.addr, &before).await;
    assert!(bin.log().contains("session database loaded"));
}

#[tokio::test]
async fn acknowledged_changes_survive_kill_9_under_load() {
    let up = Upstream::start().await;
    let dir = temp_dir();
    let (port, admin) = (external::free_port(), external::free_port());
    let text = durable(&up, port, admin);
    let bin = start(&dir, &text, port, admin).await;
    let addr = bin.addr;
    // Load: logins, refreshes and requests in a loop until the process dies.
    let load = tokio::spawn(async move {
        let mut acknowledged = Vec::new();
        for _ in 0..10_000 {
            let c = Client::new(addr);
            let req = Request::post("/.gatehouse/login")
                .header("content-type", "application/json")
                .body(Full::new(bytes::Bytes::from(
                    r#"{"username":"bob","password":"bob-pw"}"#,
                )))
                .unwrap();
            let login = async {
                let r = c.try_send(req).await.ok()?;
                (r.status == StatusCode::OK).then(|| r.json())
            };
            match tokio::time::timeout(Duration::from_secs(2), login).await {
                Ok(Some(t)) => acknowledged.push(t["refresh_token"].clone()),
                _ => break,
            }
        }
        acknowledged
    });
    let before = make_state(addr).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    drop(bin); // SIGKILL, mid-load
    let acknowledged = tokio::time::timeout(Duration::from_secs(20), load)
        .await
        .expect("load stopped")
        .unwrap();
    assert!(!acknowledged.is_empty());
    let bin = start(&dir, &text, port, admin).await;
    check_state(bin.addr, &before).await;
    for (i, refresh) in acknowledged.iter().enumerate() {
        let r = Client::new(bin.addr)
            .post_json(
                "/.gatehouse/refresh",
                serde_json::json!({"refresh_token": refresh}),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "acknowledged login {i} of {} was lost",
            acknowledged.len()
        );
    }
    println!(
        "{} acknowledged logins survived kill -9",
        acknowledged.len()
    );
}
