//! Random identifiers: session ids, token ids, refresh tokens, request ids. All from the OS
//! CSPRNG.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// `n` random bytes, base64url without padding. Falls back to the aws-lc-rs RNG if the OS
/// call fails, which never happens on a supported platform.
pub fn random(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    if getrandom::fill(&mut bytes).is_err() {
        use aws_lc_rs::rand::SecureRandom as _;
        let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes);
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A 128-bit session id.
pub fn session_id() -> String {
    random(16)
}

/// A 256-bit refresh token.
pub fn refresh_token() -> String {
    random(32)
}

pub fn request_id() -> String {
    random(12)
}
