//! `GET /auth` (SPEC §6): forward-auth for nginx `auth_request`, Traefik ForwardAuth and
//! Caddy `forward_auth`. Runs phases 2–5 (canonicalize, route, authenticate, authorize) on the
//! *original* request described by `X-Forwarded-Method/-Host/-Uri` or `X-Original-URL`, and
//! answers 200 with identity headers (plus refreshed cookies), 401 with `Location`, or 403.
//! Those headers are believed only from `trusted_proxies`; from anyone else they are a spoofing
//! attempt and get 403, failing closed rather than evaluating some other URI. Even from a
//! trusted proxy, a spelling it does not set may be the client's own (proxies pass the
//! client's headers along), so every spelling present must agree and none may come twice.

use http::header::{HOST, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::text;
use crate::body::Body;
use crate::canonicalize::{canonical_host, canonicalize, CanonicalError};
use crate::config::Config;
use crate::decision::{decide, login_url, Admitted, Decision};
use crate::error::GatewayError;
use crate::runtime::{Gateway, RequestCtx};

pub static ACCESS_COOKIE_HEADER: http::HeaderName =
    http::HeaderName::from_static("x-gatehouse-access-cookie");
pub static REFRESH_COOKIE_HEADER: http::HeaderName =
    http::HeaderName::from_static("x-gatehouse-refresh-cookie");
/// The `Cookie` value the proxy should send to the app: the client's cookies without the
/// gateway's (always present on 200, empty when nothing is left), so the access and refresh
/// tokens never reach the app through a forward-auth proxy either.
pub static UPSTREAM_COOKIE_HEADER: http::HeaderName =
    http::HeaderName::from_static("x-gatehouse-upstream-cookie");

const FORWARD_HEADERS: [&str; 5] = [
    "x-forwarded-method",
    "x-forwarded-uri",
    "x-original-url",
    "x-original-method",
    "x-original-uri",
];

/// One forward-auth header: absent, or its one value. The same header twice (a client's copy
/// next to the one its proxy added) is refused: which copy the proxy wrote cannot be told.
fn get<'a>(h: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, GatewayError> {
    let mut values = h.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(GatewayError::MalformedBody(
            "a forward-auth header was sent twice",
        ));
    }
    Ok(first
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty()))
}

/// The one value every present spelling gives (`same` compares two), or an error when two
/// spellings disagree. A proxy sets the spelling it uses and passes the client's other
/// headers along (nginx's `auth_request` does, Traefik's ForwardAuth by default), so a
/// spelling the proxy does not set may be the client's: each must describe the same request,
/// or the request is refused instead of deciding on whichever was read first.
fn agreed<'a>(
    values: impl IntoIterator<Item = Option<&'a str>>,
    same: impl Fn(&str, &str) -> bool,
) -> Result<Option<&'a str>, GatewayError> {
    let mut found: Option<&'a str> = None;
    for v in values.into_iter().flatten() {
        match found {
            Some(f) if !same(f, v) => {
                return Err(GatewayError::MalformedBody(
                    "the forward-auth headers describe different requests",
                ))
            }
            _ => found = Some(v),
        }
    }
    Ok(found)
}

/// Two spellings of a host name the same route host: compared as routing compares them
/// (case, port and a trailing dot aside).
fn same_host(a: &str, b: &str) -> bool {
    match (canonical_host(a), canonical_host(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a.eq_ignore_ascii_case(b),
    }
}

/// The original request: method, host, path and query.
struct Original {
    method: Method,
    host: Option<String>,
    path: String,
    query: Option<String>,
}

/// The original request from `X-Forwarded-Method/-Host/-Uri`, `X-Original-Method/-URI` and
/// `X-Original-URL`, whichever of them are present — and all of them describing one request.
fn original(headers: &HeaderMap) -> Result<Original, GatewayError> {
    let method = agreed(
        [
            get(headers, "x-forwarded-method")?,
            get(headers, "x-original-method")?,
        ],
        |a, b| a == b,
    )?
    .unwrap_or("GET");
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| GatewayError::MalformedBody("X-Forwarded-Method is not a method"))?;
    let url = match get(headers, "x-original-url")? {
        // `http::Uri` would cut a fragment off without a trace; refuse it like a raw `#`.
        Some(url) if url.contains('#') => return Err(CanonicalError::Fragment.into()),
        Some(url) => Some(
            url.parse::<http::Uri>()
                .map_err(|_| GatewayError::MalformedBody("X-Original-URL is not a URL"))?,
        ),
        None => None,
    };
    let url_target = url
        .as_ref()
        .map(|u| u.path_and_query().map_or("/", |pq| pq.as_str()));
    let url_host = url.as_ref().and_then(|u| u.authority()).map(|a| a.as_str());
    let target = agreed(
        [
            get(headers, "x-forwarded-uri")?,
            get(headers, "x-original-uri")?,
            url_target,
        ],
        |a, b| a == b,
    )?
    .ok_or(GatewayError::MalformedBody(
        "forward-auth needs X-Forwarded-Uri or X-Original-URL",
    ))?;
    let host = agreed([get(headers, "x-forwarded-host")?, url_host], same_host)?;
    let host = match host {
        Some(h) => Some(h),
        None => get(headers, HOST.as_str())?,
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.to_string(), None),
    };
    Ok(Original {
        method,
        host: host.map(str::to_string),
        path,
        query,
    })
}

pub async fn forward_auth(
    gw: &Gateway,
    config: &Config,
    req: &Request<Incoming>,
    ctx: &RequestCtx,
) -> Result<Response<Body>, GatewayError> {
    let headers = req.headers();
    if !ctx.peer_trusted {
        if FORWARD_HEADERS.iter().any(|h| headers.contains_key(*h))
            || headers.contains_key("x-forwarded-host")
        {
            return Err(GatewayError::UntrustedForwardAuth);
        }
        return Err(GatewayError::MalformedBody(
            "forward-auth is only for trusted proxies",
        ));
    }
    let orig = original(headers)?;
    let canon = canonicalize(orig.host.as_deref(), &orig.path, orig.query.as_deref())?;
    // Phases 3–5: the decision proxying takes, for the original request. Forward-auth always
    // answers 401 with `Location` when not signed in: the proxy decides whether to redirect
    // (nginx `error_page 401`, Traefik and Caddy pass it through).
    let as_forward_auth = |e: GatewayError| match e {
        GatewayError::Unauthenticated {
            failure,
            clear_cookies,
            ..
        } => GatewayError::ForwardAuthUnauthenticated {
            failure,
            login: login_url(config, &canon.path_and_query()),
            clear_cookies,
        },
        other => other,
    };
    let admitted = match decide(config, &gw.store, &canon, &orig.method, headers, ctx) {
        Decision::Forward(admitted) => admitted,
        Decision::Refuse(e) => return Err(as_forward_auth(e)),
        Decision::Refresh(pending) => pending
            .refresh(gw, config, ctx.now_ms)
            .await
            .map_err(as_forward_auth)?,
    };
    let Admitted {
        identity,
        set_cookies,
        ..
    } = admitted;
    let mut r = text(StatusCode::OK, "ok\n");
    // The answer depends on who asks, under one URL: a cache between the proxy and the gateway
    // (nginx's `proxy_cache` with `proxy_cache_valid 200`) must never keep it. Refusals are
    // `no-store` like every error answer.
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    let app_cookies = crate::forward::headers::cookies_without_ours(headers, &config.cookies);
    r.headers_mut().insert(
        &UPSTREAM_COOKIE_HEADER,
        HeaderValue::from_str(&app_cookies).map_err(|e| GatewayError::Internal(Box::new(e)))?,
    );
    if let Some(id) = &identity {
        // The same header values the proxy path sets (and an empty email for Caddy).
        crate::forward::headers::set_identity(r.headers_mut(), &config.identity, id, true)
            .map_err(|e| GatewayError::Internal(Box::new(e)))?;
    }
    // Likewise the per-cookie headers: empty unless a refresh issued a cookie below.
    r.headers_mut()
        .insert(&ACCESS_COOKIE_HEADER, HeaderValue::from_static(""));
    r.headers_mut()
        .insert(&REFRESH_COOKIE_HEADER, HeaderValue::from_static(""));
    // Each cookie also travels in its own header: nginx's `$upstream_http_set_cookie` holds
    // only the first `Set-Cookie`, and losing the rotated refresh cookie would log the user out
    // at the next refresh (reuse detection).
    for c in set_cookies {
        let name = if c
            .as_bytes()
            .starts_with(config.cookies.refresh_name.as_bytes())
        {
            &REFRESH_COOKIE_HEADER
        } else {
            &ACCESS_COOKIE_HEADER
        };
        r.headers_mut().insert(name, c.clone());
        r.headers_mut().append(SET_COOKIE, c);
    }
    Ok(r)
}
