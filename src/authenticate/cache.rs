//! The verified-token cache: token text → claims that passed the full check (algorithm,
//! `typ`, `kid`, signature, `iss`, `aud`). A hit re-checks only what depends on the clock
//! (`exp`, `nbf`, with leeway); revocation is checked by the caller on every request, hit or
//! not. The cache belongs to one config snapshot, so a reload that changes keys, issuer or
//! audience starts empty. Bounded: when full, expired entries are dropped, and if that is not
//! enough new tokens are simply not cached (they still verify).

use std::sync::Arc;

use dashmap::DashMap;

use super::tokens::{AccessClaims, TokenError};

pub const DEFAULT_CAPACITY: usize = 100_000;

#[derive(Debug)]
pub struct VerifiedCache {
    /// foldhash, randomly seeded: hashing a ~300-byte token with SipHash was a visible share
    /// of every request. Only verified tokens are inserted, so clients cannot pick the keys.
    entries: DashMap<Box<str>, Arc<AccessClaims>, foldhash::fast::RandomState>,
    capacity: usize,
}

impl Default for VerifiedCache {
    fn default() -> Self {
        VerifiedCache::new(DEFAULT_CAPACITY)
    }
}

impl VerifiedCache {
    pub fn new(capacity: usize) -> VerifiedCache {
        VerifiedCache {
            entries: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            capacity,
        }
    }

    /// The cached claims of `token`, if it was verified before and is valid at `now`.
    pub fn get(
        &self,
        token: &str,
        now: u64,
        leeway: u64,
    ) -> Option<Result<Arc<AccessClaims>, TokenError>> {
        let claims = self.entries.get(token)?.clone();
        if now > claims.exp.saturating_add(leeway) {
            self.entries.remove(token);
            return Some(Err(TokenError::Expired));
        }
        if claims.nbf > now.saturating_add(leeway) {
            return Some(Err(TokenError::NotYetValid));
        }
        Some(Ok(claims))
    }

    pub fn insert(&self, token: &str, claims: Arc<AccessClaims>, now: u64) {
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, c| c.exp >= now);
            if self.entries.len() >= self.capacity {
                return;
            }
        }
        self.entries.insert(token.into(), claims);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Arc<AccessClaims> {
        Arc::new(AccessClaims {
            iss: "i".into(),
            aud: "a".into(),
            sub: "s".into(),
            sid: "sid".into(),
            jti: "j".into(),
            iat: 100,
            nbf: 100,
            exp,
            email: None,
            roles: vec![],
            header_values: Default::default(),
        })
    }

    #[test]
    fn hits_still_expire_and_the_cache_stays_bounded() {
        let c = VerifiedCache::new(2);
        c.insert("t1", claims(200), 100);
        assert!(c.get("t1", 150, 0).unwrap().is_ok());
        assert_eq!(
            c.get("t1", 201, 0).unwrap().unwrap_err(),
            TokenError::Expired
        );
        assert!(c.get("t1", 150, 0).is_none(), "an expired entry is dropped");
        c.insert("t2", claims(300), 100);
        c.insert("t3", claims(300), 100);
        c.insert("t4", claims(300), 100);
        assert_eq!(c.len(), 2, "full: t4 is not cached");
        assert!(c.get("t4", 150, 0).is_none());
        assert!(c.get("other", 150, 0).is_none());
    }
}
