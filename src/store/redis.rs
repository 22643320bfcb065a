//! The Redis backend (SPEC §8 `redis`): several replicas share sessions, refresh records and
//! revocations. Rotation and revocation are Lua scripts, so they are atomic across replicas.
//! Each replica keeps every live revocation in a local map fed by pub/sub, so verifying a
//! request never waits for Redis; after any (re)connect it reloads all live revocations before
//! it calls itself healthy again. With Redis down, `is_revoked` still answers from the local
//! map, and every call that needs Redis returns [`StoreError::Unavailable`] (503).
//!
//! Keys under `key_prefix`: `session:{sid}` (JSON), `refresh:{sha256 hex}` (hash: sid, exp,
//! used_at), `user:{name}` (set of sids), `revoked` (sorted set sid → until); channel
//! `revocations` carries `"{sid} {until}"`. `sync.rs` keeps the local map fed; `throttle.rs`
//! is the shared login throttle.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use dashmap::DashMap;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

mod sync;
mod throttle;

use sync::{revoke_in_redis, sync_loop};

use super::{
    IdpLink, RotateOutcome, RotationPolicy, SessionRecord, StoreCounts, StoreError, TokenHash,
};

/// Redis calls give up after this: a login waits at most this long before its 503.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
const RECONNECT_EVERY: Duration = Duration::from_millis(200);

const ROTATE: &str = r#"
-- Times are milliseconds; a version before that wrote seconds (below 1e11).
local function ms(v) if v > 0 and v < 100000000000 then return v * 1000 end return v end
local r = redis.call('HMGET', KEYS[1], 'sid', 'exp', 'used_at')
if not r[1] then return {'invalid'} end
local sid, exp, used_at = r[1], ms(tonumber(r[2])), ms(tonumber(r[3]))
local now, grace, ttl, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
if exp <= now then return {'invalid'} end
if redis.call('ZSCORE', prefix .. 'revoked', sid) then return {'invalid'} end
local skey = prefix .. 'session:' .. sid
local s = redis.call('GET', skey)
if not s then return {'invalid'} end
local sess = cjson.decode(s)
sess.created_at, sess.last_refresh = ms(sess.created_at), ms(sess.last_refresh)
sess.expires_at, sess.idle_expires_at = ms(sess.expires_at), ms(sess.idle_expires_at)
if sess.expires_at <= now or sess.idle_expires_at <= now then return {'invalid'} end
if used_at == 0 then
  redis.call('HSET', KEYS[1], 'used_at', now)
  local new_exp = math.min(now + ttl, sess.expires_at)
  redis.call('HSET', KEYS[2], 'sid', sid, 'exp', new_exp, 'used_at', 0)
  redis.call('PEXPIREAT', KEYS[2], sess.expires_at)
  sess.last_refresh = now
  sess.idle_expires_at = new_exp
  local enc = cjson.encode(sess)
  redis.call('SET', skey, enc, 'PXAT', sess.expires_at)
  return {'rotated', enc}
elseif now < used_at + grace then
  return {'grace', cjson.encode(sess)}
else
  return {'reuse', cjson.encode(sess)}
end
"#;

const REVOKE: &str = r#"
local prefix, sid, untl = ARGV[1], ARGV[2], ARGV[3]
local skey = prefix .. 'session:' .. sid
local s = redis.call('GET', skey)
redis.call('DEL', skey)
redis.call('ZADD', prefix .. 'revoked', untl, sid)
if s then
  local sess = cjson.decode(s)
  redis.call('SREM', prefix .. 'user:' .. sess.user, sid)
end
redis.call('PUBLISH', prefix .. 'revocations', sid .. ' ' .. untl)
if s then return 1 else return 0 end
"#;

const UPDATE_IDP: &str = r#"
local s = redis.call('GET', KEYS[1])
if not s then return 0 end
local sess = cjson.decode(s)
sess.idp = ARGV[1]
local exp = tonumber(sess.expires_at)
if exp > 0 and exp < 100000000000 then exp = exp * 1000 end
redis.call('SET', KEYS[1], cjson.encode(sess), 'PXAT', exp)
return 1
"#;

pub struct RedisStore {
    /// Boxed: with its TLS settings a `redis::Client` is ~250 bytes, which every `Store`
    /// would carry.
    client: Box<redis::Client>,
    prefix: String,
    conn: Arc<ArcSwapOption<ConnectionManager>>,
    /// sid → until: every live revocation, fed by pub/sub.
    revoked: Arc<DashMap<String, u64>>,
    /// Subscribed and caught up with all revocations.
    synced: Arc<AtomicBool>,
    /// Revocations made while Redis was unreachable: in force locally at once, written and
    /// published by the sync loop after it reconnects.
    pending: Arc<DashMap<String, u64>>,
    sessions_seen: Arc<AtomicUsize>,
    rotate: Script,
    revoke: Script,
    update_idp: Script,
    sync_task: tokio::task::JoinHandle<()>,
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.sync_task.abort();
    }
}

fn unavailable<E: std::fmt::Display>(e: E) -> StoreError {
    tracing::warn!(error = %e, "redis call failed");
    StoreError::Unavailable
}

fn hex(hash: &TokenHash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

impl RedisStore {
    /// Starts the background sync (connect, subscribe, load revocations, reconnect). Needs a
    /// tokio runtime. The store answers `Unavailable` until Redis is reachable.
    pub fn start(client: redis::Client, prefix: String) -> RedisStore {
        let conn: Arc<ArcSwapOption<ConnectionManager>> = Arc::new(ArcSwapOption::empty());
        let revoked = Arc::new(DashMap::new());
        let synced = Arc::new(AtomicBool::new(false));
        let pending = Arc::new(DashMap::new());
        let sync_task = tokio::spawn(sync_loop(
            client.clone(),
            prefix.clone(),
            conn.clone(),
            revoked.clone(),
            synced.clone(),
            pending.clone(),
        ));
        RedisStore {
            client: Box::new(client),
            prefix,
            conn,
            revoked,
            synced,
            pending,
            sessions_seen: Arc::new(AtomicUsize::new(0)),
            rotate: Script::new(ROTATE),
            revoke: Script::new(REVOKE),
            update_idp: Script::new(UPDATE_IDP),
            sync_task,
        }
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }

    fn conn(&self) -> Result<ConnectionManager, StoreError> {
        if !self.synced.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable);
        }
        self.conn
            .load_full()
            .map(|c| (*c).clone())
            .ok_or(StoreError::Unavailable)
    }

    async fn timed<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(CALL_TIMEOUT, fut).await {
            Ok(r) => r.map_err(unavailable),
            Err(_) => Err(unavailable("timed out")),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }

    pub fn is_revoked(&self, sid: &str) -> bool {
        self.revoked.contains_key(sid)
    }

    pub async fn create_session(
        &self,
        s: SessionRecord,
        refresh: TokenHash,
    ) -> Result<(), StoreError> {
        let mut c = self.conn()?;
        let json = serde_json::to_string(&s).map_err(unavailable)?;
        let rkey = self.key("refresh", &hex(&refresh));
        let ukey = self.key("user", &s.user);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(self.key("session", &s.sid))
            .arg(json)
            .arg("PXAT")
            .arg(s.expires_at)
            .ignore()
            .cmd("HSET")
            .arg(&rkey)
            .arg("sid")
            .arg(&s.sid)
            .arg("exp")
            .arg(s.idle_expires_at)
            .arg("used_at")
            .arg(0)
            .ignore()
            .cmd("PEXPIREAT")
            .arg(&rkey)
            .arg(s.expires_at)
            .ignore()
            .cmd("SADD")
            .arg(&ukey)
            .arg(&s.sid)
            .ignore()
            .cmd("PEXPIREAT")
            .arg(&ukey)
            .arg(s.expires_at)
            .arg("GT")
            .ignore()
            .cmd("PEXPIREAT")
            .arg(&ukey)
            .arg(s.expires_at)
            .arg("NX")
            .ignore();
        // Back-channel logout finds a provider's sessions by the IdP's `sub` and `sid`.
        if let Some(link) = &s.idp {
            let mut index = vec![self.idp_key(&link.provider, "sub", &link.sub)];
            index.extend(
                link.sid
                    .as_ref()
                    .map(|sid| self.idp_key(&link.provider, "sid", sid)),
            );
            for key in index {
                pipe.cmd("SADD")
                    .arg(&key)
                    .arg(&s.sid)
                    .ignore()
                    .cmd("PEXPIREAT")
                    .arg(&key)
                    .arg(s.expires_at)
                    .arg("GT")
                    .ignore()
                    .cmd("PEXPIREAT")
                    .arg(&key)
                    .arg(s.expires_at)
                    .arg("NX")
                    .ignore();
            }
        }
        self.timed(pipe.query_async::<()>(&mut c)).await
    }

    fn idp_key(&self, provider: &str, kind: &str, id: &str) -> String {
        // The ids are the IdP's: hashed, so no character of theirs shapes our key space.
        let h = super::hash_token(&format!("{provider}\n{kind}\n{id}"));
        self.key("idp", &hex(&h))
    }

    pub async fn sessions_of_idp(
        &self,
        provider: &str,
        sub: Option<&str>,
        sid: Option<&str>,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let key = match (sid, sub) {
            (Some(sid), _) => self.idp_key(provider, "sid", sid),
            (None, Some(sub)) => self.idp_key(provider, "sub", sub),
            (None, None) => return Ok(Vec::new()),
        };
        let mut c = self.conn()?;
        let sids: Vec<String> = self.timed(c.smembers(key)).await?;
        self.live_sessions(sids).await
    }

    /// The live sessions among these ids.
    async fn live_sessions(&self, sids: Vec<String>) -> Result<Vec<SessionRecord>, StoreError> {
        let mut out = Vec::new();
        for sid in sids {
            if let Some(s) = self.session(&sid).await? {
                out.push(s);
            }
        }
        Ok(out)
    }

    pub async fn update_idp(&self, sid: &str, link: &IdpLink) -> Result<bool, StoreError> {
        if self.is_revoked(sid) {
            return Ok(false);
        }
        let json = serde_json::to_string(link).map_err(unavailable)?;
        let mut c = self.conn()?;
        let mut inv = self.update_idp.key(self.key("session", sid));
        inv.arg(json);
        let updated: i64 = self.timed(inv.invoke_async(&mut c)).await?;
        Ok(updated == 1)
    }

    pub async fn remember_once(&self, key: &str, until: u64) -> Result<bool, StoreError> {
        let mut c = self.conn()?;
        let h = super::hash_token(key);
        let set: Option<String> = self
            .timed(
                redis::cmd("SET")
                    .arg(self.key("once", &hex(&h)))
                    .arg(1)
                    .arg("NX")
                    .arg("PXAT")
                    .arg(until)
                    .query_async(&mut c),
            )
            .await?;
        Ok(set.is_some())
    }

    pub async fn rotate(
        &self,
        presented: &TokenHash,
        successor: TokenHash,
        now: u64,
        policy: RotationPolicy,
    ) -> Result<RotateOutcome, StoreError> {
        let mut c = self.conn()?;
        let mut inv = self.rotate.key(self.key("refresh", &hex(presented)));
        inv.key(self.key("refresh", &hex(&successor)))
            .arg(now)
            .arg(policy.reuse_grace)
            .arg(policy.refresh_ttl)
            .arg(&self.prefix);
        let reply: Vec<String> = self.timed(inv.invoke_async(&mut c)).await?;
        let session = |json: Option<&String>| -> Result<SessionRecord, StoreError> {
            json.and_then(|j| serde_json::from_str(j).ok())
                .ok_or_else(|| unavailable("a session record in Redis does not parse"))
        };
        match reply.first().map(String::as_str) {
            Some("rotated") => Ok(RotateOutcome::Rotated(session(reply.get(1))?)),
            Some("grace") => Ok(RotateOutcome::WithinGrace(session(reply.get(1))?)),
            Some("reuse") => {
                let s = session(reply.get(1))?;
                self.revoke_session(&s.sid, now, policy.revocation_ttl)
                    .await?;
                Ok(RotateOutcome::ReuseDetected {
                    sid: s.sid,
                    user: s.user,
                })
            }
            _ => Ok(RotateOutcome::Invalid),
        }
    }

    pub async fn session(&self, sid: &str) -> Result<Option<SessionRecord>, StoreError> {
        if self.is_revoked(sid) {
            return Ok(None);
        }
        let mut c = self.conn()?;
        let json: Option<String> = self.timed(c.get(self.key("session", sid))).await?;
        Ok(json
            .and_then(|j| serde_json::from_str::<SessionRecord>(&j).ok())
            .map(SessionRecord::with_ms_times))
    }

    pub async fn session_of_refresh(
        &self,
        token: &TokenHash,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let mut c = self.conn()?;
        let sid: Option<String> = self
            .timed(c.hget(self.key("refresh", &hex(token)), "sid"))
            .await?;
        match sid {
            Some(sid) => self.session(&sid).await,
            None => Ok(None),
        }
    }

    pub async fn sessions_of(&self, user: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let mut c = self.conn()?;
        let sids: Vec<String> = self.timed(c.smembers(self.key("user", user))).await?;
        let mut out = self.live_sessions(sids).await?;
        out.sort_by_key(|s| s.created_at);
        Ok(out)
    }

    /// Revokes at once on this replica; with Redis down the revocation is queued and reaches
    /// the other replicas after the reconnect.
    pub async fn revoke_session(&self, sid: &str, now: u64, ttl: u64) -> Result<bool, StoreError> {
        let until = now.saturating_add(ttl);
        self.revoked.insert(sid.to_string(), until);
        let written = match self.conn() {
            Ok(mut c) => {
                self.timed(revoke_in_redis(
                    &self.revoke,
                    &mut c,
                    &self.prefix,
                    sid,
                    until,
                ))
                .await
            }
            Err(e) => Err(e),
        };
        match written {
            Ok(was_live) => Ok(was_live),
            Err(_) => {
                tracing::warn!(
                    session = sid,
                    "redis unreachable: revocation queued, in force on this replica"
                );
                self.pending.insert(sid.to_string(), until);
                Ok(true)
            }
        }
    }

    pub async fn revoke_user(
        &self,
        user: &str,
        now: u64,
        ttl: u64,
    ) -> Result<Vec<String>, StoreError> {
        let mut c = self.conn()?;
        let sids: Vec<String> = self.timed(c.smembers(self.key("user", user))).await?;
        for sid in &sids {
            self.revoke_session(sid, now, ttl).await?;
        }
        Ok(sids)
    }

    pub fn sweep(&self, now: u64) {
        self.revoked.retain(|_, until| now < *until);
        let Ok(mut c) = self.conn() else { return };
        let revoked = format!("{}revoked", self.prefix);
        let pattern = format!("{}session:*", self.prefix);
        let seen = self.sessions_seen.clone();
        tokio::spawn(async move {
            // Milliseconds; entries a version before wrote in seconds sit below 1e11.
            let _: redis::RedisResult<()> = c
                .zrembyscore(&revoked, "-inf", format!("({}", now / 1000))
                .await;
            let _: redis::RedisResult<()> = c.zrembyscore(&revoked, 100_000_000_000u64, now).await;
            let mut count = 0usize;
            if let Ok(mut keys) = c.scan_match::<_, String>(&pattern).await {
                while keys.next().await.is_some() {
                    count += 1;
                }
            }
            seen.store(count, Ordering::SeqCst);
        });
    }

    pub fn counts(&self) -> StoreCounts {
        StoreCounts {
            sessions: self.sessions_seen.load(Ordering::SeqCst),
            refresh_tokens: 0,
            revocations: self.revoked.len(),
        }
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }
}
