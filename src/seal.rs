//! Authenticated encryption for what the gateway keeps but must not show: an IdP's refresh
//! token in a session record (memory, `store.path`, Redis alike) and the OIDC login state in
//! the `gatehouse_oidc` cookie. AES-256-GCM with a random nonce; the key is derived (HKDF-
//! SHA256) from the token signing key, so it needs no setting of its own; `aad` binds a
//! sealed value to its place (a session id, the cookie's name), so it cannot be moved.
//!
//! The same derivation gives the key that marks the gateway's refresh tokens, so that one
//! found in a request header is recognised (and never forwarded upstream) without a store
//! lookup: [`SealKey::refresh_token`], [`SealKey::is_refresh_token`].

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

#[derive(Clone)]
pub struct SealKey {
    key: [u8; 32],
    /// HMAC-SHA256 key of the refresh tokens' mark.
    mark: [u8; 32],
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(***)")
    }
}

/// A refresh token's bytes, the random part of them, and its base64url length.
const REFRESH_LEN: usize = 32;
const REFRESH_RANDOM: usize = 24;
const REFRESH_TEXT_LEN: usize = 43;

struct Len32;
impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

impl SealKey {
    /// Derives the key from secret material (the signing key's PEM, or the HS* secret).
    pub fn derive(material: &[u8]) -> SealKey {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"gatehouse seal v1");
        let prk = salt.extract(material);
        // `expand` and `fill` fail only for lengths beyond 255 * 32 bytes; 32 is fine.
        let expand = |info: &[u8]| {
            let mut out = [0u8; 32];
            if let Ok(okm) = prk.expand(&[info], Len32) {
                let _ = okm.fill(&mut out);
            }
            out
        };
        SealKey {
            key: expand(b"aes-256-gcm"),
            mark: expand(b"refresh-token-mark"),
        }
    }

    /// A new refresh token (SPEC §4): 256 bits, base64url without padding (43 characters) —
    /// 192 random bits, then a 64-bit mark (HMAC-SHA256 of them under a key derived from the
    /// signing key). The mark lets [`Self::is_refresh_token`] tell our refresh token from an
    /// app's own opaque bearer token of the same shape; 192 random bits are as far beyond
    /// guessing as 256.
    pub fn refresh_token(&self) -> String {
        let mut token = [0u8; REFRESH_LEN];
        crate::ids::fill_random(&mut token[..REFRESH_RANDOM]);
        let mark = self.refresh_mark(&token[..REFRESH_RANDOM]);
        token[REFRESH_RANDOM..].copy_from_slice(&mark);
        URL_SAFE_NO_PAD.encode(token)
    }

    /// Whether `word` is a refresh token this key minted (live, used or expired alike).
    pub fn is_refresh_token(&self, word: &[u8]) -> bool {
        if word.len() != REFRESH_TEXT_LEN {
            return false;
        }
        let mut token = [0u8; REFRESH_LEN];
        match URL_SAFE_NO_PAD.decode_slice(word, &mut token) {
            Ok(REFRESH_LEN) => {}
            _ => return false,
        }
        let (random, mark) = token.split_at(REFRESH_RANDOM);
        aws_lc_rs::constant_time::verify_slices_are_equal(&self.refresh_mark(random), mark).is_ok()
    }

    fn refresh_mark(&self, random: &[u8]) -> [u8; REFRESH_LEN - REFRESH_RANDOM] {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.mark);
        let tag = aws_lc_rs::hmac::sign(&key, random);
        let mut mark = [0u8; REFRESH_LEN - REFRESH_RANDOM];
        mark.copy_from_slice(&tag.as_ref()[..REFRESH_LEN - REFRESH_RANDOM]);
        mark
    }

    fn aead(&self) -> Option<LessSafeKey> {
        UnboundKey::new(&AES_256_GCM, &self.key)
            .ok()
            .map(LessSafeKey::new)
    }

    /// base64url(nonce ‖ ciphertext ‖ tag).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Option<String> {
        let key = self.aead()?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).ok()?;
        let mut buf = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buf,
        )
        .ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Some(URL_SAFE_NO_PAD.encode(out))
    }

    /// The plaintext, or `None` for anything not sealed by this key for this `aad`.
    pub fn open(&self, sealed: &str, aad: &[u8]) -> Option<Vec<u8>> {
        let raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = rest.to_vec();
        let plain = self
            .aead()?
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_place() {
        let k = SealKey::derive(b"one signing key");
        let s = k.seal(b"idp refresh token", b"sid-1").unwrap();
        assert!(!s.contains("refresh"));
        assert_eq!(k.open(&s, b"sid-1").unwrap(), b"idp refresh token");
        assert!(k.open(&s, b"sid-2").is_none(), "moved to another session");
        assert!(SealKey::derive(b"another key").open(&s, b"sid-1").is_none());
        let mut tampered = s.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(k
            .open(std::str::from_utf8(&tampered).unwrap(), b"sid-1")
            .is_none());
        assert!(k.open("garbage!", b"sid-1").is_none());
        assert_ne!(
            k.seal(b"x", b"a"),
            k.seal(b"x", b"a"),
            "fresh nonce each time"
        );
    }

    #[test]
    fn refresh_tokens_are_recognised_only_by_the_key_that_made_them() {
        let k = SealKey::derive(b"one signing key");
        let t = k.refresh_token();
        assert_eq!(t.len(), 43);
        assert_eq!(URL_SAFE_NO_PAD.decode(&t).unwrap().len(), 32, "256 bits");
        assert!(k.is_refresh_token(t.as_bytes()));
        assert_ne!(k.refresh_token(), t, "random");
        assert!(!SealKey::derive(b"another key").is_refresh_token(t.as_bytes()));
        // An app's own token of the same shape (32 random bytes, base64url).
        let app = crate::ids::random(32);
        assert_eq!(app.len(), 43);
        assert!(!k.is_refresh_token(app.as_bytes()));
        let mut changed = t.clone().into_bytes();
        changed[0] = if changed[0] == b'A' { b'B' } else { b'A' };
        assert!(!k.is_refresh_token(&changed));
        assert!(!k.is_refresh_token(&t.as_bytes()[..42]));
        assert!(!k.is_refresh_token(b""));
    }
}
