//! The response header policy (SPEC §7 "Upstream responses belong to their request"): what
//! every path does to an upstream's response head before a client sees it — framing it can
//! relay, hop-by-hop headers out, the gateway's cookies never set by an app. One policy for
//! hyper's path and the express lane, HTTP/1 and HTTP/2 clients alike. The request policy is
//! `headers.rs`.

use http::header::{CACHE_CONTROL, CONTENT_LENGTH, SET_COOKIE, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::headers::remove_hop_by_hop;
use crate::authenticate::cookies::CookiePolicy;
use crate::canonicalize::trim;
use crate::error::UpstreamError;

/// The gateway's own cookie names as an upstream might write them in `Set-Cookie`: the
/// configured names and the OIDC state cookie ([`CookiePolicy::is_ours`]), bare or with a
/// `__Host-`/`__Secure-` prefix (browsers match those prefixes in any case).
fn set_cookie_is_ours(value: &HeaderValue, cookies: &CookiePolicy) -> Option<String> {
    let text = String::from_utf8_lossy(value.as_bytes());
    let name = trim(
        text.split(';')
            .next()
            .unwrap_or("")
            .split('=')
            .next()
            .unwrap_or(""),
    );
    let bare = ["__host-", "__secure-"]
        .iter()
        .find_map(|p| {
            name.get(..p.len())
                .filter(|head| head.eq_ignore_ascii_case(p))
                .map(|_| &name[p.len()..])
        })
        .unwrap_or(name);
    cookies.is_ours(bare).then(|| name.to_string())
}

/// What the response policy removed, for the audit log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ResponseEdits {
    /// Names of the gateway's cookies the upstream tried to set (SPEC §7).
    pub dropped_cookies: Vec<String>,
}

/// Rewrites an upstream response's headers before they reach the client (SPEC §7 "Upstream
/// responses belong to their request"), the one policy every path applies:
/// 1. a response framed by a transfer coding other than `chunked` alone (`gzip`, `gzip,
///    chunked`, two `Transfer-Encoding` lines) is refused: 502, as nginx does. hyper decodes
///    only `chunked`, so the client would get coded bytes without the coding's name, or a
///    body that ends only when the upstream closes;
/// 2. a response framed by `Transfer-Encoding` loses any `Content-Length` (RFC 9112 §6.3:
///    the length is meaningless next to a transfer coding, and the body reaches the client
///    decoded) — a stale length next to the decoded body would cut it short or hang it;
/// 3. a `Content-Length` that hyper accepted as a list of one repeated value (`2, 2`, or two
///    lines of `2`: RFC 9110 §8.6) goes on as that one value: HTTP/2 refuses the list, and
///    HTTP/1 clients differ on it;
/// 4. a `204` or `304` goes on without `Content-Length`, as hyper's HTTP/1 server and the
///    express lane write them (RFC 9110 §8.6: a `204` must not carry one; HTTP/2 resets a
///    stream whose `204` announces a body);
/// 5. hop-by-hop headers and those named in `Connection` are removed (RFC 9110 §7.6.1);
/// 6. every `Set-Cookie` for one of the gateway's cookies (either spelling, or the OIDC state
///    cookie) is removed: an app that reflects a cookie must never plant another user's
///    token in a browser, replace the session, or clear it.
///
/// The body's trailers are dropped where the body is relayed (`forward::without_trailers`).
pub fn rewrite_response(
    status: StatusCode,
    headers: &mut HeaderMap,
    cookies: &CookiePolicy,
) -> Result<ResponseEdits, UpstreamError> {
    if headers.contains_key(TRANSFER_ENCODING) {
        let mut codings = headers.get_all(TRANSFER_ENCODING).iter();
        let chunked_alone = match (codings.next(), codings.next()) {
            (Some(only), None) => only
                .to_str()
                .is_ok_and(|v| trim(v).eq_ignore_ascii_case("chunked")),
            _ => false,
        };
        if !chunked_alone {
            return Err(UpstreamError::TransferCoding);
        }
        headers.remove(CONTENT_LENGTH);
    } else if let Some(length) = listed_length(headers) {
        headers.insert(CONTENT_LENGTH, length);
    }
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        headers.remove(CONTENT_LENGTH);
    }
    remove_hop_by_hop(headers);
    let mut edits = ResponseEdits::default();
    if headers.contains_key(SET_COOKIE)
        && headers
            .get_all(SET_COOKIE)
            .iter()
            .any(|v| set_cookie_is_ours(v, cookies).is_some())
    {
        let all: Vec<HeaderValue> = headers.get_all(SET_COOKIE).iter().cloned().collect();
        headers.remove(SET_COOKIE);
        for value in all {
            match set_cookie_is_ours(&value, cookies) {
                Some(name) => edits.dropped_cookies.push(name),
                None => {
                    headers.append(SET_COOKIE, value);
                }
            }
        }
    }
    Ok(edits)
}

/// Adds the cookies of a transparent refresh to an app's response, and keeps that response
/// out of shared caches: a cache in front of the gateway may store a response with
/// `Set-Cookie` (RFC 9111 §3 does not forbid it), and served to someone else it would hand
/// them this session. The app's own directives stay for the browser's private cache, with
/// `private` in place of `public` and `s-maxage`; a response already `private` or `no-store`
/// is left as it is.
pub fn add_session_cookies(headers: &mut HeaderMap, set_cookies: Vec<HeaderValue>) {
    if set_cookies.is_empty() {
        return;
    }
    for cookie in set_cookies {
        headers.append(SET_COOKIE, cookie);
    }
    let directives: Vec<String> = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .flat_map(|v| {
            v.split(',')
                .map(|d| trim(d).to_string())
                .collect::<Vec<_>>()
        })
        .filter(|d| !d.is_empty())
        .collect();
    let name = |d: &str| trim(d.split('=').next().unwrap_or("")).to_ascii_lowercase();
    if directives
        .iter()
        .any(|d| d.eq_ignore_ascii_case("private") || name(d) == "no-store")
    {
        return;
    }
    let kept = directives
        .iter()
        .filter(|d| !matches!(name(d).as_str(), "public" | "s-maxage" | "private"));
    let value = std::iter::once("private")
        .chain(kept.map(String::as_str))
        .collect::<Vec<_>>()
        .join(", ");
    let value =
        HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("private, no-store"));
    headers.insert(CACHE_CONTROL, value);
}

/// The one value of a `Content-Length` written as a list of one repeated value (`2, 2`, or
/// several lines); `None` when it is a single plain value already (the common case, checked
/// first) or not one repeated value (which hyper refuses before this point).
fn listed_length(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut lines = headers.get_all(CONTENT_LENGTH).iter();
    let first = lines.next()?;
    let plain = |v: &HeaderValue| !v.is_empty() && v.as_bytes().iter().all(u8::is_ascii_digit);
    if plain(first) && lines.next().is_none() {
        return None;
    }
    let mut one: Option<&str> = None;
    for line in headers.get_all(CONTENT_LENGTH) {
        for value in line.to_str().ok()?.split(',').map(trim) {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            match one {
                Some(seen) if seen != value => return None,
                _ => one = Some(value),
            }
        }
    }
    HeaderValue::from_str(one?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderName;

    fn response(lines: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in lines {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn a_response_with_session_cookies_is_kept_from_shared_caches() {
        let cookie = || vec![HeaderValue::from_static("gatehouse_access=t; HttpOnly")];
        let cases: [(&[(&str, &str)], &str); 7] = [
            (&[], "private"),
            (
                &[("cache-control", "public, max-age=600")],
                "private, max-age=600",
            ),
            (
                &[
                    ("cache-control", "max-age=60, s-maxage=600"),
                    ("cache-control", "Public"),
                ],
                "private, max-age=60",
            ),
            (
                &[("cache-control", "private=\"set-cookie\", max-age=5")],
                "private, max-age=5",
            ),
            (&[("cache-control", "no-cache")], "private, no-cache"),
            // Already out of shared caches: left as the app wrote it.
            (
                &[("cache-control", "PRIVATE, max-age=5")],
                "PRIVATE, max-age=5",
            ),
            (&[("cache-control", "no-store")], "no-store"),
        ];
        for (lines, expected) in cases {
            let mut h = response(lines);
            add_session_cookies(&mut h, cookie());
            let got: Vec<_> = h.get_all("cache-control").iter().collect();
            assert_eq!(got, [expected], "{lines:?}");
            assert_eq!(h.get_all("set-cookie").iter().count(), 1);
        }
        // No refresh, no change: the app's caching is its own.
        let mut h = response(&[("cache-control", "public, max-age=600")]);
        add_session_cookies(&mut h, Vec::new());
        assert_eq!(h.get("cache-control").unwrap(), "public, max-age=600");
    }

    #[test]
    fn a_response_is_framed_by_chunked_alone_or_refused() {
        let cookies = CookiePolicy::new("a", "r", false, cookie::SameSite::Lax, None);
        for chunked in ["chunked", "Chunked", " chunked "] {
            let mut h = response(&[("transfer-encoding", chunked), ("content-length", "5")]);
            assert!(
                rewrite_response(StatusCode::OK, &mut h, &cookies).is_ok(),
                "{chunked:?}"
            );
            assert!(h.get("content-length").is_none(), "{chunked:?}");
        }
        for refused in [
            &[("transfer-encoding", "gzip")][..],
            &[("transfer-encoding", "gzip, chunked")],
            &[("transfer-encoding", "chunked, chunked")],
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            &[("transfer-encoding", "")],
        ] {
            let mut h = response(refused);
            assert!(
                matches!(
                    rewrite_response(StatusCode::OK, &mut h, &cookies),
                    Err(UpstreamError::TransferCoding)
                ),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn a_listed_length_becomes_its_one_value() {
        let cookies = CookiePolicy::new("a", "r", false, cookie::SameSite::Lax, None);
        for (lines, expected) in [
            (&[("content-length", "12")][..], Some("12")),
            (&[("content-length", "12, 12")], Some("12")),
            (
                &[("content-length", "12"), ("content-length", "12")],
                Some("12"),
            ),
            (&[("content-length", " 12 ,12")], Some("12")),
            (&[], None),
        ] {
            let mut h = response(lines);
            rewrite_response(StatusCode::OK, &mut h, &cookies).unwrap();
            let values: Vec<_> = h.get_all("content-length").iter().collect();
            match expected {
                Some(v) => assert_eq!(values, [v], "{lines:?}"),
                None => assert!(values.is_empty(), "{lines:?}"),
            }
            for status in [StatusCode::NO_CONTENT, StatusCode::NOT_MODIFIED] {
                let mut h = response(lines);
                rewrite_response(status, &mut h, &cookies).unwrap();
                assert!(h.get("content-length").is_none(), "{status} {lines:?}");
            }
        }
    }
}
