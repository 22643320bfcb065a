//! Login through an identity provider (SPEC §11), the protocol side: provider settings,
//! discovery kept fresh in the background, the code exchange, ID-token and logout-token
//! validation, the refresh recheck, and claims mapping. The endpoints that drive a browser
//! through it live in `endpoints::oidc`; sessions are made by `authenticate::sessions`.
//!
//! Imports nothing of the gateway above it (no config, endpoints, store or sessions), so both
//! the config builder and the session code can use it.

pub mod claims;
pub mod discovery;
pub mod http;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use dashmap::DashMap;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

pub use claims::{map_claims, ProviderIdentity, Refusal};
pub use discovery::Discovered;
use discovery::DiscoveryError;
use http::IdpHttp;

/// The event a back-channel logout token carries (Back-Channel Logout 1.0 §2.4).
pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// A request fetches an undiscovered provider's discovery itself at most this often.
const INLINE_RETRY: Duration = Duration::from_secs(5);
/// JWKS are fetched again for an unknown `kid` at most this often.
const JWKS_REFETCH: Duration = Duration::from_secs(60);

/// One `oidc.providers[]` entry, built.
#[derive(Clone)]
pub struct ProviderSettings {
    pub id: String,
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub scopes: Vec<String>,
    pub username_claim: String,
    pub roles_claim: Option<String>,
    pub role_map: HashMap<String, String>,
    /// Lowercased.
    pub allowed_email_domains: Vec<String>,
    pub allowed_roles: Vec<String>,
    pub require_verified_email: bool,
    /// Milliseconds.
    pub recheck_interval: u64,
    /// `logout: idp`: our logout also ends the IdP session (RP-initiated logout).
    pub logout_at_idp: bool,
    /// `{public_url}{auth_prefix}/oidc/{id}/callback`.
    pub redirect_uri: String,
    /// `{public_url}{auth_prefix}/oidc/{id}/backchannel-logout`.
    pub backchannel_uri: String,
}

impl std::fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSettings")
            .field("id", &self.id)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl ProviderSettings {
    /// Defaults as the config has them, for unit tests.
    pub fn for_tests(id: &str, issuer: &str) -> ProviderSettings {
        ProviderSettings {
            id: id.into(),
            name: id.into(),
            issuer: issuer.into(),
            client_id: "gatehouse".into(),
            client_secret: None,
            scopes: vec!["openid".into(), "email".into(), "profile".into()],
            username_claim: "email".into(),
            roles_claim: None,
            role_map: HashMap::new(),
            allowed_email_domains: Vec::new(),
            allowed_roles: Vec::new(),
            require_verified_email: true,
            recheck_interval: 300_000,
            logout_at_idp: false,
            redirect_uri: format!("http://127.0.0.1/.gatehouse/oidc/{id}/callback"),
            backchannel_uri: format!("http://127.0.0.1/.gatehouse/oidc/{id}/backchannel-logout"),
        }
    }

    /// The client authentication for the token endpoint: `client_secret_basic`, or the
    /// secret in the form when the provider takes only `client_secret_post`.
    fn client_auth<'a>(
        &'a self,
        d: &Discovered,
        form: &mut Vec<(&'a str, &'a str)>,
    ) -> Option<(&'a str, &'a str)> {
        match &self.client_secret {
            Some(secret) if !d.secret_in_body => Some((self.client_id.as_str(), secret.as_str())),
            Some(secret) => {
                form.push(("client_id", &self.client_id));
                form.push(("client_secret", secret));
                None
            }
            None => {
                form.push(("client_id", &self.client_id));
                None
            }
        }
    }
}

/// The `oidc:` section, built.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// `false`: the login page shows only the providers, and `POST /login` is refused.
    pub password_login: bool,
    pub providers: Vec<Arc<ProviderSettings>>,
}

impl OidcSettings {
    pub fn provider(&self, id: &str) -> Option<&Arc<ProviderSettings>> {
        self.providers.iter().find(|p| p.id == id)
    }
}

/// Why a provider step failed; `reason` is the audit reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OidcError {
    /// The provider cannot be reached, or its discovery failed: 503.
    Unavailable(&'static str),
    /// A token or answer from the provider is not acceptable: 401.
    BadToken(&'static str),
    /// The provider refused (a code exchange or refresh): 401 at login, the end of the
    /// session at a recheck.
    Refused(&'static str),
}

impl OidcError {
    pub fn reason(&self) -> &'static str {
        match self {
            OidcError::Unavailable(r) | OidcError::BadToken(r) | OidcError::Refused(r) => r,
        }
    }
}

/// One provider's discovered state.
struct ProviderState {
    /// The issuer and client this state was discovered for (a reload may change them).
    issuer: String,
    discovered: ArcSwapOption<Discovered>,
    jwks: ArcSwapOption<Vec<Jwk>>,
    jwks_fetched: std::sync::Mutex<Option<Instant>>,
    /// When a request last fetched discovery itself (the provider not discovered yet).
    inline_attempt: std::sync::Mutex<Option<Instant>>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for ProviderState {
    fn drop(&mut self) {
        if let Ok(mut t) = self.task.lock() {
            if let Some(t) = t.take() {
                t.abort();
            }
        }
    }
}

/// The runtime side: discovery and keys per provider, and the HTTP client.
pub struct Oidc {
    http: IdpHttp,
    providers: DashMap<String, Arc<ProviderState>>,
}

/// What the token endpoint answered to a code or a refresh token.
#[derive(Debug, Clone)]
pub struct TokenResponse {
    pub id_token: Option<String>,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
}

/// A validated back-channel logout: which IdP session or user ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequest {
    pub sub: Option<String>,
    pub sid: Option<String>,
    pub jti: String,
    /// Until when the `jti` must be remembered (Unix ms).
    pub remember_until: u64,
}

impl Default for Oidc {
    fn default() -> Self {
        Oidc::new()
    }
}

impl Oidc {
    pub fn new() -> Oidc {
        Oidc {
            http: IdpHttp::new(),
            providers: DashMap::new(),
        }
    }

    pub fn http(&self) -> &IdpHttp {
        &self.http
    }

    /// Starts (or restarts, on reload) discovery for every configured provider in the
    /// background, retrying with backoff; providers no longer configured are forgotten.
    /// A provider that cannot be reached is logged, never fatal: password logins go on.
    pub fn apply(self: &Arc<Self>, settings: Option<&OidcSettings>) {
        let providers: Vec<Arc<ProviderSettings>> =
            settings.map(|s| s.providers.clone()).unwrap_or_default();
        self.providers
            .retain(|id, _| providers.iter().any(|p| &p.id == id));
        for p in providers {
            let state = match self.providers.get(&p.id) {
                Some(s) if s.issuer == p.issuer => s.clone(),
                _ => {
                    let s = Arc::new(ProviderState {
                        issuer: p.issuer.clone(),
                        discovered: ArcSwapOption::empty(),
                        jwks: ArcSwapOption::empty(),
                        jwks_fetched: std::sync::Mutex::new(None),
                        inline_attempt: std::sync::Mutex::new(None),
                        task: std::sync::Mutex::new(None),
                    });
                    self.providers.insert(p.id.clone(), s.clone());
                    s
                }
            };
            let me = Arc::downgrade(self);
            let weak_state = Arc::downgrade(&state);
            let task = tokio::spawn(async move {
                let mut wait = Duration::from_secs(1);
                loop {
                    let (Some(oidc), Some(state)) = (me.upgrade(), weak_state.upgrade()) else {
                        return;
                    };
                    match oidc.refresh_discovery(&p.id, &state).await {
                        Ok(()) => {
                            tracing::info!(provider = %p.id, issuer = %p.issuer, "identity provider discovered");
                            return;
                        }
                        Err(e) => tracing::warn!(
                            provider = %p.id, issuer = %p.issuer, error = %e, retry_in_s = wait.as_secs(),
                            "identity provider unavailable; password logins still work, retrying"
                        ),
                    }
                    drop((oidc, state));
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(60));
                }
            });
            if let Ok(mut slot) = state.task.lock() {
                if let Some(old) = slot.replace(task) {
                    old.abort();
                }
            };
        }
    }

    async fn refresh_discovery(
        &self,
        _id: &str,
        state: &ProviderState,
    ) -> Result<(), DiscoveryError> {
        let d = discovery::discover(&self.http, &state.issuer).await?;
        let keys = discovery::fetch_jwks(&self.http, &d.jwks_uri).await?;
        state.jwks.store(Some(Arc::new(keys)));
        if let Ok(mut at) = state.jwks_fetched.lock() {
            *at = Some(Instant::now());
        }
        state.discovered.store(Some(Arc::new(d)));
        Ok(())
    }

    /// For `gatehouse check`: discovery and keys of every provider, fetched once.
    pub async fn check(&self, settings: &OidcSettings) -> Vec<String> {
        let mut problems = Vec::new();
        for p in &settings.providers {
            match discovery::discover(&self.http, &p.issuer).await {
                Err(e) => problems.push(format!("oidc provider `{}`: {e}", p.id)),
                Ok(d) => {
                    if let Err(e) = discovery::fetch_jwks(&self.http, &d.jwks_uri).await {
                        problems.push(format!("oidc provider `{}`: its JWKS: {e}", p.id));
                    }
                }
            }
        }
        problems
    }

    /// The provider's discovery, fetched now if the background task has not got it yet.
    pub async fn discovered(&self, p: &ProviderSettings) -> Result<Arc<Discovered>, OidcError> {
        let state = self
            .providers
            .get(&p.id)
            .map(|s| s.clone())
            .ok_or(OidcError::Unavailable("provider_not_started"))?;
        if let Some(d) = state.discovered.load_full() {
            return Ok(d);
        }
        // While the provider is down, a login tries it again at most every few seconds: a
        // flood of `start` requests must not become a flood of fetches.
        {
            let Ok(mut last) = state.inline_attempt.lock() else {
                return Err(OidcError::Unavailable("provider_unavailable"));
            };
            if last.is_some_and(|t| t.elapsed() < INLINE_RETRY) {
                return Err(OidcError::Unavailable("provider_unavailable"));
            }
            *last = Some(Instant::now());
        }
        match self.refresh_discovery(&p.id, &state).await {
            Ok(()) => state
                .discovered
                .load_full()
                .ok_or(OidcError::Unavailable("provider_unavailable")),
            Err(e) => {
                tracing::warn!(provider = %p.id, error = %e, "identity provider unavailable");
                Err(OidcError::Unavailable("provider_unavailable"))
            }
        }
    }

    /// Exchanges an authorization code (with its PKCE verifier) at the token endpoint.
    pub async fn exchange_code(
        &self,
        p: &ProviderSettings,
        d: &Discovered,
        code: &str,
        verifier: &str,
    ) -> Result<TokenResponse, OidcError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", p.redirect_uri.as_str()),
            ("code_verifier", verifier),
        ];
        let basic = p.client_auth(d, &mut form);
        self.token_request(p, d, &form, basic).await
    }

    /// Uses the IdP's refresh token: does the provider still stand behind this user?
    pub async fn refresh_at_idp(
        &self,
        p: &ProviderSettings,
        refresh_token: &str,
    ) -> Result<TokenResponse, OidcError> {
        let d = self.discovered(p).await?;
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        let basic = p.client_auth(&d, &mut form);
        self.token_request(p, &d, &form, basic).await
    }

    async fn token_request(
        &self,
        p: &ProviderSettings,
        d: &Discovered,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Result<TokenResponse, OidcError> {
        let r = self
            .http
            .post_form(&d.token_endpoint, form, basic)
            .await
            .map_err(|e| {
                tracing::warn!(provider = %p.id, error = %e, "token endpoint unavailable");
                OidcError::Unavailable("token_endpoint_unavailable")
            })?;
        if r.status.is_server_error() {
            return Err(OidcError::Unavailable("token_endpoint_unavailable"));
        }
        if !r.status.is_success() {
            let error = r.body.get("error").and_then(Value::as_str).unwrap_or("");
            tracing::info!(provider = %p.id, status = r.status.as_u16(), error, "the provider refused a token request");
            return Err(OidcError::Refused("token_request_refused"));
        }
        let field = |n: &str| r.body.get(n).and_then(Value::as_str).map(str::to_string);
        Ok(TokenResponse {
            id_token: field("id_token"),
            access_token: field("access_token"),
            refresh_token: field("refresh_token"),
        })
    }

    /// The claims of the userinfo endpoint, when the provider has one.
    pub async fn userinfo(
        &self,
        p: &ProviderSettings,
        d: &Discovered,
        access_token: &str,
    ) -> Result<Option<Map<String, Value>>, OidcError> {
        let Some(url) = &d.userinfo_endpoint else {
            return Ok(None);
        };
        let r = self
            .http
            .get_json(url, Some(access_token))
            .await
            .map_err(|e| {
                tracing::warn!(provider = %p.id, error = %e, "userinfo endpoint unavailable");
                OidcError::Unavailable("userinfo_unavailable")
            })?;
        match r.body {
            Value::Object(m) if r.status.is_success() => Ok(Some(m)),
            _ => Err(OidcError::BadToken("userinfo_refused")),
        }
    }

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

/// PKCE S256 (RFC 7636 §4.2): the challenge for a verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    use base64::Engine as _;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
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

    #[test]
    fn pkce_matches_the_rfc_example() {
        // RFC 7636 Appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
