//! The YAML mirror of `gateway.yaml` (SPEC §3): every key, its default, nothing else.
//! Unknown keys are rejected; values that later checks may refuse keep their source span.
//! No I/O and no cross-key rules here: those live in `build/`.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::expand::Text;
use super::units::{Dur, Size};

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub server: Server,
    pub admin: Option<S<Admin>>,
    pub tokens: Tokens,
    #[serde(default)]
    pub cookies: Cookies,
    #[serde(default)]
    pub users: Vec<S<User>>,
    pub users_file: Option<S<Text>>,
    #[serde(default)]
    pub login: Login,
    #[serde(default)]
    pub routes: Vec<S<Route>>,
    #[serde(default)]
    pub identity_headers: IdentityHeaders,
    #[serde(default)]
    pub store: Store,
    #[serde(default)]
    pub logging: Logging,
    #[serde(default)]
    pub ui: Ui,
    pub oidc: Option<S<Oidc>>,
}

/// `oidc:` (login through identity providers).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Oidc {
    #[serde(default = "yes")]
    pub password_login: bool,
    #[serde(default)]
    pub providers: Vec<S<Provider>>,
}

/// One `oidc.providers[]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub id: S<Text>,
    pub name: Option<S<Text>>,
    pub issuer: S<Text>,
    pub client_id: S<Text>,
    pub client_secret: Option<S<Text>>,
    pub scopes: Option<Vec<S<Text>>>,
    pub username_claim: Option<S<Text>>,
    pub roles_claim: Option<S<Text>>,
    #[serde(default)]
    pub role_map: std::collections::BTreeMap<String, Text>,
    #[serde(default)]
    pub allowed_email_domains: Vec<S<Text>>,
    #[serde(default)]
    pub allowed_roles: Vec<S<Text>>,
    #[serde(default = "yes")]
    pub require_verified_email: bool,
    pub recheck_interval: Option<S<Dur>>,
    pub logout: Option<S<Text>>,
}

/// `ui:` (branding of the login and error pages).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ui {
    pub title: Option<S<Text>>,
    pub logo: Option<S<Text>>,
    pub accent_color: Option<S<Text>>,
    pub css: Option<S<Text>>,
}

/// The schema of `users_file`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    #[serde(default)]
    pub users: Vec<S<User>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub listen: Option<S<Text>>,
    pub tls: Option<S<Tls>>,
    pub public_url: Option<S<Text>>,
    #[serde(default = "default_auth_prefix")]
    pub auth_prefix: S<Text>,
    #[serde(default)]
    pub trusted_proxies: Vec<S<Text>>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub strip_client_headers: StripClientHeaders,
    /// Serve plain-HTTP GET/HEAD requests through the express lane (default true).
    pub express_lane: Option<bool>,
}

/// `server.strip_client_headers`: changes to the built-in list of headers removed from every
/// client request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripClientHeaders {
    /// More names to remove (`X-Name`, or `X-Prefix-*`).
    #[serde(default)]
    pub add: Vec<S<Text>>,
    /// Names from the built-in list to let through after all.
    #[serde(default)]
    pub keep: Vec<S<Text>>,
}

fn default_auth_prefix() -> S<Text> {
    unspanned(Text("/.gatehouse".into()))
}

/// A value the file did not spell out: its location is unknown.
pub fn unspanned<T>(value: T) -> S<T> {
    let here = serde_saphyr::Location::UNKNOWN;
    Spanned::new(value, here, here)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub listen: S<Text>,
    pub cert: S<Text>,
    pub key: S<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_request_header_bytes: Size,
    pub header_read_timeout: Dur,
    pub idle_timeout: Dur,
    pub max_connections: usize,
    pub max_login_body_bytes: Size,
    pub upstream_connect_timeout: Dur,
    pub upstream_response_timeout: Dur,
    pub shutdown_grace: Dur,
}

impl Default for Limits {
    fn default() -> Self {
        use std::time::Duration as D;
        Limits {
            max_request_header_bytes: Size(16 * 1024),
            header_read_timeout: Dur(D::from_secs(10)),
            idle_timeout: Dur(D::from_secs(60)),
            max_connections: 10_000,
            max_login_body_bytes: Size(8 * 1024),
            upstream_connect_timeout: Dur(D::from_secs(5)),
            upstream_response_timeout: Dur(D::from_secs(60)),
            shutdown_grace: Dur(D::from_secs(30)),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub listen: S<Text>,
    pub token: Option<S<Text>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tokens {
    #[serde(default = "default_name")]
    pub issuer: Text,
    #[serde(default = "default_name")]
    pub audience: Text,
    #[serde(default = "default_algorithm")]
    pub algorithm: S<Text>,
    pub secret: Option<S<Text>>,
    pub signing_key: Option<S<Text>>,
    #[serde(default)]
    pub verify_keys: Vec<S<Text>>,
    #[serde(default = "d_5m")]
    pub access_ttl: S<Dur>,
    #[serde(default = "d_7d")]
    pub refresh_ttl: S<Dur>,
    #[serde(default = "d_30d")]
    pub session_max_age: S<Dur>,
    #[serde(default = "d_10s")]
    pub refresh_reuse_grace: Dur,
    #[serde(default = "d_30s")]
    pub leeway: Dur,
}

fn default_name() -> Text {
    Text("gatehouse".into())
}
fn default_algorithm() -> S<Text> {
    unspanned(Text("EdDSA".into()))
}
fn secs(n: u64) -> Dur {
    Dur(std::time::Duration::from_secs(n))
}
fn d_5m() -> S<Dur> {
    unspanned(secs(300))
}
fn d_7d() -> S<Dur> {
    unspanned(secs(7 * 86_400))
}
fn d_30d() -> S<Dur> {
    unspanned(secs(30 * 86_400))
}
fn d_10s() -> Dur {
    secs(10)
}
fn d_30s() -> Dur {
    secs(30)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cookies {
    pub access_name: S<Text>,
    pub refresh_name: S<Text>,
    pub secure: bool,
    pub same_site: S<Text>,
    pub domain: Option<S<Text>>,
}

impl Default for Cookies {
    fn default() -> Self {
        Cookies {
            access_name: unspanned(Text("gatehouse_access".into())),
            refresh_name: unspanned(Text("gatehouse_refresh".into())),
            secure: true,
            same_site: unspanned(Text("lax".into())),
            domain: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub username: S<Text>,
    pub password_hash: S<Text>,
    pub email: Option<Text>,
    #[serde(default)]
    pub roles: Vec<Text>,
    #[serde(default)]
    pub disabled: bool,
    /// The provider id whose user of the same name may sign in as this user.
    pub oidc: Option<S<Text>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Login {
    pub max_failures: u32,
    pub failure_window: Dur,
    pub lockout: Dur,
    pub max_concurrent_hashes: usize,
}

impl Default for Login {
    fn default() -> Self {
        Login {
            max_failures: 5,
            failure_window: secs(300),
            lockout: secs(900),
            max_concurrent_hashes: 4,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: S<Text>,
    pub host: Option<S<Text>>,
    #[serde(default = "default_prefix")]
    pub path_prefix: S<Text>,
    pub upstream: Option<S<Text>>,
    #[serde(default)]
    pub strip_prefix: bool,
    #[serde(default = "yes")]
    pub preserve_host: bool,
    #[serde(default)]
    pub public: Vec<S<Text>>,
    #[serde(default)]
    pub allow_roles: Vec<S<Text>>,
    #[serde(default)]
    pub rules: Vec<S<Rule>>,
    #[serde(default)]
    pub websocket: bool,
    pub upstream_tls: Option<S<UpstreamTls>>,
}

/// A route's own TLS to its `https://` upstream. Paths relative to the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM CA certificates trusted for this upstream instead of the system's.
    pub ca: Option<S<Text>>,
    /// The name the upstream's certificate must carry (default: the upstream's host).
    pub server_name: Option<S<Text>>,
    /// PEM certificate chain and key presented to the upstream (mutual TLS).
    pub client_cert: Option<S<Text>>,
    pub client_key: Option<S<Text>>,
}

fn default_prefix() -> S<Text> {
    unspanned(Text("/".into()))
}
fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub path_prefix: S<Text>,
    pub methods: Option<Vec<S<Text>>>,
    #[serde(default)]
    pub allow_roles: Vec<S<Text>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityHeaders {
    pub user: S<Text>,
    pub email: S<Text>,
    pub roles: S<Text>,
    pub assertion: Option<S<Text>>,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        IdentityHeaders {
            user: unspanned(Text("X-Forwarded-User".into())),
            email: unspanned(Text("X-Forwarded-Email".into())),
            roles: unspanned(Text("X-Forwarded-Groups".into())),
            assertion: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Store {
    pub backend: S<Text>,
    pub path: Option<S<Text>>,
    pub redis: Option<S<Redis>>,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            backend: unspanned(Text("memory".into())),
            path: None,
            redis: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    pub url: Text,
    #[serde(default = "default_key_prefix")]
    pub key_prefix: Text,
    pub tls: Option<S<RedisTls>>,
}

/// TLS to Redis (`rediss://`) beyond the system's CAs. Paths relative to the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTls {
    /// PEM CA certificates trusted for Redis instead of the system's.
    pub ca: Option<S<Text>>,
    /// PEM certificate chain and key presented to Redis (`tls-auth-clients`).
    pub client_cert: Option<S<Text>>,
    pub client_key: Option<S<Text>>,
}

fn default_key_prefix() -> Text {
    Text("gatehouse:".into())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Logging {
    pub format: S<Text>,
    pub level: S<Text>,
}

impl Default for Logging {
    fn default() -> Self {
        Logging {
            format: unspanned(Text("pretty".into())),
            level: unspanned(Text("info".into())),
        }
    }
}
