//! What a person sees (SPEC §6 error pages, §12 branding) and what an API client gets for the
//! same errors, and the login over plain HTTP that a browser would not keep.

mod support;

use http::{Method, Request, StatusCode};
use http_body_util::Full;
use support::*;

const HTML: (&str, &str) = ("accept", "text/html,application/xhtml+xml,*/*;q=0.8");

fn is_page(r: &Resp) -> bool {
    r.header("content-type") == Some("text/html; charset=utf-8")
        && r.body.starts_with("<!doctype html>")
}

/// A gateway whose upstream is gone (nothing listens on its port): every forward is a 502.
async fn gateway_without_upstream() -> TestGateway {
    let port = unused_port();
    TestGateway::start(&base_yaml(
        &format!("http://127.0.0.1:{port}"),
        default_routes(),
    ))
    .await
}

#[tokio::test]
async fn a_forbidden_page_says_who_is_signed_in_and_offers_to_switch() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    let c = gw.client();
    c.login("bob", "bob-pw").await;
    let r = c.get_with("/admin/panel?x=1", &[HTML]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(is_page(&r), "{}", r.body);
    assert!(r.body.contains("<strong>bob</strong>"), "{}", r.body);
    assert!(r.body.contains("Sign out") && r.body.contains("Sign in as someone else"));
    let id = r.header("x-request-id").unwrap().to_string();
    assert!(r.body.contains(&id), "the page quotes the request id");
    // The switch signs out, then comes back to this page through the login.
    let action = r
        .body
        .split("action=\"")
        .nth(2)
        .and_then(|a| a.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    let out = c
        .send(
            Request::builder()
                .method(Method::POST)
                .uri(&action)
                .header("origin", format!("http://{}", gw.addr))
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER, "{action}");
    assert_eq!(
        out.header("location"),
        Some("/.gatehouse/login?rd=%2Fadmin%2Fpanel%3Fx%3D1&switch_account=1")
    );
    assert_eq!(
        c.get("/x").await.status,
        StatusCode::UNAUTHORIZED,
        "signed out"
    );
    // An API client gets JSON for the same refusal.
    c.login("bob", "bob-pw").await;
    let r = c.get("/admin/panel").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"], "forbidden");
    assert_eq!(up.count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn gateway_errors_are_pages_for_browsers_and_json_for_everyone_else() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_yaml(&up.url(), default_routes())).await;
    let c = gw.client();
    c.login("alice", "alice-pw").await;
    for (path, status, code) in [
        ("/%2e%2e/x", StatusCode::BAD_REQUEST, "bad_request"),
        ("/.gatehouse/nothing", StatusCode::NOT_FOUND, "not_found"),
    ] {
        let page = c.get_with(path, &[HTML]).await;
        assert_eq!(page.status, status, "{path}");
        assert!(is_page(&page), "{path}: {}", page.body);
        assert!(page.body.contains(page.header("x-request-id").unwrap()));
        let api = c.get(path).await;
        assert_eq!(api.status, status, "{path}");
        assert_eq!(api.json()["error"], code, "{path}");
    }
    gw.stop().await;

    // The upstream is gone: 502, with a page that says to try again and quote the id.
    let gw = gateway_without_upstream().await;
    let c = gw.client();
    c.login("alice", "alice-pw").await;
    let page = c.get_with("/x", &[HTML]).await;
    assert_eq!(page.status, StatusCode::BAD_GATEWAY);
    assert!(is_page(&page), "{}", page.body);
    assert!(page.body.contains("Try again") && page.body.contains("Request id"));
    let api = c.get("/x").await;
    assert_eq!(api.status, StatusCode::BAD_GATEWAY);
    assert_eq!(api.json()["error"], "upstream_unavailable");
    gw.stop().await;
}

/// SPEC §6: a page only for a browser navigation — "the same test as the login redirect in
/// §7: `GET`/`HEAD` with `Accept` containing `text/html`" — and JSON for everything else, even
/// a `POST`, `PUT` or `DELETE` that names `text/html` (a script, a fetch, an app's own form
/// posted to an upstream that is down). The one exception is a browser submitting the
/// gateway's own forms (login, *Sign out*): a person reads that answer as a page.
#[tokio::test]
async fn only_navigations_and_our_own_forms_get_pages() {
    let gw = gateway_without_upstream().await;
    let c = gw.client();
    c.login("bob", "bob-pw").await;
    let with_html = |method: Method, path: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header(HTML.0, HTML.1)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::from("a=1"))
            .unwrap()
    };
    for (method, path, status, code) in [
        (
            Method::POST,
            "/x",
            StatusCode::BAD_GATEWAY,
            "upstream_unavailable",
        ),
        (
            Method::DELETE,
            "/x",
            StatusCode::BAD_GATEWAY,
            "upstream_unavailable",
        ),
        (Method::POST, "/admin", StatusCode::FORBIDDEN, "forbidden"),
        (
            Method::PUT,
            "/%2e%2e/x",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::PUT,
            "/.gatehouse/login",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ] {
        let r = c.send(with_html(method.clone(), path)).await;
        assert_eq!(r.status, status, "{method} {path}");
        assert!(!is_page(&r), "{method} {path}: a page for a non-navigation");
        assert_eq!(r.json()["error"], code, "{method} {path}");
    }
    // The same errors for a navigation are pages.
    for (path, status) in [
        ("/x", StatusCode::BAD_GATEWAY),
        ("/admin", StatusCode::FORBIDDEN),
    ] {
        let r = c.get_with(path, &[HTML]).await;
        assert_eq!(r.status, status, "{path}");
        assert!(is_page(&r), "GET {path}: {}", r.body);
    }
    // Our own login form, posted cross-site by a browser: a page; the same refusal to a JSON
    // login is JSON.
    let cross_site = |content_type: &str, body: &'static str| {
        Request::builder()
            .method(Method::POST)
            .uri("/.gatehouse/login")
            .header(HTML.0, HTML.1)
            .header("origin", "https://evil.example")
            .header("content-type", content_type)
            .body(Full::from(body))
            .unwrap()
    };
    let r = c
        .send(cross_site(
            "application/x-www-form-urlencoded",
            "username=bob&password=x",
        ))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(is_page(&r), "{}", r.body);
    let r = c
        .send(cross_site(
            "application/json",
            r#"{"username":"bob","password":"x"}"#,
        ))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!is_page(&r), "{}", r.body);
    gw.stop().await;
}

#[tokio::test]
async fn a_locked_out_browser_is_told_when_to_try_again() {
    let up = Upstream::start().await;
    let yaml = base_yaml(&up.url(), default_routes()).replace(
        "users:\n",
        "login:\n  max_failures: 1\n  lockout: 15m\nusers:\n",
    );
    let gw = TestGateway::start(&yaml).await;
    let c = gw.client();
    let form = |pw: &str| {
        Request::builder()
            .method(Method::POST)
            .uri("/.gatehouse/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .header(HTML.0, HTML.1)
            .body(Full::from(format!("username=bob&password={pw}&rd=%2F")))
            .unwrap()
    };
    assert_eq!(c.send(form("wrong")).await.status, StatusCode::UNAUTHORIZED);
    let r = c.send(form("bob-pw")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.header("retry-after").is_some());
    assert!(is_page(&r), "{}", r.body);
    assert!(r.body.contains("Try again in 15 minutes"), "{}", r.body);
    gw.stop().await;
}

fn branded_yaml(up: &Upstream, dir: &std::path::Path) -> String {
    std::fs::write(
        dir.join("logo.svg"),
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"80\" height=\"20\"><rect width=\"80\" height=\"20\" fill=\"#2f5fe0\"/></svg>",
    )
    .unwrap();
    std::fs::write(dir.join("extra.css"), "h1{letter-spacing:.02em}").unwrap();
    base_yaml(&up.url(), default_routes())
        + &format!(
            "ui:\n  title: \"Acme intranet\"\n  logo: \"{}\"\n  accent_color: \"#c0392b\"\n  css: \"{}\"\n",
            dir.join("logo.svg").display(),
            dir.join("extra.css").display()
        )
}

#[tokio::test]
async fn the_login_page_and_error_pages_carry_the_branding() {
    let up = Upstream::start().await;
    let dir = temp_dir();
    let gw = TestGateway::start(&branded_yaml(&up, &dir)).await;
    let c = gw.client();
    let login = c.get("/.gatehouse/login").await;
    assert_eq!(login.status, StatusCode::OK);
    for part in [
        "<title>Acme intranet</title>",
        "<h1>Acme intranet</h1>",
        "--accent:#c0392b",
        "letter-spacing:.02em",
        "src=\"/.gatehouse/ui/logo\"",
        "prefers-color-scheme:dark",
    ] {
        assert!(login.body.contains(part), "{part} missing: {}", login.body);
    }
    assert!(
        !login.body.contains("http://") && !login.body.contains("https://"),
        "no external assets"
    );
    let logo = c.get("/.gatehouse/ui/logo").await;
    assert_eq!(logo.status, StatusCode::OK);
    assert_eq!(logo.header("content-type"), Some("image/svg+xml"));
    assert!(logo.body.starts_with("<svg"));
    c.login("bob", "bob-pw").await;
    let page = c.get_with("/admin", &[HTML]).await;
    assert!(page.body.contains("<title>Acme intranet</title>"));
    assert!(page.body.contains("--accent:#c0392b"));
    gw.stop().await;
}

#[tokio::test]
async fn bad_branding_is_a_config_error_naming_the_key() {
    let up = Upstream::start().await;
    let dir = temp_dir();
    std::fs::write(dir.join("bad.css"), "x{} </style><script>").unwrap();
    std::fs::write(dir.join("logo.bmp"), "BM").unwrap();
    let yaml = base_yaml(&up.url(), default_routes())
        + &format!(
            "ui:\n  logo: \"{}\"\n  accent_color: \"red; background:url(x)\"\n  css: \"{}\"\n",
            dir.join("logo.bmp").display(),
            dir.join("bad.css").display()
        );
    let err = TestGateway::try_start(&yaml)
        .await
        .err()
        .expect("refused")
        .to_string();
    for key in ["ui.logo", "ui.accent_color", "ui.css"] {
        assert!(err.contains(key), "{key}: {err}");
    }
}

#[tokio::test]
async fn a_login_the_browser_would_not_keep_explains_itself_instead_of_looping() {
    let up = Upstream::start().await;
    let yaml =
        base_yaml(&up.url(), default_routes()).replace("  secure: false\n", "  secure: true\n");
    let gw = TestGateway::start(&yaml).await;
    let login = |host: &'static str| {
        Request::builder()
            .method(Method::POST)
            .uri("/.gatehouse/login")
            .header("host", host)
            .header("content-type", "application/x-www-form-urlencoded")
            .header(HTML.0, HTML.1)
            .body(Full::from("username=bob&password=bob-pw&rd=%2Fx"))
            .unwrap()
    };
    // A LAN address over plain HTTP: the Secure cookies would be dropped.
    let r = gw.client().send(login("192.0.2.2:8080")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(is_page(&r), "{}", r.body);
    assert!(r.body.contains("will not keep"), "{}", r.body);
    assert!(r.body.contains("server.tls") && r.body.contains("trusted_proxies"));
    // Loopback is a secure context for browsers: the usual redirect.
    let r = gw.client().send(login("127.0.0.1:8080")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    gw.stop().await;
}

#[test]
fn check_warns_when_secure_cookies_meet_plain_http_on_the_network() {
    let config = |listen: &str, trusted: &str| {
        let yaml = base_yaml("http://127.0.0.1:9", default_routes())
            .replace("  secure: false\n", "  secure: true\n")
            .replace("127.0.0.1:0", listen)
            .replace("server:\n", &format!("server:\n{trusted}"));
        let path = temp_dir().join("gateway.yaml");
        gatehouse::config::parse(&yaml, &path, |n| {
            (n == "TEST_SECRET").then(|| SECRET.to_string())
        })
        .unwrap()
    };
    let loop_warning = |c: &gatehouse::Config| {
        c.warnings
            .iter()
            .any(|w| w.contains("every login ends back on the login page"))
    };
    assert!(loop_warning(&config("0.0.0.0:8080", "")));
    assert!(loop_warning(&config("192.0.2.2:8080", "")));
    assert!(!loop_warning(&config("127.0.0.1:8080", "")));
    assert!(!loop_warning(&config(
        "0.0.0.0:8080",
        "  trusted_proxies: [\"10.0.0.0/8\"]\n"
    )));
}
