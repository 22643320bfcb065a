//! Phase 6 (SPEC §7): send the request upstream and stream the answer back. Takes a
//! [`Permit`], so nothing reaches an upstream without passing authorization. Bodies stream
//! both ways; WebSocket upgrades are spliced after authentication on routes that allow them.

pub mod client;
pub mod headers;
pub mod response;

use http::header::{CONNECTION, HOST, LOCATION, UPGRADE};
use http::uri::Authority;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, Version};

use hyper_util::rt::TokioIo;

use crate::authenticate::sessions::sign_assertion;
use crate::authenticate::Identity;
use crate::authorize::Permit;
use crate::body::{stream, Body};
use crate::canonicalize::{named_host, CanonicalRequest};
use crate::config::Config;
use crate::error::GatewayError;
use crate::route::Route;
use client::{Outgoing, UpstreamClient};
use headers::{remove_hop_by_hop, rewrite_request, CookieRewrite, Origin};

/// The path sent upstream: the canonical path, minus the route prefix if `strip_prefix`,
/// under the upstream URL's own path.
pub fn upstream_path(route: &Route, canon: &CanonicalRequest) -> String {
    let path = canon.path();
    // One allocation, no formatting machinery: this runs on every proxied request.
    let (slash, rest) = if route.strip_prefix && route.prefix != "/" {
        match path.strip_prefix(route.prefix.as_str()) {
            Some("") => ("/", ""),
            Some(rest) if rest.starts_with('/') => ("", rest),
            Some(rest) => ("/", rest),
            None => ("", path),
        }
    } else {
        ("", path)
    };
    let base = route.upstream.base_path.as_str();
    let query = canon.query();
    let mut out = String::with_capacity(
        base.len() + slash.len() + rest.len() + query.map_or(0, |q| q.len() + 1),
    );
    out.push_str(base);
    out.push_str(slash);
    out.push_str(rest);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A `Location` that names the upstream itself (`http://127.0.0.1:3000/login`, what an app
/// writes when it sees its own address in `Host`, as with `preserve_host: false`), as the
/// client's path: the inverse of [`upstream_path`] — the upstream URL's path taken off, the
/// route prefix put back if `strip_prefix` took it — as a path-absolute reference, so the
/// browser stays on the gateway's scheme and host. nginx's `proxy_redirect default` does the
/// same. `None` (left as it is) for any other `Location`, and for one outside the upstream
/// URL's path.
pub fn client_location(route: &Route, location: &[u8]) -> Option<HeaderValue> {
    let text = std::str::from_utf8(location).ok()?;
    let scheme = route.upstream.scheme.as_str();
    let after_scheme = text
        .get(..scheme.len())
        .filter(|s| s.eq_ignore_ascii_case(scheme))
        .and_then(|_| text[scheme.len()..].strip_prefix("://"))?;
    let end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    let (authority, tail) = after_scheme.split_at(end);
    let authority: Authority = authority.parse().ok()?;
    let default_port = if scheme == "https" { 443 } else { 80 };
    let upstream = &route.upstream.authority;
    let same = !authority.as_str().contains('@')
        && authority.host().eq_ignore_ascii_case(upstream.host())
        && authority.port_u16().unwrap_or(default_port)
            == upstream.port_u16().unwrap_or(default_port);
    if !same {
        return None;
    }
    let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
    let (path, suffix) = tail.split_at(path_end);
    let path = if path.is_empty() { "/" } else { path };
    let base = route.upstream.base_path.as_str();
    let under_base = match path.strip_prefix(base) {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => return None,
    };
    let prefix = if route.strip_prefix && route.prefix != "/" {
        route.prefix.as_str()
    } else {
        ""
    };
    let client = format!("{prefix}{under_base}{suffix}");
    // `//host` or `/\host` would send the browser to another site.
    if client.starts_with("//") || client.starts_with("/\\") {
        return None;
    }
    HeaderValue::from_str(&client).ok()
}

/// Everything forwarding does to a request head before it goes upstream (SPEC §7): hop-by-hop
/// headers out, identity and forwarding headers rewritten, the assertion signed, `Host` set.
/// Returns the origin-form target to send and the `Upgrade` value the route lets through.
/// Shared by hyper's path and the express lane, so both rewrite alike.
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    config: &Config,
    route: &Route,
    identity: Option<&Identity>,
    cookies: CookieRewrite,
    canon: &CanonicalRequest,
    headers: &mut HeaderMap,
    uri_authority: Option<&Authority>,
    origin: &Origin<'_>,
) -> Result<(String, Option<HeaderValue>), GatewayError> {
    let upgrade = remove_hop_by_hop(headers)
        .filter(|_| route.websocket)
        .and_then(headers::websocket_upgrade);
    // Room for what forwarding adds, made once: a map hyper sized for the client's headers
    // would otherwise grow (reallocate and rehash) while the identity headers go in. Only
    // `MAX_SIZE` (32,768 headers, far more than hyper or the lane let a request carry)
    // could refuse it.
    let _ = headers.try_reserve(headers::ADDED_UPSTREAM);
    let original_host =
        named_host(uri_authority, headers.get(HOST)).and_then(|h| HeaderValue::from_bytes(h).ok());
    // Set before the rewrite adds its headers, so that it keeps its place among them.
    let host = if route.preserve_host {
        original_host.clone()
    } else {
        Some(route.upstream.host.clone())
    };
    if let Some(host) = host {
        headers.insert(HOST, host);
    }
    rewrite_request(
        headers,
        &config.identity,
        &config.cookies,
        cookies,
        &config.tokens.seal,
        origin,
        original_host,
        identity,
    )
    .map_err(|e| GatewayError::Internal(Box::new(e)))?;
    if let (Some(name), Some(id)) = (&config.identity.assertion, identity) {
        let jwt = sign_assertion(&config.tokens, id, &route.name, crate::clock::now())
            .map_err(|e| GatewayError::Internal(Box::new(e)))?;
        let value = HeaderValue::from_str(&jwt).map_err(|e| GatewayError::Internal(Box::new(e)))?;
        headers.insert(name, value);
    }
    Ok((upstream_path(route, canon), upgrade))
}

/// The request as it goes upstream, and the `Upgrade` value the route lets through. Not async:
/// its locals stay out of the request future.
fn prepared(
    config: &Config,
    route: &Route,
    identity: Option<&Identity>,
    cookies: CookieRewrite,
    canon: &CanonicalRequest,
    req: Request<Outgoing>,
    origin: &Origin<'_>,
) -> Result<(Request<Outgoing>, Option<HeaderValue>), GatewayError> {
    let (mut parts, body) = req.into_parts();
    let (path, upgrade) = prepare(
        config,
        route,
        identity,
        cookies,
        canon,
        &mut parts.headers,
        parts.uri.authority(),
        origin,
    )?;
    // Origin-form: the client connects to the route's authority itself.
    parts.uri = Uri::try_from(path).map_err(|e| GatewayError::Internal(Box::new(e)))?;
    parts.version = Version::HTTP_11;
    Ok((Request::from_parts(parts, body), upgrade))
}

/// Whether a spliced tunnel (a WebSocket) may stay open, asked every [`TUNNEL_CHECK`]: a tunnel
/// carries many messages on one authentication, so the session behind it is checked again
/// while it is open and the tunnel closed when it is revoked (logout, refresh-token reuse,
/// admin revocation, a user removed or disabled).
pub type TunnelWatch = Box<dyn Fn() -> bool + Send + Sync>;

/// How often an open tunnel's session is checked.
pub const TUNNEL_CHECK: std::time::Duration = std::time::Duration::from_millis(250);

#[allow(clippy::too_many_arguments)]
pub async fn forward(
    client: &UpstreamClient,
    config: &Config,
    route: &Route,
    _permit: Permit,
    identity: Option<&Identity>,
    cookies: CookieRewrite,
    canon: &CanonicalRequest,
    req: Request<Outgoing>,
    origin: &Origin<'_>,
    tunnel_watch: Option<TunnelWatch>,
) -> Result<Response<Body>, GatewayError> {
    let (mut req, upgrade) = prepared(config, route, identity, cookies, canon, req, origin)?;
    let client_upgrade = match &upgrade {
        Some(value) => {
            req.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("upgrade"));
            req.headers_mut().insert(UPGRADE, value.clone());
            Some(hyper::upgrade::on(&mut req))
        }
        None => None,
    };

    let mut resp =
        client
            .send(&route.upstream, req)
            .await
            .map_err(|e| match e.request_body_failed() {
                true => {
                    GatewayError::MalformedBody("the request body broke its framing or ended early")
                }
                false => e.into(),
            })?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // A 101 we did not ask for cannot be relayed: there is no splice behind it. Nor can a
        // switch to anything but the WebSocket we asked for (RFC 6455 §4.2.2): a tunnel to
        // another protocol (`h2c`) would carry requests past every rule.
        let Some(client_upgrade) = client_upgrade else {
            return Err(client::UpstreamError::UnexpectedUpgrade.into());
        };
        if resp
            .headers()
            .get(UPGRADE)
            .cloned()
            .and_then(headers::websocket_upgrade)
            .is_none()
        {
            return Err(client::UpstreamError::UnexpectedUpgrade.into());
        }
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            if let (Ok(a), Ok(b)) = tokio::join!(client_upgrade, upstream_upgrade) {
                let (mut a, mut b) = (TokioIo::new(a), TokioIo::new(b));
                let splice = tokio::io::copy_bidirectional(&mut a, &mut b);
                tokio::pin!(splice);
                let mut check = tokio::time::interval(TUNNEL_CHECK);
                loop {
                    tokio::select! {
                        _ = &mut splice => break,
                        _ = check.tick() => {
                            if tunnel_watch.as_ref().is_some_and(|alive| !alive()) {
                                tracing::info!("the session behind a tunnel was revoked; tunnel closed");
                                break;
                            }
                        }
                    }
                }
                // Dropping both ends closes the client's and the upstream's connections.
            }
        });
        let upgrade_value = resp.headers().get(UPGRADE).cloned();
        let (mut parts, _) = resp.into_parts();
        response_policy(config, route, parts.status, &mut parts.headers)?;
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(v) = upgrade_value {
            parts.headers.insert(UPGRADE, v);
        }
        return Ok(Response::from_parts(parts, crate::body::empty()));
    }
    let (mut parts, body) = resp.into_parts();
    // Refused (an unknown transfer coding): dropping the unread body closes the connection.
    response_policy(config, route, parts.status, &mut parts.headers)?;
    if let Some(location) = parts
        .headers
        .get(LOCATION)
        .and_then(|l| client_location(route, l.as_bytes()))
    {
        parts.headers.insert(LOCATION, location);
    }
    // Our answer speaks our HTTP version, not the upstream's: an HTTP/1.0 upstream's
    // close-delimited body reaches an HTTP/1.1 client chunked, on a connection kept alive.
    if parts.version == Version::HTTP_10 {
        parts.version = Version::HTTP_11;
    }
    Ok(Response::from_parts(parts, stream(WithoutTrailers(body))))
}

/// An upstream body relayed without its trailers. Over HTTP/1 hyper's server never sends a
/// response's trailers on, and the express lane writes none; over HTTP/2 they would go out
/// as a last `HEADERS` frame, past the response policy (a `Set-Cookie` or an identity header
/// name in a trailer). So no path relays them (SPEC §7 "One behaviour"): the body ends where
/// the trailers begin. RFC 9110 §6.5.1 lets a recipient discard trailers it does not know.
struct WithoutTrailers(hyper::body::Incoming);

impl http_body::Body for WithoutTrailers {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        crate::body::end_at_trailers(std::pin::Pin::new(&mut self.0).poll_frame(cx))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
    }
}

/// [`response::rewrite_response`], with an audit event for each gateway cookie it removed.
fn response_policy(
    config: &Config,
    route: &Route,
    status: StatusCode,
    headers: &mut HeaderMap,
) -> Result<(), GatewayError> {
    for cookie in response::rewrite_response(status, headers, &config.cookies)?.dropped_cookies {
        crate::telemetry::audit::upstream_cookie_dropped(&route.name, &cookie);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{client_location, upstream_path};
    use crate::canonicalize::canonicalize;
    use crate::route::{HostPattern, Route, Upstream};

    fn route(prefix: &str, strip_prefix: bool, base_path: &str) -> Route {
        Route {
            name: "r".into(),
            label: crate::telemetry::metrics::RouteName::new("r"),
            host: HostPattern::Any,
            prefix: prefix.into(),
            upstream: Upstream {
                scheme: http::uri::Scheme::HTTP,
                authority: "127.0.0.1:1".parse().unwrap(),
                host: http::HeaderValue::from_static("127.0.0.1:1"),
                base_path: base_path.into(),
                tls: None,
            },
            strip_prefix,
            preserve_host: true,
            public: vec![],
            allow_roles: vec![],
            rules: vec![],
            websocket: false,
        }
    }

    fn path(route: &Route, path: &str, query: Option<&str>) -> String {
        upstream_path(route, &canonicalize(Some("h"), path, query).unwrap())
    }

    #[test]
    fn upstream_path_keeps_or_strips_the_prefix_under_the_base_path() {
        let keep = route("/app", false, "");
        assert_eq!(path(&keep, "/app/x", None), "/app/x");
        assert_eq!(path(&keep, "/app/x", Some("a=1&b")), "/app/x?a=1&b");
        let strip = route("/app", true, "");
        assert_eq!(path(&strip, "/app", None), "/");
        assert_eq!(path(&strip, "/app/", None), "/");
        assert_eq!(path(&strip, "/app/x/y", Some("q")), "/x/y?q");
        let based = route("/app", true, "/legacy");
        assert_eq!(path(&based, "/app", None), "/legacy/");
        assert_eq!(path(&based, "/app/x", Some("")), "/legacy/x?");
        let root = route("/", true, "/base");
        assert_eq!(path(&root, "/x", None), "/base/x");
        // The canonical path is what goes upstream, never the raw one.
        assert_eq!(path(&keep, "/app/./a/../b//c", None), "/app/b/c");
    }

    #[test]
    fn a_location_naming_the_upstream_becomes_the_client_s_path() {
        let at = |route: &Route, l: &str| {
            client_location(route, l.as_bytes()).map(|v| v.to_str().unwrap().to_string())
        };
        let keep = route("/app", false, "");
        assert_eq!(
            at(&keep, "http://127.0.0.1:1/app/x?a=1#f").as_deref(),
            Some("/app/x?a=1#f")
        );
        assert_eq!(at(&keep, "HTTP://127.0.0.1:1").as_deref(), Some("/"));
        let strip = route("/app", true, "");
        assert_eq!(
            at(&strip, "http://127.0.0.1:1/login?rd=/").as_deref(),
            Some("/app/login?rd=/")
        );
        assert_eq!(at(&strip, "http://127.0.0.1:1/").as_deref(), Some("/app/"));
        let based = route("/app", true, "/legacy");
        assert_eq!(
            at(&based, "http://127.0.0.1:1/legacy/x").as_deref(),
            Some("/app/x")
        );
        assert_eq!(
            at(&based, "http://127.0.0.1:1/legacy").as_deref(),
            Some("/app/")
        );
        // Outside the upstream URL's path, another host or port, another scheme, userinfo,
        // relative references: left as they are.
        for other in [
            "http://127.0.0.1:1/legacy-old/x",
            "http://127.0.0.1:1/x",
            "http://127.0.0.1:2/legacy/x",
            "http://127.0.0.10:1/legacy/x",
            "https://127.0.0.1:1/legacy/x",
            "http://evil@127.0.0.1:1/legacy/x",
            "/legacy/x",
            "//127.0.0.1:1/legacy/x",
            "http:/127.0.0.1:1/legacy/x",
        ] {
            assert_eq!(at(&based, other), None, "{other}");
        }
        // Never a reference to another site.
        for other in [
            "http://127.0.0.1:1//evil.example/x",
            "http://127.0.0.1:1/\\evil.example",
        ] {
            assert_eq!(at(&keep, other), None, "{other}");
        }
        let root = route("/", true, "/legacy");
        assert_eq!(at(&root, "http://127.0.0.1:1/legacy//evil.example/x"), None);
        assert_eq!(
            at(&based, "http://127.0.0.1:1/legacy//evil.example/x").as_deref(),
            Some("/app//evil.example/x"),
            "a path on this site"
        );
        let mut default_port = route("/", false, "");
        default_port.upstream.authority = "app.internal".parse().unwrap();
        assert_eq!(
            at(&default_port, "http://APP.internal:80/x").as_deref(),
            Some("/x")
        );
    }
}
