//! The login throttle shared by replicas (SPEC §3 `login`): failure counters and locks as
//! Redis keys with expiries.

use redis::{AsyncCommands, Script};

use super::RedisStore;
use crate::store::StoreError;

/// Counts one failure for a throttle key; locks it at `max`. Returns the lock's seconds
/// (0 when not locked).
const THROTTLE_FAIL: &str = r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
if n >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return tonumber(ARGV[3])
end
return 0
"#;

impl RedisStore {
    fn throttle_keys(&self, id: &str) -> (String, String) {
        (self.key("fail", id), self.key("lock", id))
    }

    /// Seconds left on the longest lock among `ids`, if any (shared across replicas).
    pub async fn throttle_locked(&self, ids: &[String]) -> Result<Option<u64>, StoreError> {
        let mut c = self.conn()?;
        let mut longest = None;
        for id in ids {
            let ttl: i64 = self.timed(c.ttl(self.throttle_keys(id).1)).await?;
            if ttl > 0 {
                longest = longest.max(Some(ttl as u64));
            }
        }
        Ok(longest)
    }

    /// Counts a failure for each id; returns the lock if one was set now.
    pub async fn throttle_failure(
        &self,
        ids: &[String],
        window: u64,
        max: u32,
        lockout: u64,
    ) -> Result<Option<u64>, StoreError> {
        let mut c = self.conn()?;
        let script = Script::new(THROTTLE_FAIL);
        let mut locked = None;
        for id in ids {
            let (fail, lock) = self.throttle_keys(id);
            let mut inv = script.key(fail);
            inv.key(lock)
                .arg(window.max(1))
                .arg(max.max(1))
                .arg(lockout.max(1));
            let secs: i64 = self.timed(inv.invoke_async(&mut c)).await?;
            if secs > 0 {
                locked = Some(secs as u64);
            }
        }
        Ok(locked)
    }

    pub async fn throttle_success(&self, id: &str) -> Result<(), StoreError> {
        let mut c = self.conn()?;
        self.timed(c.del::<_, ()>(self.throttle_keys(id).0)).await
    }
}
