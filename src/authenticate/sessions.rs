//! Sessions (SPEC §4): login creates one with its first refresh token; refresh rotates the
//! token, re-reads the user and issues a new access token; reuse after the grace window ends
//! the session. Rotation itself is atomic in the store; this module decides what to issue.
//! `provider.rs`: provider logins' users and the IdP recheck; `assertion.rs`: the signed
//! identity assertion sent upstream.

use std::sync::Arc;

use serde::Serialize;

use super::tokens::{AccessClaims, Expectations, KeySet, SignError, TokenError, ACCESS_TOKEN_TYP};
use super::users::{canonical_username, User, Users};
use super::Identity;
use crate::oidc::{Oidc, OidcSettings};
use crate::store::{
    hash_token, IdpLink, RotateOutcome, RotationPolicy, SessionRecord, Store, StoreError,
};
use crate::{clock, ids};

mod assertion;
mod provider;

pub use assertion::{sign_assertion, ASSERTION_TTL, ASSERTION_TYP};
pub use provider::id_token_hint;
pub use provider::provider_user;
use provider::{recheck, Recheck};

/// The `tokens:` section, built.
#[derive(Debug)]
pub struct TokenSettings {
    pub keys: KeySet,
    pub issuer: String,
    pub audience: String,
    pub access_ttl: u64,
    pub refresh_ttl: u64,
    pub session_max_age: u64,
    pub reuse_grace: u64,
    pub leeway: u64,
    /// Verified tokens of this config snapshot.
    pub cache: super::cache::VerifiedCache,
    /// Seals an IdP's refresh token in the session record, and the OIDC login cookie.
    pub seal: crate::seal::SealKey,
}

impl TokenSettings {
    /// Verifies an access token, from the cache when it was verified before.
    pub fn verify(&self, token: &str, now: u64) -> Result<Arc<AccessClaims>, TokenError> {
        if let Some(cached) = self.cache.get(token, now, self.leeway) {
            return cached;
        }
        // Only token-shaped bytes are verified (and so cached): a cache hit stands for this
        // check, which callers such as the express lane leave to it.
        if !super::credentials::usable(token) {
            return Err(TokenError::Malformed);
        }
        let claims = Arc::new(self.keys.verify(token, &self.expectations(), now)?);
        self.cache.insert(token, claims.clone(), now);
        Ok(claims)
    }

    pub fn expectations(&self) -> Expectations<'_> {
        Expectations {
            issuer: &self.issuer,
            audience: &self.audience,
            leeway: self.leeway,
        }
    }

    /// The store's lifetimes, in milliseconds.
    pub fn rotation_policy(&self) -> RotationPolicy {
        RotationPolicy {
            refresh_ttl: clock::ms(self.refresh_ttl),
            reuse_grace: clock::ms(self.reuse_grace),
            revocation_ttl: self.revocation_ttl(),
        }
    }

    /// How long a revocation is remembered, in milliseconds: it must outlive every access
    /// token issued before it (whose `exp` is at most `access_ttl` away, checked with `leeway`).
    pub fn revocation_ttl(&self) -> u64 {
        clock::ms(self.access_ttl + self.leeway + 1)
    }
}

/// Tokens handed to a client.
#[derive(Debug, Clone)]
pub struct Issued {
    pub identity: Identity,
    pub access_token: String,
    /// Whole seconds until the access token expires (cookie `Max-Age`, `expires_in`).
    pub access_max_age: u64,
    /// A new refresh token and its `Max-Age` in whole seconds (rounded down, so the cookie
    /// never outlives the token); `None` when a reuse inside the grace window yields only an
    /// access token.
    pub refresh: Option<(String, u64)>,
    /// When the session ends, in Unix milliseconds.
    pub session_expires_at: u64,
}

impl Issued {
    /// The `Set-Cookie` values that hand these tokens to a browser: the access cookie, and
    /// the refresh cookie when a new refresh token was issued. The one place the pair is made.
    pub fn cookies(&self, policy: &super::cookies::CookiePolicy) -> Vec<http::HeaderValue> {
        let mut out = vec![policy.access(&self.access_token, self.access_max_age)];
        if let Some((token, age)) = &self.refresh {
            out.push(policy.refresh(token, *age));
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sign(#[from] SignError),
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("the refresh token is unknown, expired or revoked")]
    Invalid,
    #[error("a used refresh token was presented again; the session is revoked")]
    ReuseDetected { sid: String, user: String },
    #[error("the user was removed, disabled or changed password; the session is revoked")]
    UserChanged { sid: String, user: String },
    #[error(
        "the identity provider no longer stands behind the user ({reason}); the session is revoked"
    )]
    IdpRefused {
        sid: String,
        user: String,
        provider: String,
        reason: &'static str,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// Who logged in from where, for the session record.
#[derive(Debug, Clone)]
pub struct LoginContext {
    pub client_ip: String,
    pub user_agent: String,
}

/// The access token's claims. JWT times are whole seconds (RFC 7519 §2): `iat` is the second
/// `now_ms` falls in, and `exp` the last whole second not later than both `now_ms +
/// access_ttl` and the session's end, so the token never outlives either.
fn access_claims(
    settings: &TokenSettings,
    session: &SessionRecord,
    user: &User,
    now_ms: u64,
) -> AccessClaims {
    let now = now_ms / 1000;
    AccessClaims {
        iss: settings.issuer.clone(),
        aud: settings.audience.clone(),
        sub: user.username.clone(),
        sid: session.sid.clone(),
        jti: ids::random(16),
        iat: now,
        nbf: now,
        // An access token never outlives its session.
        exp: (now_ms + clock::ms(settings.access_ttl)).min(session.expires_at) / 1000,
        email: user.email.clone(),
        roles: user.roles.clone(),
        header_values: Default::default(),
    }
}

#[derive(Serialize)]
struct Wire<'a>(&'a AccessClaims);

fn issue(
    settings: &TokenSettings,
    session: &SessionRecord,
    user: &User,
    refresh: Option<(String, u64)>,
    now_ms: u64,
) -> Result<Issued, SignError> {
    let claims = access_claims(settings, session, user, now_ms);
    let access_token = settings.keys.sign(ACCESS_TOKEN_TYP, &Wire(&claims).0)?;
    Ok(Issued {
        // The token's own lifetime in whole seconds: `access_ttl`, or less when the session
        // ends first (SPEC §5).
        access_max_age: claims.exp.saturating_sub(claims.iat),
        identity: Identity::from_claims(Arc::new(claims)),
        access_token,
        refresh,
        session_expires_at: session.expires_at,
    })
}

/// Starts a session for a user whose password was just verified. `now` in milliseconds.
pub async fn login(
    settings: &TokenSettings,
    store: &Store,
    user: &User,
    context: LoginContext,
    now: u64,
) -> Result<Issued, SessionError> {
    let fingerprint = user.credential_fingerprint();
    start_session(
        settings,
        store,
        user,
        ids::session_id(),
        fingerprint,
        None,
        context,
        now,
    )
    .await
}

/// Starts a session for a user an identity provider just vouched for; the provider's refresh
/// token (if it gave one) is sealed to the new session. `now` in milliseconds.
/// What a provider login keeps of the provider's tokens, sealed to the new session.
pub struct IdpTokens<'a> {
    pub refresh_token: Option<&'a str>,
    /// Only for `logout: idp` (the logout's `id_token_hint`).
    pub id_token: Option<&'a str>,
}

pub async fn login_with_provider(
    settings: &TokenSettings,
    store: &Store,
    user: &User,
    mut link: IdpLink,
    tokens: IdpTokens<'_>,
    context: LoginContext,
    now: u64,
) -> Result<Issued, SessionError> {
    let sid = ids::session_id();
    link.refresh_token = tokens
        .refresh_token
        .and_then(|t| settings.seal.seal(t.as_bytes(), sid.as_bytes()));
    link.id_token = tokens
        .id_token
        .and_then(|t| provider::seal_id_token(settings, &sid, t));
    let fingerprint = provider_fingerprint(&link.provider);
    start_session(
        settings,
        store,
        user,
        sid,
        fingerprint,
        Some(link),
        context,
        now,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn start_session(
    settings: &TokenSettings,
    store: &Store,
    user: &User,
    sid: String,
    credential_fingerprint: String,
    idp: Option<IdpLink>,
    context: LoginContext,
    now: u64,
) -> Result<Issued, SessionError> {
    let expires_at = now + clock::ms(settings.session_max_age);
    let idle_expires_at = (now + clock::ms(settings.refresh_ttl)).min(expires_at);
    let session = SessionRecord {
        sid,
        user: canonical_username(&user.username),
        created_at: now,
        expires_at,
        last_refresh: now,
        idle_expires_at,
        client_ip: context.client_ip,
        user_agent: context.user_agent,
        credential_fingerprint,
        idp,
    };
    let refresh = settings.seal.refresh_token();
    store
        .create_session(session.clone(), hash_token(&refresh))
        .await?;
    let refresh_age = (idle_expires_at - now) / 1000;
    Ok(issue(
        settings,
        &session,
        user,
        Some((refresh, refresh_age)),
        now,
    )?)
}

/// A provider session does not depend on a password: its fingerprint names the provider.
fn provider_fingerprint(provider: &str) -> String {
    format!("oidc:{provider}")
}

/// Where a session's user comes from besides the config's `users`.
#[derive(Clone, Copy)]
pub struct Providers<'a> {
    pub settings: Option<&'a OidcSettings>,
    pub runtime: &'a Oidc,
}

/// Rotates a refresh token (SPEC §4) and issues new tokens for the current user record; for a
/// provider session past its `recheck_interval`, asks the IdP first. `now` in milliseconds.
pub async fn refresh(
    settings: &TokenSettings,
    store: &Store,
    users: &Users,
    providers: Providers<'_>,
    presented: &str,
    now: u64,
) -> Result<Issued, RefreshError> {
    let successor = settings.seal.refresh_token();
    let outcome = store
        .rotate(
            &hash_token(presented),
            hash_token(&successor),
            now,
            settings.rotation_policy(),
        )
        .await?;
    let (session, refresh) = match outcome {
        RotateOutcome::Rotated(session) => {
            let age = session.idle_expires_at.saturating_sub(now) / 1000;
            (session, Some((successor, age)))
        }
        RotateOutcome::WithinGrace(session) => (session, None),
        RotateOutcome::ReuseDetected { sid, user } => {
            return Err(RefreshError::ReuseDetected { sid, user })
        }
        RotateOutcome::Invalid => return Err(RefreshError::Invalid),
    };
    let rotated = refresh.is_some();
    let mut session = session;
    let mut user = match &session.idp {
        None => current_user(users, &session),
        Some(link) => providers
            .settings
            .and_then(|o| o.provider(&link.provider))
            .and_then(|_| {
                provider_user(
                    users,
                    &link.provider,
                    &session.user,
                    link.email.as_deref(),
                    &link.roles,
                )
                .ok()
            })
            .map(Arc::new),
    };
    // Only the rotation that made a successor asks the IdP: a reuse within the grace window
    // (parallel tabs) must not spend the IdP's refresh token twice.
    let due = session.idp.as_ref().filter(|_| rotated).and_then(|link| {
        let p = providers.settings?.provider(&link.provider)?;
        (now >= link.checked_at.saturating_add(p.recheck_interval))
            .then(|| (p.clone(), link.clone()))
    });
    if let (Some((p, link)), Some(_)) = (due, &user) {
        match recheck(settings, providers.runtime, &p, &session, &link, now).await {
            Recheck::Confirmed(new) => {
                store.update_idp(&session.sid, &new).await?;
                user = provider_user(
                    users,
                    &p.id,
                    &session.user,
                    new.email.as_deref(),
                    &new.roles,
                )
                .ok()
                .map(Arc::new);
                session.idp = Some(new);
            }
            Recheck::Skipped => {}
            Recheck::Refused(reason) => {
                store
                    .revoke_session(&session.sid, now, settings.revocation_ttl())
                    .await?;
                return Err(RefreshError::IdpRefused {
                    sid: session.sid,
                    user: session.user,
                    provider: p.id.clone(),
                    reason,
                });
            }
        }
    }
    let Some(user) = user else {
        store
            .revoke_session(&session.sid, now, settings.revocation_ttl())
            .await?;
        return Err(RefreshError::UserChanged {
            sid: session.sid,
            user: session.user,
        });
    };
    Ok(issue(settings, &session, &user, refresh, now)?)
}

/// The session's user as the config has them now, if they may still hold it.
fn current_user(users: &Users, session: &SessionRecord) -> Option<Arc<User>> {
    let user = users.get(&session.user)?;
    (!user.disabled && user.credential_fingerprint() == session.credential_fingerprint)
        .then(|| user.clone())
}

// ------------------------------------------------------------------ sessions by id and user
//
// The gateway's own endpoints (logout, userinfo, back-channel logout) and the admin API find
// and end sessions through these, never through the store: one place decides how long a
// revocation is remembered and what an ended session means.

/// A live session by id.
pub async fn session(store: &Store, sid: &str) -> Result<Option<SessionRecord>, StoreError> {
    store.session(sid).await
}

/// The live session a refresh token (used or not) belongs to: logout after the access token
/// expired.
pub async fn session_of_refresh_token(
    store: &Store,
    token: &str,
) -> Result<Option<SessionRecord>, StoreError> {
    store.session_of_refresh(&hash_token(token)).await
}

/// A user's live sessions, oldest first.
pub async fn sessions_of(store: &Store, user: &str) -> Result<Vec<SessionRecord>, StoreError> {
    store.sessions_of(&canonical_username(user)).await
}

/// Ends one session now: its access tokens are refused from the next request. Returns whether
/// it was live. `now` in milliseconds.
pub async fn end(
    settings: &TokenSettings,
    store: &Store,
    sid: &str,
    now: u64,
) -> Result<bool, StoreError> {
    store
        .revoke_session(sid, now, settings.revocation_ttl())
        .await
}

/// Ends every session of a user now. Returns the ids ended.
pub async fn end_all(
    settings: &TokenSettings,
    store: &Store,
    user: &str,
    now: u64,
) -> Result<Vec<String>, StoreError> {
    store
        .revoke_user(&canonical_username(user), now, settings.revocation_ttl())
        .await
}

/// Ends every session from one identity provider's session (`sid`) or user (`sub`)
/// (back-channel logout). Returns the ids ended, by user.
pub async fn end_provider_sessions(
    settings: &TokenSettings,
    store: &Store,
    provider: &str,
    sub: Option<&str>,
    sid: Option<&str>,
    now: u64,
) -> Result<std::collections::BTreeMap<String, Vec<String>>, StoreError> {
    let mut ended: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for s in store.sessions_of_idp(provider, sub, sid).await? {
        if end(settings, store, &s.sid, now).await? {
            ended.entry(s.user).or_default().push(s.sid);
        }
    }
    Ok(ended)
}

/// A key used once (an OIDC `state`, a logout token's `jti`): `true` the first time, `false`
/// while remembered (until `until`, Unix ms; shared by replicas with Redis).
pub async fn first_use(store: &Store, key: &str, now: u64, until: u64) -> Result<bool, StoreError> {
    store.remember_once(key, now, until).await
}

/// After a reload (SPEC §9): the sessions of users who were removed, disabled, or whose
/// password changed are revoked at once, so their access tokens stop working now rather than
/// at their `exp`. Times in milliseconds.
pub async fn revoke_changed_users(old: &Users, new: &Users, store: &Store, now: u64, ttl: u64) {
    for u in old.iter() {
        let name = canonical_username(&u.username);
        let still_ok = new.get(&name).is_some_and(|n| {
            !n.disabled && n.credential_fingerprint() == u.credential_fingerprint()
        });
        if still_ok {
            continue;
        }
        match store.revoke_user(&name, now, ttl).await {
            Ok(sids) if !sids.is_empty() => {
                crate::telemetry::audit::sessions_revoked(&name, &sids, "user_changed")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(user = name, error = %e, "revoking sessions of a changed user failed")
            }
        }
    }
}
