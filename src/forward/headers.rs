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
use crate::authenticate::credentials::bearer;
use crate::authenticate::Identity;
use crate::config::{loose_header_eq, IdentityHeaders};

/// RFC 9110 §7.6.1 and the de-facto ones (`Keep-Alive`, `Proxy-Connection`).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

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
    for name in HOP_BY_HOP {
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
    if headers.contains_key(COOKIE) {
        // Segments are kept verbatim: the app's own cookies pass byte for byte.
        let kept: Vec<String> = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .map(str::trim)
            .filter(|seg| !seg.is_empty())
            .filter(|seg| !cookies.is_ours(seg.split('=').next().unwrap_or("").trim()))
            .map(str::to_string)
            .collect();
        headers.remove(COOKIE);
        if !kept.is_empty() {
            headers.insert(COOKIE, HeaderValue::from_str(&kept.join("; "))?);
        }
    }
    if is_our_bearer(headers) {
        headers.remove(AUTHORIZATION);
    }
    // 4. forwarding headers.
    let ip = origin.client_ip.to_string();
    let peer = origin.peer_ip.to_string();
    let mut xff = None;
    let mut proto = None;
    let mut fhost = None;
    for (name, value) in trusted_forwarding {
        match name.as_str() {
            "x-forwarded-for" => xff = value.to_str().ok().map(|v| format!("{v}, {peer}")),
            "x-forwarded-proto" => proto = Some(value),
            _ => fhost = Some(value),
        }
    }
    headers.insert(&X_FORWARDED_FOR, HeaderValue::from_str(&xff.unwrap_or(ip))?);
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
        headers.insert(
            &identity_names.user,
            HeaderValue::from_bytes(id.user().as_bytes())?,
        );
        if let Some(email) = id.email() {
            headers.insert(
                &identity_names.email,
                HeaderValue::from_bytes(email.as_bytes())?,
            );
        }
        headers.insert(
            &identity_names.roles,
            HeaderValue::from_bytes(id.roles().join(",").as_bytes())?,
        );
    }
    Ok(())
}

/// A client-supplied request id is kept only if it is short and plain.
pub fn incoming_request_id(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(&X_REQUEST_ID)?.to_str().ok()?;
    (!v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)))
    .then(|| v.to_string())
}
