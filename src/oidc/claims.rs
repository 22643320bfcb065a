//! Claims → Gatehouse identity (SPEC §11): the username claim, email and its verification,
//! roles through `role_map`, and the allow-lists. Pure: no I/O, no clock.

use serde_json::{Map, Value};

use super::ProviderSettings;

/// Who a provider says signed in, mapped and allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderIdentity {
    /// Canonical (lowercased, trimmed).
    pub username: String,
    pub email: Option<String>,
    pub roles: Vec<String>,
    pub sub: String,
    pub sid: Option<String>,
}

/// Why a provider's user is not let in. `status` is what the callback answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// 401: the tokens do not say what we need; 403: an allow-list says no.
    pub status: u16,
    pub reason: &'static str,
}

const fn refuse(status: u16, reason: &'static str) -> Refusal {
    Refusal { status, reason }
}

/// Text that may go into a header and a log line: no control characters, bounded.
fn header_safe(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control)
}

fn string_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        // Some providers (older Cognito, some Azure B2C policies) send the string.
        Some(Value::String(s)) => s == "true",
        _ => false,
    }
}

/// The domain of an address with exactly one `@` and something on both sides.
pub fn email_domain(email: &str) -> Option<&str> {
    let mut parts = email.split('@');
    let (local, domain) = (parts.next()?, parts.next()?);
    (parts.next().is_none() && !local.is_empty() && !domain.is_empty()).then_some(domain)
}

/// Maps a provider's claims (ID token merged with userinfo) to an identity, or refuses.
pub fn map_claims(
    p: &ProviderSettings,
    claims: &Map<String, Value>,
) -> Result<ProviderIdentity, Refusal> {
    let sub = string_claim(claims, "sub")
        .filter(|s| header_safe(s))
        .ok_or(refuse(401, "missing_sub"))?;
    let email = match claims.get("email") {
        None | Some(Value::Null) => None,
        Some(Value::String(e)) if header_safe(e) => Some(e.trim().to_string()),
        Some(_) => return Err(refuse(403, "invalid_email")),
    };
    if let Some(e) = &email {
        if email_domain(e).is_none() {
            return Err(refuse(403, "invalid_email"));
        }
        // An unverified address is never used: not as a name, not for a domain check, not
        // forwarded upstream.
        if p.require_verified_email && !truthy(claims.get("email_verified")) {
            return Err(refuse(403, "email_not_verified"));
        }
    }
    let username = string_claim(claims, &p.username_claim)
        .map(|u| u.trim().to_lowercase())
        .filter(|u| !u.is_empty())
        .ok_or(refuse(401, "missing_username_claim"))?;
    if !header_safe(&username) {
        return Err(refuse(403, "invalid_username"));
    }
    if p.username_claim == "email" && email_domain(&username).is_none() {
        return Err(refuse(403, "invalid_email"));
    }
    if !p.allowed_email_domains.is_empty() {
        let domain = email
            .as_deref()
            .and_then(email_domain)
            .map(str::to_ascii_lowercase)
            .ok_or(refuse(403, "email_domain_not_allowed"))?;
        if !p.allowed_email_domains.contains(&domain) {
            return Err(refuse(403, "email_domain_not_allowed"));
        }
    }
    let raw: Vec<&str> = match p.roles_claim.as_deref().and_then(|c| claims.get(c)) {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let mut roles: Vec<String> = Vec::new();
    for value in raw {
        let role = p.role_map.get(value).map(String::as_str).unwrap_or(value);
        // Roles travel comma-separated in a header: a comma would forge a second role.
        if header_safe(role) && !role.contains(',') && !roles.iter().any(|r| r == role) {
            roles.push(role.to_string());
        }
    }
    if !p.allowed_roles.is_empty() && !roles.iter().any(|r| p.allowed_roles.contains(r)) {
        return Err(refuse(403, "role_not_allowed"));
    }
    let sid = string_claim(claims, "sid")
        .filter(|s| header_safe(s))
        .map(str::to_string);
    Ok(ProviderIdentity {
        username,
        email,
        roles,
        sub: sub.to_string(),
        sid,
    })
}

/// Whether the ID token lacks a claim the mapping needs, so userinfo should be asked.
pub fn needs_userinfo(p: &ProviderSettings, claims: &Map<String, Value>) -> bool {
    let missing = |c: &str| !claims.contains_key(c);
    missing(&p.username_claim)
        || (p.username_claim != "email" && missing("email"))
        || p.roles_claim.as_deref().is_some_and(missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn provider() -> ProviderSettings {
        ProviderSettings::for_tests("corp", "http://127.0.0.1:1")
    }

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn a_verified_email_becomes_the_username_and_roles_are_mapped() {
        let mut p = provider();
        p.roles_claim = Some("groups".into());
        p.role_map.insert("corp-admins".into(), "admin".into());
        let id = map_claims(
            &p,
            &claims(
                json!({"sub":"s1","email":"Ann@Example.com","email_verified":true,
                           "groups":["corp-admins","staff","a,b"],"sid":"x"}),
            ),
        )
        .unwrap();
        assert_eq!(id.username, "ann@example.com");
        assert_eq!(id.roles, vec!["admin", "staff"]);
        assert_eq!(id.sid.as_deref(), Some("x"));
    }

    #[test]
    fn unverified_and_malformed_emails_are_refused() {
        let p = provider();
        for (c, reason) in [
            (json!({"sub":"s","email":"a@b.c"}), "email_not_verified"),
            (
                json!({"sub":"s","email":"a@b.c","email_verified":false}),
                "email_not_verified",
            ),
            (
                json!({"sub":"s","email":"a@b@c.com","email_verified":true}),
                "invalid_email",
            ),
            (
                json!({"sub":"s","email":"a\r\n@b.c","email_verified":true}),
                "invalid_email",
            ),
            (json!({"sub":"s"}), "missing_username_claim"),
            (
                json!({"email":"a@b.c","email_verified":true}),
                "missing_sub",
            ),
        ] {
            assert_eq!(map_claims(&p, &claims(c)).unwrap_err().reason, reason);
        }
    }

    #[test]
    fn allow_lists_refuse_with_403() {
        let mut p = provider();
        p.allowed_email_domains = vec!["example.com".into()];
        let ok = json!({"sub":"s","email":"a@EXAMPLE.com","email_verified":true});
        assert!(map_claims(&p, &claims(ok)).is_ok());
        let other = json!({"sub":"s","email":"a@example.com.evil","email_verified":true});
        assert_eq!(
            map_claims(&p, &claims(other)).unwrap_err(),
            refuse(403, "email_domain_not_allowed")
        );
        p.allowed_email_domains.clear();
        p.allowed_roles = vec!["admin".into()];
        p.roles_claim = Some("groups".into());
        let none = json!({"sub":"s","email":"a@b.c","email_verified":true,"groups":"staff"});
        assert_eq!(
            map_claims(&p, &claims(none)).unwrap_err(),
            refuse(403, "role_not_allowed")
        );
        p.role_map.insert("staff".into(), "admin".into());
        let mapped = json!({"sub":"s","email":"a@b.c","email_verified":true,"groups":"staff"});
        assert!(map_claims(&p, &claims(mapped)).is_ok());
    }
}
