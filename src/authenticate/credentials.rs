//! Where credentials come from (SPEC §4, §7): the access cookie or `Authorization: Bearer`,
//! and the refresh cookie. Parsing is lenient in what it ignores and strict in what it
//! accepts: a garbage cookie is simply absent, never an error page.

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;

use super::cookies::CookiePolicy;
use crate::canonicalize::trim;

/// Longest cookie value considered; longer ones are treated as absent.
const MAX_COOKIE_VALUE: usize = 8 * 1024;

/// The credentials of one request, borrowed from its headers (no copies on the hot path).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// `Authorization: Bearer` value, tried first.
    pub bearer: Option<&'a str>,
    pub access_cookie: Option<&'a str>,
    pub refresh_cookie: Option<&'a str>,
}

impl Credentials<'_> {
    pub fn is_empty(&self) -> bool {
        self.bearer.is_none() && self.access_cookie.is_none() && self.refresh_cookie.is_none()
    }
}

/// What one pass over a request's `Cookie` headers finds: the gateway's cookies as
/// credentials, and what forwarding must do with the headers (see
/// `forward::headers::CookieRewrite`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CookieScan<'a> {
    /// The access and refresh cookies (no bearer).
    pub creds: Credentials<'a>,
    /// `Cookie` headers seen.
    pub headers: usize,
    /// A segment names one of the gateway's cookies (with or without `__Host-`).
    pub ours: bool,
    /// A non-empty segment names anything else.
    pub theirs: bool,
    /// A header is not UTF-8 (forwarding drops it whole).
    pub unreadable: bool,
}

/// Reads every `Cookie` header value once. A segment is `name=value` (each side trimmed, the
/// value unquoted); one without `=` is only a name. The first occurrence of a cookie wins —
/// browsers send the most specific one first — unless its value is not token-shaped, which
/// makes it absent rather than hiding a usable later copy.
pub fn scan_cookies<'a>(
    values: impl Iterator<Item = &'a [u8]>,
    cookies: &CookiePolicy,
) -> CookieScan<'a> {
    let mut scan = CookieScan::default();
    for value in values {
        scan.headers += 1;
        // UTF-8 (word-at-a-time for ASCII) rather than `to_str`'s byte-by-byte check: the
        // values we keep are checked byte for byte by `usable` anyway, and an app's cookie
        // with UTF-8 in it is forwarded instead of dropping its header.
        let Ok(value) = std::str::from_utf8(value) else {
            scan.unreadable = true;
            continue;
        };
        for segment in cookie_segments(value) {
            let segment = trim(segment);
            if segment.is_empty() {
                continue;
            }
            let Some(eq) = memchr::memchr(b'=', segment.as_bytes()) else {
                let ours = cookies.is_ours(segment);
                scan.ours |= ours;
                scan.theirs |= !ours;
                continue;
            };
            let name = trim(&segment[..eq]);
            let ours = cookies.is_ours(name);
            scan.ours |= ours;
            scan.theirs |= !ours;
            if !ours {
                continue;
            }
            let value = trim(&segment[eq + 1..]);
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            let creds = &mut scan.creds;
            if name == cookies.access_name {
                if creds.access_cookie.is_none() {
                    creds.access_cookie = usable(value).then_some(value);
                }
            } else if name == cookies.refresh_name && creds.refresh_cookie.is_none() {
                creds.refresh_cookie = usable(value).then_some(value);
            }
        }
    }
    scan
}

/// The `;`-separated segments of a `Cookie` value, as `str::split(';')` gives them, found with
/// the SIMD `memchr` (a 300-byte token is scanned several times per request).
pub fn cookie_segments(value: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let v = rest?;
        match memchr::memchr(b';', v.as_bytes()) {
            // `;` is ASCII: both sides are on char boundaries.
            Some(at) => {
                rest = Some(&v[at + 1..]);
                Some(&v[..at])
            }
            None => {
                rest = None;
                Some(v)
            }
        }
    })
}

/// A byte a token may contain: base64url and the JWT dot (and `~`, unreserved in RFC 3986).
/// Branch-free, so that the check over a whole token vectorizes (16 bytes a step on SSE2):
/// every request runs it over its ~300-byte access token.
#[inline(always)]
fn token_byte(b: u8) -> bool {
    // `| 0x20` folds exactly `A-Z` onto `a-z`; nothing else lands in `a-z`.
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    letter | digit | (b == b'-') | (b == b'_') | (b == b'.') | (b == b'~')
}

pub(crate) fn usable(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_COOKIE_VALUE
        && value.bytes().fold(true, |ok, b| ok & token_byte(b))
}

/// The bearer token of an `Authorization` header, if it is one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && usable(token)).then_some(token)
}

pub fn extract<'a>(headers: &'a HeaderMap, cookies: &CookiePolicy) -> Credentials<'a> {
    extract_scanned(headers, cookies).0
}

/// [`extract`], and the scan of the `Cookie` headers it read: the decision hands that on to
/// forwarding, so a request's cookies are read once.
pub fn extract_scanned<'a>(
    headers: &'a HeaderMap,
    cookies: &CookiePolicy,
) -> (Credentials<'a>, CookieScan<'a>) {
    let values = headers.get_all(COOKIE).iter().map(|v| v.as_bytes());
    let scan = scan_cookies(values, cookies);
    let creds = Credentials {
        bearer: bearer(headers),
        ..scan.creds
    };
    (creds, scan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cookie::SameSite;

    fn policy() -> CookiePolicy {
        CookiePolicy::new("ga", "gr", false, SameSite::Lax, None)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn cookies_and_bearer_are_found() {
        let h = headers(&[
            ("cookie", "app=1; ga=aaa.bbb.ccc"),
            ("cookie", "gr=refresh_tok"),
            ("authorization", "Bearer x.y.z"),
        ]);
        let c = extract(&h, &policy());
        assert_eq!(c.access_cookie, Some("aaa.bbb.ccc"));
        assert_eq!(c.refresh_cookie, Some("refresh_tok"));
        assert_eq!(c.bearer, Some("x.y.z"));
    }

    #[test]
    fn token_bytes_are_exactly_base64url_dot_and_tilde() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
            assert_eq!(token_byte(b), expected, "byte {b:#04x}");
        }
        // One bad byte anywhere in a long value makes it unusable (the vectorized loop has
        // no early exit to get wrong, but its tail handling must see every byte).
        let good = "aB3-_.~".repeat(50);
        assert!(usable(&good));
        for i in 0..good.len() {
            for bad in ["<", " ", "%", "=", "\u{e9}"] {
                let mut v = good.clone();
                v.replace_range(i..i + 1, bad);
                assert!(!usable(&v), "bad byte {bad:?} at {i} passed");
            }
        }
    }

    #[test]
    fn one_scan_reads_credentials_and_what_forwarding_needs() {
        fn scan<'a>(values: &[&'a [u8]]) -> CookieScan<'a> {
            scan_cookies(values.iter().copied(), &policy())
        }
        let s = scan(&[b"app=1; ga=aaa.bbb; gr=r1", b"ga=later; x"]);
        assert_eq!(s.creds.access_cookie, Some("aaa.bbb"));
        assert_eq!(s.creds.refresh_cookie, Some("r1"));
        assert_eq!(
            (s.headers, s.ours, s.theirs, s.unreadable),
            (2, true, true, false)
        );
        // `__Host-` spellings and bare names are ours to strip, but not credentials.
        let s = scan(&[b"__Host-ga=aaa; gr"]);
        assert_eq!(s.creds, Credentials::default());
        assert_eq!((s.ours, s.theirs), (true, false));
        let s = scan(&[b"\xff=1", b" ; app=\"q\" "]);
        assert_eq!(
            (s.headers, s.ours, s.theirs, s.unreadable),
            (2, false, true, true)
        );
    }

    #[test]
    fn cookie_segments_split_like_str_split() {
        for v in [
            "",
            ";",
            "a",
            "a;b",
            ";a;;b;",
            "ga=x; gr=y",
            "caf\u{e9}=1;\u{e9};",
        ] {
            let ours: Vec<&str> = cookie_segments(v).collect();
            let std: Vec<&str> = v.split(';').collect();
            assert_eq!(ours, std, "{v:?}");
        }
    }

    #[test]
    fn garbage_is_absent() {
        let h = headers(&[
            ("cookie", "ga=<script>; gr="),
            ("authorization", "Basic dXNlcjpwdw=="),
        ]);
        let c = extract(&h, &policy());
        assert!(c.is_empty());
        let h = headers(&[("cookie", ";;=;ga;==")]);
        assert!(extract(&h, &policy()).is_empty());
        // A garbage first copy does not hide a usable later one.
        let h = headers(&[("cookie", "ga=<x>; ga=aaa.bbb")]);
        assert_eq!(extract(&h, &policy()).access_cookie, Some("aaa.bbb"));
    }
}
