//! Sessions from an identity provider (SPEC §11): who a provider login stands for, and asking
//! the IdP again at a refresh once `recheck_interval` has passed.

use super::TokenSettings;
use crate::authenticate::users::{canonical_username, User, Users};
use crate::oidc::{Oidc, OidcError, ProviderSettings};
use crate::store::{IdpLink, SessionRecord};

/// The user a provider login stands for: a local user of the same name only when that user
/// names the provider (`oidc: ID`) and is not disabled — then with the local roles and the
/// provider's added — otherwise a user of the provider's own. `Err`: the audit reason.
pub fn provider_user(
    users: &Users,
    provider: &str,
    username: &str,
    email: Option<&str>,
    roles: &[String],
) -> Result<User, &'static str> {
    match users.get(&canonical_username(username)) {
        Some(local) if local.oidc.as_deref() != Some(provider) => Err("local_user_conflict"),
        Some(local) if local.disabled => Err("disabled"),
        Some(local) => {
            let mut merged = local.roles.clone();
            merged.extend(roles.iter().filter(|r| !local.roles.contains(r)).cloned());
            Ok(User {
                username: local.username.clone(),
                password_hash: String::new(),
                email: email.map(str::to_string).or_else(|| local.email.clone()),
                roles: merged,
                disabled: false,
                oidc: Some(provider.to_string()),
            })
        }
        None => Ok(User {
            username: canonical_username(username),
            password_hash: String::new(),
            email: email.map(str::to_string),
            roles: roles.to_vec(),
            disabled: false,
            oidc: Some(provider.to_string()),
        }),
    }
}

/// The AAD an ID token is sealed under: its session, and what it is (a sealed refresh token
/// of the same session does not open as one).
fn id_token_aad(sid: &str) -> Vec<u8> {
    format!("{sid}/id_token").into_bytes()
}

pub(super) fn seal_id_token(settings: &TokenSettings, sid: &str, token: &str) -> Option<String> {
    settings.seal.seal(token.as_bytes(), &id_token_aad(sid))
}

/// The session's latest ID token from its provider, for the logout's `id_token_hint`; `None`
/// when none was kept or it no longer opens (the signing key changed since).
pub fn id_token_hint(settings: &TokenSettings, sid: &str, link: &IdpLink) -> Option<String> {
    let sealed = link.id_token.as_ref()?;
    let plain = settings.seal.open(sealed, &id_token_aad(sid))?;
    String::from_utf8(plain).ok()
}

/// What asking the IdP again said.
pub(super) enum Recheck {
    Confirmed(IdpLink),
    Refused(&'static str),
    /// Unreachable or no refresh token to ask with: the session goes on, asked next time.
    Skipped,
}

/// Uses the IdP's refresh token (SPEC §11 `recheck_interval`): a refusal ends the session; new
/// claims (roles, email) from a fresh ID token are taken.
pub(super) async fn recheck(
    settings: &TokenSettings,
    oidc: &Oidc,
    p: &ProviderSettings,
    session: &SessionRecord,
    link: &IdpLink,
    now: u64,
) -> Recheck {
    let Some(sealed) = &link.refresh_token else {
        return Recheck::Skipped;
    };
    let Some(plain) = settings
        .seal
        .open(sealed, session.sid.as_bytes())
        .and_then(|b| String::from_utf8(b).ok())
    else {
        // Sealed under a signing key that has since been replaced: the IdP cannot be asked.
        return Recheck::Refused("idp_token_unreadable");
    };
    let answer = match oidc.refresh_at_idp(p, &plain).await {
        Ok(answer) => answer,
        Err(OidcError::Unavailable(reason)) => {
            tracing::warn!(provider = %p.id, session = %session.sid, reason, "identity provider unreachable at recheck; the session goes on and is checked at its next refresh");
            return Recheck::Skipped;
        }
        Err(OidcError::Refused(reason) | OidcError::BadToken(reason)) => {
            return Recheck::Refused(reason)
        }
    };
    let mut new = link.clone();
    new.checked_at = now;
    if let Some(token) = answer.refresh_token {
        new.refresh_token = settings.seal.seal(token.as_bytes(), session.sid.as_bytes());
    }
    if let Some(id_token) = answer.id_token {
        match oidc
            .verify_id_token(p, &id_token, None, settings.leeway)
            .await
        {
            Ok(claims) => {
                if claims.get("sub").and_then(|v| v.as_str()) != Some(link.sub.as_str()) {
                    return Recheck::Refused("sub_changed");
                }
                if p.logout_at_idp {
                    new.id_token = seal_id_token(settings, &session.sid, &id_token);
                }
                match crate::oidc::map_claims(p, &claims) {
                    Ok(id) => {
                        new.email = id.email;
                        new.roles = id.roles;
                    }
                    // An allow-list now says no.
                    Err(r) if r.status == 403 => return Recheck::Refused(r.reason),
                    // A refreshed ID token may carry fewer claims: keep what login saw.
                    Err(_) => {}
                }
            }
            Err(OidcError::Unavailable(_)) => {}
            Err(OidcError::Refused(r) | OidcError::BadToken(r)) => return Recheck::Refused(r),
        }
    }
    Recheck::Confirmed(new)
}
