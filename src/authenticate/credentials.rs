//! Where credentials come from (SPEC §4, §7): the access cookie or `Authorization: Bearer`,
//! and the refresh cookie. Parsing is lenient in what it ignores and strict in what it
//! accepts: a garbage cookie is simply absent, never an error page.

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;

use super::cookies::CookiePolicy;

/// Longest cookie value considered; longer ones are treated as absent.
const MAX_COOKIE_VALUE: usize = 8 * 1024;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `Authorization: Bearer` value, tried first.
    pub bearer: Option<String>,
    pub access_cookie: Option<String>,
    pub refresh_cookie: Option<String>,
}

impl Credentials {
    pub fn is_empty(&self) -> bool {
        self.bearer.is_none() && self.access_cookie.is_none() && self.refresh_cookie.is_none()
    }
}

/// Iterates `name=value` pairs of every `Cookie` header, skipping malformed ones.
pub fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            Some((name.trim(), value))
        })
}

fn usable(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_COOKIE_VALUE
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

/// The bearer token of an `Authorization` header, if it is one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && usable(token)).then_some(token)
}

pub fn extract(headers: &HeaderMap, cookies: &CookiePolicy) -> Credentials {
    let mut out = Credentials {
        bearer: bearer(headers).map(str::to_string),
        ..Credentials::default()
    };
    for (name, value) in cookie_pairs(headers) {
        if !usable(value) {
            continue;
        }
        // First occurrence wins: browsers send the most specific cookie first.
        if name == cookies.access_name && out.access_cookie.is_none() {
            out.access_cookie = Some(value.to_string());
        } else if name == cookies.refresh_name && out.refresh_cookie.is_none() {
            out.refresh_cookie = Some(value.to_string());
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
        let c = extract(
            &headers(&[
                ("cookie", "app=1; ga=aaa.bbb.ccc"),
                ("cookie", "gr=refresh_tok"),
                ("authorization", "Bearer x.y.z"),
            ]),
            &policy(),
        );
        assert_eq!(c.access_cookie.as_deref(), Some("aaa.bbb.ccc"));
        assert_eq!(c.refresh_cookie.as_deref(), Some("refresh_tok"));
        assert_eq!(c.bearer.as_deref(), Some("x.y.z"));
    }

    #[test]
    fn garbage_is_absent() {
        let c = extract(
            &headers(&[
                ("cookie", "ga=<script>; gr="),
                ("authorization", "Basic dXNlcjpwdw=="),
            ]),
            &policy(),
        );
        assert!(c.is_empty());
        let c = extract(&headers(&[("cookie", ";;=;ga;==")]), &policy());
        assert!(c.is_empty());
    }
}
