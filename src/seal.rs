//! Authenticated encryption for what the gateway keeps but must not show: an IdP's refresh
//! token in a session record (memory, `store.path`, Redis alike) and the OIDC login state in
//! the `gatehouse_oidc` cookie. AES-256-GCM with a random nonce; the key is derived (HKDF-
//! SHA256) from the token signing key, so it needs no setting of its own; `aad` binds a
//! sealed value to its place (a session id, the cookie's name), so it cannot be moved.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

#[derive(Clone)]
pub struct SealKey {
    key: [u8; 32],
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(***)")
    }
}

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
        let mut key = [0u8; 32];
        // `expand` and `fill` fail only for lengths beyond 255 * 32 bytes; 32 is fine.
        if let Ok(okm) = prk.expand(&[b"aes-256-gcm"], Len32) {
            let _ = okm.fill(&mut key);
        }
        SealKey { key }
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
}
