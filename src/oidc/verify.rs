//! Verifying the provider's JWTs: ID tokens (OpenID Connect Core §3.1.3.7) and back-channel
//! logout tokens (Back-Channel Logout 1.0 §2.6), with keys from its JWKS.

use std::sync::Arc;
use std::time::Instant;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::{
    discovery, Discovered, LogoutRequest, Oidc, OidcError, ProviderSettings, BACKCHANNEL_EVENT,
    JWKS_REFETCH,
};

impl Oidc {
    /// Verifies a JWT from the provider: an algorithm it advertises (asymmetric only), a key
    /// from its JWKS (fetched again for an unknown `kid`, at most once a minute), `iss`,
    /// `aud` containing our client id, `azp` when present (required with several audiences),
    /// `exp` and `iat` with `leeway` seconds, against the clock as it reads once the provider
    /// has answered: a time taken before the code exchange (a network round trip) can be a
    /// second behind the token's `iat`, which with `leeway: 0` refused good tokens.
    pub async fn verify_jwt(
        &self,
        p: &ProviderSettings,
        token: &str,
        leeway: u64,
    ) -> Result<Map<String, Value>, OidcError> {
        let d = self.discovered(p).await?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| OidcError::BadToken("malformed_token"))?;
        if !d.algorithms.contains(&header.alg) {
            return Err(OidcError::BadToken("algorithm_not_allowed"));
        }
        let key = match self.key_for(p, header.kid.as_deref(), header.alg, false) {
            Some(k) => k,
            None => {
                self.refetch_jwks(p, &d).await;
                self.key_for(p, header.kid.as_deref(), header.alg, true)
                    .ok_or(OidcError::BadToken("unknown_key"))?
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&accepted_issuers(&p.issuer));
        validation.set_audience(&[&p.client_id]);
        validation.leeway = leeway;
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
        validation.validate_nbf = true;
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                OidcError::BadToken(match e.kind() {
                    K::InvalidSignature => "bad_signature",
                    K::ExpiredSignature => "token_expired",
                    K::InvalidIssuer => "wrong_issuer",
                    K::InvalidAudience => "wrong_audience",
                    K::ImmatureSignature => "token_not_yet_valid",
                    K::MissingRequiredClaim(_) => "missing_claim",
                    K::InvalidAlgorithm => "algorithm_not_allowed",
                    _ => "invalid_token",
                })
            })?;
        let claims = data.claims;
        // jsonwebtoken has just read the clock for `exp` and `nbf`; `iat` is judged by it too.
        let now = crate::clock::now();
        let iat = claims
            .get("iat")
            .and_then(Value::as_u64)
            .ok_or(OidcError::BadToken("missing_claim"))?;
        if iat > now + leeway {
            return Err(OidcError::BadToken("issued_in_the_future"));
        }
        let several_audiences = claims
            .get("aud")
            .and_then(Value::as_array)
            .is_some_and(|a| a.len() > 1);
        match claims.get("azp") {
            Some(Value::String(azp)) if azp == &p.client_id => {}
            None if !several_audiences => {}
            _ => return Err(OidcError::BadToken("wrong_authorized_party")),
        }
        Ok(claims)
    }

    /// An ID token (OpenID Connect Core §3.1.3.7) for the `nonce` this browser was given.
    pub async fn verify_id_token(
        &self,
        p: &ProviderSettings,
        token: &str,
        nonce: Option<&str>,
        leeway: u64,
    ) -> Result<Map<String, Value>, OidcError> {
        let claims = self.verify_jwt(p, token, leeway).await?;
        if !claims.get("sub").is_some_and(Value::is_string) {
            return Err(OidcError::BadToken("missing_sub"));
        }
        if let Some(expected) = nonce {
            if claims.get("nonce").and_then(Value::as_str) != Some(expected) {
                return Err(OidcError::BadToken("nonce_mismatch"));
            }
        }
        if claims.get("events").is_some() {
            // A logout token is not an ID token.
            return Err(OidcError::BadToken("not_an_id_token"));
        }
        Ok(claims)
    }

    /// A back-channel logout token (Back-Channel Logout 1.0 §2.6): verified like an ID token,
    /// then `events` with the back-channel event, `sid` or `sub`, no `nonce`, a `jti`.
    pub async fn verify_logout_token(
        &self,
        p: &ProviderSettings,
        token: &str,
        leeway: u64,
    ) -> Result<LogoutRequest, OidcError> {
        let claims = self.verify_jwt(p, token, leeway).await?;
        let now = crate::clock::now();
        let event = claims
            .get("events")
            .and_then(Value::as_object)
            .and_then(|e| e.get(BACKCHANNEL_EVENT));
        if !event.is_some_and(Value::is_object) {
            return Err(OidcError::BadToken("missing_logout_event"));
        }
        if claims.contains_key("nonce") {
            return Err(OidcError::BadToken("nonce_in_logout_token"));
        }
        let text = |n: &str| {
            claims
                .get(n)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let (sub, sid) = (text("sub"), text("sid"));
        if sub.is_none() && sid.is_none() {
            return Err(OidcError::BadToken("missing_sub_and_sid"));
        }
        let jti = text("jti").ok_or(OidcError::BadToken("missing_jti"))?;
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(now);
        // Remembered past the token's life (and leeway), so a replay is refused whenever the
        // token would still verify.
        let remember_until = (exp.max(now) + leeway + 60) * 1000;
        Ok(LogoutRequest {
            sub,
            sid,
            jti,
            remember_until,
        })
    }

    fn key_for(
        &self,
        p: &ProviderSettings,
        kid: Option<&str>,
        alg: Algorithm,
        _second: bool,
    ) -> Option<DecodingKey> {
        let state = self.providers.get(&p.id)?.clone();
        let keys = state.jwks.load_full()?;
        let family_fits = |jwk: &Jwk| {
            use jsonwebtoken::jwk::AlgorithmParameters as A;
            matches!(
                (&jwk.algorithm, alg),
                (
                    A::RSA(_),
                    Algorithm::RS256
                        | Algorithm::RS384
                        | Algorithm::RS512
                        | Algorithm::PS256
                        | Algorithm::PS384
                        | Algorithm::PS512
                ) | (A::EllipticCurve(_), Algorithm::ES256 | Algorithm::ES384)
                    | (A::OctetKeyPair(_), Algorithm::EdDSA)
            )
        };
        // A key that names its algorithm is used only for that one.
        let alg_fits = |jwk: &Jwk| {
            jwk.common
                .key_algorithm
                .is_none_or(|ka| format!("{ka:?}") == format!("{alg:?}"))
        };
        let candidates: Vec<&Jwk> = keys
            .iter()
            .filter(|k| family_fits(k) && alg_fits(k))
            .filter(|k| match kid {
                Some(kid) => k.common.key_id.as_deref() == Some(kid),
                None => true,
            })
            .collect();
        // Without a `kid`, only an unambiguous key will do.
        match candidates.as_slice() {
            [one] => DecodingKey::from_jwk(one).ok(),
            _ => None,
        }
    }

    async fn refetch_jwks(&self, p: &ProviderSettings, d: &Discovered) {
        let Some(state) = self.providers.get(&p.id).map(|s| s.clone()) else {
            return;
        };
        {
            let Ok(mut at) = state.jwks_fetched.lock() else {
                return;
            };
            if at.is_some_and(|t| t.elapsed() < JWKS_REFETCH) {
                return;
            }
            *at = Some(Instant::now());
        }
        match discovery::fetch_jwks(&self.http, &d.jwks_uri).await {
            Ok(keys) => state.jwks.store(Some(Arc::new(keys))),
            Err(e) => {
                tracing::warn!(provider = %p.id, error = %e, "fetching the provider's keys failed")
            }
        }
    }
}

/// The `iss` values a provider's tokens may carry: its issuer exactly, and for Google also
/// the spelling without a scheme, which Google documents for its ID tokens ("always
/// `https://accounts.google.com` or `accounts.google.com`") and go-oidc accepts likewise.
fn accepted_issuers(issuer: &str) -> Vec<&str> {
    const GOOGLE: &str = "https://accounts.google.com";
    if issuer == GOOGLE {
        vec![GOOGLE, "accounts.google.com"]
    } else {
        vec![issuer]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_google_s_issuer_also_accepts_its_schemeless_spelling() {
        assert_eq!(
            accepted_issuers("https://accounts.google.com"),
            ["https://accounts.google.com", "accounts.google.com"]
        );
        for other in [
            "https://idp.example.com/realms/corp",
            "http://127.0.0.1:5556/dex",
            "https://accounts.google.com/",
        ] {
            assert_eq!(accepted_issuers(other), [other]);
        }
    }
}
