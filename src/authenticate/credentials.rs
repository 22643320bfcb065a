//! Where credentials come from (SPEC §4, §7): the access cookie or `Authorization: Bearer`,
//! and the refresh cookie. Parsing is lenient in what it ignores and strict in what it
//! accepts: a garbage cookie is simply absent, never an error page.

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;

use super::cookies::CookiePolicy;

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

/// Iterates `name=value` pairs of every `Cookie` header, skipping malformed ones.
pub fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    cookie_pairs_of(headers.get_all(COOKIE).iter().map(|v| v.as_bytes()))
}

/// [`cookie_pairs`] over raw `Cookie` header values (the express lane's borrowed head).
pub fn cookie_pairs_of<'a>(
    values: impl Iterator<Item = &'a [u8]>,
) -> impl Iterator<Item = (&'a str, &'a str)> {
    values
        // UTF-8 (word-at-a-time for ASCII) rather than `to_str`'s byte-by-byte check: the
        // values we keep are checked byte for byte by `usable` anyway.
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(cookie_segments)
        .filter_map(|pair| {
            let pair = pair.trim();
            let eq = memchr::memchr(b'=', pair.as_bytes())?;
            let (name, value) = (&pair[..eq], &pair[eq + 1..]);
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            Some((name.trim(), value))
        })
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

fn usable(value: &str) -> bool {
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
    Credentials {
        bearer: bearer(headers),
        ..from_cookies(cookie_pairs(headers), cookies)
    }
}

/// The access and refresh cookies among `pairs` (no bearer).
pub fn from_cookies<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
    cookies: &CookiePolicy,
) -> Credentials<'a> {
    let mut out = Credentials::default();
    for (name, value) in pairs {
        // First occurrence wins: browsers send the most specific cookie first.
        if name == cookies.access_name && out.access_cookie.is_none() {
            out.access_cookie = usable(value).then_some(value);
        } else if name == cookies.refresh_name && out.refresh_cookie.is_none() {
            out.refresh_cookie = usable(value).then_some(value);
        }
    }
    out
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
