//! Random identifiers: session ids, token ids, request ids (refresh tokens: `seal`). All
//! from the OS CSPRNG.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// `n` random bytes, base64url without padding. Falls back to the aws-lc-rs RNG if the OS
/// call fails, which never happens on a supported platform.
pub fn random(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    fill_random(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Fills `bytes` from the OS CSPRNG (the aws-lc-rs RNG if that call fails).
pub fn fill_random(bytes: &mut [u8]) {
    if getrandom::fill(bytes).is_err() {
        use aws_lc_rs::rand::SecureRandom as _;
        let _ = aws_lc_rs::rand::SystemRandom::new().fill(bytes);
    }
}

/// A 128-bit session id.
pub fn session_id() -> String {
    random(16)
}

/// A request id: 16 base64url characters, unique within the process and, through a random
/// per-process prefix, across replicas. Request ids need uniqueness, not secrecy, so they
/// come from a counter instead of a system call per request; the counter goes through a
/// keyed bijection so ids do not reveal how many requests the gateway has served.
pub fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static KEYS: OnceLock<[u8; 12]> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let keys = KEYS.get_or_init(|| {
        let mut k = [0u8; 12];
        if getrandom::fill(&mut k).is_err() {
            use aws_lc_rs::rand::SecureRandom as _;
            let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut k);
        }
        k
    });
    let [p0, p1, p2, p3, x0, x1, x2, x3, x4, x5, x6, x7] = *keys;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut out = [0u8; 12];
    out[..4].copy_from_slice(&[p0, p1, p2, p3]);
    out[4..].copy_from_slice(
        &permute(n, u64::from_le_bytes([x0, x1, x2, x3, x4, x5, x6, x7])).to_le_bytes(),
    );
    encode_12(&out)
}

/// base64url of 12 bytes (16 characters, no padding needed): four 3-byte groups, without
/// the general encoder's set-up, which cost more than the rest of the id.
fn encode_12(bytes: &[u8; 12]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = [0u8; 16];
    for (group, chars) in bytes.chunks_exact(3).zip(out.chunks_exact_mut(4)) {
        let n = u32::from(group[0]) << 16 | u32::from(group[1]) << 8 | u32::from(group[2]);
        for (i, c) in chars.iter_mut().enumerate() {
            *c = ALPHABET[(n >> (18 - 6 * i) & 63) as usize];
        }
    }
    // The alphabet is ASCII, so this never falls back.
    String::from_utf8(out.to_vec()).unwrap_or_default()
}

/// A keyed bijection on u64 (xor-shift and odd multiplications are each invertible).
fn permute(mut x: u64, key: u64) -> u64 {
    x ^= key;
    x ^= x >> 31;
    x = x.wrapping_mul(0x7fb5_d329_728e_a185);
    x ^= x >> 27;
    x = x.wrapping_mul(0x81da_def4_bc2d_d44d);
    x ^= x >> 33;
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_encoding_is_base64url() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            let mut bytes = [0u8; 12];
            for b in &mut bytes {
                state = permute(state, 7);
                *b = state as u8;
            }
            assert_eq!(encode_12(&bytes), URL_SAFE_NO_PAD.encode(bytes));
        }
        assert_eq!(encode_12(&[0xff; 12]), "________________");
        assert_eq!(encode_12(&[0; 12]), "AAAAAAAAAAAAAAAA");
    }

    #[test]
    fn request_ids_are_unique_and_plain() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| request_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(10) {
            assert_eq!(id.len(), 16);
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
    }

    #[test]
    fn permute_is_a_bijection_on_a_sample() {
        let outs: std::collections::HashSet<u64> =
            (0..100_000u64).map(|n| permute(n, 42)).collect();
        assert_eq!(outs.len(), 100_000);
    }
}
