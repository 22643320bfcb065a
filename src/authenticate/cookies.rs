//! The gateway's two cookies (SPEC §5): both `HttpOnly; Path=/`, `SameSite` as configured,
//! `Secure` when configured; with `secure` and no `domain`, names get the `__Host-` prefix so
//! a sibling subdomain cannot plant or overwrite them (cookie tossing).

use cookie::time::Duration as CookieDuration;
use cookie::Cookie;
pub use cookie::SameSite;
use http::HeaderValue;

/// The OIDC login-state cookie (SPEC §11), `__Host-` prefixed when cookies are `Secure`.
pub const OIDC_STATE_COOKIE: &str = "gatehouse_oidc";

#[derive(Debug, Clone)]
pub struct CookiePolicy {
    /// Final names, `__Host-` prefix included when it applies.
    pub access_name: String,
    pub refresh_name: String,
    pub secure: bool,
    pub same_site: SameSite,
    pub domain: Option<String>,
}

impl CookiePolicy {
    pub fn new(
        access: &str,
        refresh: &str,
        secure: bool,
        same_site: SameSite,
        domain: Option<String>,
    ) -> CookiePolicy {
        let prefix = if secure && domain.is_none() {
            "__Host-"
        } else {
            ""
        };
        CookiePolicy {
            access_name: format!("{prefix}{access}"),
            refresh_name: format!("{prefix}{refresh}"),
            secure,
            same_site,
            domain,
        }
    }

    fn build(&self, name: &str, value: &str, max_age: i64) -> HeaderValue {
        let mut c = Cookie::build((name.to_string(), value.to_string()))
            .http_only(true)
            .path("/")
            .secure(self.secure)
            .same_site(self.same_site)
            .max_age(CookieDuration::seconds(max_age.max(0)));
        if let Some(domain) = &self.domain {
            c = c.domain(domain.clone());
        }
        // Token values are base64url and JWT characters only; a failure here would be our
        // bug, so fall back to a clearing cookie rather than panic.
        HeaderValue::from_str(&c.build().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("gatehouse_invalid=; Max-Age=0; Path=/"))
    }

    pub fn access(&self, token: &str, max_age: u64) -> HeaderValue {
        self.build(&self.access_name, token, to_i64(max_age))
    }

    pub fn refresh(&self, token: &str, max_age: u64) -> HeaderValue {
        self.build(&self.refresh_name, token, to_i64(max_age))
    }

    /// `Set-Cookie` values that delete both cookies.
    pub fn clear(&self) -> [HeaderValue; 2] {
        [
            self.build(&self.access_name, "", 0),
            self.build(&self.refresh_name, "", 0),
        ]
    }

    /// Whether a cookie of this name belongs to the gateway — the access and refresh cookies
    /// and the OIDC state cookie, either spelling, so a cookie set before `secure` was turned
    /// on is not leaked upstream either.
    pub fn is_ours(&self, name: &str) -> bool {
        fn bare(n: &str) -> &str {
            n.strip_prefix("__Host-").unwrap_or(n)
        }
        let name = bare(name);
        name == bare(&self.access_name)
            || name == bare(&self.refresh_name)
            || name == OIDC_STATE_COOKIE
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub fn parse_same_site(text: &str) -> Option<SameSite> {
    match text.to_ascii_lowercase().as_str() {
        "strict" => Some(SameSite::Strict),
        "lax" => Some(SameSite::Lax),
        "none" => Some(SameSite::None),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_host_only_cookies_get_the_host_prefix_and_all_attributes() {
        let p = CookiePolicy::new("a", "r", true, SameSite::Lax, None);
        let v = p.access("tok", 300);
        let s = v.to_str().unwrap();
        assert!(s.starts_with("__Host-a=tok"), "{s}");
        for attr in [
            "HttpOnly",
            "Secure",
            "Path=/",
            "SameSite=Lax",
            "Max-Age=300",
        ] {
            assert!(s.contains(attr), "{attr} missing in {s}");
        }
        assert!(!s.contains("Domain"));
    }

    #[test]
    fn insecure_or_domain_cookies_have_no_prefix() {
        let p = CookiePolicy::new("a", "r", false, SameSite::Strict, None);
        assert_eq!(p.access_name, "a");
        assert!(!p.access("t", 1).to_str().unwrap().contains("Secure"));
        let p = CookiePolicy::new("a", "r", true, SameSite::Lax, Some("example.com".into()));
        assert_eq!(p.refresh_name, "r");
        assert!(p
            .refresh("t", 1)
            .to_str()
            .unwrap()
            .contains("Domain=example.com"));
    }

    #[test]
    fn clearing_sets_max_age_zero_on_both() {
        let p = CookiePolicy::new("a", "r", false, SameSite::Lax, None);
        let [a, r] = p.clear();
        assert!(
            a.to_str().unwrap().starts_with("a=;") && a.to_str().unwrap().contains("Max-Age=0")
        );
        assert!(
            r.to_str().unwrap().starts_with("r=;") && r.to_str().unwrap().contains("Max-Age=0")
        );
    }
}
