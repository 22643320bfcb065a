//! Forward-auth in a real proxy: Debian's Caddy with `forward_auth` to Gatehouse's `/auth`,
//! using the shipped example (`examples/caddy/Caddyfile`) with only the addresses changed.
//! Proves allow, 401-to-login, 403, that forged identity headers and Gatehouse's cookies never
//! reach the app, and that refreshed cookies reach the browser.

mod support;
use support::external;

use std::process::Command;
use std::time::Duration;

use http::StatusCode;
use support::*;

#[tokio::test]
async fn caddy_forward_auth_allows_redirects_forbids_and_delivers_refreshed_cookies() {
    let Some(caddy) = external::find("caddy", &["/usr/bin/caddy"]) else {
        return;
    };
    let up = Upstream::start().await;
    let yaml = forward_auth_yaml(&up);
    let gw = TestGateway::start(&yaml).await;

    let dir = temp_dir();
    let port = external::free_port();
    let site = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/caddy/Caddyfile"
    ))
    .unwrap()
    .replace("app.example.com", &format!("http://127.0.0.1:{port}"))
    .replace("127.0.0.1:8080", &gw.addr.to_string())
    .replace("127.0.0.1:3000", &up.addr.to_string());
    let caddyfile = format!("{{\n\tadmin off\n}}\n{site}");
    std::fs::write(dir.join("Caddyfile"), caddyfile).unwrap();
    let mut cmd = Command::new(caddy);
    cmd.arg("run")
        .arg("--adapter")
        .arg("caddyfile")
        .arg("--config")
        .arg(dir.join("Caddyfile"))
        .env("HOME", &dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"));
    let proc = external::Process::spawn(cmd, port);
    proc.wait_listening(Duration::from_secs(20)).await;
    let via_caddy: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // Not logged in: Caddy sends the browser to the login page with rd.
    let anon = Client::new(via_caddy);
    let r = anon.navigate("/reports?year=2026").await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    assert_eq!(
        r.header("location"),
        Some("/.gatehouse/login?rd=%2Freports%3Fyear%3D2026")
    );
    // Forged identity without a session gets nowhere either.
    let r = anon
        .get_with("/reports", &[("x-forwarded-user", "alice")])
        .await;
    assert_ne!(r.status, StatusCode::OK);
    assert_eq!(up.count(), 0);

    // Logged in through Caddy: the app sees the identity from Gatehouse, never the client's
    // spellings, and its own cookie without Gatehouse's tokens.
    let alice = Client::new(via_caddy);
    alice.login("alice", "alice-pw").await;
    alice.set_cookie("theme", "dark");
    let r = alice
        .get_with(
            "/reports",
            &[
                ("x-forwarded-user", "mallory"),
                ("x-forwarded-email", "mallory@evil.example"),
                ("x_forwarded_user", "mallory"),
                ("X-Forwarded_Groups", "admin"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // No refresh happened: no cookie, and no placeholder posing as one.
    assert!(
        r.set_cookies().iter().all(|c| c.trim().is_empty()),
        "{:?}",
        r.set_cookies()
    );
    let seen = up.last();
    assert_eq!(seen.header_all("x-forwarded-user"), vec!["alice"]);
    assert_eq!(seen.header("x-forwarded-groups"), Some("admin,staff"));
    let forged: Vec<String> = seen
        .names()
        .into_iter()
        .filter(|n| n.replace('_', "-").starts_with("x-forwarded-"))
        .filter(|n| {
            ![
                "x-forwarded-user",
                "x-forwarded-email",
                "x-forwarded-groups",
            ]
            .contains(&n.as_str())
        })
        .filter(|n| {
            !["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"].contains(&n.as_str())
        })
        .collect();
    assert!(
        forged.is_empty(),
        "forged headers reached the app: {forged:?}"
    );
    assert_eq!(
        seen.header_all("x-forwarded-email"),
        vec!["alice@example.com"]
    );
    let cookies = seen.header_all("cookie").join("; ");
    assert!(cookies.contains("theme=dark"), "{cookies}");
    assert!(!cookies.contains("gatehouse_"), "{cookies}");
    assert!(seen.header("x-gatehouse-access-cookie").is_none());
    assert!(seen.header("x-gatehouse-refresh-cookie").is_none());

    // bob has no email: Gatehouse sends no X-Forwarded-Email, and bob's forged one must not
    // survive in its place.
    let bob = Client::new(via_caddy);
    bob.login("bob", "bob-pw").await;
    let r = bob
        .get_with("/reports", &[("x-forwarded-email", "alice@example.com")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(up.last().header_all("x-forwarded-user"), vec!["bob"]);
    // Through Caddy, "no email" arrives as an empty header.
    assert_eq!(up.last().header("x-forwarded-email").unwrap_or(""), "");

    // Logged in but not allowed: 403, nothing upstream.
    let before = up.count();
    assert_eq!(bob.get("/admin").await.status, StatusCode::FORBIDDEN);
    assert_eq!(up.count(), before);
    // Caddy passes the client's other headers to /auth: a client's own description of the
    // request, naming a page bob may see, must not open /admin.
    for forged in [
        ("x-forwarded-uri", "/reports"),
        ("x-original-uri", "/reports"),
        ("x-original-url", "http://127.0.0.1/reports"),
    ] {
        let r = bob.get_with("/admin", &[forged]).await;
        assert!(!r.status.is_success(), "{forged:?}: {}", r.status);
        assert_eq!(up.count(), before, "{forged:?} opened /admin");
    }

    // Access cookie gone (as at its Max-Age): refreshed inside /auth; both new cookies reach the browser through
    // Caddy, and the rotated refresh token keeps working (a lost one would trip reuse
    // detection after the 1 s grace).
    refreshed_cookies_reach_the_browser(&alice, "/reports").await;
    drop(proc);
    gw.stop().await;
}
