//! Request header rewriting before forwarding (SPEC §7), in this order, so a client can
//! neither forge identity nor make us drop it:
//! 1. hop-by-hop headers, and every header named in `Connection`, are removed (RFC 9110
//!    §7.6.1) — otherwise `Connection: close, X-Forwarded-User` would make a compliant hop
//!    drop the identity we add;
//! 2. every spelling of an identity header (case-insensitive, `_` = `-`) is removed — some
//!    servers (CGI, PHP, Django) fold `X_Forwarded_User` into the same variable — and so is
//!    every header of `server.strip_client_headers` (path and method overrides, other
//!    gateways' identity headers: see `config::DEFAULT_STRIPPED`);
//! 3. the gateway's cookies are removed, and every `Authorization` value that carries one of
//!    our access or refresh tokens, whatever its scheme, spacing, quoting or place in a list;
//! 4. `X-Forwarded-For/-Proto/-Host` are set, keeping incoming values only from
//!    `trusted_proxies`; `X-Request-Id` is kept or generated;
//! 5. identity headers are set from the verified [`Identity`].

use std::net::IpAddr;

use http::header::{AUTHORIZATION, CONNECTION, COOKIE, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::authenticate::cookies::CookiePolicy;
use crate::authenticate::credentials::{cookie_segments, CookieScan};
use crate::authenticate::Identity;
use crate::canonicalize::trim;
use crate::config::{IdentityHeaders, LooseNames};
use crate::seal::SealKey;

/// RFC 9110 §7.6.1, the de-facto ones (`Keep-Alive`, `Proxy-Connection`), and
/// `HTTP2-Settings`, which belongs to the connection it asks to upgrade (RFC 7540 §3.2.1): an
/// `h2c` upgrade is never passed on (see [`websocket_upgrade`]).
static HOP_BY_HOP: [HeaderName; 10] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    UPGRADE,
    HeaderName::from_static("http2-settings"),
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
            | "http2-settings"
    )
}

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The most headers forwarding adds to a request going upstream (`forward::prepare`): the
/// three forwarding headers, `X-Request-Id`, three identity headers, the signed assertion. A
/// map made with room for them does not grow (a reallocation and a rehash) while rewritten.
pub const ADDED_UPSTREAM: usize = 8;

/// [`REBUILT`], looked up the loose way (any case, `_` = `-`).
static REBUILT_NAMES: std::sync::LazyLock<LooseNames> =
    std::sync::LazyLock::new(|| LooseNames::new(REBUILT));

/// Trust-bearing headers that are rebuilt by us; all their spellings are dropped first.
const REBUILT: [&str; 5] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "forwarded",
];

/// Headers a `Connection` option can never remove: a client must not be able to drop `Host`
/// (so `preserve_host` holds and name-based virtual hosts serve the site that was checked) or
/// the forwarding headers a trusted proxy sent.
const NEVER_CONNECTION_OPTIONS: [&str; 5] = [
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
];

/// The `Upgrade` value a request may pass on: exactly the `websocket` token (RFC 6455 §4.1).
/// Any other protocol — `h2c` above all, whose tunnel would carry requests past every route
/// rule and identity header — is dropped, and the request goes on as a plain one.
pub fn websocket_upgrade(value: HeaderValue) -> Option<HeaderValue> {
    value
        .to_str()
        .is_ok_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
        .then_some(value)
}

/// Removes hop-by-hop headers and those named in `Connection` (never those in
/// [`NEVER_CONNECTION_OPTIONS`]). Returns the `Upgrade` value if the request asked for one.
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
        .filter(|name| !NEVER_CONNECTION_OPTIONS.contains(&name.as_str()))
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

/// Whether a credential header value carries one of our tokens anywhere: any JWT whose
/// header says `typ: at+jwt` is ours to consume, valid or not, and so is any refresh token
/// `seal` minted (a client that sends its refresh token as a bearer token), whatever scheme
/// names it (`Bearer`, `bearer<TAB>`, `DPoP`, none), however it is quoted, and wherever it
/// stands in a list. An upstream that received an access token could replay it through the
/// gateway as the user; one that received a refresh token could take over the session, or
/// end it by presenting it again after its rotation.
pub fn carries_our_token(value: &[u8], seal: &SealKey) -> bool {
    let jwt_byte = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    value
        .split(|b| !jwt_byte(b))
        .any(|word| match word.iter().filter(|&&b| b == b'.').count() {
            2 => std::str::from_utf8(word).is_ok_and(|word| {
                jsonwebtoken::decode_header(word).is_ok_and(|h| {
                    h.typ.as_deref().is_some_and(|t| {
                        t.eq_ignore_ascii_case("at+jwt")
                            || t.eq_ignore_ascii_case("application/at+jwt")
                    })
                })
            }),
            0 => seal.is_refresh_token(word),
            _ => false,
        })
}

/// Removes every `Authorization` value that carries one of our tokens; the app's own
/// credentials (another scheme, another issuer's token) pass unchanged and in order.
fn strip_our_tokens(headers: &mut HeaderMap, seal: &SealKey) {
    if !headers
        .get_all(AUTHORIZATION)
        .iter()
        .any(|v| carries_our_token(v.as_bytes(), seal))
    {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(AUTHORIZATION)
        .iter()
        .filter(|v| !carries_our_token(v.as_bytes(), seal))
        .cloned()
        .collect();
    headers.remove(AUTHORIZATION);
    for value in kept {
        headers.append(AUTHORIZATION, value);
    }
}

/// Rewrites the headers of a request about to go upstream. `host`: the host the client named
/// (`X-Forwarded-Host` unless a trusted proxy said another). `cookie_rewrite`: what
/// [`cookie_rewrite`] made of these headers'
/// [`scan_cookies`](crate::authenticate::credentials::scan_cookies) (the decision's scan, handed on,
/// so that a request's cookies are read once).
#[allow(clippy::too_many_arguments)]
pub fn rewrite_request(
    headers: &mut HeaderMap,
    identity_names: &IdentityHeaders,
    cookies: &CookiePolicy,
    cookie_rewrite: CookieRewrite,
    seal: &SealKey,
    origin: &Origin<'_>,
    host: Option<HeaderValue>,
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
        .filter(|name| REBUILT_NAMES.contains(name.as_str()) || identity_names.drops(name.as_str()))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
    // 3. our credentials.
    strip_our_cookies(headers, cookies, cookie_rewrite)?;
    strip_our_tokens(headers, seal);
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
    if let Some(host) = fhost.or(host) {
        headers.insert(&X_FORWARDED_HOST, host);
    }
    headers.insert(&X_REQUEST_ID, HeaderValue::from_str(origin.request_id)?);
    // 5. identity.
    if let Some(id) = identity {
        set_identity(headers, identity_names, id, false)?;
    }
    Ok(())
}

/// Sets the identity headers from a verified identity: on a request going upstream, and on
/// forward-auth's answer for the proxy to copy. `always_email`: an empty email header when
/// the user has none (Caddy 2.6's `copy_headers` puts an unexpanded placeholder into the
/// app's request for a header the answer lacks).
pub fn set_identity(
    headers: &mut HeaderMap,
    names: &IdentityHeaders,
    id: &Identity,
    always_email: bool,
) -> Result<(), http::header::InvalidHeaderValue> {
    let values = id.header_values()?;
    headers.insert(&names.user, values.user.clone());
    match &values.email {
        Some(email) => {
            headers.insert(&names.email, email.clone());
        }
        None if always_email => {
            headers.insert(&names.email, HeaderValue::from_static(""));
        }
        None => {}
    }
    headers.insert(&names.roles, values.roles.clone());
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

/// Decides [`CookieRewrite`] from what
/// [`scan_cookies`](crate::authenticate::credentials::scan_cookies) read.
pub fn cookie_rewrite(scan: &CookieScan<'_>) -> CookieRewrite {
    if scan.headers == 0 || (scan.headers == 1 && !scan.ours && !scan.unreadable) {
        CookieRewrite::Keep
    } else if !scan.theirs {
        CookieRewrite::Drop
    } else {
        CookieRewrite::Rebuild
    }
}

/// Removes the gateway's cookies from `Cookie`, as `rewrite` (from the scan of these headers)
/// says. The app's own segments are kept verbatim (byte for byte); the header is only rebuilt
/// when one of ours is in it.
fn strip_our_cookies(
    headers: &mut HeaderMap,
    cookies: &CookiePolicy,
    rewrite: CookieRewrite,
) -> Result<(), http::header::InvalidHeaderValue> {
    match rewrite {
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

/// Whether a peer is one of `server.trusted_proxies`.
pub fn is_trusted(trusted_proxies: &[ipnet::IpNet], ip: std::net::IpAddr) -> bool {
    trusted_proxies.iter().any(|net| net.contains(&ip))
}

/// The client's address (SPEC §7 forwarding headers): the peer, or — when the peer is a
/// trusted proxy — the rightmost `X-Forwarded-For` entry that is not itself a trusted proxy.
/// The second value says whether the peer is trusted.
pub fn client_ip(
    trusted_proxies: &[ipnet::IpNet],
    headers: &HeaderMap,
    peer: std::net::IpAddr,
) -> (std::net::IpAddr, bool) {
    if !is_trusted(trusted_proxies, peer) {
        return (peer, false);
    }
    // Walk the chain from the right (the hops we trust wrote it) to the first address that is
    // not a trusted proxy: the client. Entries to its left are the client's to forge. An entry
    // that is no address at all (`unknown`, garbage) ends the walk at the peer: skipping it
    // would hand the choice to whatever the client wrote further left.
    let mut chain = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(forwarded_ip)
        .collect::<Vec<_>>()
        .into_iter()
        .rev();
    let mut leftmost = None;
    for hop in chain.by_ref() {
        match hop {
            Some(ip) if is_trusted(trusted_proxies, ip) => leftmost = Some(ip),
            Some(ip) => return (ip, true),
            None => return (peer, true),
        }
    }
    // Every hop is a trusted proxy: the leftmost is the origin of the request.
    (leftmost.unwrap_or(peer), true)
}

/// The address in one `X-Forwarded-For` entry: `192.0.2.1`, `2001:db8::1`, and the forms with
/// a port some proxies write (`192.0.2.1:5555`, `[2001:db8::1]:5555`).
fn forwarded_ip(entry: &str) -> Option<std::net::IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    if let Ok(addr) = entry.parse::<std::net::SocketAddr>() {
        return Some(addr.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .and_then(|e| e.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_check_agrees_with_the_list_it_removes() {
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop(name), "{name}");
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
    fn the_client_is_the_rightmost_address_no_trusted_proxy_wrote() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let from = |xff: &[&str]| {
            let mut h = HeaderMap::new();
            for v in xff {
                h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
            }
            client_ip(&trusted, &h, peer).0.to_string()
        };
        assert_eq!(from(&["6.6.6.6, 203.0.113.7"]), "203.0.113.7");
        assert_eq!(from(&["6.6.6.6", "203.0.113.7, 10.0.0.2"]), "203.0.113.7");
        // A port some proxies write is not a reason to skip the real client.
        assert_eq!(from(&["6.6.6.6, 203.0.113.7:5555"]), "203.0.113.7");
        assert_eq!(from(&["6.6.6.6, [2001:db8::7]:5555"]), "2001:db8::7");
        assert_eq!(from(&["6.6.6.6, [2001:db8::7]"]), "2001:db8::7");
        // An entry that is no address stops the walk at the peer, never at the forged one.
        assert_eq!(from(&["6.6.6.6, unknown"]), "10.0.0.1");
        assert_eq!(from(&["6.6.6.6, "]), "10.0.0.1");
        // Only trusted hops: the leftmost; none at all: the peer.
        assert_eq!(from(&["10.0.0.3, 10.0.0.2"]), "10.0.0.3");
        assert_eq!(from(&[]), "10.0.0.1");
        // From an untrusted peer the header says nothing.
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        assert_eq!(
            client_ip(&trusted, &h, "192.0.2.9".parse().unwrap()),
            ("192.0.2.9".parse().unwrap(), false)
        );
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
