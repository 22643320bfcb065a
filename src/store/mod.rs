//! Sessions, refresh-token records and revocations (SPEC §4, §8). The store deals in ids,
//! token hashes and `now`, never in HTTP types, so one test suite runs on every backend.
//! Every time and duration here is in **milliseconds** (Unix epoch), and every expiry is
//! exclusive: a record is live while `now < expires_at`.
//!
//! Guarantees every backend keeps:
//! - a refresh token is stored only as its SHA-256 hash;
//! - rotation is atomic per token: one presented token has at most one successor;
//! - a used token presented within `reuse_grace` of its rotation yields the session and no
//!   successor; presented later, the whole session is revoked;
//! - [`Store::is_revoked`] answers from process memory, with no I/O, for every request.
//!
//! Never imports `endpoints` or `forward`.

mod durable;
mod memory;
mod redis;

pub use self::durable::{DurableStore, OpenError};
pub use self::redis::RedisStore;
pub use memory::MemoryStore;

/// SHA-256 of a refresh token.
pub type TokenHash = [u8; 32];

pub fn hash_token(token: &str) -> TokenHash {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionRecord {
    pub sid: String,
    /// Canonical username.
    pub user: String,
    pub created_at: u64,
    /// Absolute end: `created_at + session_max_age`.
    pub expires_at: u64,
    pub last_refresh: u64,
    /// Idle end: the current refresh token's expiry.
    pub idle_expires_at: u64,
    pub client_ip: String,
    pub user_agent: String,
    /// Hash of the user's password hash at login: a changed password ends the session.
    pub credential_fingerprint: String,
    /// For a login through an identity provider: which one, and what it said. Kept as one
    /// JSON string inside the record, so Redis scripts pass it through untouched.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "idp_as_string"
    )]
    pub idp: Option<IdpLink>,
}

/// What a session from an identity provider remembers about it (SPEC §11).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdpLink {
    pub provider: String,
    /// The IdP's `sub` and session id (`sid`), for back-channel logout.
    pub sub: String,
    #[serde(default)]
    pub sid: Option<String>,
    pub email: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// The IdP's refresh token, sealed (`crate::seal`) to this session: never stored or
    /// logged in the clear.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// The IdP's latest ID token, sealed likewise: kept only for `logout: idp`, where it goes
    /// back to the provider as `id_token_hint` (RP-Initiated Logout 1.0 §2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// When the IdP last confirmed the user (Unix ms).
    pub checked_at: u64,
}

mod idp_as_string {
    use super::IdpLink;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<IdpLink>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(link) => {
                let json = serde_json::to_string(link).map_err(serde::ser::Error::custom)?;
                s.serialize_some(&json)
            }
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IdpLink>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(json) => serde_json::from_str(&json)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

impl SessionRecord {
    /// The record with times a version before millisecond times wrote in seconds converted.
    pub fn with_ms_times(mut self) -> SessionRecord {
        use crate::clock::legacy_to_ms;
        self.created_at = legacy_to_ms(self.created_at);
        self.expires_at = legacy_to_ms(self.expires_at);
        self.last_refresh = legacy_to_ms(self.last_refresh);
        self.idle_expires_at = legacy_to_ms(self.idle_expires_at);
        self
    }
}

/// The lifetimes a rotation needs.
#[derive(Debug, Clone, Copy)]
pub struct RotationPolicy {
    /// All in milliseconds.
    pub refresh_ttl: u64,
    pub reuse_grace: u64,
    /// How long a revocation is remembered: the longest an access token issued before it
    /// can still pass its `exp` check (`access_ttl + leeway`).
    pub revocation_ttl: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The presented token is now used; `new_hash` is its one successor.
    Rotated(SessionRecord),
    /// The token was rotated less than `reuse_grace` ago (parallel tabs, concurrent
    /// requests): the session is fine, but no successor is created.
    WithinGrace(SessionRecord),
    /// A used token came back after the grace window: theft. The session is revoked.
    ReuseDetected { sid: String, user: String },
    /// Unknown, expired, or its session is gone or revoked.
    Invalid,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the session store is unreachable")]
    Unavailable,
}

/// The configured backend. An enum rather than a trait object: the set of backends is
/// closed, and every call is statically dispatched.
pub enum Store {
    Memory(MemoryStore),
    Durable(DurableStore),
    Redis(RedisStore),
}

impl Store {
    pub async fn create_session(
        &self,
        session: SessionRecord,
        refresh: TokenHash,
    ) -> Result<(), StoreError> {
        match self {
            Store::Memory(m) => {
                m.create_session(session, refresh);
                Ok(())
            }
            Store::Durable(d) => d.create_session(session, refresh).await,
            Store::Redis(r) => r.create_session(session, refresh).await,
        }
    }

    pub async fn rotate(
        &self,
        presented: &TokenHash,
        successor: TokenHash,
        now: u64,
        policy: RotationPolicy,
    ) -> Result<RotateOutcome, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.rotate(presented, successor, now, policy)),
            Store::Durable(d) => d.rotate(presented, successor, now, policy).await,
            Store::Redis(r) => r.rotate(presented, successor, now, policy).await,
        }
    }

    pub async fn session(&self, sid: &str) -> Result<Option<SessionRecord>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.session(sid)),
            Store::Durable(d) => Ok(d.session(sid)),
            Store::Redis(r) => r.session(sid).await,
        }
    }

    /// The session a refresh token (used or not) belongs to, if it is still live.
    pub async fn session_of_refresh(
        &self,
        token: &TokenHash,
    ) -> Result<Option<SessionRecord>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.session_of_refresh(token)),
            Store::Durable(d) => Ok(d.session_of_refresh(token)),
            Store::Redis(r) => r.session_of_refresh(token).await,
        }
    }

    pub async fn sessions_of(&self, user: &str) -> Result<Vec<SessionRecord>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.sessions_of(user)),
            Store::Durable(d) => Ok(d.sessions_of(user)),
            Store::Redis(r) => r.sessions_of(user).await,
        }
    }

    /// Sessions from one identity provider's session (`sid`) or user (`sub`): with `sid`,
    /// those of that IdP session (and of `sub`, when given too); with only `sub`, all of that
    /// user's.
    pub async fn sessions_of_idp(
        &self,
        provider: &str,
        sub: Option<&str>,
        sid: Option<&str>,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let all = match self {
            Store::Memory(m) => m.all_sessions(),
            Store::Durable(d) => d.all_sessions(),
            Store::Redis(r) => r.sessions_of_idp(provider, sub, sid).await?,
        };
        Ok(all
            .into_iter()
            .filter(|s| {
                s.idp.as_ref().is_some_and(|l| {
                    l.provider == provider
                        && sub.is_none_or(|sub| l.sub == sub)
                        && sid.is_none_or(|sid| l.sid.as_deref() == Some(sid))
                })
            })
            .collect())
    }

    /// Replaces a live session's provider link (after a recheck at the IdP). Returns whether
    /// the session was live.
    pub async fn update_idp(&self, sid: &str, link: &IdpLink) -> Result<bool, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.update_idp(sid, link)),
            Store::Durable(d) => d.update_idp(sid, link).await,
            Store::Redis(r) => r.update_idp(sid, link).await,
        }
    }

    /// Records `key` until `until` (Unix ms); `true` the first time, `false` while it is
    /// remembered (a replayed OIDC `state` or logout-token `jti`). Shared by replicas with
    /// Redis; per process otherwise.
    pub async fn remember_once(&self, key: &str, now: u64, until: u64) -> Result<bool, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.remember_once(key, now, until)),
            Store::Durable(d) => Ok(d.remember_once(key, now, until)),
            Store::Redis(r) => r.remember_once(key, until).await,
        }
    }

    /// Ends one session at once. Returns whether it was live.
    pub async fn revoke_session(
        &self,
        sid: &str,
        now: u64,
        revocation_ttl: u64,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.revoke_session(sid, now, revocation_ttl)),
            Store::Durable(d) => d.revoke_session(sid, now, revocation_ttl).await,
            Store::Redis(r) => r.revoke_session(sid, now, revocation_ttl).await,
        }
    }

    /// Ends every session of a user. Returns the ids revoked.
    pub async fn revoke_user(
        &self,
        user: &str,
        now: u64,
        revocation_ttl: u64,
    ) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.revoke_user(user, now, revocation_ttl)),
            Store::Durable(d) => d.revoke_user(user, now, revocation_ttl).await,
            Store::Redis(r) => r.revoke_user(user, now, revocation_ttl).await,
        }
    }

    /// The hot-path check: in memory, no I/O.
    pub fn is_revoked(&self, sid: &str) -> bool {
        match self {
            Store::Memory(m) => m.is_revoked(sid),
            Store::Durable(d) => d.is_revoked(sid),
            Store::Redis(r) => r.is_revoked(sid),
        }
    }

    /// Drops expired sessions, refresh records and revocations.
    pub fn sweep(&self, now: u64) {
        match self {
            Store::Memory(m) => m.sweep(now),
            Store::Durable(d) => d.sweep(now),
            Store::Redis(r) => r.sweep(now),
        }
    }

    /// Whether the backend answers (always, for memory).
    pub fn is_healthy(&self) -> bool {
        match self {
            Store::Memory(_) | Store::Durable(_) => true,
            Store::Redis(r) => r.is_healthy(),
        }
    }

    pub fn counts(&self) -> StoreCounts {
        match self {
            Store::Memory(m) => m.counts(),
            Store::Durable(d) => d.counts(),
            Store::Redis(r) => r.counts(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreCounts {
    pub sessions: usize,
    pub refresh_tokens: usize,
    pub revocations: usize,
}

#[cfg(test)]
mod tests;
