//! `gatehouse gen-key` (SPEC §2): a new PKCS#8 PEM private key for signing.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;

#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error("{0:?} is not an asymmetric algorithm; HS* use a secret, not a key file")]
    Symmetric(Algorithm),
    #[error("generating the key failed")]
    Crypto,
}

/// PEM-encodes DER with the given label, 64 characters a line (RFC 7468).
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

pub fn generate(alg: Algorithm) -> Result<String, KeygenError> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = SystemRandom::new();
    let der: Vec<u8> = match alg {
        Algorithm::EdDSA => Ed25519KeyPair::generate_pkcs8v1(&rng)
            .map_err(|_| KeygenError::Crypto)?
            .as_ref()
            .to_vec(),
        Algorithm::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| KeygenError::Crypto)?
            .as_ref()
            .to_vec(),
        Algorithm::RS256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| KeygenError::Crypto)?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der<'_> =
                pair.as_der().map_err(|_| KeygenError::Crypto)?;
            der.as_ref().to_vec()
        }
        other => return Err(KeygenError::Symmetric(other)),
    };
    Ok(pem("PRIVATE KEY", &der))
}
