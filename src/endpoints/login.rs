//! `GET /login` (the form) and `POST /login` (form or JSON) (SPEC §6). One generic failure
//! message whatever went wrong; unknown and disabled users are checked against a dummy hash
//! so they take as long as a wrong password; the throttle is consulted before any hashing.

use std::sync::Arc;

use http::header::{CONTENT_TYPE, LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use super::redirect::safe_return;
use super::{body_kind, json, read_body, refuse_cross_site, BodyKind};
use crate::authenticate::credentials::extract;
use crate::authenticate::sessions::{self, LoginContext};
use crate::authenticate::users::canonical_username;
use crate::body::{full, Body};
use crate::canonicalize::CanonicalRequest;
use crate::config::Config;
use crate::error::GatewayError;
use crate::gateway::{Gateway, RequestCtx};
use crate::telemetry::audit;

const FAILURE: &str = "Invalid username or password.";

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page_html(action: &str, rd: &str, username: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| {
            format!(
                "<p class=\"error\" role=\"alert\" id=\"error\">{}</p>",
                escape(e)
            )
        })
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in</title>
<style>
body{{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}}
main{{background:#fff;padding:2rem 2.5rem;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.15);width:100%;max-width:22rem}}
h1{{font-size:1.4rem;margin:0 0 1.2rem}}
label{{display:block;margin:.8rem 0 .3rem;font-weight:600}}
input{{width:100%;box-sizing:border-box;padding:.55rem;font-size:1rem;border:1px solid #bbb;border-radius:4px}}
button{{margin-top:1.4rem;width:100%;padding:.65rem;font-size:1rem;border:0;border-radius:4px;background:#2d5be3;color:#fff;cursor:pointer}}
.error{{color:#a4161a;background:#fde8e8;padding:.6rem;border-radius:4px}}
</style>
</head>
<body>
<main>
<h1>Sign in</h1>
{error}
<form method="post" action="{action}">
<input type="hidden" name="rd" value="{rd}">
<label for="username">Username</label>
<input id="username" name="username" type="text" autocomplete="username" value="{username}" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
</main>
</body>
</html>
"#,
        action = escape(action),
        rd = escape(rd),
        username = escape(username),
    )
}

fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    // The page needs nothing from anywhere: no scripts, no frames, forms only to us.
    h.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    );
    h.insert(
        http::header::X_FRAME_OPTIONS,
        HeaderValue::from_static("DENY"),
    );
    // `same-origin`, not `no-referrer`: with `no-referrer` browsers send `Origin: null` on the
    // form POST, which the cross-site check rightly refuses (found by the browser test).
    h.insert(
        http::header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    r
}

fn query_param(canon: &CanonicalRequest, name: &str) -> Option<String> {
    form_urlencoded::parse(canon.query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub fn page(
    config: &Config,
    req: &Request<Incoming>,
    canon: &CanonicalRequest,
    _ctx: &RequestCtx,
) -> Result<Response<Body>, GatewayError> {
    let rd = safe_return(query_param(canon, "rd").as_deref());
    let action = format!("{}/login", config.auth_prefix);
    let mut r = html(StatusCode::OK, page_html(&action, &rd, "", None));
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
            })
        }
        Some(BodyKind::Form) => {
            if std::str::from_utf8(body).is_err() {
                return Err(GatewayError::MalformedBody("the form is not UTF-8"));
            }
            let (mut username, mut password, mut rd) = (None, None, None);
            for (k, v) in form_urlencoded::parse(body) {
                match k.as_ref() {
                    "username" => username = Some(v.into_owned()),
                    "password" => password = Some(v.into_owned()),
                    "rd" => rd = Some(v.into_owned()),
                    _ => {}
                }
            }
            match (username, password) {
                (Some(username), Some(password)) => Ok(Attempt {
                    username,
                    password,
                    rd: safe_return(rd.as_deref()),
                    kind: BodyKind::Form,
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
    let headers = req.headers().clone();
    let body = read_body(req, &config.limits).await?;
    let mut attempt = parse_attempt(&headers, &body)?;
    let canonical = canonical_username(&attempt.username);
    let ip = ctx.client_ip.to_string();

    if let Err(locked) = gw.throttle_check(&canonical, ctx.client_ip, ctx.now).await {
        audit::login_locked(&canonical, &ip, locked.retry_after);
        gw.metrics.login("locked");
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
            gw.metrics.login("failure");
            if let Some(locked) = gw
                .throttle_failure(&canonical, ctx.client_ip, ctx.now, config.throttle)
                .await
            {
                audit::login_locked(&canonical, &ip, locked.retry_after);
            }
            return Ok(failure(config, &attempt));
        }
    };
    gw.throttle_success(&canonical).await;
    let user_agent = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(256)
        .collect();
    let issued = sessions::login(
        &config.tokens,
        &gw.store,
        &user,
        LoginContext {
            client_ip: ip.clone(),
            user_agent,
        },
        ctx.now,
    )
    .await?;
    audit::login_succeeded(&canonical, issued.identity.sid(), &ip);
    gw.metrics.login("success");
    let mut r = match attempt.kind {
        BodyKind::Json => json(StatusCode::OK, &token_body(&issued)),
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

pub fn set_token_cookies(config: &Config, r: &mut Response<Body>, issued: &sessions::Issued) {
    r.headers_mut().append(
        SET_COOKIE,
        config
            .cookies
            .access(&issued.access_token, issued.access_max_age),
    );
    if let Some((refresh, age)) = &issued.refresh {
        r.headers_mut()
            .append(SET_COOKIE, config.cookies.refresh(refresh, *age));
    }
}

fn failure(config: &Config, attempt: &Attempt) -> Response<Body> {
    match attempt.kind {
        BodyKind::Json => json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"error": "invalid_credentials"}),
        ),
        BodyKind::Form => {
            let action = format!("{}/login", config.auth_prefix);
            html(
                StatusCode::UNAUTHORIZED,
                page_html(&action, &attempt.rd, &attempt.username, Some(FAILURE)),
            )
        }
    }
}
