//! Configuration (SPEC §3): `file.rs` mirrors the YAML, `build/` turns it into the runtime
//! [`Config`] (doing the I/O and the rules that span keys), `error.rs` reports every problem
//! with file, line, column and key path. `check`, start-up, reload and tests all go through
//! [`load`] or [`parse`].

mod build;
pub mod error;
pub mod expand;
pub mod file;
pub mod tls;
pub mod units;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;

use crate::authenticate::cookies::CookiePolicy;
use crate::authenticate::sessions::TokenSettings;
use crate::authenticate::throttle::ThrottlePolicy;
use crate::authenticate::users::Users;
use crate::route::RouteTable;
pub use error::{ConfigError, ConfigErrors};

/// The runtime configuration: one immutable snapshot, swapped whole on reload.
#[derive(Debug)]
pub struct Config {
    pub source: PathBuf,
    /// Which session store; takes effect at start.
    pub store: StoreSettings,
    /// The admin listener, if configured.
    pub admin: Option<AdminSettings>,
    /// The HTTPS listener, if configured.
    pub tls: Option<crate::config::tls::TlsSettings>,
    pub users_file: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    /// `scheme://host[:port]` of `public_url`, for redirects and same-origin checks.
    pub public_origin: Option<String>,
    pub auth_prefix: String,
    pub trusted_proxies: Vec<IpNet>,
    /// New plain-HTTP connections start in the express lane (`server.express_lane`, unless
    /// `GATEHOUSE_EXPRESS_LANE` says no).
    pub express_lane: bool,
    pub limits: Limits,
    pub tokens: TokenSettings,
    pub cookies: CookiePolicy,
    pub users: Users,
    pub throttle: ThrottlePolicy,
    pub max_concurrent_hashes: usize,
    pub routes: RouteTable,
    pub identity: IdentityHeaders,
    pub logging: Logging,
    /// Branding of the login and error pages (`ui`).
    pub ui: crate::ui::Branding,
    /// Login through identity providers (`oidc`), if configured.
    pub oidc: Option<crate::oidc::OidcSettings>,
    /// Things that load but deserve an operator's look (printed at start and by `check`).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum StoreSettings {
    /// In process; with `path`, written through to an embedded database.
    Memory { path: Option<PathBuf> },
    Redis {
        client: redis::Client,
        key_prefix: String,
    },
}

#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    pub token: Secret,
}

/// A secret string whose `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_request_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_login_body_bytes: usize,
    pub upstream_connect_timeout: Duration,
    pub upstream_response_timeout: Duration,
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub user: HeaderName,
    pub email: HeaderName,
    pub roles: HeaderName,
    pub assertion: Option<HeaderName>,
    /// Other headers removed from every client request (`server.strip_client_headers`), as
    /// [`loose_header_name`]s; one ending in `*` removes every name it begins.
    pub strip: Vec<String>,
    /// Every spelling of ours and every name `strip` removes, looked up at once
    /// ([`IdentityHeaders::drops`]); made by [`IdentityHeaders::with_strip`].
    dropped: LooseNames,
}

/// The headers removed from every client request unless `server.strip_client_headers.keep`
/// lets one through: each would let a client speak for the gateway to some upstream.
/// - `X-Original-URL`, `X-Original-URI`, `X-Rewrite-URL`: path overrides that Symfony, Zend,
///   IIS URL Rewrite and others route on, after we checked the real path;
/// - `X-Forwarded-Prefix`: the path base Spring and ASP.NET build links and redirects from;
/// - `X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override`: the method frameworks
///   (Express `method-override`, Symfony, Rails, Google APIs) act on, after a rule checked the
///   real one;
/// - `Remote-User`, `Remote-Groups`, `Remote-Email`, `Remote-Name` (Authelia), `X-Remote-*`,
///   `X-Auth-Request-*` and `X-Forwarded-Preferred-Username`, `X-Forwarded-Access-Token`
///   (oauth2-proxy), `X-WebAuth-User` (Grafana), `X-Authenticated-User`: identity headers
///   of other gateways, which an app migrated from one still believes.
pub const DEFAULT_STRIPPED: [&str; 17] = [
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-forwarded-prefix",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "remote-user",
    "remote-groups",
    "remote-email",
    "remote-name",
    "x-remote-*",
    "x-auth-request-*",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    "x-webauth-user",
    "x-authenticated-user",
];

/// Header names compared the way some servers do: case-insensitive, `_` equal to `-`.
pub fn loose_header_name(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// [`loose_header_name`], borrowed when the name is one already (as a `HeaderName`, always
/// lower case, is unless it has a `_`): the hot path allocates only for a `_`.
fn loose_name(name: &str) -> std::borrow::Cow<'_, str> {
    if name.bytes().any(|b| b == b'_' || b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(loose_header_name(name))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// A set of header names compared the loose way ([`loose_header_name`]): exactly, or for an
/// entry ending in `*`, every name it begins. Built once with the config, so that each of a
/// request's headers is looked up once instead of compared with every entry.
#[derive(Debug, Clone, Default)]
pub struct LooseNames {
    exact: std::collections::HashSet<Box<str>, foldhash::fast::RandomState>,
    /// Bit `n` set: an exact entry is `n` bytes long (bit 63: 63 or more). Most of a
    /// request's headers have a length no entry has, and are passed over without hashing.
    lengths: u64,
    /// Bit `b` set: an entry begins with the byte `b` (bit 127: any non-ASCII byte). Most of
    /// a browser's headers begin with a letter no entry does (`accept`, `sec-fetch-*`,
    /// `user-agent` against `x-…` and `remote-…`): passed over at once.
    firsts: u128,
    prefixes: Vec<Box<str>>,
}

fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

fn first_bit(name: &str) -> u128 {
    match name.as_bytes().first() {
        Some(&b) => 1 << u32::from(loose_byte(b).min(127)),
        // Nothing begins an empty name: a bit of its own, no entry's.
        None => 0,
    }
}

fn loose_byte(b: u8) -> u8 {
    if b == b'_' {
        b'-'
    } else {
        b.to_ascii_lowercase()
    }
}

impl LooseNames {
    pub fn new<'a>(entries: impl IntoIterator<Item = &'a str>) -> LooseNames {
        let mut set = LooseNames::default();
        for entry in entries {
            let entry = loose_header_name(entry);
            set.firsts |= first_bit(&entry);
            match entry.strip_suffix('*') {
                // `*` alone would begin every name.
                Some("") => {
                    set.firsts = u128::MAX;
                    set.prefixes.push("".into());
                }
                Some(prefix) => set.prefixes.push(prefix.into()),
                None => {
                    set.lengths |= length_bit(entry.len());
                    set.exact.insert(entry.into());
                }
            }
        }
        set
    }

    /// Whether `name` is in the set, compared the loose way.
    pub fn contains(&self, name: &str) -> bool {
        if name.is_empty() {
            return self.exact.contains("") || self.prefixes.iter().any(|p| p.is_empty());
        }
        if self.firsts & first_bit(name) == 0 {
            return false;
        }
        let loose = loose_name(name);
        (self.lengths & length_bit(loose.len()) != 0 && self.exact.contains(&*loose))
            || self.prefixes.iter().any(|p| loose.starts_with(&**p))
    }
}

impl Config {
    /// What sessions need of this config.
    pub fn policy(&self) -> crate::authenticate::Policy<'_> {
        crate::authenticate::Policy {
            tokens: &self.tokens,
            cookies: &self.cookies,
            users: &self.users,
            providers: self.oidc.as_ref(),
        }
    }
}

impl IdentityHeaders {
    /// The identity header names, and `strip` (`server.strip_client_headers`) for the other
    /// names removed from every client request.
    pub fn with_strip(
        user: HeaderName,
        email: HeaderName,
        roles: HeaderName,
        assertion: Option<HeaderName>,
        strip: Vec<String>,
    ) -> IdentityHeaders {
        let ours = [&user, &email, &roles]
            .into_iter()
            .chain(assertion.as_ref())
            .map(HeaderName::as_str);
        let dropped = LooseNames::new(ours.chain(strip.iter().map(String::as_str)));
        IdentityHeaders {
            user,
            email,
            roles,
            assertion,
            strip,
            dropped,
        }
    }

    /// Whether a client-sent header goes before the request is forwarded: a spelling of one
    /// of ours (SPEC §7), or one `strip` removes (any case, `_` = `-`).
    pub fn drops(&self, name: &str) -> bool {
        self.dropped.contains(name)
    }
}

pub use crate::telemetry::Logging;

/// The environment variable that switches the express lane off whatever the config says
/// (`0`, `false`, `off`, `no`), for comparing the two paths without editing the config.
pub const EXPRESS_LANE_ENV: &str = "GATEHOUSE_EXPRESS_LANE";

/// Whether the environment lets the express lane run: yes unless [`EXPRESS_LANE_ENV`] says no.
pub fn express_lane_allowed(env: impl Fn(&str) -> Option<String>) -> bool {
    !env(EXPRESS_LANE_ENV).is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "0" | "false" | "off" | "no"
        )
    })
}

/// Reads the environment for `${VAR}` (see [`crate::env`]).
pub use crate::env::var as process_env;

/// Config, key and users files are small; a path to a device or a huge file is an error, not a
/// hang.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

pub(crate) fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other("the file is larger than 1 MiB"));
    }
    Ok(out)
}

/// Reads and builds the config file at `path`. Blocking: call from a blocking context.
pub fn load(
    path: &Path,
    lookup: impl Fn(&str) -> Option<String> + Clone + 'static,
) -> Result<Config, ConfigErrors> {
    let text = read_bounded(path)
        .and_then(|b| String::from_utf8(b).map_err(std::io::Error::other))
        .map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.display().to_string(),
                line: 0,
                column: 0,
                key: String::new(),
                message: format!("cannot read the file: {e}"),
                snippet: None,
            }])
        })?;
    parse(&text, path, lookup)
}

/// Builds a config from its text; `source` names it in errors and anchors relative paths.
pub fn parse(
    text: &str,
    source: &Path,
    lookup: impl Fn(&str) -> Option<String> + Clone + 'static,
) -> Result<Config, ConfigErrors> {
    build::build(text, source, lookup)
}

#[cfg(test)]
mod tests;
