//! Forward-auth in a real proxy: Debian's nginx with `auth_request` to Gatehouse's `/auth`,
//! using the shipped example config (`examples/nginx/gatehouse.conf`) with only the ports
//! changed. Proves allow, 401-to-login, 403, and that refreshed cookies reach the browser.

mod support;
use support::external;

use std::process::Command;
use std::time::Duration;

use http::StatusCode;
use support::*;

#[tokio::test]
async fn nginx_auth_request_allows_redirects_forbids_and_delivers_refreshed_cookies() {
    let Some(nginx) = external::find("nginx", &["/usr/sbin/nginx"]) else {
        return;
    };
    let up = Upstream::start().await;
    let yaml = forward_auth_yaml(&up);
    let gw = TestGateway::start(&yaml).await;

    let dir = temp_dir();
    let port = external::free_port();
    let server = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/nginx/gatehouse.conf"
    ))
    .unwrap()
    .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
    .replace("127.0.0.1:8080", &gw.addr.to_string())
    .replace("127.0.0.1:3000", &up.addr.to_string());
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{server}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let mut cmd = Command::new(nginx);
    cmd.arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"));
    let proc = external::Process::spawn(cmd, port);
    proc.wait_listening(Duration::from_secs(10)).await;
    let via_nginx: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // Not logged in: nginx sends the browser to the login page with rd.
    let anon = Client::new(via_nginx);
    let r = anon.navigate("/reports?year=2026").await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    assert_eq!(
        r.header("location"),
        Some("/.gatehouse/login?rd=%2Freports%3Fyear%3D2026")
    );
    assert_eq!(up.count(), 0);

    // Logging in through nginx, then the app sees the identity nginx copied from Gatehouse.
    let alice = Client::new(via_nginx);
    alice.login("alice", "alice-pw").await;
    alice.set_cookie("theme", "dark");
    let r = alice
        .get_with("/reports", &[("x-forwarded-user", "mallory")])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(up.last().header_all("x-forwarded-user"), vec!["alice"]);
    assert_eq!(up.last().header("x-forwarded-groups"), Some("admin,staff"));
    // The app's own cookie arrives; Gatehouse's tokens do not.
    let cookies = up.last().header_all("cookie").join("; ");
    assert!(cookies.contains("theme=dark"), "{cookies}");
    assert!(!cookies.contains("gatehouse_"), "{cookies}");

    // Logged in but not allowed: 403 from nginx, nothing upstream.
    let bob = Client::new(via_nginx);
    bob.login("bob", "bob-pw").await;
    let before = up.count();
    assert_eq!(bob.get("/admin").await.status, StatusCode::FORBIDDEN);
    assert_eq!(up.count(), before);
    // nginx hands the subrequest the client's own headers next to the X-Original-URL it
    // sets: a client's forward-auth headers naming a page bob may see must not open /admin.
    for forged in ["x-forwarded-uri", "x-original-uri"] {
        let r = bob.get_with("/admin", &[(forged, "/reports")]).await;
        assert!(!r.status.is_success(), "{forged}: {}", r.status);
        assert_eq!(up.count(), before, "{forged} opened /admin");
    }

    // Access cookie gone (as at its Max-Age): refreshed inside /auth, both new cookies reach the browser through
    // nginx, and the rotated refresh token keeps working (a lost one would trip reuse
    // detection after the 1 s grace).
    refreshed_cookies_reach_the_browser(&alice, "/reports").await;
    drop(proc);
    gw.stop().await;
}
