//! The signed identity assertion sent upstream (SPEC §3 `identity_headers.assertion`).

use serde::Serialize;

use super::TokenSettings;
use crate::authenticate::tokens::SignError;
use crate::authenticate::Identity;
use crate::ids;

/// `typ` of the signed identity assertion sent upstream (SPEC §3 `identity_headers.assertion`).
/// Distinct from `at+jwt`, so an assertion is never accepted as an access token.
pub const ASSERTION_TYP: &str = "gatehouse-assertion+jwt";
/// An assertion describes one request: it lives a minute.
pub const ASSERTION_TTL: u64 = 60;

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    /// The route name: an assertion made for one upstream is no good at another.
    aud: &'a str,
    sub: &'a str,
    sid: &'a str,
    jti: String,
    iat: u64,
    nbf: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    roles: &'a [String],
}

/// A short-lived JWT stating who the request is from, for upstreams that verify it
/// against `/jwks.json` instead of trusting plain headers.
pub fn sign_assertion(
    settings: &TokenSettings,
    identity: &Identity,
    audience: &str,
    now: u64,
) -> Result<String, SignError> {
    let claims = AssertionClaims {
        iss: &settings.issuer,
        aud: audience,
        sub: identity.user(),
        sid: identity.sid(),
        jti: ids::random(12),
        iat: now,
        nbf: now,
        exp: now + ASSERTION_TTL,
        email: identity.email(),
        roles: identity.roles(),
    };
    settings.keys.sign(ASSERTION_TYP, &claims)
}
