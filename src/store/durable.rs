//! The durable memory store (SPEC §8 `memory` with `store.path`): the dashmaps stay the hot
//! path, and every acknowledged change — login, rotation, revocation — is committed to an
//! embedded redb database (fsync) on the blocking pool before the answer goes out. A
//! `kill -9` at any moment therefore loses nothing that was acknowledged. Loaded at start;
//! expired entries are swept from both.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::memory::{MemoryStore, RefreshRecord};
use super::{
    IdpLink, RotateOutcome, RotationPolicy, SessionRecord, StoreCounts, StoreError, TokenHash,
};

const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
const REFRESH: TableDefinition<&[u8], &[u8]> = TableDefinition::new("refresh");
const REVOKED: TableDefinition<&str, u64> = TableDefinition::new("revoked");

enum Write {
    Session(Box<SessionRecord>),
    DropSession(String),
    Refresh(TokenHash, RefreshRecord),
    Revoked(String, u64),
}

pub struct DurableStore {
    mem: MemoryStore,
    db: Arc<Database>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot open the session database: {0}")]
pub struct OpenError(String);

fn fail<E: std::fmt::Display>(e: E) -> StoreError {
    tracing::error!(error = %e, "session database write failed");
    StoreError::Unavailable
}

impl DurableStore {
    /// Opens (or creates) the database and loads every live entry. Blocking.
    pub fn open(path: &Path, now: u64) -> Result<DurableStore, OpenError> {
        let err = |e: &dyn std::fmt::Display| OpenError(format!("{}: {e}", path.display()));
        let db = Database::create(path).map_err(|e| err(&e))?;
        // Make sure the tables exist, so a fresh database reads as empty.
        let tx = db.begin_write().map_err(|e| err(&e))?;
        {
            tx.open_table(SESSIONS).map_err(|e| err(&e))?;
            tx.open_table(REFRESH).map_err(|e| err(&e))?;
            tx.open_table(REVOKED).map_err(|e| err(&e))?;
        }
        tx.commit().map_err(|e| err(&e))?;
        let mem = MemoryStore::new();
        let (mut sessions, mut refresh, mut revoked) = (Vec::new(), Vec::new(), Vec::new());
        let rx = db.begin_read().map_err(|e| err(&e))?;
        for row in rx
            .open_table(SESSIONS)
            .map_err(|e| err(&e))?
            .iter()
            .map_err(|e| err(&e))?
        {
            let (_, v) = row.map_err(|e| err(&e))?;
            if let Ok(s) = serde_json::from_slice::<SessionRecord>(v.value()) {
                // A database written before times were milliseconds is read as seconds.
                let s = s.with_ms_times();
                if now < s.expires_at && now < s.idle_expires_at {
                    sessions.push(s);
                }
            }
        }
        for row in rx
            .open_table(REFRESH)
            .map_err(|e| err(&e))?
            .iter()
            .map_err(|e| err(&e))?
        {
            let (k, v) = row.map_err(|e| err(&e))?;
            let (Ok(hash), Ok(r)) = (
                <TokenHash>::try_from(k.value()),
                serde_json::from_slice::<RefreshRecord>(v.value()),
            ) else {
                continue;
            };
            let r = r.with_ms_times();
            if now < r.expires_at {
                refresh.push((hash, r));
            }
        }
        for row in rx
            .open_table(REVOKED)
            .map_err(|e| err(&e))?
            .iter()
            .map_err(|e| err(&e))?
        {
            let (k, v) = row.map_err(|e| err(&e))?;
            let until = crate::clock::legacy_to_ms(v.value());
            if now < until {
                revoked.push((k.value().to_string(), until));
            }
        }
        drop(rx);
        tracing::info!(
            sessions = sessions.len(),
            refresh_tokens = refresh.len(),
            revocations = revoked.len(),
            "session database loaded"
        );
        mem.restore(sessions, refresh, revoked);
        Ok(DurableStore {
            mem,
            db: Arc::new(db),
        })
    }

    async fn persist(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            let tx = db.begin_write().map_err(fail)?;
            {
                let mut sessions = tx.open_table(SESSIONS).map_err(fail)?;
                let mut refresh = tx.open_table(REFRESH).map_err(fail)?;
                let mut revoked = tx.open_table(REVOKED).map_err(fail)?;
                for w in writes {
                    match w {
                        Write::Session(s) => {
                            let json = serde_json::to_vec(&s).map_err(fail)?;
                            sessions
                                .insert(s.sid.as_str(), json.as_slice())
                                .map_err(fail)?;
                        }
                        Write::DropSession(sid) => {
                            sessions.remove(sid.as_str()).map_err(fail)?;
                        }
                        Write::Refresh(hash, r) => {
                            let json = serde_json::to_vec(&r).map_err(fail)?;
                            refresh
                                .insert(hash.as_slice(), json.as_slice())
                                .map_err(fail)?;
                        }
                        Write::Revoked(sid, until) => {
                            revoked.insert(sid.as_str(), until).map_err(fail)?;
                        }
                    }
                }
            }
            tx.commit().map_err(fail)
        })
        .await
        .map_err(fail)?
    }

    fn refresh_write(&self, hash: &TokenHash) -> Option<Write> {
        self.mem
            .refresh_record(hash)
            .map(|r| Write::Refresh(*hash, r))
    }

    pub async fn create_session(
        &self,
        s: SessionRecord,
        refresh: TokenHash,
    ) -> Result<(), StoreError> {
        self.mem.create_session(s.clone(), refresh);
        let mut writes = vec![Write::Session(Box::new(s))];
        writes.extend(self.refresh_write(&refresh));
        self.persist(writes).await
    }

    pub async fn rotate(
        &self,
        presented: &TokenHash,
        successor: TokenHash,
        now: u64,
        policy: RotationPolicy,
    ) -> Result<RotateOutcome, StoreError> {
        let outcome = self.mem.rotate(presented, successor, now, policy);
        let writes = match &outcome {
            RotateOutcome::Rotated(s) => {
                let mut w = vec![Write::Session(Box::new(s.clone()))];
                w.extend(self.refresh_write(presented));
                w.extend(self.refresh_write(&successor));
                w
            }
            RotateOutcome::ReuseDetected { sid, .. } => vec![
                Write::DropSession(sid.clone()),
                Write::Revoked(sid.clone(), now.saturating_add(policy.revocation_ttl)),
            ],
            RotateOutcome::WithinGrace(_) | RotateOutcome::Invalid => Vec::new(),
        };
        self.persist(writes).await?;
        Ok(outcome)
    }

    pub fn session(&self, sid: &str) -> Option<SessionRecord> {
        self.mem.session(sid)
    }

    pub fn session_of_refresh(&self, token: &TokenHash) -> Option<SessionRecord> {
        self.mem.session_of_refresh(token)
    }

    pub fn sessions_of(&self, user: &str) -> Vec<SessionRecord> {
        self.mem.sessions_of(user)
    }

    pub async fn revoke_session(&self, sid: &str, now: u64, ttl: u64) -> Result<bool, StoreError> {
        let was_live = self.mem.revoke_session(sid, now, ttl);
        self.persist(vec![
            Write::DropSession(sid.to_string()),
            Write::Revoked(sid.to_string(), now.saturating_add(ttl)),
        ])
        .await?;
        Ok(was_live)
    }

    pub async fn revoke_user(
        &self,
        user: &str,
        now: u64,
        ttl: u64,
    ) -> Result<Vec<String>, StoreError> {
        let sids = self.mem.revoke_user(user, now, ttl);
        let mut writes = Vec::new();
        for sid in &sids {
            writes.push(Write::DropSession(sid.clone()));
            writes.push(Write::Revoked(sid.clone(), now.saturating_add(ttl)));
        }
        self.persist(writes).await?;
        Ok(sids)
    }

    pub fn all_sessions(&self) -> Vec<SessionRecord> {
        self.mem.all_sessions()
    }

    pub async fn update_idp(&self, sid: &str, link: &IdpLink) -> Result<bool, StoreError> {
        if !self.mem.update_idp(sid, link) {
            return Ok(false);
        }
        match self.mem.session(sid) {
            Some(s) => self
                .persist(vec![Write::Session(Box::new(s))])
                .await
                .map(|()| true),
            None => Ok(false),
        }
    }

    /// Kept in memory only: after a restart a replayed `state` still fails its cookie
    /// check, and the IdP refuses a code twice.
    pub fn remember_once(&self, key: &str, now: u64, until: u64) -> bool {
        self.mem.remember_once(key, now, until)
    }

    pub fn is_revoked(&self, sid: &str) -> bool {
        self.mem.is_revoked(sid)
    }

    pub fn sweep(&self, now: u64) {
        self.mem.sweep(now);
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let result = (|| -> Result<(), StoreError> {
                let tx = db.begin_write().map_err(fail)?;
                {
                    let mut sessions = tx.open_table(SESSIONS).map_err(fail)?;
                    sessions
                        .retain(|_, v| {
                            serde_json::from_slice::<SessionRecord>(v).is_ok_and(|s| {
                                let s = s.with_ms_times();
                                now < s.expires_at && now < s.idle_expires_at
                            })
                        })
                        .map_err(fail)?;
                    let mut refresh = tx.open_table(REFRESH).map_err(fail)?;
                    refresh
                        .retain(|_, v| {
                            serde_json::from_slice::<RefreshRecord>(v)
                                .is_ok_and(|r| now < r.with_ms_times().expires_at)
                        })
                        .map_err(fail)?;
                    let mut revoked = tx.open_table(REVOKED).map_err(fail)?;
                    revoked
                        .retain(|_, until| now < crate::clock::legacy_to_ms(until))
                        .map_err(fail)?;
                }
                tx.commit().map_err(fail)
            })();
            if result.is_err() {
                tracing::warn!("sweeping the session database failed; will retry");
            }
        });
    }

    pub fn counts(&self) -> StoreCounts {
        self.mem.counts()
    }
}
