//! `GET /login` (the form) and `POST /login` (form or JSON) (SPEC §6). One generic failure
//! message whatever went wrong; unknown and disabled users are checked against a dummy hash
//! so they take as long as a wrong password; the throttle is consulted before any hashing.

use std::sync::Arc;

use http::header::{LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use super::redirect::safe_return;
use super::{body_kind, json, login_context, query_param, read_body, refuse_cross_site, BodyKind};
use crate::authenticate::credentials::extract;
use crate::authenticate::users::canonical_username;
use crate::authenticate::{sessions, throttle};
use crate::body::Body;
use crate::canonicalize::CanonicalRequest;
use crate::config::Config;
use crate::error::GatewayError;
use crate::runtime::{Gateway, RequestCtx};
use crate::telemetry::audit;
use crate::ui::{self, escape, html};

const FAILURE: &str = "Invalid username or password.";

/// `switch_account`: the page was reached by *Sign in as someone else*; its provider buttons
/// ask the provider for another account.
fn page_html(
    config: &Config,
    rd: &str,
    username: &str,
    error: Option<&str>,
    switch_account: bool,
) -> String {
    let action = format!("{}/login", config.auth_prefix);
    let error = error
        .map(|e| {
            format!(
                "<p class=\"error\" role=\"alert\" id=\"error\">{}</p>\n",
                escape(e)
            )
        })
        .unwrap_or_default();
    let providers = provider_buttons(config, rd, switch_account);
    let password_login = config.oidc.as_ref().is_none_or(|o| o.password_login);
    if !password_login {
        let branding = &config.ui;
        let body = format!("{error}{providers}");
        return ui::page(branding, &config.auth_prefix, &branding.title, None, &body);
    }
    // Kept through a failed attempt: the page that comes back still asks the provider for
    // another account.
    let switch = if switch_account {
        "<input type=\"hidden\" name=\"switch_account\" value=\"1\">\n"
    } else {
        ""
    };
    let form = format!(
        r#"{error}{providers}<form method="post" action="{action}">
<input type="hidden" name="rd" value="{rd}">
{switch}<label for="username">Username</label>
<input id="username" name="username" type="text" autocomplete="username" value="{username}" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>"#,
        action = escape(&action),
        rd = escape(rd),
        username = escape(username),
    );
    let branding = &config.ui;
    // A branded page says whose it is, then what it is for.
    let (heading, sub) = if branding.title == "Sign in" {
        ("Sign in", None)
    } else {
        (branding.title.as_str(), Some("Sign in"))
    };
    ui::page(branding, &config.auth_prefix, heading, sub, &form)
}

/// One *Sign in with NAME* button per identity provider: a link styled as a button (no
/// JavaScript; a keyboard reaches it with Tab and follows it with Enter). A link, not a form:
/// the page's `form-action 'self'` would stop a form's redirect on to the provider.
fn provider_buttons(config: &Config, rd: &str, switch_account: bool) -> String {
    let Some(oidc) = config.oidc.as_ref().filter(|o| !o.providers.is_empty()) else {
        return String::new();
    };
    let mut rd: String = form_urlencoded::byte_serialize(rd.as_bytes()).collect();
    if switch_account {
        rd.push_str("&switch_account=1");
    }
    let mut out = String::from("<div class=\"providers\">\n");
    for p in &oidc.providers {
        out.push_str(&format!(
            "<a class=\"button provider\" href=\"{href}\">Sign in with {name}</a>\n",
            href = escape(&format!(
                "{}/oidc/{}/start?rd={rd}",
                config.auth_prefix, p.id
            )),
            name = escape(&p.name),
        ));
    }
    out.push_str("</div>\n");
    if oidc.password_login {
        out.push_str("<p class=\"divider\"><span>or with a password</span></p>\n");
    }
    out
}

pub fn page(
    config: &Config,
    req: &Request<Incoming>,
    canon: &CanonicalRequest,
    _ctx: &RequestCtx,
) -> Result<Response<Body>, GatewayError> {
    // `state`: the `rd` a provider's logout hands back (`logout::after_signing_in`).
    let rd = safe_return(
        query_param(canon, "rd")
            .or_else(|| query_param(canon, "state"))
            .as_deref(),
    );
    let switch_account = query_param(canon, "switch_account").is_some_and(|v| v == "1");
    let mut r = html(
        StatusCode::OK,
        page_html(config, &rd, "", None, switch_account),
    );
    // Stale cookies are cleared, so a broken session cannot loop a browser back here.
    let creds = extract(req.headers(), &config.cookies);
    if creds.access_cookie.is_some() || creds.refresh_cookie.is_some() {
        for c in config.cookies.clear() {
            r.headers_mut().append(SET_COOKIE, c);
        }
    }
    Ok(r)
}

#[derive(Deserialize)]
struct JsonLogin {
    username: String,
    password: String,
}

struct Attempt {
    username: String,
    password: String,
    rd: String,
    kind: BodyKind,
    /// The form came from a page reached by *Sign in as someone else*.
    switch_account: bool,
}

fn parse_attempt(headers: &HeaderMap, body: &[u8]) -> Result<Attempt, GatewayError> {
    match body_kind(headers) {
        Some(BodyKind::Json) => {
            let j: JsonLogin = serde_json::from_slice(body)
                .map_err(|_| GatewayError::MalformedBody("expected {\"username\",\"password\"}"))?;
            Ok(Attempt {
                username: j.username,
                password: j.password,
                rd: "/".into(),
                kind: BodyKind::Json,
                switch_account: false,
            })
        }
        Some(BodyKind::Form) => {
            if std::str::from_utf8(body).is_err() {
                return Err(GatewayError::MalformedBody("the form is not UTF-8"));
            }
            let (mut username, mut password, mut rd) = (None, None, None);
            let mut switch_account = false;
            for (k, v) in form_urlencoded::parse(body) {
                match k.as_ref() {
                    "username" => username = Some(v.into_owned()),
                    "password" => password = Some(v.into_owned()),
                    "rd" => rd = Some(v.into_owned()),
                    "switch_account" => switch_account = v == "1",
                    _ => {}
                }
            }
            match (username, password) {
                (Some(username), Some(password)) => Ok(Attempt {
                    username,
                    password,
                    rd: safe_return(rd.as_deref()),
                    kind: BodyKind::Form,
                    switch_account,
                }),
                _ => Err(GatewayError::MalformedBody(
                    "username and password are required",
                )),
            }
        }
        None => Err(GatewayError::UnsupportedMediaType),
    }
}

pub async fn submit(
    gw: &Gateway,
    config: &Config,
    req: Request<Incoming>,
    ctx: &RequestCtx,
) -> Result<Response<Body>, GatewayError> {
    refuse_cross_site(config, req.headers(), ctx)?;
    if config.oidc.as_ref().is_some_and(|o| !o.password_login) {
        return Err(GatewayError::PasswordLoginDisabled);
    }
    let headers = req.headers().clone();
    let body = read_body(req, &config.limits).await?;
    let mut attempt = parse_attempt(&headers, &body)?;
    let canonical = canonical_username(&attempt.username);
    let ip = ctx.client_ip.to_string();

    if let Err(locked) = throttle::check(
        &gw.throttle,
        &gw.store,
        &canonical,
        ctx.client_ip,
        ctx.now_ms,
    )
    .await
    {
        audit::login_locked(&canonical, &ip, locked.retry_after);
        gw.metrics.login("locked", "local");
        return Err(GatewayError::LockedOut {
            retry_after: locked.retry_after,
        });
    }

    let user = config
        .users
        .get(&canonical)
        .filter(|u| !u.disabled)
        .cloned();
    // Unknown and disabled users are verified against the dummy hash: same cost, same answer.
    let hash: Arc<str> = match &user {
        Some(u) => u.password_hash.as_str().into(),
        None => config.users.dummy_hash(),
    };
    let verified = gw
        .hasher
        .verify(hash, std::mem::take(&mut attempt.password))
        .await?;
    let user = match (verified, user) {
        (true, Some(user)) => user,
        (_, user) => {
            let reason = match (&user, config.users.get(&canonical)) {
                (Some(_), _) => "wrong_password",
                (None, Some(_)) => "disabled",
                (None, None) => "unknown_user",
            };
            audit::login_failed(&canonical, &ip, reason);
            gw.metrics.login("failure", "local");
            if let Some(locked) = throttle::failure(
                &gw.throttle,
                &gw.store,
                &canonical,
                ctx.client_ip,
                ctx.now_ms,
                config.throttle,
            )
            .await
            {
                audit::login_locked(&canonical, &ip, locked.retry_after);
            }
            return Ok(failure(config, &attempt));
        }
    };
    throttle::success(&gw.throttle, &gw.store, &canonical).await;
    let issued = sessions::login(
        &config.tokens,
        &gw.store,
        &user,
        login_context(&headers, ctx),
        ctx.now_ms,
    )
    .await?;
    audit::login_succeeded(&canonical, issued.identity.sid(), &ip);
    gw.metrics.login("success", "local");
    let mut r = match attempt.kind {
        BodyKind::Json => json(StatusCode::OK, &token_body(&issued)),
        BodyKind::Form if cookies_will_be_dropped(config, &headers, ctx) => {
            // A redirect would bring the browser back here without its cookies: say why.
            html(StatusCode::OK, insecure_page(config, &attempt.rd))
        }
        BodyKind::Form => {
            let mut r = Response::new(crate::body::empty());
            *r.status_mut() = StatusCode::SEE_OTHER;
            let location =
                HeaderValue::from_str(&attempt.rd).unwrap_or(HeaderValue::from_static("/"));
            r.headers_mut().insert(LOCATION, location);
            r
        }
    };
    set_token_cookies(config, &mut r, &issued);
    Ok(r)
}

/// Whether a browser will drop this login's cookies: they are `Secure`, the request came over
/// plain HTTP straight from the client (no TLS listener, no trusted proxy that may have
/// terminated TLS), and the host is not loopback (which browsers treat as secure).
fn cookies_will_be_dropped(config: &Config, headers: &HeaderMap, ctx: &RequestCtx) -> bool {
    if !config.cookies.secure || ctx.proto == "https" || ctx.peer_trusted {
        return false;
    }
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| crate::canonicalize::canonical_host(h).ok())
        .unwrap_or_default();
    let loopback = host == "localhost"
        || host.ends_with(".localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

fn insecure_page(config: &Config, rd: &str) -> String {
    let body = format!(
        "<p class=\"error\" role=\"alert\">Your password was right, but this browser will not keep \
         you signed in here.</p>\n\
         <p>This site is served over plain HTTP, and its sign-in cookies are marked <code>Secure</code>: \
         browsers only keep such cookies over HTTPS. Signing in again will not help.</p>\n\
         <p>Open the site with <code>https://</code> if it has it. If you run this gateway: serve \
         HTTPS (<code>server.tls</code>), or put a TLS-terminating proxy in front and list it in \
         <code>server.trusted_proxies</code>; for plain-HTTP development only, set \
         <code>cookies.secure: false</code>.</p>\n\
         <p class=\"muted\"><a href=\"{}\">Continue anyway</a></p>",
        escape(rd)
    );
    ui::page(
        &config.ui,
        &config.auth_prefix,
        "Signed in, but not kept",
        Some(&config.ui.title),
        &body,
    )
}

/// The JSON token response of login and refresh.
pub fn token_body(issued: &sessions::Issued) -> serde_json::Value {
    let mut body = serde_json::json!({
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.access_max_age,
    });
    if let Some((refresh, _)) = &issued.refresh {
        body["refresh_token"] = serde_json::Value::String(refresh.clone());
    }
    body
}

/// A session's cookies on one of the gateway's own answers (login, refresh, the OIDC
/// callback), which no cache may keep: every such answer is `no-store`, a `303` included.
pub fn set_token_cookies(config: &Config, r: &mut Response<Body>, issued: &sessions::Issued) {
    for cookie in issued.cookies(&config.cookies) {
        r.headers_mut().append(SET_COOKIE, cookie);
    }
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
}

fn failure(config: &Config, attempt: &Attempt) -> Response<Body> {
    match attempt.kind {
        BodyKind::Json => json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"error": "invalid_credentials"}),
        ),
        BodyKind::Form => html(
            StatusCode::UNAUTHORIZED,
            page_html(
                config,
                &attempt.rd,
                &attempt.username,
                Some(FAILURE),
                attempt.switch_account,
            ),
        ),
    }
}
