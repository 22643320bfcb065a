use super::*;
use crate::authenticate::keygen::generate;

const NOW: u64 = 1_800_000_000;

fn expect() -> Expectations<'static> {
    Expectations {
        issuer: "gatehouse",
        audience: "gatehouse",
        leeway: 30,
    }
}

fn claims() -> AccessClaims {
    AccessClaims {
        iss: "gatehouse".into(),
        aud: "gatehouse".into(),
        sub: "alice".into(),
        sid: "s1".into(),
        jti: "j1".into(),
        iat: NOW,
        nbf: NOW,
        exp: NOW + 300,
        email: Some("alice@example.com".into()),
        roles: vec!["admin".into()],
        header_values: Default::default(),
    }
}

fn eddsa() -> KeySet {
    crate::install_crypto_providers();
    let pem = generate(Algorithm::EdDSA).unwrap();
    KeySet::asymmetric(Algorithm::EdDSA, pem.as_bytes(), &[]).unwrap()
}

fn b64(v: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[test]
fn a_signed_token_verifies_for_every_algorithm() {
    crate::install_crypto_providers();
    let secret = [7u8; 32];
    let sets = vec![
        KeySet::symmetric(Algorithm::HS256, &secret).unwrap(),
        KeySet::symmetric(Algorithm::HS384, &secret).unwrap(),
        KeySet::symmetric(Algorithm::HS512, &secret).unwrap(),
        eddsa(),
        KeySet::asymmetric(
            Algorithm::ES256,
            generate(Algorithm::ES256).unwrap().as_bytes(),
            &[],
        )
        .unwrap(),
        KeySet::asymmetric(
            Algorithm::RS256,
            generate(Algorithm::RS256).unwrap().as_bytes(),
            &[],
        )
        .unwrap(),
    ];
    for keys in sets {
        let token = keys.sign(ACCESS_TOKEN_TYP, &claims()).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some(keys.signing_kid()));
        assert_eq!(keys.verify(&token, &expect(), NOW).unwrap(), claims());
    }
}

#[test]
fn short_secrets_are_refused() {
    assert!(matches!(
        KeySet::symmetric(Algorithm::HS256, b"short"),
        Err(KeyError::SecretTooShort(5))
    ));
}

#[test]
fn expiry_and_not_before_use_leeway() {
    let keys = eddsa();
    let token = keys.sign(ACCESS_TOKEN_TYP, &claims()).unwrap();
    // `exp` is NOW + 300 and leeway 30 s: accepted before NOW + 330, refused at it (RFC 7519
    // §4.1.4: "on or after").
    assert!(keys.verify(&token, &expect(), NOW + 329).is_ok());
    assert_eq!(
        keys.verify(&token, &expect(), NOW + 330),
        Err(TokenError::Expired)
    );
    assert!(keys.verify(&token, &expect(), NOW - 30).is_ok());
    assert_eq!(
        keys.verify(&token, &expect(), NOW - 31),
        Err(TokenError::NotYetValid)
    );
}

#[test]
fn wrong_issuer_or_audience_is_refused() {
    let keys = eddsa();
    let mut c = claims();
    c.iss = "someone-else".into();
    let t = keys.sign(ACCESS_TOKEN_TYP, &c).unwrap();
    assert_eq!(
        keys.verify(&t, &expect(), NOW),
        Err(TokenError::WrongIssuer)
    );
    let mut c = claims();
    c.aud = "other-app".into();
    let t = keys.sign(ACCESS_TOKEN_TYP, &c).unwrap();
    assert_eq!(
        keys.verify(&t, &expect(), NOW),
        Err(TokenError::WrongAudience)
    );
}

#[test]
fn wrong_typ_is_refused() {
    let keys = eddsa();
    let t = keys.sign("JWT", &claims()).unwrap();
    assert_eq!(keys.verify(&t, &expect(), NOW), Err(TokenError::WrongType));
}

#[test]
fn alg_none_is_refused() {
    let keys = eddsa();
    let header = serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": keys.signing_kid()});
    let body = serde_json::to_value(claims()).unwrap();
    let token = format!("{}.{}.", b64(&header), b64(&body));
    assert_eq!(
        keys.verify(&token, &expect(), NOW),
        Err(TokenError::Malformed)
    );
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    // Algorithm confusion: sign HS256 with the public key bytes as the HMAC secret.
    let keys = eddsa();
    let jwk = &keys.jwks().unwrap().keys[0];
    let public = serde_json::to_vec(jwk).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(keys.signing_kid().to_string());
    let forged =
        jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(&public)).unwrap();
    assert_eq!(
        keys.verify(&forged, &expect(), NOW),
        Err(TokenError::WrongAlgorithm)
    );
}

#[test]
fn a_token_of_another_key_is_refused() {
    let keys = eddsa();
    let other = eddsa();
    let t = other.sign(ACCESS_TOKEN_TYP, &claims()).unwrap();
    assert_eq!(keys.verify(&t, &expect(), NOW), Err(TokenError::UnknownKey));
    // Same kid, other key: the signature fails.
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some("at+jwt".into());
    header.kid = Some(keys.signing_kid().to_string());
    let forged = jsonwebtoken::encode(&header, &claims(), &other.signing).unwrap();
    assert_eq!(
        keys.verify(&forged, &expect(), NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn a_tampered_payload_is_refused() {
    let keys = eddsa();
    let t = keys.sign(ACCESS_TOKEN_TYP, &claims()).unwrap();
    let parts: Vec<&str> = t.split('.').collect();
    let mut c = serde_json::to_value(claims()).unwrap();
    c["roles"] = serde_json::json!(["admin", "root"]);
    let tampered = format!("{}.{}.{}", parts[0], b64(&c), parts[2]);
    assert_eq!(
        keys.verify(&tampered, &expect(), NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn garbage_and_huge_tokens_are_refused() {
    let keys = eddsa();
    for garbage in [
        "",
        "abc",
        "a.b.c",
        "....",
        "eyJhbGciOiJFZERTQSJ9.e30.",
        "refreshTokenValueWithoutDots",
    ] {
        assert!(keys.verify(garbage, &expect(), NOW).is_err(), "{garbage}");
    }
    let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(
        keys.verify(&huge, &expect(), NOW),
        Err(TokenError::TooLarge)
    );
}

#[test]
fn previous_keys_still_verify_after_rotation() {
    crate::install_crypto_providers();
    let old_pem = generate(Algorithm::EdDSA).unwrap();
    let new_pem = generate(Algorithm::EdDSA).unwrap();
    let old = KeySet::asymmetric(Algorithm::EdDSA, old_pem.as_bytes(), &[]).unwrap();
    let rotated =
        KeySet::asymmetric(Algorithm::EdDSA, new_pem.as_bytes(), &[old_pem.as_bytes()]).unwrap();
    let old_token = old.sign(ACCESS_TOKEN_TYP, &claims()).unwrap();
    assert!(rotated.verify(&old_token, &expect(), NOW).is_ok());
    let new_token = rotated.sign(ACCESS_TOKEN_TYP, &claims()).unwrap();
    assert_ne!(
        jsonwebtoken::decode_header(&new_token).unwrap().kid,
        jsonwebtoken::decode_header(&old_token).unwrap().kid
    );
    assert_eq!(rotated.jwks().unwrap().keys.len(), 2);
}

#[test]
fn a_key_of_the_wrong_kind_is_refused_at_load() {
    crate::install_crypto_providers();
    let rsa = generate(Algorithm::RS256).unwrap();
    assert!(KeySet::asymmetric(Algorithm::EdDSA, rsa.as_bytes(), &[]).is_err());
    assert!(KeySet::asymmetric(Algorithm::ES256, rsa.as_bytes(), &[]).is_err());
    assert!(KeySet::asymmetric(Algorithm::EdDSA, b"not a pem", &[]).is_err());
}
