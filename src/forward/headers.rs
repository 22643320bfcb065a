//! Request header rewriting before forwarding (SPEC §7), in this order, so a client can
//! neither forge identity nor make us drop it:
//! 1. hop-by-hop headers, and every header named in `Connection`, are removed (RFC 9110
//!    §7.6.1) — otherwise `Connection: close, X-Forwarded-User` would make a compliant hop
//!    drop the identity we add;
//! 2. every spelling of an identity header (case-insensitive, `_` = `-`) is removed — some
//!    servers (CGI, PHP, Django) fold `X_Forwarded_User` into the same variable;
//! 3. the gateway's cookies and bearer token are removed;
//! 4. `X-Forwarded-For/-Proto/-Host` are set, keeping incoming values only from
//!    `trusted_proxies`; `X-Request-Id` is kept or generated;
//! 5. identity headers are set from the verified [`Identity`].

use std::net::IpAddr;

use http::header::{AUTHORIZATION, CONNECTION, COOKIE, HOST, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::authenticate::cookies::CookiePolicy;
use crate::authenticate::credentials::{bearer, cookie_segments, scan_cookies, CookieScan};
use crate::authenticate::Identity;
use crate::canonicalize::trim;
use crate::config::{loose_header_eq, IdentityHeaders};

/// RFC 9110 §7.6.1 and the de-facto ones (`Keep-Alive`, `Proxy-Connection`).
static HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    UPGRADE,
];

fn is_hop_by_hop(name: &HeaderName) -> bool {
    // A string match (length first) rather than nine `HeaderName` comparisons: it runs for
    // every header of every request and response.
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Trust-bearing headers that are rebuilt by us; all their spellings are dropped first.
const REBUILT: [&str; 5] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "forwarded",
];

/// Removes hop-by-hop headers and those named in `Connection`. Returns the `Upgrade`
/// value if the request asked for one.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) -> Option<HeaderValue> {
    // Most requests and responses carry none: one pass over the names, no lookups.
    if !headers.keys().any(is_hop_by_hop) {
        return None;
    }
    let upgrade = headers.get(UPGRADE).cloned();
    let asks_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if asks_upgrade {
        upgrade
    } else {
        None
    }
}

/// Where the request came from, as far as we can believe it.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    pub client_ip: IpAddr,
    /// The TCP peer: appended to a trusted `X-Forwarded-For` chain.
    pub peer_ip: IpAddr,
    /// The TCP peer is in `trusted_proxies`: its forwarding headers are believed.
    pub peer_trusted: bool,
    pub proto: &'a str,
    pub request_id: &'a str,
}

fn is_our_bearer(headers: &HeaderMap) -> bool {
    // Any JWT claiming to be an access token is ours to consume, valid or not.
    bearer(headers).is_some_and(|token| {
        jsonwebtoken::decode_header(token).is_ok_and(|h| {
            h.typ.as_deref().is_some_and(|t| {
                t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
            })
        })
    })
}

/// Rewrites the headers of a request about to go upstream.
pub fn rewrite_request(
    headers: &mut HeaderMap,
    identity_names: &IdentityHeaders,
    cookies: &CookiePolicy,
    origin: &Origin<'_>,
    identity: Option<&Identity>,
) -> Result<(), http::header::InvalidHeaderValue> {
    // 1. hop-by-hop (done by the caller, which needs the Upgrade value).
    // 2. identity spellings and trust-bearing forwarding headers.
    let trusted_forwarding: Vec<(HeaderName, HeaderValue)> = if origin.peer_trusted {
        [&X_FORWARDED_FOR, &X_FORWARDED_PROTO, &X_FORWARDED_HOST]
            .into_iter()
            .filter_map(|n| headers.get(n).map(|v| (n.clone(), v.clone())))
            .collect()
    } else {
        Vec::new()
    };
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            identity_names.is_spelling_of_ours(name.as_str())
                || REBUILT.iter().any(|r| loose_header_eq(name.as_str(), r))
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
    // 3. our credentials.
    strip_our_cookies(headers, cookies)?;
    if is_our_bearer(headers) {
        headers.remove(AUTHORIZATION);
    }
    // 4. forwarding headers.
    let mut xff = None;
    let mut proto = None;
    let mut fhost = None;
    for (name, value) in trusted_forwarding {
        match name.as_str() {
            "x-forwarded-for" => {
                xff = value
                    .to_str()
                    .ok()
                    .map(|v| format!("{v}, {}", origin.peer_ip))
            }
            "x-forwarded-proto" => proto = Some(value),
            _ => fhost = Some(value),
        }
    }
    let xff = match xff {
        Some(chain) => HeaderValue::from_str(&chain)?,
        None => ip_header_value(origin.client_ip),
    };
    headers.insert(&X_FORWARDED_FOR, xff);
    headers.insert(
        &X_FORWARDED_PROTO,
        proto.unwrap_or_else(|| {
            HeaderValue::from_static(if origin.proto == "https" {
                "https"
            } else {
                "http"
            })
        }),
    );
    if let Some(host) = fhost.or_else(|| headers.get(HOST).cloned()) {
        headers.insert(&X_FORWARDED_HOST, host);
    }
    headers.insert(&X_REQUEST_ID, HeaderValue::from_str(origin.request_id)?);
    // 5. identity.
    if let Some(id) = identity {
        let values = id.header_values()?;
        headers.insert(&identity_names.user, values.user.clone());
        if let Some(email) = &values.email {
            headers.insert(&identity_names.email, email.clone());
        }
        headers.insert(&identity_names.roles, values.roles.clone());
    }
    Ok(())
}

fn cookie_name(segment: &str) -> &str {
    match memchr::memchr(b'=', segment.as_bytes()) {
        Some(at) => trim(&segment[..at]),
        None => trim(segment),
    }
}

/// What forwarding does with a request's `Cookie` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieRewrite {
    /// One readable header with none of ours: forwarded as the client sent it.
    Keep,
    /// Nothing but ours (or unreadable headers): no `Cookie` goes upstream.
    Drop,
    /// One header with the app's own segments ([`kept_cookies`]), verbatim, joined with `; `.
    Rebuild,
}

/// Decides [`CookieRewrite`] from what [`scan_cookies`] read.
pub fn cookie_rewrite(scan: &CookieScan<'_>) -> CookieRewrite {
    if scan.headers == 0 || (scan.headers == 1 && !scan.ours && !scan.unreadable) {
        CookieRewrite::Keep
    } else if !scan.theirs {
        CookieRewrite::Drop
    } else {
        CookieRewrite::Rebuild
    }
}

/// Removes the gateway's cookies from `Cookie`. The app's own segments are kept verbatim
/// (byte for byte); the header is only rebuilt when one of ours is in it.
fn strip_our_cookies(
    headers: &mut HeaderMap,
    cookies: &CookiePolicy,
) -> Result<(), http::header::InvalidHeaderValue> {
    let values = || headers.get_all(COOKIE).iter().map(HeaderValue::as_bytes);
    match cookie_rewrite(&scan_cookies(values(), cookies)) {
        CookieRewrite::Keep => {}
        CookieRewrite::Drop => {
            headers.remove(COOKIE);
        }
        CookieRewrite::Rebuild => {
            let kept = cookies_without_ours(headers, cookies);
            headers.remove(COOKIE);
            if !kept.is_empty() {
                headers.insert(COOKIE, HeaderValue::from_str(&kept)?);
            }
        }
    }
    Ok(())
}

/// The request's `Cookie` headers as one value, without the gateway's cookies: the app's own
/// segments verbatim, joined with `; ` (empty if nothing is left). A header that is not UTF-8
/// is dropped whole.
pub fn cookies_without_ours(headers: &HeaderMap, cookies: &CookiePolicy) -> String {
    let mut kept = String::new();
    let values = headers.get_all(COOKIE).iter().map(HeaderValue::as_bytes);
    for seg in kept_cookies(values, cookies) {
        if !kept.is_empty() {
            kept.push_str("; ");
        }
        kept.push_str(seg);
    }
    kept
}

/// The app's own cookie segments among `values`, trimmed, in order: no empty ones, none of
/// the gateway's, none from a header that is not UTF-8.
fn kept_cookies<'a>(
    values: impl Iterator<Item = &'a [u8]>,
    cookies: &'a CookiePolicy,
) -> impl Iterator<Item = &'a str> {
    values
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(cookie_segments)
        .map(trim)
        .filter(|seg| !seg.is_empty())
        .filter(|seg| !cookies.is_ours(cookie_name(seg)))
}

/// A byte `HeaderValue::from_bytes` (and `from_str`) accepts. Branch-free so that a check
/// over a whole value vectorizes.
#[inline(always)]
fn header_value_byte(b: u8) -> bool {
    (b >= 0x20) & (b != 0x7f) | (b == b'\t')
}

fn header_value_ok(value: &[u8]) -> bool {
    value.iter().fold(true, |ok, &b| ok & header_value_byte(b))
}

/// `X-Forwarded-For` for one address; IPv4 without the formatting machinery.
fn ip_header_value(ip: IpAddr) -> HeaderValue {
    let mut buf = Vec::with_capacity(15);
    write_ip(&mut buf, ip);
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(_) => out.extend_from_slice(ip.to_string().as_bytes()),
    }
}

/// A client-supplied request id is kept only if it is short and plain.
pub fn incoming_request_id(headers: &HeaderMap) -> Option<String> {
    request_id_of(headers.get(&X_REQUEST_ID)?.as_bytes())
}

/// A client's `X-Request-Id` value, if it is one we keep: 1–128 of `A-Za-z0-9-_.:`.
pub fn request_id_of(v: &[u8]) -> Option<String> {
    (!v.is_empty()
        && v.len() <= 128
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b)))
    .then(|| String::from_utf8_lossy(v).into_owned())
}

/// A hop-by-hop name in any case (the express lane reads names as the client spelled them).
fn is_hop_by_hop_name(name: &str) -> bool {
    // Lengths first: most names are ruled out without comparing a byte.
    matches!(name.len(), 2 | 7 | 10 | 16..=19)
        && HOP_BY_HOP
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h.as_str()))
}

/// A header as a client or upstream spelled its name: lowercased, as `HeaderName` would.
fn write_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend(name.bytes().map(|b| b.to_ascii_lowercase()));
    write_rest(out, value);
}

/// A header whose name is already lowercase (ours, or a `HeaderName`'s).
fn write_known(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    write_rest(out, value);
}

fn write_rest(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// [`rewrite_request`] for the express lane: from a parsed head's borrowed headers straight
/// into the upstream head, names lowercased as `HeaderMap` would, values verbatim, then
/// `Host` (the route's authority when `upstream_host` is given, else the client's). Only for
/// what the lane takes — an untrusted peer, exactly one `Host`, no hop-by-hop header, no
/// `Authorization` unless `our_bearer`; on anything else it returns `None` and the request
/// goes to hyper's path. `cookies_seen` is what [`scan_cookies`] read from these headers'
/// `Cookie` values (the lane scanned them once for the credentials). `our_bearer` says the
/// request's one `Authorization` header is a bearer access token of ours (`typ: at+jwt`;
/// the lane knows because it verified): it is dropped, as `rewrite_request` drops it. The
/// tests below check it writes what `rewrite_request` leaves in a `HeaderMap`.
#[allow(clippy::too_many_arguments)]
pub fn write_request_headers(
    out: &mut Vec<u8>,
    headers: &[httparse::Header<'_>],
    identity_names: &IdentityHeaders,
    cookies: &CookiePolicy,
    origin: &Origin<'_>,
    identity: &Identity,
    upstream_host: Option<&str>,
    cookies_seen: &CookieScan<'_>,
    our_bearer: bool,
) -> Option<()> {
    if origin.peer_trusted {
        return None;
    }
    let mut host = None;
    for h in headers {
        let name = h.name;
        if is_hop_by_hop_name(name) {
            return None;
        }
        if name.eq_ignore_ascii_case("authorization") {
            if our_bearer {
                continue;
            }
            return None;
        }
        if identity_names.is_spelling_of_ours(name)
            || REBUILT.iter().any(|r| loose_header_eq(name, r))
            || name.eq_ignore_ascii_case("x-request-id")
            || name.eq_ignore_ascii_case("cookie")
        {
            continue;
        }
        if name.eq_ignore_ascii_case("host") {
            if host.replace(h.value).is_some() {
                return None;
            }
            if upstream_host.is_some() {
                continue;
            }
        }
        write_header(out, name, h.value);
    }
    let host = host?;
    let cookie_values = || {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
            .map(|h| h.value)
    };
    match cookie_rewrite(cookies_seen) {
        CookieRewrite::Keep => {
            for value in cookie_values() {
                write_known(out, "cookie", value);
            }
        }
        CookieRewrite::Drop => {}
        CookieRewrite::Rebuild => {
            let start = out.len();
            out.extend_from_slice(b"cookie: ");
            let mut first = true;
            for seg in kept_cookies(cookie_values(), cookies) {
                // What `HeaderValue::from_str` accepts; hyper's path fails the request otherwise.
                if !header_value_ok(seg.as_bytes()) {
                    return None;
                }
                if !first {
                    out.extend_from_slice(b"; ");
                }
                first = false;
                out.extend_from_slice(seg.as_bytes());
            }
            if first {
                out.truncate(start);
            } else {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    write_ip(out, origin.client_ip);
    out.extend_from_slice(b"\r\n");
    let proto: &[u8] = if origin.proto == "https" {
        b"https"
    } else {
        b"http"
    };
    write_known(out, "x-forwarded-proto", proto);
    write_known(out, "x-forwarded-host", host);
    if !header_value_ok(origin.request_id.as_bytes()) {
        return None;
    }
    write_known(out, "x-request-id", origin.request_id.as_bytes());
    let values = identity.header_values().ok()?;
    write_known(out, identity_names.user.as_str(), values.user.as_bytes());
    if let Some(email) = &values.email {
        write_known(out, identity_names.email.as_str(), email.as_bytes());
    }
    write_known(out, identity_names.roles.as_str(), values.roles.as_bytes());
    if let Some(authority) = upstream_host {
        write_known(out, "host", authority.as_bytes());
    }
    Some(())
}

/// What [`write_response_headers`] saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHeaders {
    pub has_date: bool,
}

/// [`remove_hop_by_hop`] for the express lane, on an upstream response's borrowed headers:
/// writes the end-to-end ones (names lowercased, values verbatim), dropping hop-by-hop
/// headers, those named in `Connection`, `X-Request-Id` (the gateway sets its own) and, with
/// `drop_length`, `Content-Length`.
pub fn write_response_headers(
    out: &mut Vec<u8>,
    headers: &[httparse::Header<'_>],
    drop_length: bool,
) -> ResponseHeaders {
    let named = |name: &str| {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(name))
    };
    let any_connection = headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("connection"));
    let mut seen = ResponseHeaders::default();
    for h in headers {
        let name = h.name;
        if is_hop_by_hop_name(name)
            || name.eq_ignore_ascii_case("x-request-id")
            || (drop_length && name.eq_ignore_ascii_case("content-length"))
            || (any_connection && named(name))
        {
            continue;
        }
        seen.has_date |= name.eq_ignore_ascii_case("date");
        write_header(out, name, h.value);
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    mod lane_rewrite {
        //! `write_request_headers` (the express lane's rewrite on borrowed headers) against
        //! `rewrite_request` (hyper's path) on generated header lists: wherever the lane
        //! writes a head, it holds what hyper's path leaves in its `HeaderMap`.
        use super::*;
        use crate::authenticate::tokens::AccessClaims;
        use proptest::prelude::*;

        /// Names a lane head may carry (every Host spelling is added once, below).
        const NAMES: &[&str] = &[
            "Cookie",
            "cookie",
            "X-Forwarded-User",
            "x_forwarded_user",
            "X-FORWARDED-EMAIL",
            "x-forwarded-roles",
            "X-Forwarded-For",
            "x_forwarded_for",
            "X-Forwarded-Proto",
            "X-Forwarded-Host",
            "X-Real-IP",
            "x_real_ip",
            "Forwarded",
            "X-Request-Id",
            "x-request-id",
            "x_request_id",
            "Accept",
            "X-Custom",
            "x-custom",
            "User-Agent",
            "X-Forwarded-Userx",
            "COOKIE",
        ];
        const HOSTS: &[&str] = &["Host", "host", "HOST"];
        /// Names that make a head not the lane's.
        const REFUSED: &[&str] = &[
            "TE",
            "Connection",
            "Authorization",
            "Proxy-Authenticate",
            "Upgrade",
            "Keep-Alive",
            "Host",
        ];
        const VALUES: &[&[u8]] = &[
            b"",
            b"a",
            b"gw.example",
            b"ga=tok; app=1",
            b"app=1",
            b"ga=tok",
            b"gr=r; ga=a",
            b"__Host-ga=x",
            b"a=\"q\"; b",
            "caf\u{e9}=1".as_bytes(),
            b"\xff=1",
            b"req-1",
            b"bad id!",
            b"x; ga=1; y=2",
            b"text/html",
            b"close, x-custom",
            b";;",
            b"ga",
        ];

        /// `Authorization` values: bearer access tokens of ours (`typ: at+jwt`, as the lane
        /// passes them once verified) in several spellings, and ones that are not ours.
        const AUTHS: &[&[u8]] = &[
            b"Bearer eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSJ9.c2ln",
            b"  bearer   eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSJ9.c2ln ",
            b"BEARER eyJhbGciOiJFZERTQSIsInR5cCI6ImFwcGxpY2F0aW9uL2F0K2p3dCIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSJ9.c2ln",
            b"Bearer eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSJ9.c2ln",
            b"Bearer\teyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSJ9.c2ln",
            b"Bearer eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSJ9.c2ln\xff",
            b"Basic dXNlcjpwdw==",
            b"Bearer",
        ];

        fn identity() -> Identity {
            Identity::for_tests(AccessClaims {
                iss: "i".into(),
                aud: "a".into(),
                sub: "alice".into(),
                sid: "s".into(),
                jti: "j".into(),
                iat: 0,
                nbf: 0,
                exp: u64::MAX,
                email: Some("alice@example.com".into()),
                roles: vec!["admin".into(), "staff".into()],
                header_values: Default::default(),
            })
        }

        fn names() -> IdentityHeaders {
            IdentityHeaders {
                user: HeaderName::from_static("x-forwarded-user"),
                email: HeaderName::from_static("x-forwarded-email"),
                roles: HeaderName::from_static("x-forwarded-roles"),
                assertion: None,
            }
        }

        /// Headers as (name, value) sorted by name; one name's values keep their order.
        fn sorted(mut v: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(20_000))]
            #[test]
            fn the_lane_writes_what_hyper_s_path_forwards(
                list in proptest::collection::vec((0..NAMES.len(), 0..VALUES.len()), 0..9),
                host in (0..HOSTS.len(), 0..VALUES.len(), 0..9usize),
                refused in proptest::option::weighted(
                    0.2,
                    (0..REFUSED.len(), 0..VALUES.len(), 0..10usize),
                ),
                authorization in proptest::option::weighted(0.3, (0..AUTHS.len(), 0..10usize)),
                https in any::<bool>(),
                replace_host in any::<bool>(),
            ) {
                let cookies = CookiePolicy::new("ga", "gr", false, cookie::SameSite::Lax, None);
                let origin = Origin {
                    client_ip: "10.1.2.3".parse().unwrap(),
                    peer_ip: "10.1.2.3".parse().unwrap(),
                    peer_trusted: false,
                    proto: if https { "https" } else { "http" },
                    request_id: "rid-1",
                };
                let upstream_host = replace_host.then_some("up.internal:8080");
                let mut raw: Vec<httparse::Header<'_>> = list
                    .iter()
                    .map(|&(n, v)| httparse::Header { name: NAMES[n], value: VALUES[v] })
                    .collect();
                let (h, v, at) = host;
                raw.insert(at.min(raw.len()), httparse::Header { name: HOSTS[h], value: VALUES[v] });
                if let Some((n, v, at)) = refused {
                    let header = httparse::Header { name: REFUSED[n], value: VALUES[v] };
                    raw.insert(at.min(raw.len()), header);
                }
                if let Some((a, at)) = authorization {
                    let header = httparse::Header { name: "Authorization", value: AUTHS[a] };
                    raw.insert(at.min(raw.len()), header);
                }
                // Hyper's path: a HeaderMap, then what `forward::prepare` does.
                let mut map = HeaderMap::new();
                for h in &raw {
                    map.append(
                        HeaderName::from_bytes(h.name.as_bytes()).unwrap(),
                        HeaderValue::from_bytes(h.value).unwrap(),
                    );
                }
                // The lane passes `our_bearer` for a lone `Authorization` that verified, which
                // only a bearer token with our `typ` does.
                let auths = raw.iter().filter(|h| h.name.eq_ignore_ascii_case("authorization")).count();
                let our_bearer = auths == 1 && is_our_bearer(&map);
                let mut out = Vec::new();
                let seen = scan_cookies(
                    raw.iter().filter(|h| h.name.eq_ignore_ascii_case("cookie")).map(|h| h.value),
                    &cookies,
                );
                let lane = write_request_headers(
                    &mut out, &raw, &names(), &cookies, &origin, &identity(), upstream_host, &seen,
                    our_bearer,
                );
                let hosts = raw.iter().filter(|h| h.name.eq_ignore_ascii_case("host")).count();
                let not_lanes = hosts != 1
                    || (auths > 0 && !our_bearer)
                    || raw.iter().any(|h| is_hop_by_hop_name(h.name));
                if not_lanes {
                    prop_assert!(lane.is_none(), "the lane wrote a head it must refuse");
                    return Ok(());
                }
                remove_hop_by_hop(&mut map);
                if let Some(host) = map.get(HOST).cloned() {
                    map.insert(HOST, host);
                }
                let hyper = rewrite_request(&mut map, &names(), &cookies, &origin, Some(&identity()));
                if let Some(authority) = upstream_host {
                    map.insert(HOST, HeaderValue::from_static(authority));
                }
                match hyper {
                    Err(_) => prop_assert!(lane.is_none(), "hyper's path fails, the lane wrote"),
                    Ok(()) => {
                        prop_assert!(lane.is_some(), "the lane refused what hyper's path forwards");
                        let written: Vec<(String, Vec<u8>)> = out
                            .split(|&b| b == b'\n')
                            .filter(|l| !l.is_empty())
                            .map(|l| {
                                let l = l.strip_suffix(b"\r").unwrap();
                                let at = l.windows(2).position(|w| w == b": ").unwrap();
                                (String::from_utf8(l[..at].to_vec()).unwrap(), l[at + 2..].to_vec())
                            })
                            .collect();
                        let expected: Vec<(String, Vec<u8>)> = map
                            .iter()
                            .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
                            .collect();
                        prop_assert_eq!(sorted(written), sorted(expected));
                    }
                }
            }
        }
    }

    #[test]
    fn hop_by_hop_check_agrees_with_the_list_it_removes() {
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop(name), "{name}");
            assert!(is_hop_by_hop_name(name.as_str()), "{name}");
            assert!(
                is_hop_by_hop_name(&name.as_str().to_ascii_uppercase()),
                "{name}"
            );
        }
        for name in [
            "host",
            "cookie",
            "content-length",
            "x-forwarded-for",
            "connections",
            "t",
            "upgrade-insecure-requests",
            "keep-alive-x",
        ] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn ip_header_values_match_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "192.168.100.9",
            "1.10.100.200",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:10.0.0.1",
        ] {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_header_value(parsed), parsed.to_string().as_str(), "{ip}");
        }
    }
}
