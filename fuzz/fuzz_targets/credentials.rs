//! Credential extraction from arbitrary `Cookie` and `Authorization` headers never panics and
//! only yields token-shaped values.
#![no_main]
use gatehouse::authenticate::cookies::CookiePolicy;
use gatehouse::authenticate::credentials::extract;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let policy = CookiePolicy::new("gatehouse_access", "gatehouse_refresh", false, cookie_same_site(), None);
    let mut headers = HeaderMap::new();
    for (i, part) in data.split(|b| *b == b'\n').enumerate() {
        let Ok(v) = HeaderValue::from_bytes(part) else { continue };
        let name = if i % 2 == 0 { http::header::COOKIE } else { http::header::AUTHORIZATION };
        headers.append(name, v);
    }
    let creds = extract(&headers, &policy);
    for v in [&creds.bearer, &creds.access_cookie, &creds.refresh_cookie].into_iter().flatten() {
        assert!(!v.is_empty() && v.len() <= 8192);
        assert!(v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b)), "{v:?}");
    }
});

fn cookie_same_site() -> gatehouse::authenticate::cookies::SameSite {
    gatehouse::authenticate::cookies::SameSite::Lax
}
