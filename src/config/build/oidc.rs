//! `oidc:`: identity providers, each checked against SPEC §11's load-time rules, and users'
//! `oidc:` links to them.

use std::collections::HashMap;

use serde_saphyr::Location;

use super::Ctx;
use crate::config::file::{self, S};

/// `oidc:` → the providers, each checked (SPEC §11). Discovery itself is fetched by the
/// runtime (`run`) and by `check`, not here: building a config does no network I/O.
pub(super) fn build_oidc(
    ctx: &mut Ctx<'_>,
    warnings: &mut Vec<String>,
    o: Option<&S<file::Oidc>>,
    public_origin: Option<&str>,
    auth_prefix: Option<&str>,
    public_url_at: Option<Location>,
) -> Option<crate::oidc::OidcSettings> {
    use crate::oidc::ProviderSettings;
    let o = o?;
    if o.value.providers.is_empty() {
        if !o.value.password_login {
            ctx.err(
                o.referenced,
                "oidc.password_login",
                "is false but no oidc.providers are configured: nobody could sign in",
            );
        }
        return Some(crate::oidc::OidcSettings {
            password_login: o.value.password_login,
            providers: Vec::new(),
        });
    }
    let base = match public_origin {
        Some(origin) => Some(origin.to_string()),
        None => {
            ctx.err(
                public_url_at.unwrap_or(o.referenced),
                "server.public_url",
                "is required when oidc.providers are configured: the redirect URI registered at \
                 the provider is {public_url}{auth_prefix}/oidc/{id}/callback",
            );
            None
        }
    };
    let mut providers = Vec::new();
    let mut ids: HashMap<String, u64> = HashMap::new();
    for (i, p) in o.value.providers.iter().enumerate() {
        let key = |k: &str| format!("oidc.providers[{i}].{k}");
        let v = &p.value;
        let id = v.id.value.0.clone();
        let well_formed = !id.is_empty()
            && id.len() <= 32
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !well_formed {
            ctx.err(
                v.id.referenced,
                &key("id"),
                format!(
                    "`{id}` is not a provider id: 1 to 32 of a-z, 0-9 and `-` (it is part of URLs)"
                ),
            );
        }
        if let Some(line) = ids.insert(id.clone(), v.id.referenced.line()) {
            ctx.err(
                v.id.referenced,
                &key("id"),
                format!("`{id}` is already the id of the provider at line {line}"),
            );
        }
        let issuer = v.issuer.value.0.trim().to_string();
        if !crate::oidc::http::allowed_url(&issuer) || issuer.contains(['?', '#']) {
            ctx.err(
                v.issuer.referenced,
                &key("issuer"),
                format!(
                    "`{issuer}` is not an https URL (plain http only on a loopback address, for \
                     development), e.g. \"https://idp.example.com/realms/corp\""
                ),
            );
        }
        if v.client_id.value.0.is_empty() {
            ctx.err(
                v.client_id.referenced,
                &key("client_id"),
                "must not be empty",
            );
        }
        let scopes: Vec<String> = match &v.scopes {
            Some(list) => list.iter().map(|s| s.value.0.clone()).collect(),
            None => vec!["openid".into(), "email".into(), "profile".into()],
        };
        if !scopes.iter().any(|s| s == "openid") {
            ctx.err(
                v.scopes
                    .as_ref()
                    .and_then(|l| l.first())
                    .map_or(p.referenced, |s| s.referenced),
                &key("scopes"),
                "must include \"openid\" (without it the provider sends no ID token)",
            );
        }
        if scopes
            .iter()
            .any(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            ctx.err(
                p.referenced,
                &key("scopes"),
                "a scope is one word without spaces",
            );
        }
        let mut domains = Vec::new();
        for d in &v.allowed_email_domains {
            let domain = d.value.0.trim().to_ascii_lowercase();
            if domain.is_empty() || domain.contains('@') || domain.contains(char::is_whitespace) {
                ctx.err(
                    d.referenced,
                    &key("allowed_email_domains"),
                    format!(
                        "`{}` is not a domain; write it without `@`, e.g. \"example.com\"",
                        &*d.value
                    ),
                );
            }
            domains.push(domain);
        }
        let logout_at_idp = match v.logout.as_ref().map(|l| (l, l.value.0.as_str())) {
            None | Some((_, "local")) => false,
            Some((_, "idp")) => true,
            Some((l, other)) => {
                ctx.err(
                    l.referenced,
                    &key("logout"),
                    format!("`{other}` is not a logout mode; use local or idp"),
                );
                false
            }
        };
        let recheck_interval = v
            .recheck_interval
            .as_ref()
            .map_or(300_000, |d| crate::clock::ms(d.value.0.as_secs()));
        if recheck_interval == 0 {
            ctx.err(
                v.recheck_interval
                    .as_ref()
                    .map_or(p.referenced, |d| d.referenced),
                &key("recheck_interval"),
                "must be at least 1s",
            );
        }
        let (Some(base), Some(prefix)) = (&base, auth_prefix) else {
            continue;
        };
        providers.push(std::sync::Arc::new(ProviderSettings {
            name: v
                .name
                .as_ref()
                .map_or_else(|| id.clone(), |n| n.value.0.clone()),
            redirect_uri: format!("{base}{prefix}/oidc/{id}/callback"),
            backchannel_uri: format!("{base}{prefix}/oidc/{id}/backchannel-logout"),
            id,
            issuer,
            client_id: v.client_id.value.0.clone(),
            client_secret: v.client_secret.as_ref().map(|s| s.value.0.clone()),
            scopes,
            username_claim: v
                .username_claim
                .as_ref()
                .map_or_else(|| "email".to_string(), |c| c.value.0.clone()),
            roles_claim: v.roles_claim.as_ref().map(|c| c.value.0.clone()),
            role_map: v
                .role_map
                .iter()
                .map(|(k, r)| (k.clone(), r.0.clone()))
                .collect(),
            allowed_email_domains: domains,
            allowed_roles: v.allowed_roles.iter().map(|r| r.value.0.clone()).collect(),
            require_verified_email: v.require_verified_email,
            recheck_interval,
            logout_at_idp,
        }));
    }
    // Two providers that can hand out the same name give the same Gatehouse user.
    let non_email: Vec<&str> = providers
        .iter()
        .filter(|p| p.username_claim != "email")
        .map(|p| p.id.as_str())
        .collect();
    if providers.len() > 1 && !non_email.is_empty() {
        warnings.push(format!(
            "oidc: several providers, and {} take the username from a claim other than email: \
             the same name at two providers is one Gatehouse user. Use username_claim: email \
             with allowed_email_domains per provider, or make sure the names cannot collide",
            non_email.join(", ")
        ));
    }
    Some(crate::oidc::OidcSettings {
        password_login: o.value.password_login,
        providers,
    })
}
