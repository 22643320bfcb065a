//! Access tokens (SPEC §4): a JWT with header `typ: at+jwt` and `kid`, and exactly the claims
//! `iss aud sub sid jti iat nbf exp email roles`. Verification is pure (it takes `now`) and
//! checks, in order: size, header shape, the one configured algorithm (no `none`, no
//! algorithm confusion), `typ`, a known `kid`, the signature, `iss`, `aud`, `exp` and `nbf`
//! with leeway. It never looks at sessions: whether the session is still live is the
//! caller's second check (`authenticate::identify`).

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Tokens longer than this are refused before any parsing: a cheap guard against
/// memory and CPU abuse through huge headers or cookies.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The `typ` header of access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub sid: String,
    pub jti: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// The identity header values, built once per verified token (the cache shares them).
    #[serde(skip)]
    pub header_values: HeaderValuesOnce,
}

/// Identity header values derived from the claims: computed on first use and kept with the
/// claims, so a cached token costs no formatting per request. Derived data, so it takes no
/// part in equality.
#[derive(Debug, Clone, Default)]
pub struct HeaderValuesOnce(std::sync::OnceLock<IdentityValues>);

impl PartialEq for HeaderValuesOnce {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for HeaderValuesOnce {}

#[derive(Debug, Clone)]
pub struct IdentityValues {
    pub user: http::HeaderValue,
    pub email: Option<http::HeaderValue>,
    /// Comma-separated.
    pub roles: http::HeaderValue,
}

impl AccessClaims {
    /// The values of the identity headers; an error if a claim cannot be a header value.
    pub fn header_values(&self) -> Result<&IdentityValues, http::header::InvalidHeaderValue> {
        if let Some(values) = self.header_values.0.get() {
            return Ok(values);
        }
        let values = IdentityValues {
            user: http::HeaderValue::from_bytes(self.sub.as_bytes())?,
            email: self
                .email
                .as_deref()
                .map(|e| http::HeaderValue::from_bytes(e.as_bytes()))
                .transpose()?,
            roles: http::HeaderValue::from_bytes(self.roles.join(",").as_bytes())?,
        };
        Ok(self.header_values.0.get_or_init(|| values))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is too large")]
    TooLarge,
    #[error("token is malformed")]
    Malformed,
    #[error("token uses an algorithm that is not accepted")]
    WrongAlgorithm,
    #[error("token is not an access token")]
    WrongType,
    #[error("token was signed by an unknown key")]
    UnknownKey,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has the wrong issuer")]
    WrongIssuer,
    #[error("token has the wrong audience")]
    WrongAudience,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("`{0}` is not a supported algorithm; use HS256, HS384, HS512, RS256, ES256 or EdDSA")]
    UnknownAlgorithm(String),
    #[error("the secret is {0} bytes; HS* algorithms need at least 32 bytes")]
    SecretTooShort(usize),
    #[error("the key does not parse as a PEM {expected} key: {source}")]
    Unparsable {
        expected: &'static str,
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    #[error("the key is not a {expected} key")]
    WrongKind { expected: &'static str },
}

pub fn parse_algorithm(name: &str) -> Result<Algorithm, KeyError> {
    match name {
        "HS256" => Ok(Algorithm::HS256),
        "HS384" => Ok(Algorithm::HS384),
        "HS512" => Ok(Algorithm::HS512),
        "RS256" => Ok(Algorithm::RS256),
        "ES256" => Ok(Algorithm::ES256),
        "EdDSA" => Ok(Algorithm::EdDSA),
        other => Err(KeyError::UnknownAlgorithm(other.to_string())),
    }
}

pub fn is_symmetric(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn key_kind(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "RSA",
        Algorithm::ES256 => "EC P-256",
        Algorithm::EdDSA => "Ed25519",
        _ => "HMAC",
    }
}

/// A verification key with its `kid`.
struct VerifyKey {
    kid: String,
    key: DecodingKey,
}

/// The signing key, the keys accepted for verification, and the public JWKS.
pub struct KeySet {
    alg: Algorithm,
    signing: EncodingKey,
    signing_kid: String,
    verify: Vec<VerifyKey>,
    jwks: Option<JwkSet>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("alg", &self.alg)
            .field("signing_kid", &self.signing_kid)
            .finish_non_exhaustive()
    }
}

fn kid_of(jwk: &Jwk) -> Result<String, KeyError> {
    jwk.thumbprint(ThumbprintHash::SHA256)
        .map_err(|source| KeyError::Unparsable {
            expected: "public",
            source,
        })
}

impl KeySet {
    /// HS* keys from a shared secret. The `kid` is derived from the secret's hash, which
    /// reveals nothing usable about a 256-bit secret.
    pub fn symmetric(alg: Algorithm, secret: &[u8]) -> Result<KeySet, KeyError> {
        if secret.len() < 32 {
            return Err(KeyError::SecretTooShort(secret.len()));
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret);
        let kid = format!("hs-{}", URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12]));
        Ok(KeySet {
            alg,
            signing: EncodingKey::from_secret(secret),
            signing_kid: kid.clone(),
            verify: vec![VerifyKey {
                kid,
                key: DecodingKey::from_secret(secret),
            }],
            jwks: None,
        })
    }

    /// Asymmetric keys: a PEM private key for signing, and PEM keys (private or public)
    /// that are also accepted for verification.
    pub fn asymmetric(
        alg: Algorithm,
        signing_pem: &[u8],
        verify_pems: &[&[u8]],
    ) -> Result<KeySet, KeyError> {
        let signing = encoding_key(alg, signing_pem)?;
        let signing_jwk = public_jwk_of_private(alg, &signing)?;
        let signing_kid = kid_of(&signing_jwk)?;
        let mut keys = vec![(signing_kid.clone(), signing_jwk)];
        for pem in verify_pems {
            let jwk = match encoding_key(alg, pem) {
                Ok(private) => public_jwk_of_private(alg, &private)?,
                Err(_) => public_jwk_of_public(alg, pem)?,
            };
            let kid = kid_of(&jwk)?;
            if keys.iter().all(|(known, _)| known != &kid) {
                keys.push((kid, jwk));
            }
        }
        let mut verify = Vec::with_capacity(keys.len());
        let mut jwks = JwkSet { keys: Vec::new() };
        for (kid, mut jwk) in keys {
            let key = DecodingKey::from_jwk(&jwk).map_err(|source| KeyError::Unparsable {
                expected: key_kind(alg),
                source,
            })?;
            jwk.common.key_id = Some(kid.clone());
            jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
            jwks.keys.push(jwk);
            verify.push(VerifyKey { kid, key });
        }
        Ok(KeySet {
            alg,
            signing,
            signing_kid,
            verify,
            jwks: Some(jwks),
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }

    /// The public keys as a JWK Set; `None` for HS* (SPEC §6: `/jwks.json` is 404 then).
    pub fn jwks(&self) -> Option<&JwkSet> {
        self.jwks.as_ref()
    }

    /// Signs any claims with the current key, `kid` and the given `typ`.
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, SignError> {
        let mut header = Header::new(self.alg);
        header.typ = Some(typ.to_string());
        header.kid = Some(self.signing_kid.clone());
        jsonwebtoken::encode(&header, claims, &self.signing).map_err(SignError)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("signing a token failed")]
pub struct SignError(#[source] jsonwebtoken::errors::Error);

fn encoding_key(alg: Algorithm, pem: &[u8]) -> Result<EncodingKey, KeyError> {
    let expected = key_kind(alg);
    let unparsable = |source| KeyError::Unparsable { expected, source };
    match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem).map_err(unparsable),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem).map_err(unparsable),
        Algorithm::ES256 => match sec1_to_pkcs8(pem) {
            Some(pkcs8) => Ok(EncodingKey::from_ec_der(&pkcs8)),
            None => EncodingKey::from_ec_pem(pem).map_err(unparsable),
        },
        _ => Err(KeyError::WrongKind { expected }),
    }
}

/// jsonwebtoken reads PKCS#8 EC keys only; `openssl ecparam -genkey` writes SEC1
/// (`EC PRIVATE KEY`), so convert those.
fn sec1_to_pkcs8(pem: &[u8]) -> Option<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::PrivateKeyDer;
    let PrivateKeyDer::Sec1(der) = PrivateKeyDer::from_pem_slice(pem).ok()? else {
        return None;
    };
    let pair = aws_lc_rs::signature::EcdsaKeyPair::from_private_key_der(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        der.secret_sec1_der(),
    )
    .ok()?;
    pair.to_pkcs8v1().ok().map(|doc| doc.as_ref().to_vec())
}

fn public_jwk_of_private(alg: Algorithm, key: &EncodingKey) -> Result<Jwk, KeyError> {
    // Signing once proves the key matches the algorithm (an RSA PEM under `ES256` fails
    // here at load time, not at the first login).
    let probe = jsonwebtoken::encode(&Header::new(alg), &serde_json::json!({}), key);
    probe.map_err(|source| KeyError::Unparsable {
        expected: key_kind(alg),
        source,
    })?;
    Jwk::from_encoding_key(key, alg).map_err(|source| KeyError::Unparsable {
        expected: key_kind(alg),
        source,
    })
}

fn public_jwk_of_public(alg: Algorithm, pem: &[u8]) -> Result<Jwk, KeyError> {
    let expected = key_kind(alg);
    let unparsable = |source| KeyError::Unparsable { expected, source };
    let key = match alg {
        Algorithm::RS256 => DecodingKey::from_rsa_pem(pem),
        Algorithm::ES256 => DecodingKey::from_ec_pem(pem),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
        _ => return Err(KeyError::WrongKind { expected }),
    }
    .map_err(unparsable)?;
    Jwk::from_decoding_key(&key, Some(alg)).map_err(unparsable)
}

/// What a valid access token must say besides its signature.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub leeway: u64,
}

#[derive(Deserialize)]
struct Audience(#[serde(deserialize_with = "one_or_many")] Vec<String>);

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

/// The claims as they arrive: `aud` may be a string or a list (RFC 7519 §4.1.3).
#[derive(Deserialize)]
struct WireClaims {
    iss: String,
    aud: Audience,
    sub: String,
    sid: String,
    jti: String,
    iat: u64,
    nbf: u64,
    exp: u64,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

impl KeySet {
    /// Verifies an access token at `now` (Unix seconds).
    pub fn verify(
        &self,
        token: &str,
        expect: &Expectations<'_>,
        now: u64,
    ) -> Result<AccessClaims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        // `alg: none` and unknown algorithms fail to parse here.
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        // Allow-list of exactly one algorithm: rejects HS256 signed with our public key
        // (CVE-2015-9235 class) and any downgrade.
        if header.alg != self.alg {
            return Err(TokenError::WrongAlgorithm);
        }
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(TokenError::WrongType);
        }
        let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
        let key = self
            .verify
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(TokenError::UnknownKey)?;
        let mut validation = Validation::new(self.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data =
            jsonwebtoken::decode::<WireClaims>(token, &key.key, &validation).map_err(|err| {
                match err.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
                    jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm,
                    _ => TokenError::Malformed,
                }
            })?;
        let c = data.claims;
        if c.iss != expect.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if !c.aud.0.iter().any(|a| a == expect.audience) {
            return Err(TokenError::WrongAudience);
        }
        in_window(c.exp, c.nbf, now, expect.leeway)?;
        Ok(AccessClaims {
            iss: c.iss,
            aud: expect.audience.to_string(),
            sub: c.sub,
            sid: c.sid,
            jti: c.jti,
            iat: c.iat,
            nbf: c.nbf,
            exp: c.exp,
            email: c.email,
            roles: c.roles,
            header_values: HeaderValuesOnce::default(),
        })
    }
}

/// Whether whole-second `now` lies in a token's window, with `leeway` on both sides. Expiry is
/// exclusive (RFC 7519 §4.1.4: "on or after" `exp` the token MUST NOT be accepted); `nbf` is
/// inclusive (§4.1.5: not accepted "before" it).
pub fn in_window(exp: u64, nbf: u64, now: u64, leeway: u64) -> Result<(), TokenError> {
    if now >= exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    if nbf > now.saturating_add(leeway) {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
