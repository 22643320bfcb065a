//! The gateway's own endpoints under `auth_prefix` (SPEC §6), one file each. Shared here:
//! dispatch, the cross-site refusal for state-changing endpoints, bounded body reading and
//! JSON responses.

mod forward_auth;
mod jwks;
mod login;
mod logout;
pub mod oidc;
pub mod redirect;
mod refresh;
mod userinfo;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::body::{full, Body};
use crate::canonicalize::CanonicalRequest;
use crate::config::{Config, Limits};
use crate::error::GatewayError;
use crate::runtime::{Gateway, RequestCtx};

pub async fn serve(
    gw: &Gateway,
    config: &Config,
    req: Request<Incoming>,
    canon: &CanonicalRequest,
    ctx: &RequestCtx,
) -> Result<Response<Body>, GatewayError> {
    let sub = &canon.path()[config.auth_prefix.len()..];
    let method = req.method().clone();
    if let Some((id, step)) = sub
        .strip_prefix("/oidc/")
        .and_then(|rest| rest.split_once('/'))
    {
        return match (step, method) {
            ("start", Method::GET | Method::HEAD) => {
                oidc::start(gw, config, &req, canon, ctx, id).await
            }
            ("callback", Method::GET) => oidc::callback(gw, config, &req, canon, ctx, id).await,
            // From the provider's servers, not a browser: no cross-site check.
            ("backchannel-logout", Method::POST) => {
                oidc::backchannel_logout(gw, config, req, ctx, id).await
            }
            ("start" | "callback" | "backchannel-logout", _) => Err(GatewayError::MethodNotAllowed),
            _ => Err(GatewayError::NotFound),
        };
    }
    match (sub, method) {
        ("/login", Method::GET | Method::HEAD) => login::page(config, &req, canon, ctx),
        ("/login", Method::POST) => login::submit(gw, config, req, ctx).await,
        ("/refresh", Method::POST) => refresh::refresh(gw, config, req, ctx).await,
        ("/logout", Method::GET | Method::POST) => {
            logout::logout(gw, config, req, canon, ctx).await
        }
        ("/userinfo", Method::GET | Method::HEAD) => {
            userinfo::userinfo(gw, config, &req, canon, ctx).await
        }
        ("/jwks.json", Method::GET | Method::HEAD) => jwks::jwks(config),
        ("/auth", Method::GET | Method::HEAD) => {
            forward_auth::forward_auth(gw, config, &req, ctx).await
        }
        ("/healthz", Method::GET | Method::HEAD) => Ok(text(StatusCode::OK, "ok\n")),
        (crate::ui::LOGO_PATH, Method::GET | Method::HEAD) => logo(config),
        (
            "/login"
            | "/refresh"
            | "/logout"
            | "/userinfo"
            | "/jwks.json"
            | "/healthz"
            | "/auth"
            | crate::ui::LOGO_PATH,
            _,
        ) => Err(GatewayError::MethodNotAllowed),
        _ => Err(GatewayError::NotFound),
    }
}

/// A query parameter of the request, decoded.
pub fn query_param(canon: &CanonicalRequest, name: &str) -> Option<String> {
    form_urlencoded::parse(canon.query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Who is logging in from where, for the new session's record: the client IP and the first
/// 256 characters of `User-Agent`.
pub fn login_context(
    headers: &HeaderMap,
    ctx: &RequestCtx,
) -> crate::authenticate::sessions::LoginContext {
    crate::authenticate::sessions::LoginContext {
        client_ip: ctx.client_ip.to_string(),
        user_agent: headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .take(256)
            .collect(),
    }
}

/// `ui.logo`, as the config loaded it (404 when there is none).
fn logo(config: &Config) -> Result<Response<Body>, GatewayError> {
    let (bytes, kind) = config.ui.logo.clone().ok_or(GatewayError::NotFound)?;
    let mut r = Response::new(full(bytes));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    // An SVG is a document: it may show itself, and nothing else.
    r.headers_mut().insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    r.headers_mut().insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(r)
}

pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(value.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Tokens travel in these bodies: no browser may read one as anything but JSON.
    r.headers_mut().insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// The origin this request was addressed to: `public_url`, or the scheme and host the browser
/// used (a trusted proxy's `X-Forwarded-Proto/-Host`, else the connection's and `Host`).
fn own_origin(config: &Config, headers: &HeaderMap, ctx: &RequestCtx) -> Option<String> {
    if let Some(o) = &config.public_origin {
        return Some(same_origin_form(o));
    }
    // From a trusted proxy (which terminates TLS, and may rewrite `Host` as nginx does by
    // default), the origin the browser saw is in `X-Forwarded-Proto/-Host`: its first value,
    // the one the browser's hop wrote.
    let forwarded = |name: &str| {
        ctx.peer_trusted
            .then(|| {
                headers
                    .get(name)?
                    .to_str()
                    .ok()?
                    .split(',')
                    .next()
                    .map(str::trim)
            })
            .flatten()
            .filter(|v| !v.is_empty())
    };
    let proto = forwarded("x-forwarded-proto")
        .filter(|p| p.eq_ignore_ascii_case("https") || p.eq_ignore_ascii_case("http"))
        .unwrap_or(ctx.proto);
    let host = match forwarded("x-forwarded-host") {
        Some(host) => host,
        None => headers.get(HOST)?.to_str().ok()?,
    };
    Some(same_origin_form(&format!("{proto}://{host}")))
}

/// An origin (`scheme://host[:port]`) in the form two of them are compared in: lowercase, no
/// trailing `/`, no default port (`https://a:443` is `https://a`, as a browser writes it).
fn same_origin_form(origin: &str) -> String {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    for (scheme, port) in [("https://", ":443"), ("http://", ":80")] {
        if origin.starts_with(scheme) {
            if let Some(bare) = origin.strip_suffix(port) {
                return bare.to_string();
            }
        }
    }
    origin
}

/// CSRF defence for state-changing endpoints (SPEC §6): refuse when the browser says the
/// request is cross-site, or when `Origin` is present and not ours (including `null`).
pub fn refuse_cross_site(
    config: &Config,
    headers: &HeaderMap,
    ctx: &RequestCtx,
) -> Result<(), GatewayError> {
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        return Err(GatewayError::CrossSite);
    }
    if let Some(origin) = headers.get(http::header::ORIGIN) {
        let ours = own_origin(config, headers, ctx);
        let theirs = origin.to_str().ok().map(same_origin_form);
        if ours.is_none() || theirs != ours {
            return Err(GatewayError::CrossSite);
        }
    }
    Ok(())
}

/// Reads a small request body (login, refresh): more than `max_login_body_bytes` is 413, and
/// a body that has not fully arrived within `header_read_timeout` is 408, so a client that
/// declares a length and stalls cannot hold the connection (SPEC §10: never a hang).
pub async fn read_body(req: Request<Incoming>, limits: &Limits) -> Result<Bytes, GatewayError> {
    let limit = limits.max_login_body_bytes;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(GatewayError::PayloadTooLarge);
    }
    let read = Limited::new(req.into_body(), limit).collect();
    match tokio::time::timeout(limits.header_read_timeout, read).await {
        Err(_) => Err(GatewayError::BodyTimeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(GatewayError::PayloadTooLarge)
        }
        Ok(Err(_)) => Err(GatewayError::MalformedBody("the body could not be read")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Form,
}

pub fn body_kind(headers: &HeaderMap) -> Option<BodyKind> {
    let ct = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let mime = ct.split(';').next()?.trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Some(BodyKind::Json),
        "application/x-www-form-urlencoded" => Some(BodyKind::Form),
        _ => None,
    }
}

/// Whether the client wants JSON back (an API client) rather than a page.
pub fn wants_json(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    body_kind(headers) == Some(BodyKind::Json)
        || headers.contains_key(http::header::AUTHORIZATION)
        || (accept.contains("application/json") && !accept.contains("text/html"))
}
