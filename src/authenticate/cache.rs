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
    /// Hashed by [`TailHash`]. Only verified tokens are inserted, so clients cannot pick the
    /// keys; a lookup still compares the whole token.
    entries: DashMap<Box<str>, Arc<AccessClaims>, TailHash>,
    capacity: usize,
}

/// How many trailing bytes of a token its hash reads: they are signature (at least 43
/// characters for every accepted algorithm), random-looking for every token.
const HASHED_TAIL: usize = 32;

/// Hashes a key by its length and its last [`HASHED_TAIL`] bytes, with foldhash, randomly
/// seeded: hashing every byte of a ~300-byte token was a visible share of every request.
#[derive(Debug, Clone, Default)]
struct TailHash(foldhash::fast::RandomState);

impl std::hash::BuildHasher for TailHash {
    type Hasher = Tail;
    fn build_hasher(&self) -> Tail {
        Tail(self.0.build_hasher())
    }
}

struct Tail(foldhash::fast::FoldHasher<'static>);

impl std::hash::Hasher for Tail {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write_usize(bytes.len());
        self.0
            .write(&bytes[bytes.len().saturating_sub(HASHED_TAIL)..]);
    }
    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

impl Default for VerifiedCache {
    fn default() -> Self {
        VerifiedCache::new(DEFAULT_CAPACITY)
    }
}

impl VerifiedCache {
    pub fn new(capacity: usize) -> VerifiedCache {
        VerifiedCache {
            entries: DashMap::with_hasher(TailHash::default()),
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
        match in_time(&claims, now, leeway) {
            Ok(()) => Some(Ok(claims)),
            Err(TokenError::Expired) => {
                self.entries.remove(token);
                Some(Err(TokenError::Expired))
            }
            Err(e) => Some(Err(e)),
        }
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

/// The part of a verified token's check that depends on the clock: `exp` and `nbf`, with
/// leeway. Everything else about verified claims stays true while the config does.
pub fn in_time(claims: &AccessClaims, now: u64, leeway: u64) -> Result<(), TokenError> {
    super::tokens::in_window(claims.exp, claims.nbf, now, leeway)
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

    #[test]
    fn a_hit_needs_the_whole_token_not_only_the_hashed_tail() {
        let c = VerifiedCache::new(10);
        let tail = "s".repeat(HASHED_TAIL);
        let token = format!("header.claims.{tail}");
        c.insert(&token, claims(300), 100);
        assert!(c.get(&token, 150, 0).is_some());
        for forged in [
            format!("header.CLAIMS.{tail}"),
            format!("header.claims.x{tail}"),
            format!(".claims.{tail}"),
            tail.clone(),
        ] {
            assert!(c.get(&forged, 150, 0).is_none(), "{forged} hit");
        }
    }
}
