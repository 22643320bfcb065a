//! Phase 4 (SPEC §4, §5): who is this? Credentials come from the request, tokens are
//! verified (pure), and the session must not be revoked (an in-memory check). The result is
//! an [`Identity`], which only this module can build: later phases take one, so a request
//! that skipped a check does not compile.

pub mod cache;
pub mod cookies;
pub mod credentials;
pub mod hasher;
pub mod keygen;
pub mod sessions;
pub mod throttle;
pub mod tokens;
pub mod users;

use crate::store::Store;
use sessions::TokenSettings;
use tokens::{AccessClaims, TokenError};

/// A verified token whose session is live. Shares the verified claims (no copies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    claims: std::sync::Arc<AccessClaims>,
}

impl Identity {
    pub fn user(&self) -> &str {
        &self.claims.sub
    }
    pub fn email(&self) -> Option<&str> {
        self.claims.email.as_deref()
    }
    pub fn roles(&self) -> &[String] {
        &self.claims.roles
    }
    pub fn sid(&self) -> &str {
        &self.claims.sid
    }
    pub fn token_exp(&self) -> u64 {
        self.claims.exp
    }
    /// The identity header values, built once per verified token.
    pub fn header_values(
        &self,
    ) -> Result<&tokens::IdentityValues, http::header::InvalidHeaderValue> {
        self.claims.header_values()
    }

    fn from_claims(claims: std::sync::Arc<AccessClaims>) -> Identity {
        Identity { claims }
    }
}

/// Why a request has no identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("no credentials")]
    Missing,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("the session has been revoked")]
    Revoked,
}

impl AuthFailure {
    /// Expired tokens are told apart from invalid ones in `WWW-Authenticate` (SPEC §7).
    pub fn is_expired(&self) -> bool {
        matches!(self, AuthFailure::Token(TokenError::Expired))
    }
}

/// Verifies one access token and checks its session is not revoked.
pub fn identify(
    settings: &TokenSettings,
    store: &Store,
    token: &str,
    now: u64,
) -> Result<Identity, AuthFailure> {
    let claims = settings.verify(token, now)?;
    // Revocation always wins: a token of a revoked session is refused before its `exp`.
    if store.is_revoked(&claims.sid) {
        return Err(AuthFailure::Revoked);
    }
    Ok(Identity::from_claims(claims))
}

/// Tries the candidate access tokens (bearer first, then the cookie) and returns the first
/// identity, or the most telling failure.
pub fn identify_any<'a>(
    settings: &TokenSettings,
    store: &Store,
    candidates: impl IntoIterator<Item = &'a str>,
    now: u64,
) -> Result<Identity, AuthFailure> {
    let mut failure = AuthFailure::Missing;
    for token in candidates {
        match identify(settings, store, token, now) {
            Ok(identity) => return Ok(identity),
            Err(err) => {
                if failure == AuthFailure::Missing || err.is_expired() {
                    failure = err;
                }
            }
        }
    }
    Err(failure)
}

/// A request's identity and any cookies the response must carry (after a refresh).
#[derive(Debug)]
pub struct Authenticated {
    pub identity: Identity,
    pub set_cookies: Vec<http::HeaderValue>,
    /// The tokens issued by a transparent refresh, if one happened.
    pub refreshed: Option<sessions::Issued>,
}

/// Why a request could not be authenticated, and whether its gateway cookies are stale.
#[derive(Debug)]
pub struct Unauthenticated {
    pub failure: AuthFailure,
    pub clear_cookies: bool,
    /// A store outage during refresh is not the client's fault: 503, not 401.
    pub store_error: Option<crate::store::StoreError>,
}

/// The request's access token, bearer first, then the cookie (SPEC §7 "Credentials"):
/// verified, with its session not revoked. No I/O: the same check on every path.
pub fn verify_access(
    settings: &TokenSettings,
    store: &Store,
    creds: &credentials::Credentials<'_>,
    now: u64,
) -> Result<Identity, AuthFailure> {
    let candidates = creds.bearer.iter().chain(creds.access_cookie.iter());
    identify_any(settings, store, candidates.copied(), now)
}

/// What sessions need from the config: tokens, cookies, users, identity providers. The
/// config hands it out (`Config::policy`), so this module needs nothing of the config's.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    pub tokens: &'a sessions::TokenSettings,
    pub cookies: &'a cookies::CookiePolicy,
    pub users: &'a users::Users,
    pub providers: Option<&'a crate::oidc::OidcSettings>,
}

/// Transparent refresh (SPEC §7): no access token verified (`failure` says why) but a refresh
/// cookie is there, so it is rotated inside the proxy and the new cookies ride on the answer.
/// `now` in milliseconds.
pub async fn refresh_in_proxy(
    policy: Policy<'_>,
    store: &Store,
    metrics: &crate::telemetry::metrics::Metrics,
    oidc: &crate::oidc::Oidc,
    refresh_token: &str,
    failure: AuthFailure,
    now: u64,
) -> Result<Authenticated, Unauthenticated> {
    match refresh_with_audit(policy, store, metrics, oidc, refresh_token, now).await {
        Ok(issued) => {
            let set_cookies = issued.cookies(policy.cookies);
            Ok(Authenticated {
                identity: issued.identity.clone(),
                set_cookies,
                refreshed: Some(issued),
            })
        }
        Err(sessions::RefreshError::Store(e)) => Err(Unauthenticated {
            failure,
            clear_cookies: false,
            store_error: Some(e),
        }),
        Err(_) => Err(Unauthenticated {
            failure: if failure == AuthFailure::Missing {
                AuthFailure::Token(TokenError::Malformed)
            } else {
                failure
            },
            clear_cookies: true,
            store_error: None,
        }),
    }
}

/// [`verify_access`], then [`refresh_in_proxy`] when it fails and a refresh cookie is there:
/// for the gateway's own pages that need an identity (`/userinfo`). `now_ms` in milliseconds.
pub async fn authenticate(
    policy: Policy<'_>,
    store: &Store,
    metrics: &crate::telemetry::metrics::Metrics,
    oidc: &crate::oidc::Oidc,
    creds: &credentials::Credentials<'_>,
    now_ms: u64,
) -> Result<Authenticated, Unauthenticated> {
    let failure = match verify_access(policy.tokens, store, creds, now_ms / 1000) {
        Ok(identity) => {
            return Ok(Authenticated {
                identity,
                set_cookies: Vec::new(),
                refreshed: None,
            })
        }
        Err(failure) => failure,
    };
    match creds.refresh_cookie {
        Some(token) => {
            Box::pin(refresh_in_proxy(
                policy, store, metrics, oidc, token, failure, now_ms,
            ))
            .await
        }
        None => Err(Unauthenticated {
            failure,
            clear_cookies: creds.access_cookie.is_some(),
            store_error: None,
        }),
    }
}

/// Refresh plus its audit events and metrics; `now` in milliseconds (SPEC §9).
pub async fn refresh_with_audit(
    policy: Policy<'_>,
    store: &Store,
    metrics: &crate::telemetry::metrics::Metrics,
    oidc: &crate::oidc::Oidc,
    presented: &str,
    now: u64,
) -> Result<sessions::Issued, sessions::RefreshError> {
    use crate::telemetry::audit;
    let providers = sessions::Providers {
        settings: policy.providers,
        runtime: oidc,
    };
    let result = sessions::refresh(
        policy.tokens,
        store,
        policy.users,
        providers,
        presented,
        now,
    )
    .await;
    let label = match &result {
        Ok(issued) => {
            audit::refresh_rotated(
                issued.identity.user(),
                issued.identity.sid(),
                issued.refresh.is_none(),
            );
            if issued.refresh.is_some() {
                "rotated"
            } else {
                "grace"
            }
        }
        Err(sessions::RefreshError::ReuseDetected { sid, user }) => {
            audit::refresh_reuse_detected(user, sid);
            "reuse_detected"
        }
        Err(sessions::RefreshError::UserChanged { sid, user }) => {
            audit::sessions_revoked(user, std::slice::from_ref(sid), "user_changed");
            "user_changed"
        }
        Err(sessions::RefreshError::IdpRefused {
            sid,
            user,
            provider,
            reason,
        }) => {
            audit::sessions_revoked_by_provider(user, std::slice::from_ref(sid), provider, reason);
            "idp_refused"
        }
        Err(sessions::RefreshError::Invalid) => "invalid",
        Err(sessions::RefreshError::Store(_) | sessions::RefreshError::Sign(_)) => "error",
    };
    metrics.refresh_result(label);
    result
}
