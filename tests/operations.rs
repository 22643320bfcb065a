//! Operating the real binary (SPEC §9): reload on file change and SIGHUP with the old config
//! kept on a bad edit, and graceful shutdown on SIGTERM.

mod support;
use support::binary;
use support::external;

use std::time::{Duration, Instant};

use binary::{config, eventually, replace_file, start};

use http::StatusCode;
use support::*;

const EXTRA_ROUTE: &str = "  - name: extra\n    path_prefix: /extra\n    upstream: \"UPSTREAM/moved\"\n    public: [\"/extra\"]\n";

#[tokio::test]
async fn a_reload_adds_a_route_while_a_long_request_is_in_flight() {
    let up = Upstream::start().await;
    let dir = temp_dir();
    let (port, admin) = (external::free_port(), external::free_port());
    let text = config(&up, port, admin, default_routes());
    let bin = start(&dir, &text, port, admin).await;
    let c = Client::new(bin.addr);
    c.login("alice", "alice-pw").await;
    // A long request: the upstream answers /slow after 5 s.
    let slow = {
        let c = c.clone();
        tokio::spawn(async move { c.get("/slow").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.get("/extra/x").await.status, StatusCode::OK);
    assert_eq!(
        up.last().uri,
        "/extra/x",
        "before the reload /extra goes to the app route"
    );
    let with_extra = config(
        &up,
        port,
        admin,
        &format!(
            "{}{}",
            default_routes(),
            EXTRA_ROUTE.replace("UPSTREAM", &up.url())
        ),
    );
    replace_file(&dir.join("gateway.yaml"), &with_extra);
    let probe = Client::new(bin.addr);
    eventually("the new route", Duration::from_secs(5), async || {
        probe.get("/extra/x").await.status == StatusCode::OK && up.last().uri == "/moved/extra/x"
    })
    .await;
    let slow = slow.await.unwrap();
    assert_eq!(
        slow.status,
        StatusCode::OK,
        "the in-flight request survived the reload"
    );
    assert_eq!(slow.body, "slow");
    assert_eq!(
        c.get("/x").await.status,
        StatusCode::OK,
        "sessions survive a reload"
    );
    assert!(bin.log().contains("config_reloaded"));
}

#[tokio::test]
async fn a_broken_edit_is_rejected_while_traffic_keeps_flowing() {
    let up = Upstream::start().await;
    let dir = temp_dir();
    let (port, admin) = (external::free_port(), external::free_port());
    let text = config(&up, port, admin, default_routes());
    let bin = start(&dir, &text, port, admin).await;
    let c = Client::new(bin.addr);
    c.login("bob", "bob-pw").await;
    let admin_client = Client::new(bin.admin);
    assert_eq!(admin_client.get("/readyz").await.status, StatusCode::OK);
    replace_file(
        &dir.join("gateway.yaml"),
        &text.replace("    upstream:", "    upstrem:"),
    );
    eventually("the rejection", Duration::from_secs(5), async || {
        bin.log().contains("config_rejected")
    })
    .await;
    assert!(bin.log().contains("upstrem"), "the log names the bad key");
    // Each error is a line of its own, readable as it stands: not one field with the whole
    // report and its line breaks escaped into it.
    for line in bin.log().lines().filter(|l| l.contains("config_rejected")) {
        assert!(!line.contains("\\n"), "an escaped line break in: {line}");
        assert!(line.contains("routes[0].upstrem"), "{line}");
    }
    assert_eq!(
        admin_client.get("/readyz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    for _ in 0..5 {
        assert_eq!(
            c.get("/x").await.status,
            StatusCode::OK,
            "the old config keeps serving"
        );
    }
    replace_file(&dir.join("gateway.yaml"), &text);
    eventually(
        "readiness after the fix",
        Duration::from_secs(5),
        async || admin_client.get("/readyz").await.status == StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn sighup_reloads_and_removed_users_lose_their_sessions() {
    let up = Upstream::start().await;
    let dir = temp_dir();
    let (port, admin) = (external::free_port(), external::free_port());
    let text = config(&up, port, admin, default_routes());
    let bin = start(&dir, &text, port, admin).await;
    let bob = Client::new(bin.addr);
    bob.login("bob", "bob-pw").await;
    bin.signal("HUP");
    eventually("the SIGHUP reload", Duration::from_secs(5), async || {
        bin.log().contains("SIGHUP")
    })
    .await;
    assert_eq!(
        bob.get("/x").await.status,
        StatusCode::OK,
        "an unchanged reload keeps sessions"
    );
    let bob_entry = format!(
        "  - username: bob\n    password_hash: \"{}\"\n    roles: [staff]\n",
        hash_of("bob-pw")
    );
    replace_file(&dir.join("gateway.yaml"), &text.replace(&bob_entry, ""));
    eventually("bob's session to end", Duration::from_secs(5), async || {
        bob.get("/x").await.status == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(bin.log().contains("sessions_revoked"));
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits() {
    let up = Upstream::start().await;
    let dir = temp_dir();
    let (port, admin) = (external::free_port(), external::free_port());
    let text = config(
        &up,
        port,
        admin,
        &default_routes().replace(
            "public: [\"/public/\", \"/favicon.ico\"]",
            "public: [\"/public/\", \"/favicon.ico\", \"/slow\"]",
        ),
    );
    let mut bin = start(&dir, &text, port, admin).await;
    let c = Client::new(bin.addr);
    let slow = tokio::spawn(async move { c.get("/slow").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    bin.signal("TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        tokio::net::TcpStream::connect(bin.addr).await.is_err(),
        "still accepting after SIGTERM"
    );
    let slow = slow.await.unwrap();
    assert_eq!((slow.status, slow.body.as_str()), (StatusCode::OK, "slow"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = bin.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    assert!(bin.log().contains("gatehouse stopped"));
}

/// A person reads the log in a file or a container console: no colour codes there, latency as a
/// short number, and the warnings the config deserves.
#[tokio::test]
async fn the_log_is_plain_text_with_short_numbers_and_the_config_warnings() {
    let up = Upstream::start().await;
    let dir = temp_dir();
    let (port, admin) = (external::free_port(), external::free_port());
    let text = config(&up, port, admin, default_routes()).replace("format: json", "format: pretty");
    let bin = start(&dir, &text, port, admin).await;
    let c = Client::new(bin.addr);
    c.login("bob", "bob-pw").await;
    assert_eq!(c.get("/x").await.status, StatusCode::OK);
    eventually(
        "the request's log line",
        Duration::from_secs(5),
        async || bin.log().contains("latency_ms"),
    )
    .await;
    let log = bin.log();
    assert!(!log.contains('\u{1b}'), "colour codes in a log file: {log}");
    assert!(
        log.contains("cookies.secure is false"),
        "the secure: false warning is printed: {log}"
    );
    for line in log.lines().filter(|l| l.contains("latency_ms=")) {
        // Whichever path served it, the request's line names its route and user.
        if line.contains("status=200") {
            assert!(
                line.contains("route=\"app\"") && line.contains("user=\"bob\""),
                "{line}"
            );
            // Each field once: the decision records the route, nothing after it again.
            assert_eq!(line.matches("route=").count(), 1, "{line}");
        }
        let value = line
            .split("latency_ms=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        let decimals = value.split('.').nth(1).map_or(0, str::len);
        assert!(decimals <= 3, "latency {value} in: {line}");
    }
}
