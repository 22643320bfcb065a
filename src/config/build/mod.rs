//! File value → runtime [`Config`]: reads key files and `users_file`, applies every load-time
//! rule of SPEC §3, and collects all errors, each with its place and a fix. This file holds
//! the order of the sections and the rules that span them; each section's builder lives in
//! its own file (`server`, `tokens`, `users`, `routes`, `oidc`, `ui`), and `diagnose` words
//! the parser's refusals.

mod diagnose;
mod oidc;
mod routes;
mod server;
mod tokens;
mod ui;
mod users;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_saphyr::Location;

use super::error::{place_of_key, ConfigError, ConfigErrors};
use super::expand::with_lookup;
use super::expand::Text;
use super::file::{self, S};
use super::Config;
use crate::authenticate::cookies::CookiePolicy;
use crate::authenticate::users::Users;
use diagnose::{parse_error, FileKind};
use oidc::build_oidc;
use routes::{build_identity, build_routes, build_strip};
use server::{build_admin, build_logging, build_login, build_server, build_store, ServerParts};
use tokens::{build_cookies, build_tokens};
use ui::build_ui;
use users::build_users;

/// One source file and the errors found so far.
struct Ctx<'a> {
    file: String,
    text: &'a str,
    errors: &'a mut Vec<ConfigError>,
    /// Users' `oidc:` links (where, key, provider id), checked once providers are known.
    links: Vec<(Location, String, String)>,
}

impl Ctx<'_> {
    /// An error at `at`; a rule that has no parser location (a value out of range, a
    /// required key left out) is placed where `key`, or its section, is written.
    fn err(&mut self, at: Location, key: &str, message: impl Into<String>) {
        let (line, column) = match at.line() {
            0 => place_of_key(self.text, key).unwrap_or((0, 0)),
            _ => (at.line(), at.column()),
        };
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
            snippet: None,
        });
    }
}

/// A private key file that other users can read (any group or other permission bit): anyone
/// on the machine could sign tokens or impersonate the server with it.
fn readable_by_others(key: &str, path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "{key}: `{}` can be read by other users (mode {mode:o}); make it private: chmod 600 {}",
            path.display(),
            path.display()
        )
    })
}

/// The files of a TLS client section (a route's `upstream_tls:`, `store.redis.tls:`), as
/// written.
struct TlsFiles<'a> {
    ca: Option<&'a S<Text>>,
    server_name: Option<&'a S<Text>>,
    client_cert: Option<&'a S<Text>>,
    client_key: Option<&'a S<Text>>,
}

/// The PEM a TLS client section's files hold.
struct TlsPem {
    ca: Option<Vec<u8>>,
    /// Certificate chain and key.
    client: Option<(Vec<u8>, Vec<u8>)>,
}

/// Reads and checks a TLS client section (`key` is its path, e.g. `routes[0].upstream_tls`):
/// every error names the key it concerns.
fn tls_settings(
    ctx: &mut Ctx<'_>,
    base: &Path,
    key: &str,
    t: &TlsFiles<'_>,
) -> Option<(crate::trust::ClientTls, TlsPem)> {
    let mut paths = Vec::new();
    let mut read = |ctx: &mut Ctx<'_>, file: Option<&S<Text>>, name: &str| {
        let file = file?;
        let path = resolve(base, &file.value);
        let bytes = super::read_bounded(&path)
            .map_err(|e| {
                ctx.err(
                    file.referenced,
                    &format!("{key}.{name}"),
                    format!("cannot read `{}`: {e}", path.display()),
                )
            })
            .ok();
        paths.push(path);
        Some(bytes)
    };
    let ca = read(ctx, t.ca, "ca");
    let cert = read(ctx, t.client_cert, "client_cert");
    let client_key = read(ctx, t.client_key, "client_key");
    let client = match (cert, client_key) {
        (None, None) => None,
        (Some(cert), Some(client_key)) => Some((cert?, client_key?)),
        (Some(_), None) | (None, Some(_)) => {
            let (at, missing) = match (t.client_cert, t.client_key) {
                (Some(c), _) => (c.referenced, "client_key"),
                (_, Some(k)) => (k.referenced, "client_cert"),
                _ => return None,
            };
            ctx.err(
                at,
                key,
                format!("client_cert and client_key go together: add {missing}"),
            );
            return None;
        }
    };
    let ca = match ca {
        None => None,
        Some(bytes) => Some(bytes?),
    };
    let files = crate::trust::ClientTlsFiles {
        ca: ca.as_deref(),
        client: client.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
        server_name: t.server_name.map(|n| n.value.0.as_str()),
        paths,
    };
    match crate::trust::client_tls(files) {
        Ok(tls) => Some((tls, TlsPem { ca, client })),
        Err(e) => {
            let at = match e.key {
                "ca" => t.ca,
                "server_name" => t.server_name,
                "client_cert" => t.client_cert,
                _ => t.client_key,
            }
            .map(|f| f.referenced)
            .unwrap_or(Location::UNKNOWN);
            ctx.err(at, &format!("{key}.{}", e.key), e.message);
            None
        }
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

pub fn build(
    text: &str,
    source: &Path,
    lookup: impl Fn(&str) -> Option<String> + Clone + 'static,
) -> Result<Config, ConfigErrors> {
    let name = source.display().to_string();
    let base = source.parent().map(Path::to_path_buf).unwrap_or_default();
    let parsed: Result<file::File, _> =
        with_lookup(lookup.clone(), || serde_saphyr::from_str(text));
    let f =
        parsed.map_err(|e| ConfigErrors(vec![parse_error(&name, FileKind::Config, text, &e)]))?;
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut ctx = Ctx {
        file: name.clone(),
        text,
        errors: &mut errors,
        links: Vec::new(),
    };
    let _ = ctx.text;

    let server = build_server(&mut ctx, &f.server, &base);
    let ServerParts {
        listen,
        tls,
        public_origin,
        auth_prefix,
        trusted_proxies,
        limits,
    } = server;

    if trusted_proxies.iter().any(|net| net.prefix_len() == 0) {
        warnings.push(
            "server.trusted_proxies: trusts every address (`/0`): any client can set the \
             X-Forwarded-For the login throttle counts by, and ask /auth about any request; \
             list only your proxies' addresses"
                .into(),
        );
    }
    let admin = build_admin(&mut ctx, f.admin.as_ref());

    let tokens = build_tokens(&mut ctx, &f.tokens, &base, &mut warnings);
    let cookies = build_cookies(&mut ctx, &f.cookies, &mut warnings);

    let (users, users_file) = build_users(&mut ctx, &f, &base, lookup.clone());

    let known_roles: HashSet<&str> = users
        .iter()
        .flat_map(|u| u.roles.iter().map(String::as_str))
        .collect();
    let routes = build_routes(
        &mut ctx,
        &base,
        &f.routes,
        auth_prefix.as_deref(),
        &known_roles,
        &mut warnings,
    );
    if f.routes.is_empty() {
        warnings
            .push("no routes are configured: every request outside the auth prefix is 404".into());
    }

    let throttle = build_login(&mut ctx, &f.login);

    let oidc = build_oidc(
        &mut ctx,
        &mut warnings,
        f.oidc.as_ref(),
        public_origin.as_deref(),
        auth_prefix.as_deref(),
        f.server.public_url.as_ref().map(|u| u.referenced),
    );
    for (at, key, id) in std::mem::take(&mut ctx.links) {
        let known = oidc
            .as_ref()
            .is_some_and(|o| o.providers.iter().any(|p| p.id == id));
        if !known {
            ctx.err(
                at,
                &key,
                format!(
                    "names the identity provider `{id}`, but no oidc.providers entry has that id"
                ),
            );
        }
    }
    let strip = build_strip(&mut ctx, &f.server.strip_client_headers);
    let ui = build_ui(&mut ctx, &f.ui, &base);
    let identity = build_identity(&mut ctx, &f.identity_headers, strip);

    let store = build_store(&mut ctx, &f.store, &base, &mut warnings);

    let logging = build_logging(&mut ctx, &f.logging);

    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let (Some(tokens), Some(cookies), Some(identity), Some(auth_prefix), Some(store)) =
        (tokens, cookies, identity, auth_prefix, store)
    else {
        return Err(ConfigErrors(vec![ConfigError {
            file: name,
            line: 0,
            column: 0,
            key: String::new(),
            message: "the configuration is incomplete".into(),
            snippet: None,
        }]));
    };
    warnings.extend(deployment_warnings(
        &f,
        &base,
        listen,
        &cookies,
        users.is_empty() && oidc.as_ref().is_none_or(|o| o.providers.is_empty()),
    ));
    let express_lane =
        f.server.express_lane.unwrap_or(true) && super::express_lane_allowed(&lookup);
    Ok(Config {
        express_lane,
        source: source.to_path_buf(),
        store,
        admin,
        tls,
        users_file,
        listen,
        public_origin,
        auth_prefix,
        trusted_proxies,
        limits,
        tokens,
        cookies,
        users: Users::new(users),
        throttle,
        max_concurrent_hashes: f.login.max_concurrent_hashes,
        routes,
        identity,
        ui,
        oidc,
        logging,
        warnings,
    })
}

/// Things that load but will not work as the operator expects: key files others can read,
/// secure cookies over plain HTTP to other machines (the silent login loop), nobody who can
/// sign in, cookies without `Secure`.
fn deployment_warnings(
    f: &file::File,
    base: &Path,
    listen: Option<std::net::SocketAddr>,
    cookies: &CookiePolicy,
    nobody_can_sign_in: bool,
) -> Vec<String> {
    let mut warnings = Vec::new();
    let key_files = f
        .tokens
        .signing_key
        .iter()
        .map(|k| ("tokens.signing_key".to_string(), &k.value))
        .chain(
            f.server
                .tls
                .iter()
                .map(|t| ("server.tls.key".to_string(), &t.value.key.value)),
        )
        .chain(f.routes.iter().enumerate().filter_map(|(i, r)| {
            let key = r.value.upstream_tls.as_ref()?.value.client_key.as_ref()?;
            Some((format!("routes[{i}].upstream_tls.client_key"), &key.value))
        }));
    for (key, path) in key_files {
        warnings.extend(readable_by_others(&key, &resolve(base, path)));
    }
    // The silent login loop: Secure cookies over plain HTTP to another machine are dropped by
    // the browser, so every login ends back on the login page.
    if let Some(addr) =
        listen.filter(|a: &std::net::SocketAddr| cookies.secure && !a.ip().is_loopback())
    {
        if f.server.trusted_proxies.is_empty() {
            warnings.push(format!(
                "cookies.secure is true but server.listen ({addr}) serves plain HTTP to other \
                 machines and no server.trusted_proxies terminate TLS in front: browsers will not \
                 keep the session cookies there, and every login ends back on the login page. Fix: \
                 serve HTTPS (server.tls), or put a TLS-terminating proxy in front and list it in \
                 server.trusted_proxies; for plain-HTTP development only, set cookies.secure: false"
            ));
        }
    }
    if nobody_can_sign_in {
        warnings.push(
            "no users: nobody can sign in (public paths still work); add some under `users:` or \
             in a users_file, each with a hash from `gatehouse hash-password`"
                .into(),
        );
    }
    if !cookies.secure {
        warnings.push(
            "cookies.secure is false: cookies travel over plain HTTP; use only for development"
                .into(),
        );
    }
    warnings
}
