//! WebSocket upgrades (SPEC §7) are proxied after authentication on routes with
//! `websocket: true`, and refused without a session.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn routes(ws: bool) -> String {
    format!("routes:\n  - name: app\n    upstream: \"UPSTREAM\"\n    websocket: {ws}\n")
}

fn upgrade_request(cookie: Option<&str>) -> String {
    let cookie = cookie
        .map(|c| format!("cookie: {c}\r\n"))
        .unwrap_or_default();
    format!(
        "GET /ws HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n{cookie}\r\n"
    )
}

async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A gateway on a WebSocket route, alice signed in, and her upgraded connection (asserted 101)
/// with its response head.
async fn alice_s_websocket() -> (Upstream, TestGateway, Client, TcpStream, String) {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), &routes(true))).await;
    let c = gw.client();
    c.login("alice", "alice-pw").await;
    let cookie = format!("gatehouse_access={}", c.cookie("gatehouse_access").unwrap());
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(upgrade_request(Some(&cookie)).as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    (up, gw, c, s, head)
}

#[tokio::test]
async fn an_authenticated_websocket_is_spliced_through_with_identity() {
    let (up, gw, _c, mut s, head) = alice_s_websocket().await;
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    let seen = up.last();
    assert_eq!(seen.header("x-forwarded-user"), Some("alice"));
    assert!(seen.header("cookie").is_none());
    // Bytes flow both ways through the splice.
    for msg in [&b"\x81\x85hello"[..], b"second frame"] {
        s.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, msg);
    }
    gw.stop().await;
}

#[tokio::test]
async fn an_upgrade_without_a_session_or_on_a_route_without_websocket_is_refused() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), &routes(true))).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(upgrade_request(None).as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert_eq!(up.count(), 0);
    gw.stop().await;

    let gw = TestGateway::start(&base_yaml(&up.url(), &routes(false))).await;
    let c = gw.client();
    c.login("alice", "alice-pw").await;
    let cookie = format!("gatehouse_access={}", c.cookie("gatehouse_access").unwrap());
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(upgrade_request(Some(&cookie)).as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(
        head.starts_with("HTTP/1.1 502"),
        "upgraded on a route without websocket: {head}"
    );
    assert!(
        up.last().header("upgrade").is_none(),
        "the upgrade headers were stripped"
    );
    gw.stop().await;
}

/// A tunnel carries many messages on one authentication: when its session is revoked (here:
/// logout from another tab), the gateway closes it within a second (SPEC §7, hardening).
#[tokio::test]
async fn a_websocket_closes_within_a_second_when_its_session_is_revoked() {
    let (_up, gw, c, mut s, _head) = alice_s_websocket().await;
    s.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"ping", "the tunnel works before the logout");

    assert_eq!(
        c.post_form("/.gatehouse/logout", &[]).await.status,
        http::StatusCode::SEE_OTHER
    );
    let revoked = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the tunnel outlived the session");
    assert!(
        revoked.elapsed() < Duration::from_millis(1000),
        "closed after {:?}",
        revoked.elapsed()
    );
    gw.stop().await;
}

/// An upstream that answers a WebSocket upgrade by switching to another protocol (`h2c`), or
/// to none it names, gets no tunnel: through one the client could send requests the rules
/// never saw. 502, and nothing the upstream sends after its 101 reaches the client.
#[tokio::test]
async fn a_switch_to_anything_but_websocket_is_502() {
    for answer in [
        "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\nTUNNELLED",
        "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\n\r\nTUNNELLED",
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = read_head(&mut s).await;
                    let _ = s.write_all(answer.as_bytes()).await;
                    let mut rest = [0u8; 1024];
                    while matches!(s.read(&mut rest).await, Ok(n) if n > 0) {}
                });
            }
        });
        let gw = TestGateway::start(&base_yaml(&format!("http://{addr}"), &routes(true))).await;
        let c = gw.client();
        c.login("alice", "alice-pw").await;
        let cookie = format!("gatehouse_access={}", c.cookie("gatehouse_access").unwrap());
        for lane in [true, false] {
            gw.gw.set_express_lane(lane);
            let mut s = TcpStream::connect(gw.addr).await.unwrap();
            s.write_all(upgrade_request(Some(&cookie)).as_bytes())
                .await
                .unwrap();
            let head = read_head(&mut s).await;
            assert!(head.starts_with("HTTP/1.1 502"), "lane {lane}: {head}");
            let mut rest = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_millis(300), s.read_to_end(&mut rest)).await;
            assert!(
                !String::from_utf8_lossy(&rest).contains("TUNNELLED"),
                "lane {lane}"
            );
        }
        assert_alive(gw.addr).await;
        gw.stop().await;
    }
}
