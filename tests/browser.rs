//! A real browser (Debian's headless Chromium through chromedriver) logs in through the form,
//! lands on the page it asked for, cannot read the cookies from JavaScript, stays logged in
//! past `access_ttl` without seeing the login page, and logs out.

mod support;
use support::external;

use std::process::Command;
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use support::*;

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

    let port = external::free_port();
    let mut cmd = Command::new(driver);
    cmd.arg(format!("--port={port}"));
    let chromedriver = external::Process::spawn(cmd, port);
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
        browser
            .find(Locator::Css("button[type=submit]"))
            .await?
            .click()
            .await?;
        browser
            .wait()
            .at_most(Duration::from_secs(10))
            .for_url(&url::Url::parse(&format!("{base}/reports/q3?year=2026")).expect("url"))
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
        // 6. Logout ends it: the next protected page is the login form again.
        browser.goto(&format!("{base}/.gatehouse/logout")).await?;
        assert_eq!(browser.current_url().await?.path(), "/.gatehouse/login");
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
