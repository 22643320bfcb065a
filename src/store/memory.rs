//! The in-memory backend (SPEC §8 `memory`): three dashmaps. Rotation takes the presented
//! token's shard lock, flips it to used, and only then inserts the successor, so no shard
//! lock is ever held while another is taken.
//!
//! Times are Unix milliseconds; every expiry is exclusive (live while `now < expires_at`).

use dashmap::DashMap;

use super::{IdpLink, RotateOutcome, RotationPolicy, SessionRecord, StoreCounts, TokenHash};

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub(super) enum RefreshState {
    Active,
    Used { rotated_at: u64 },
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct RefreshRecord {
    pub(super) sid: String,
    pub(super) expires_at: u64,
    pub(super) state: RefreshState,
}

impl RefreshRecord {
    /// The record with times a version before millisecond times wrote in seconds converted.
    pub(super) fn with_ms_times(mut self) -> RefreshRecord {
        use crate::clock::legacy_to_ms;
        self.expires_at = legacy_to_ms(self.expires_at);
        if let RefreshState::Used { rotated_at } = &mut self.state {
            *rotated_at = legacy_to_ms(*rotated_at);
        }
        self
    }
}

#[derive(Default)]
pub struct MemoryStore {
    sessions: DashMap<String, SessionRecord>,
    refresh: DashMap<TokenHash, RefreshRecord>,
    /// sid → until when the revocation must be remembered. Checked on every request, so
    /// hashed with foldhash (randomly seeded) rather than SipHash.
    revoked: DashMap<String, u64, foldhash::fast::RandomState>,
    /// Keys seen once (OIDC `state`, logout-token `jti`) → until when.
    once: DashMap<String, u64>,
}

enum Step {
    Rotate(SessionRecord),
    Grace(SessionRecord),
    Reuse(String),
    Invalid,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    pub fn create_session(&self, session: SessionRecord, refresh: TokenHash) {
        self.refresh.insert(
            refresh,
            RefreshRecord {
                sid: session.sid.clone(),
                expires_at: session.idle_expires_at,
                state: RefreshState::Active,
            },
        );
        self.sessions.insert(session.sid.clone(), session);
    }

    fn live_session(&self, sid: &str, now: u64) -> Option<SessionRecord> {
        if self.revoked.contains_key(sid) {
            return None;
        }
        let session = self.sessions.get(sid)?;
        (now < session.expires_at && now < session.idle_expires_at).then(|| session.clone())
    }

    pub fn rotate(
        &self,
        presented: &TokenHash,
        successor: TokenHash,
        now: u64,
        policy: RotationPolicy,
    ) -> RotateOutcome {
        let step = {
            let Some(mut record) = self.refresh.get_mut(presented) else {
                return RotateOutcome::Invalid;
            };
            if now >= record.expires_at {
                Step::Invalid
            } else {
                match record.state {
                    RefreshState::Active => match self.live_session(&record.sid, now) {
                        Some(session) => {
                            record.state = RefreshState::Used { rotated_at: now };
                            Step::Rotate(session)
                        }
                        None => Step::Invalid,
                    },
                    RefreshState::Used { rotated_at } => {
                        if now < rotated_at.saturating_add(policy.reuse_grace) {
                            match self.live_session(&record.sid, now) {
                                Some(session) => Step::Grace(session),
                                None => Step::Invalid,
                            }
                        } else {
                            Step::Reuse(record.sid.clone())
                        }
                    }
                }
            }
        };
        match step {
            Step::Invalid => RotateOutcome::Invalid,
            Step::Grace(session) => RotateOutcome::WithinGrace(session),
            Step::Reuse(sid) => {
                let user = self
                    .sessions
                    .get(&sid)
                    .map(|s| s.user.clone())
                    .unwrap_or_default();
                self.revoke_session(&sid, now, policy.revocation_ttl);
                RotateOutcome::ReuseDetected { sid, user }
            }
            Step::Rotate(mut session) => {
                let expires_at = now
                    .saturating_add(policy.refresh_ttl)
                    .min(session.expires_at);
                self.refresh.insert(
                    successor,
                    RefreshRecord {
                        sid: session.sid.clone(),
                        expires_at,
                        state: RefreshState::Active,
                    },
                );
                if let Some(mut stored) = self.sessions.get_mut(&session.sid) {
                    stored.last_refresh = now;
                    stored.idle_expires_at = expires_at;
                    session = stored.clone();
                }
                RotateOutcome::Rotated(session)
            }
        }
    }

    pub fn session(&self, sid: &str) -> Option<SessionRecord> {
        if self.revoked.contains_key(sid) {
            return None;
        }
        self.sessions.get(sid).map(|s| s.clone())
    }

    pub(super) fn refresh_record(&self, token: &TokenHash) -> Option<RefreshRecord> {
        self.refresh.get(token).map(|r| r.clone())
    }

    /// Puts back state loaded from disk.
    pub(super) fn restore(
        &self,
        sessions: Vec<SessionRecord>,
        refresh: Vec<(TokenHash, RefreshRecord)>,
        revoked: Vec<(String, u64)>,
    ) {
        for s in sessions {
            self.sessions.insert(s.sid.clone(), s);
        }
        for (hash, r) in refresh {
            self.refresh.insert(hash, r);
        }
        for (sid, until) in revoked {
            self.revoked.insert(sid, until);
        }
    }

    pub fn session_of_refresh(&self, token: &TokenHash) -> Option<SessionRecord> {
        let sid = self.refresh.get(token)?.sid.clone();
        self.session(&sid)
    }

    pub fn sessions_of(&self, user: &str) -> Vec<SessionRecord> {
        let mut out: Vec<SessionRecord> = self
            .sessions
            .iter()
            .filter(|s| s.user == user)
            .map(|s| s.clone())
            .collect();
        out.sort_by_key(|s| s.created_at);
        out
    }

    pub fn revoke_session(&self, sid: &str, now: u64, revocation_ttl: u64) -> bool {
        let was_live = self.sessions.remove(sid).is_some();
        self.revoked
            .insert(sid.to_string(), now.saturating_add(revocation_ttl));
        was_live
    }

    pub fn revoke_user(&self, user: &str, now: u64, revocation_ttl: u64) -> Vec<String> {
        let sids: Vec<String> = self
            .sessions
            .iter()
            .filter(|s| s.user == user)
            .map(|s| s.sid.clone())
            .collect();
        for sid in &sids {
            self.revoke_session(sid, now, revocation_ttl);
        }
        sids
    }

    pub fn is_revoked(&self, sid: &str) -> bool {
        self.revoked.contains_key(sid)
    }

    pub fn sweep(&self, now: u64) {
        self.sessions
            .retain(|_, s| now < s.expires_at && now < s.idle_expires_at);
        self.refresh.retain(|_, r| now < r.expires_at);
        self.revoked.retain(|_, until| *until > now);
        self.once.retain(|_, until| *until > now);
    }

    pub fn all_sessions(&self) -> Vec<SessionRecord> {
        self.sessions
            .iter()
            .filter(|s| !self.revoked.contains_key(&s.sid))
            .map(|s| s.clone())
            .collect()
    }

    pub fn update_idp(&self, sid: &str, link: &IdpLink) -> bool {
        if self.revoked.contains_key(sid) {
            return false;
        }
        match self.sessions.get_mut(sid) {
            Some(mut s) => {
                s.idp = Some(link.clone());
                true
            }
            None => false,
        }
    }

    pub fn remember_once(&self, key: &str, now: u64, until: u64) -> bool {
        use dashmap::mapref::entry::Entry;
        match self.once.entry(key.to_string()) {
            Entry::Occupied(mut e) if *e.get() <= now => {
                e.insert(until);
                true
            }
            Entry::Occupied(_) => false,
            Entry::Vacant(e) => {
                e.insert(until);
                true
            }
        }
    }

    pub fn counts(&self) -> StoreCounts {
        StoreCounts {
            sessions: self.sessions.len(),
            refresh_tokens: self.refresh.len(),
            revocations: self.revoked.len(),
        }
    }
}
