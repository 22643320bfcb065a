//! Sessions (SPEC §4): login creates one with its first refresh token; refresh rotates the
//! token, re-reads the user and issues a new access token; reuse after the grace window ends
//! the session. Rotation itself is atomic in the store; this module decides what to issue.

use std::sync::Arc;

use serde::Serialize;

use super::tokens::{AccessClaims, Expectations, KeySet, SignError, TokenError, ACCESS_TOKEN_TYP};
use super::users::{canonical_username, User, Users};
use super::Identity;
use crate::store::{hash_token, RotateOutcome, RotationPolicy, SessionRecord, Store, StoreError};
use crate::{clock, ids};

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
    let expires_at = now + clock::ms(settings.session_max_age);
    let idle_expires_at = (now + clock::ms(settings.refresh_ttl)).min(expires_at);
    let session = SessionRecord {
        sid: ids::session_id(),
        user: canonical_username(&user.username),
        created_at: now,
        expires_at,
        last_refresh: now,
        idle_expires_at,
        client_ip: context.client_ip,
        user_agent: context.user_agent,
        credential_fingerprint: user.credential_fingerprint(),
    };
    let refresh = ids::refresh_token();
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

/// Rotates a refresh token (SPEC §4) and issues new tokens for the current user record.
/// `now` in milliseconds.
pub async fn refresh(
    settings: &TokenSettings,
    store: &Store,
    users: &Users,
    presented: &str,
    now: u64,
) -> Result<Issued, RefreshError> {
    let successor = ids::refresh_token();
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
    let user = current_user(users, &session);
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

/// `typ` of the signed identity assertion sent upstream (SPEC §3 `identity_headers.assertion`).
/// Distinct from `at+jwt`, so an assertion is never accepted as an access token.
pub const ASSERTION_TYP: &str = "gatehouse-assertion+jwt";
/// An assertion describes one request: it lives a minute.
pub const ASSERTION_TTL: u64 = 60;

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    /// The route name: an assertion made for one upstream is no good at another.
    aud: &'a str,
    sub: &'a str,
    sid: &'a str,
    jti: String,
    iat: u64,
    nbf: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    roles: &'a [String],
}

/// A short-lived JWT stating who the request is from, for upstreams that verify it
/// against `/jwks.json` instead of trusting plain headers.
pub fn sign_assertion(
    settings: &TokenSettings,
    identity: &Identity,
    audience: &str,
    now: u64,
) -> Result<String, SignError> {
    let claims = AssertionClaims {
        iss: &settings.issuer,
        aud: audience,
        sub: identity.user(),
        sid: identity.sid(),
        jti: ids::random(12),
        iat: now,
        nbf: now,
        exp: now + ASSERTION_TTL,
        email: identity.email(),
        roles: identity.roles(),
    };
    settings.keys.sign(ASSERTION_TYP, &claims)
}
