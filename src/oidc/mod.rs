//! Login through an identity provider (SPEC §11), the protocol side: provider settings,
//! discovery kept fresh in the background, the code exchange, ID-token and logout-token
//! validation (`verify.rs`), the refresh recheck, and claims mapping (`claims.rs`). The
//! endpoints that drive a browser through it live in `endpoints::oidc`; sessions are made by
//! `authenticate::sessions`.
//!
//! Imports nothing of the gateway above it (no config, endpoints, store or sessions), so both
//! the config builder and the session code can use it.

pub mod claims;
pub mod discovery;
pub mod http;
mod verify;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use dashmap::DashMap;
use jsonwebtoken::jwk::Jwk;
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

impl ProviderState {
    /// Nothing discovered yet.
    fn new(issuer: &str) -> ProviderState {
        ProviderState {
            issuer: issuer.to_string(),
            discovered: ArcSwapOption::empty(),
            jwks: ArcSwapOption::empty(),
            jwks_fetched: std::sync::Mutex::new(None),
            inline_attempt: std::sync::Mutex::new(None),
            task: std::sync::Mutex::new(None),
        }
    }
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

    /// The origins (`https://idp.example.com`) the providers with `logout: idp` end their
    /// sessions at, space separated: a *Sign out* form on our pages is sent on there, and
    /// browsers apply the page's CSP `form-action` to that redirect too. Each provider's
    /// issuer origin (where the providers we know serve it, and all we know before
    /// discovery), and the origin of the `end_session_endpoint` it advertised, which a
    /// provider may serve elsewhere.
    pub fn logout_origins(&self, settings: &OidcSettings) -> String {
        let mut origins: Vec<String> = Vec::new();
        for p in settings.providers.iter().filter(|p| p.logout_at_idp) {
            let end_session = self
                .providers
                .get(&p.id)
                .filter(|state| state.issuer == p.issuer)
                .and_then(|state| state.discovered.load_full())
                .and_then(|d| d.end_session_endpoint.clone());
            for url in [Some(p.issuer.as_str()), end_session.as_deref()]
                .into_iter()
                .flatten()
            {
                let Ok(uri) = url.parse::<::http::Uri>() else {
                    continue;
                };
                if let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) {
                    let origin = format!("{scheme}://{authority}");
                    if !origins.contains(&origin) {
                        origins.push(origin);
                    }
                }
            }
        }
        origins.join(" ")
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
                    let s = Arc::new(ProviderState::new(&p.issuer));
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

    fn discovered_with_end_session(end_session: Option<&str>) -> Discovered {
        Discovered {
            authorization_endpoint: "https://idp.example.com/authorize".into(),
            token_endpoint: "https://idp.example.com/token".into(),
            userinfo_endpoint: None,
            jwks_uri: "https://idp.example.com/jwks".into(),
            end_session_endpoint: end_session.map(str::to_string),
            algorithms: vec![jsonwebtoken::Algorithm::RS256],
            secret_in_body: false,
            sends_iss: false,
            switch_account_prompt: None,
        }
    }

    #[test]
    fn logout_origins_are_the_issuers_and_end_session_endpoints_of_providers_that_log_out_there() {
        let provider = |id: &str, issuer: &str, at_idp: bool| {
            Arc::new(ProviderSettings {
                logout_at_idp: at_idp,
                ..ProviderSettings::for_tests(id, issuer)
            })
        };
        let settings = OidcSettings {
            password_login: true,
            providers: vec![
                provider("corp", "https://idp.example.com/realms/corp", true),
                provider("lab", "https://idp.example.com/realms/lab", true),
                provider("dev", "http://127.0.0.1:5556/dex", true),
                provider("google", "https://accounts.google.com", false),
                provider("b2c", "https://tenant.example.net/v2.0", true),
            ],
        };
        // The state `apply` keeps, without its discovery tasks (no network in unit tests).
        let oidc = Oidc::new();
        for p in &settings.providers {
            oidc.providers
                .insert(p.id.clone(), Arc::new(ProviderState::new(&p.issuer)));
        }
        // Before discovery, the issuers' origins.
        assert_eq!(
            oidc.logout_origins(&settings),
            "https://idp.example.com http://127.0.0.1:5556 https://tenant.example.net"
        );
        // A provider that ends sessions on another origin than its issuer's; one that ends
        // them at its issuer's; one that does not log out there (its endpoint is not allowed).
        let discovered = |id: &str, end_session: Option<&str>| {
            let state = oidc.providers.get(id).map(|s| s.clone()).unwrap();
            state
                .discovered
                .store(Some(Arc::new(discovered_with_end_session(end_session))));
        };
        discovered("b2c", Some("https://login.example.net/tenant/logout?p=1"));
        discovered("corp", Some("https://idp.example.com/realms/corp/logout"));
        discovered("google", Some("https://elsewhere.example.org/logout"));
        assert_eq!(
            oidc.logout_origins(&settings),
            "https://idp.example.com http://127.0.0.1:5556 https://tenant.example.net \
             https://login.example.net"
        );
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
