//! A real browser (Debian's headless Chromium through chromedriver) logs in through the form,
//! lands on the page it asked for, cannot read the cookies from JavaScript, stays logged in
//! past `access_ttl` without seeing the login page, is asked before a logout another site
//! links to, and logs out.

mod support;
use support::external;

use std::process::Command;
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use support::*;

/// Headless Chromium through chromedriver on a free port (the process stops when dropped).
async fn open_browser(
    chromium: std::path::PathBuf,
    driver: std::path::PathBuf,
) -> (external::Process, fantoccini::Client) {
    let port = external::free_port();
    let mut cmd = Command::new(driver);
    cmd.arg(format!("--port={port}"));
    // Its own process group: Chromium goes with it even when an assertion fails mid-test.
    let chromedriver = external::Process::spawn_group(cmd, port);
    chromedriver.wait_listening(Duration::from_secs(20)).await;

    let profile = temp_dir().join("chrome-profile");
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", profile.display()),
            ]
        }
    });
    let caps = match caps {
        serde_json::Value::Object(map) => map,
        _ => unreachable!(),
    };
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("chromedriver session");

    (chromedriver, browser)
}

/// Clicks the element `css` selects and waits (up to 10 s) until the browser is at `url`.
async fn click_and_land(
    browser: &fantoccini::Client,
    css: &str,
    url: &str,
) -> Result<(), fantoccini::error::CmdError> {
    browser.find(Locator::Css(css)).await?.click().await?;
    let url = url::Url::parse(url).expect("url");
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_url(&url)
        .await
}

/// Serves `html` to every request on a free port, as `http://localhost:PORT/`: a page on
/// another site than the gateway's `127.0.0.1`.
async fn foreign_page(html: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{html}",
        html.len()
    );
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head).await;
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://localhost:{port}/")
}

#[tokio::test]
async fn a_browser_logs_in_stays_logged_in_past_access_ttl_and_logs_out() {
    let Some(chromium) = external::find("chromium", &["/usr/bin/chromium"]) else {
        return;
    };
    let Some(driver) = external::find("chromedriver", &["/usr/bin/chromedriver"]) else {
        return;
    };

    let up = Upstream::start().await;
    let yaml =
        base_yaml(&up.url(), default_routes()).replace("  access_ttl: 5m\n", "  access_ttl: 2s\n");
    let gw = TestGateway::start(&yaml).await;
    let base = format!("http://127.0.0.1:{}", gw.addr.port());

    let (_chromedriver, browser) = open_browser(chromium, driver).await;

    let outcome = async {
        // 1. A protected page sends the browser to the login form.
        browser
            .goto(&format!("{base}/reports/q3?year=2026"))
            .await?;
        let url = browser.current_url().await?;
        assert_eq!(url.path(), "/.gatehouse/login", "{url}");
        // 2. Wrong password: the form again, with the generic message.
        browser
            .find(Locator::Css("#username"))
            .await?
            .send_keys("alice")
            .await?;
        browser
            .find(Locator::Css("#password"))
            .await?
            .send_keys("wrong")
            .await?;
        browser
            .find(Locator::Css("button[type=submit]"))
            .await?
            .click()
            .await?;
        let error = browser
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("#error"))
            .await?
            .text()
            .await?;
        assert_eq!(error, "Invalid username or password.");
        // 3. The right password lands on the original page.
        browser
            .find(Locator::Css("#password"))
            .await?
            .send_keys("alice-pw")
            .await?;
        click_and_land(
            &browser,
            "button[type=submit]",
            &format!("{base}/reports/q3?year=2026"),
        )
        .await?;
        let body = browser.find(Locator::Css("body")).await?.text().await?;
        assert!(
            body.contains("upstream saw GET /reports/q3?year=2026"),
            "{body}"
        );
        let page = up
            .requests()
            .into_iter()
            .find(|r| r.uri == "/reports/q3?year=2026")
            .expect("the page reached the app");
        assert_eq!(page.header("x-forwarded-user"), Some("alice"));
        // 4. The cookies are HttpOnly: invisible to scripts.
        let js = browser.execute("return document.cookie", vec![]).await?;
        assert!(!js.as_str().unwrap_or("").contains("gatehouse"), "{js}");
        let cookies = browser.get_all_cookies().await?;
        assert!(cookies
            .iter()
            .any(|c| c.name() == "gatehouse_access" && c.http_only() == Some(true)));
        // 5. Past access_ttl the next navigation is refreshed inside the proxy.
        tokio::time::sleep(Duration::from_millis(3200)).await;
        browser.goto(&format!("{base}/later")).await?;
        let url = browser.current_url().await?;
        assert_eq!(url.path(), "/later", "the login page was shown: {url}");
        let later = up
            .requests()
            .into_iter()
            .find(|r| r.uri == "/later")
            .expect("/later reached the app");
        assert_eq!(later.header("x-forwarded-user"), Some("alice"));
        // 6. A page on another site (`localhost` is not `127.0.0.1`'s site) links to the
        //    logout: following the link ends nothing until the person confirms on our page.
        let foreign = foreign_page(&format!(
            "<a id=\"out\" href=\"{base}/.gatehouse/logout?all=true\">Leave</a>"
        ))
        .await;
        browser.goto(&foreign).await?;
        browser.find(Locator::Css("#out")).await?.click().await?;
        let asked = browser
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("form button"))
            .await?;
        assert_eq!(asked.text().await?, "Sign out everywhere");
        browser.goto(&format!("{base}/still-in")).await?;
        assert_eq!(browser.current_url().await?.path(), "/still-in");
        // 7. The person confirms: the form's post is same-origin, and signs out.
        browser.back().await?;
        click_and_land(&browser, "form button", &format!("{base}/.gatehouse/login")).await?;
        browser.goto(&format!("{base}/reports/q3")).await?;
        assert_eq!(browser.current_url().await?.path(), "/.gatehouse/login");
        assert!(
            up.requests().iter().all(|r| r.uri != "/reports/q3"),
            "a logged-out browser reached the app"
        );
        Ok::<(), fantoccini::error::CmdError>(())
    }
    .await;
    if outcome.is_err() {
        eprintln!("page at failure: {:?}", browser.source().await);
    }
    let _ = browser.close().await;
    outcome.expect("browser step failed");
    gw.stop().await;
}

/// The OIDC flow in a real browser against a real provider: the login page's *Sign in with*
/// button, the provider's own login form, and back on the app with the identity headers; then
/// the 403 page's *Sign out* on to the provider (`logout: idp`). The gateway is `localhost` and
/// the provider `127.0.0.1`: two sites, as in production.
#[tokio::test]
async fn a_browser_signs_in_through_a_real_identity_provider() {
    sign_in_through_a_real_identity_provider("lax").await;
}

/// The same with `SameSite=Strict` cookies. The gateway is `localhost` and the provider
/// `127.0.0.1`, two sites: the redirect that ends the sign-in is part of a chain that began on
/// the provider's site, so a browser sends no Strict cookie with it (the person landed on the
/// login page again until the callback answered with a page that goes on by itself).
#[tokio::test]
async fn a_browser_signs_in_through_a_provider_on_another_site_with_strict_cookies() {
    sign_in_through_a_real_identity_provider("strict").await;
}

async fn sign_in_through_a_real_identity_provider(same_site: &str) {
    let Some(chromium) = external::find("chromium", &["/usr/bin/chromium"]) else {
        return;
    };
    let Some(driver) = external::find("chromedriver", &["/usr/bin/chromedriver"]) else {
        return;
    };
    let up = Upstream::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let base = format!("http://localhost:{port}");
    let clients = serde_json::json!([{
        "client_id": "gatehouse",
        "client_secret": "browser-client-secret-0123",
        "redirect_uris": [format!("{base}/.gatehouse/oidc/corp/callback")],
        "post_logout_redirect_uris": [format!("{base}/.gatehouse/login")],
    }]);
    let accounts = serde_json::json!({
        "grace": {"email": "grace@example.com", "email_verified": true, "preferred_username": "grace"}
    });
    let Some(idp) = support::oidc::RealProvider::start(clients, accounts).await else {
        return;
    };
    let yaml = base_yaml(
        &up.url(),
        &format!(
            "{}oidc:\n  providers:\n    - id: corp\n      name: \"Corp SSO\"\n      issuer: \"{}\"\n      client_id: gatehouse\n      client_secret: \"browser-client-secret-0123\"\n      logout: idp\n",
            default_routes(),
            idp.issuer
        ),
    )
    .replace(
        "  listen: \"127.0.0.1:0\"\n",
        &format!("  listen: \"127.0.0.1:0\"\n  public_url: \"{base}\"\n"),
    )
    .replace(
        "cookies:\n  secure: false\n",
        &format!("cookies:\n  secure: false\n  same_site: {same_site}\n"),
    );
    assert!(yaml.contains(&format!("same_site: {same_site}")));
    let gw = TestGateway::start_on(listener, temp_dir(), &yaml)
        .await
        .unwrap();
    let (_chromedriver, browser) = open_browser(chromium, driver).await;
    let outcome = async {
        browser.goto(&format!("{base}/reports/q4")).await?;
        assert_eq!(browser.current_url().await?.path(), "/.gatehouse/login");
        // The provider's button, reached and pressed like any button.
        browser
            .find(Locator::LinkText("Sign in with Corp SSO"))
            .await?
            .click()
            .await?;
        // The provider's own login form.
        let login = browser
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("input[name=login]"))
            .await?;
        assert!(browser
            .current_url()
            .await?
            .as_str()
            .starts_with(&idp.issuer));
        login.send_keys("grace").await?;
        browser
            .find(Locator::Css("input[name=password]"))
            .await?
            .send_keys("anything")
            .await?;
        click_and_land(
            &browser,
            "button[type=submit]",
            &format!("{base}/reports/q4"),
        )
        .await?;
        let body = browser.find(Locator::Css("body")).await?.text().await?;
        assert!(body.contains("upstream saw GET /reports/q4"), "{body}");
        let page = up
            .requests()
            .into_iter()
            .find(|r| r.uri == "/reports/q4")
            .expect("the page reached the app");
        // `username_claim` defaults to the (verified) email.
        assert_eq!(page.header("x-forwarded-user"), Some("grace@example.com"));
        assert_eq!(page.header("x-forwarded-email"), Some("grace@example.com"));
        let cookies = browser.get_all_cookies().await?;
        assert!(cookies
            .iter()
            .any(|c| c.name() == "gatehouse_access" && c.http_only() == Some(true)));
        assert!(
            cookies.iter().all(|c| c.name() != "gatehouse_oidc"),
            "state cookie used up"
        );
        // A page grace may not see: the gateway's 403 page offers *Sign out* and *Sign in as
        // someone else*, forms posted to the gateway whose answer (`logout: idp`) sends the
        // browser on to the provider. The page's CSP says `form-action 'self'`, which
        // Chromium applies to that redirect too: the provider's logout page must be reached
        // all the same.
        browser.goto(&format!("{base}/admin?tab=2")).await?;
        let body = browser.find(Locator::Css("body")).await?.text().await?;
        assert!(body.contains("grace@example.com"), "the 403 page: {body}");
        browser
            .find(Locator::Css("button.secondary"))
            .await?
            .click()
            .await?;
        let mut at_provider = false;
        for _ in 0..100 {
            if browser
                .current_url()
                .await?
                .as_str()
                .starts_with(&idp.issuer)
            {
                at_provider = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let url = browser.current_url().await?;
        assert!(at_provider, "still at {url} after Sign out");
        let cookies = browser.get_all_cookies().await?;
        assert!(
            cookies.iter().all(|c| !c.name().starts_with("gatehouse_")),
            "signed out of the gateway: {cookies:?}"
        );
        // The provider asks; once it has signed grace out, it sends the browser back to our
        // login page, which will go on to the page she was refused.
        browser
            .find(Locator::Css("button[name=logout][value=yes]"))
            .await?
            .click()
            .await?;
        let rd = browser
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("input[name=rd]"))
            .await?;
        assert_eq!(browser.current_url().await?.path(), "/.gatehouse/login");
        assert_eq!(rd.attr("value").await?.as_deref(), Some("/admin?tab=2"));
        Ok::<(), fantoccini::error::CmdError>(())
    }
    .await;
    if outcome.is_err() {
        eprintln!("page at failure: {:?}", browser.source().await);
    }
    let _ = browser.close().await;
    outcome.expect("browser step failed");
    gw.stop().await;
}
