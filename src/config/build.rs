//! File value → runtime [`Config`]: reads key files and `users_file`, applies every load-time
//! rule of SPEC §3, and collects all errors, each with its place and a fix.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use http::{HeaderName, Method};
use serde_saphyr::Location;

use super::error::{key_path_at, ConfigError, ConfigErrors};
use super::expand::{with_lookup, Text};
use super::file::{self, S};
use super::{read_bounded, Config, IdentityHeaders, Limits, Logging};
use crate::authenticate::cookies::{parse_same_site, CookiePolicy};
use crate::authenticate::sessions::TokenSettings;
use crate::authenticate::throttle::ThrottlePolicy;
use crate::authenticate::tokens::{is_symmetric, parse_algorithm, KeySet};
use crate::authenticate::users::{canonical_username, check_hash_format, User, Users};
use crate::canonicalize::{canonical_host, canonical_path};
use crate::route::{HostPattern, Route, RouteTable, Rule, Upstream};

/// One source file and the errors found so far.
struct Ctx<'a> {
    file: String,
    text: &'a str,
    errors: &'a mut Vec<ConfigError>,
    /// Users' `oidc:` links (where, key, provider id), checked once providers are known.
    links: Vec<(Location, String, String)>,
}

impl Ctx<'_> {
    fn err(&mut self, at: Location, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line: at.line(),
            column: at.column(),
            key: key.to_string(),
            message: message.into(),
            snippet: None,
        });
    }
}

/// The operator's words for the mistakes people make most, from the parser's structured error
/// (never its text): a key written twice, one value where a list belongs, one value where a
/// section belongs. The fix is built from the line itself.
fn plain_words(err: &serde_saphyr::Error, text: &str, line: u64) -> Option<String> {
    let source = usize::try_from(line)
        .ok()
        .and_then(|l| text.lines().nth(l.checked_sub(1)?))
        .unwrap_or("");
    let (key, value) = match source.trim().trim_start_matches("- ").split_once(':') {
        Some((k, v)) => (k.trim(), v.trim()),
        None => ("", source.trim()),
    };
    // The error itself, under the snippet and alias wrappers the parser puts around it.
    let mut err = err;
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = err
    {
        err = error;
    }
    match err {
        serde_saphyr::Error::DuplicateMappingKey { key: Some(k), .. } => Some(format!(
            "`{k}` is written twice in the same section; write it once (merge the two into one)"
        )),
        serde_saphyr::Error::DuplicateMappingKey { key: None, .. } => {
            Some("a key is written twice in the same section; write it once".into())
        }
        serde_saphyr::Error::Unexpected {
            expected: "sequence start",
            ..
        } if !key.is_empty() => Some(format!(
            "`{key}` takes a list; write it in brackets, e.g. `{key}: [{value}]`"
        )),
        serde_saphyr::Error::Unexpected {
            expected: "mapping start",
            ..
        } if !key.is_empty() => Some(format!(
            "`{key}` is a section, not a value: put its keys on the lines below it, indented"
        )),
        _ => None,
    }
}

fn parse_error(file: &str, text: &str, err: &serde_saphyr::Error) -> ConfigError {
    let (line, column) = err
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    let rendered = err.to_string();
    // The library renders `error: line L column C: message` and then a snippet; keep the
    // message and the snippet, drop the duplicated position.
    let message = rendered
        .strip_prefix("error: ")
        .and_then(|m| m.split_once(": "))
        .map(|(_, rest)| rest.to_string())
        .unwrap_or(rendered);
    // The first line says what is wrong; the rest is the library's snippet, which names the
    // text `<input>`: name the file instead.
    let (message, snippet) = match message.split_once('\n') {
        Some((first, rest)) => (
            first.to_string(),
            Some(rest.replace("<input>", file)).filter(|s| !s.trim().is_empty()),
        ),
        None => (message, None),
    };
    let message = plain_words(err, text, line).unwrap_or(message);
    let key = if line > 0 {
        key_path_at(text, line)
    } else {
        String::new()
    };
    let error = ConfigError {
        file: file.to_string(),
        line,
        column,
        key,
        message,
        snippet,
    };
    unclosed_quote(text, line)
        .or_else(|| over_indented(text, line))
        .map(|(line, key, message)| ConfigError {
            line,
            column: 1,
            key,
            message,
            ..error.clone()
        })
        .unwrap_or(error)
}

/// The text's lines up to `line` (1-based), numbered, without blank and comment lines.
fn lines_before(text: &str, line: u64) -> Vec<(u64, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l))
        .take_while(|(n, _)| *n <= line)
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect()
}

/// A parse error after a line whose double quotes do not pair up: the parser reads on to the
/// next quote and reports a later line, under a later key. Name the line that opened it.
fn unclosed_quote(text: &str, line: u64) -> Option<(u64, String, String)> {
    let (n, source) = lines_before(text, line)
        .into_iter()
        .filter(|(n, _)| *n < line)
        .find(|(_, l)| {
            // A double-quoted value whose quotes do not pair up on its line.
            let value = l.split_once(": ").map_or(*l, |(_, v)| v).trim_start();
            let unescaped = l.replace("\\\\", "").replace("\\\"", "");
            value.starts_with('"') && unescaped.matches('"').count() % 2 == 1
        })?;
    let key = key_path_at(text, n);
    Some((
        n,
        key,
        format!(
            "this value opens a quote it does not close: `{}`; add the closing `\"`",
            source.trim()
        ),
    ))
}

/// A parse error on a key indented deeper than the `key: value` line above it: YAML reads it as
/// part of that value. Name both keys and say how to indent.
fn over_indented(text: &str, line: u64) -> Option<(u64, String, String)> {
    let mut lines = lines_before(text, line).into_iter().rev();
    let (n, here) = lines.next().filter(|(n, _)| *n == line)?;
    let (_, above) = lines.next()?;
    let indent = |l: &str| l.len() - l.trim_start().trim_start_matches("- ").len();
    let (key_here, _) = here.trim().split_once(':')?;
    let (key_above, value_above) = above.trim().trim_start_matches("- ").split_once(':')?;
    if indent(here) <= indent(above) || value_above.trim().is_empty() {
        return None;
    }
    let parent = key_path_at(text, n - 1);
    let parent = parent.rsplit_once('.').map_or("", |(p, _)| p);
    let key = if parent.is_empty() {
        key_here.trim().to_string()
    } else {
        format!("{parent}.{}", key_here.trim())
    };
    Some((
        n,
        key,
        format!(
            "`{}` is indented more than `{}` above it, so YAML reads it as part of that value; \
             indent it exactly like `{}`",
            key_here.trim(),
            key_above.trim(),
            key_above.trim()
        ),
    ))
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
    let f = parsed.map_err(|e| ConfigErrors(vec![parse_error(&name, text, &e)]))?;
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

    let admin = build_admin(&mut ctx, f.admin.as_ref());

    let tokens = build_tokens(&mut ctx, &f.tokens, &base);
    let cookies = build_cookies(&mut ctx, &f.cookies, &mut warnings);

    let (users, users_file) = build_users(&mut ctx, &f, &base, lookup.clone());

    let known_roles: HashSet<&str> = users
        .iter()
        .flat_map(|u| u.roles.iter().map(String::as_str))
        .collect();
    let routes = build_routes(&mut ctx, &f.routes, &known_roles, &mut warnings);
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
    let identity = build_identity(&mut ctx, &f.identity_headers).map(|mut identity| {
        identity.strip = strip;
        identity
    });

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

/// `oidc:` → the providers, each checked (SPEC §11). Discovery itself is fetched by the
/// runtime (`run`) and by `check`, not here: building a config does no network I/O.
fn build_oidc(
    ctx: &mut Ctx<'_>,
    warnings: &mut Vec<String>,
    o: Option<&S<file::Oidc>>,
    public_origin: Option<&str>,
    auth_prefix: Option<&str>,
    public_url_at: Option<Location>,
) -> Option<crate::oidc::OidcSettings> {
    use crate::oidc::ProviderSettings;
    let o = o?;
    if o.value.providers.is_empty() {
        if !o.value.password_login {
            ctx.err(
                o.referenced,
                "oidc.password_login",
                "is false but no oidc.providers are configured: nobody could sign in",
            );
        }
        return Some(crate::oidc::OidcSettings {
            password_login: o.value.password_login,
            providers: Vec::new(),
        });
    }
    let base = match public_origin {
        Some(origin) => Some(origin.to_string()),
        None => {
            ctx.err(
                public_url_at.unwrap_or(o.referenced),
                "server.public_url",
                "is required when oidc.providers are configured: the redirect URI registered at \
                 the provider is {public_url}{auth_prefix}/oidc/{id}/callback",
            );
            None
        }
    };
    let mut providers = Vec::new();
    let mut ids: HashMap<String, u64> = HashMap::new();
    for (i, p) in o.value.providers.iter().enumerate() {
        let key = |k: &str| format!("oidc.providers[{i}].{k}");
        let v = &p.value;
        let id = v.id.value.0.clone();
        let well_formed = !id.is_empty()
            && id.len() <= 32
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !well_formed {
            ctx.err(
                v.id.referenced,
                &key("id"),
                format!(
                    "`{id}` is not a provider id: 1 to 32 of a-z, 0-9 and `-` (it is part of URLs)"
                ),
            );
        }
        if let Some(line) = ids.insert(id.clone(), v.id.referenced.line()) {
            ctx.err(
                v.id.referenced,
                &key("id"),
                format!("`{id}` is already the id of the provider at line {line}"),
            );
        }
        let issuer = v.issuer.value.0.trim().to_string();
        if !crate::oidc::http::allowed_url(&issuer) || issuer.contains(['?', '#']) {
            ctx.err(
                v.issuer.referenced,
                &key("issuer"),
                format!(
                    "`{issuer}` is not an https URL (plain http only on a loopback address, for \
                     development), e.g. \"https://idp.example.com/realms/corp\""
                ),
            );
        }
        if v.client_id.value.0.is_empty() {
            ctx.err(
                v.client_id.referenced,
                &key("client_id"),
                "must not be empty",
            );
        }
        let scopes: Vec<String> = match &v.scopes {
            Some(list) => list.iter().map(|s| s.value.0.clone()).collect(),
            None => vec!["openid".into(), "email".into(), "profile".into()],
        };
        if !scopes.iter().any(|s| s == "openid") {
            ctx.err(
                v.scopes
                    .as_ref()
                    .and_then(|l| l.first())
                    .map_or(p.referenced, |s| s.referenced),
                &key("scopes"),
                "must include \"openid\" (without it the provider sends no ID token)",
            );
        }
        if scopes
            .iter()
            .any(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            ctx.err(
                p.referenced,
                &key("scopes"),
                "a scope is one word without spaces",
            );
        }
        let mut domains = Vec::new();
        for d in &v.allowed_email_domains {
            let domain = d.value.0.trim().to_ascii_lowercase();
            if domain.is_empty() || domain.contains('@') || domain.contains(char::is_whitespace) {
                ctx.err(
                    d.referenced,
                    &key("allowed_email_domains"),
                    format!(
                        "`{}` is not a domain; write it without `@`, e.g. \"example.com\"",
                        &*d.value
                    ),
                );
            }
            domains.push(domain);
        }
        let logout_at_idp = match v.logout.as_ref().map(|l| (l, l.value.0.as_str())) {
            None | Some((_, "local")) => false,
            Some((_, "idp")) => true,
            Some((l, other)) => {
                ctx.err(
                    l.referenced,
                    &key("logout"),
                    format!("`{other}` is not a logout mode; use local or idp"),
                );
                false
            }
        };
        let recheck_interval = v
            .recheck_interval
            .as_ref()
            .map_or(300_000, |d| crate::clock::ms(d.value.0.as_secs()));
        if recheck_interval == 0 {
            ctx.err(
                v.recheck_interval
                    .as_ref()
                    .map_or(p.referenced, |d| d.referenced),
                &key("recheck_interval"),
                "must be at least 1s",
            );
        }
        let (Some(base), Some(prefix)) = (&base, auth_prefix) else {
            continue;
        };
        providers.push(std::sync::Arc::new(ProviderSettings {
            name: v
                .name
                .as_ref()
                .map_or_else(|| id.clone(), |n| n.value.0.clone()),
            redirect_uri: format!("{base}{prefix}/oidc/{id}/callback"),
            backchannel_uri: format!("{base}{prefix}/oidc/{id}/backchannel-logout"),
            id,
            issuer,
            client_id: v.client_id.value.0.clone(),
            client_secret: v.client_secret.as_ref().map(|s| s.value.0.clone()),
            scopes,
            username_claim: v
                .username_claim
                .as_ref()
                .map_or_else(|| "email".to_string(), |c| c.value.0.clone()),
            roles_claim: v.roles_claim.as_ref().map(|c| c.value.0.clone()),
            role_map: v
                .role_map
                .iter()
                .map(|(k, r)| (k.clone(), r.0.clone()))
                .collect(),
            allowed_email_domains: domains,
            allowed_roles: v.allowed_roles.iter().map(|r| r.value.0.clone()).collect(),
            require_verified_email: v.require_verified_email,
            recheck_interval,
            logout_at_idp,
        }));
    }
    // Two providers that can hand out the same name give the same Gatehouse user.
    let non_email: Vec<&str> = providers
        .iter()
        .filter(|p| p.username_claim != "email")
        .map(|p| p.id.as_str())
        .collect();
    if providers.len() > 1 && !non_email.is_empty() {
        warnings.push(format!(
            "oidc: several providers, and {} take the username from a claim other than email: \
             the same name at two providers is one Gatehouse user. Use username_claim: email \
             with allowed_email_domains per provider, or make sure the names cannot collide",
            non_email.join(", ")
        ));
    }
    Some(crate::oidc::OidcSettings {
        password_login: o.value.password_login,
        providers,
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
        .map(|k| ("tokens.signing_key", &k.value))
        .chain(
            f.server
                .tls
                .iter()
                .map(|t| ("server.tls.key", &t.value.key.value)),
        );
    for (key, path) in key_files {
        warnings.extend(readable_by_others(key, &resolve(base, path)));
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

/// `server:` (listeners, TLS, public URL, prefix, trusted proxies, limits).
struct ServerParts {
    listen: Option<std::net::SocketAddr>,
    tls: Option<super::tls::TlsSettings>,
    public_origin: Option<String>,
    auth_prefix: Option<String>,
    trusted_proxies: Vec<ipnet::IpNet>,
    limits: Limits,
}

fn build_server(ctx: &mut Ctx<'_>, server: &file::Server, base: &Path) -> ServerParts {
    let listen = server.listen.as_ref().and_then(|l| {
        l.value
            .parse()
            .map_err(|_| {
                ctx.err(
                    l.referenced,
                    "server.listen",
                    format!(
                        "`{}` is not an address; write e.g. \"127.0.0.1:8080\"",
                        &*l.value
                    ),
                )
            })
            .ok()
    });
    let tls = server.tls.as_ref().and_then(|t| {
        let t = &t.value;
        let listen = t
            .listen
            .value
            .parse()
            .map_err(|_| {
                ctx.err(
                    t.listen.referenced,
                    "server.tls.listen",
                    format!(
                        "`{}` is not an address; write e.g. \"0.0.0.0:8443\"",
                        &*t.listen.value
                    ),
                )
            })
            .ok();
        let cert_path = resolve(base, &t.cert.value);
        let key_path = resolve(base, &t.key.value);
        let cert = read_bounded(&cert_path)
            .map_err(|e| {
                ctx.err(
                    t.cert.referenced,
                    "server.tls.cert",
                    format!("cannot read `{}`: {e}", cert_path.display()),
                )
            })
            .ok();
        let key = read_bounded(&key_path)
            .map_err(|e| {
                ctx.err(
                    t.key.referenced,
                    "server.tls.key",
                    format!("cannot read `{}`: {e}", key_path.display()),
                )
            })
            .ok();
        let (cert, key) = (cert?, key?);
        let server_config = crate::config::tls::server_config(&cert, &key)
            .map_err(|e| ctx.err(t.cert.referenced, "server.tls", e.to_string()))
            .ok()?;
        Some(crate::config::tls::TlsSettings {
            listen: listen?,
            cert_path,
            key_path,
            server_config,
        })
    });
    if server.listen.is_none() && server.tls.is_none() {
        ctx.err(
            Location::UNKNOWN,
            "server.listen",
            "is required (e.g. listen: \"127.0.0.1:8080\")",
        );
    }
    let public_origin = server.public_url.as_ref().and_then(|u| origin_of(ctx, u));
    let auth_prefix = {
        let p = &server.auth_prefix;
        match canonical_path(&p.value) {
            Ok(c) if c != "/" && !c.ends_with('/') && c == *p.value => Some(c),
            _ => {
                ctx.err(
                    p.referenced,
                    "server.auth_prefix",
                    "must be a canonical path like \"/.gatehouse\" (one leading `/`, no trailing `/`, not `/`)",
                );
                None
            }
        }
    };
    let trusted_proxies = server
        .trusted_proxies
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let v = t.value.trim();
            v.parse::<ipnet::IpNet>()
                .or_else(|_| v.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    ctx.err(
                        t.referenced,
                        &format!("server.trusted_proxies[{i}]"),
                        format!("`{v}` is not a CIDR or IP address (e.g. \"10.0.0.0/8\")"),
                    )
                })
                .ok()
        })
        .collect();
    let l = &server.limits;
    let limits = Limits {
        max_request_header_bytes: usize::try_from(l.max_request_header_bytes.0)
            .unwrap_or(usize::MAX),
        header_read_timeout: l.header_read_timeout.0,
        idle_timeout: l.idle_timeout.0,
        max_connections: l.max_connections.max(1),
        max_login_body_bytes: usize::try_from(l.max_login_body_bytes.0).unwrap_or(usize::MAX),
        upstream_connect_timeout: l.upstream_connect_timeout.0,
        upstream_response_timeout: l.upstream_response_timeout.0,
        shutdown_grace: l.shutdown_grace.0,
    };
    if limits.max_request_header_bytes < 8192 {
        ctx.err(
            Location::UNKNOWN,
            "server.limits.max_request_header_bytes",
            "must be at least 8KiB",
        );
    }

    ServerParts {
        listen,
        tls,
        public_origin,
        auth_prefix,
        trusted_proxies,
        limits,
    }
}

/// `admin:` (the second listener and its token).
fn build_admin(ctx: &mut Ctx<'_>, admin: Option<&S<file::Admin>>) -> Option<super::AdminSettings> {
    let admin = admin?;
    let a = &admin.value;
    let listen = a
        .listen
        .value
        .parse()
        .map_err(|_| {
            ctx.err(
                a.listen.referenced,
                "admin.listen",
                format!(
                    "`{}` is not an address; write e.g. \"127.0.0.1:9090\"",
                    &*a.listen.value
                ),
            )
        })
        .ok();
    let token = match &a.token {
        Some(t) if t.value.len() >= 16 => Some(t.value.0.clone()),
        Some(t) => {
            ctx.err(
                t.referenced,
                "admin.token",
                "must be at least 16 characters (e.g. from ${GATEHOUSE_ADMIN_TOKEN})",
            );
            None
        }
        None => {
            ctx.err(
                admin.referenced,
                "admin.token",
                "is required when admin is set",
            );
            None
        }
    };
    Some(super::AdminSettings {
        listen: listen?,
        token: super::Secret(token?),
    })
}

/// `users` and `users_file`: inline users first, then the file's, one namespace.
fn build_users(
    ctx: &mut Ctx<'_>,
    f: &file::File,
    base: &Path,
    lookup: impl Fn(&str) -> Option<String> + Clone + 'static,
) -> (Vec<User>, Option<PathBuf>) {
    let mut users = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    collect_users(ctx, "users", &f.users, &mut users, &mut seen);
    let users_file = f.users_file.as_ref().map(|p| resolve(base, &p.value));
    if let (Some(path), Some(spanned)) = (&users_file, &f.users_file) {
        match read_bounded(path).and_then(|b| String::from_utf8(b).map_err(std::io::Error::other)) {
            Err(e) => ctx.err(
                spanned.referenced,
                "users_file",
                format!("cannot read `{}`: {e}", path.display()),
            ),
            Ok(text) => {
                let uname = path.display().to_string();
                let parsed: Result<file::UsersFile, _> =
                    with_lookup(lookup.clone(), || serde_saphyr::from_str(&text));
                match parsed {
                    Err(e) => ctx.errors.push(parse_error(&uname, &text, &e)),
                    Ok(uf) => {
                        let mut uctx = Ctx {
                            file: uname,
                            text: &text,
                            errors: ctx.errors,
                            links: Vec::new(),
                        };
                        collect_users(&mut uctx, "users", &uf.users, &mut users, &mut seen);
                        for (at, key, id) in uctx.links {
                            // Reported against the main file's context below; keep the place.
                            ctx.links
                                .push((at, format!("{} ({key})", path.display()), id));
                        }
                    }
                }
            }
        }
    }

    (users, users_file)
}

/// `store:` (memory, with an optional `path`, or Redis).
fn build_store(
    ctx: &mut Ctx<'_>,
    st: &file::Store,
    base: &Path,
    warnings: &mut Vec<String>,
) -> Option<super::StoreSettings> {
    let backend = &st.backend;
    let store = match backend.value.0.as_str() {
        "memory" => {
            if st.redis.is_some() {
                warnings
                    .push("store.redis is set but store.backend is memory; it is ignored".into());
            }
            Some(super::StoreSettings::Memory { path: None })
        }
        "redis" => match &st.redis {
            None => {
                ctx.err(
                    backend.referenced,
                    "store.redis",
                    "is required with backend redis (url, key_prefix)",
                );
                None
            }
            Some(r) => match redis::Client::open(r.value.url.0.as_str()) {
                Ok(client) => Some(super::StoreSettings::Redis {
                    client,
                    key_prefix: r.value.key_prefix.0.clone(),
                }),
                Err(e) => {
                    ctx.err(
                        r.referenced,
                        "store.redis.url",
                        format!("not a Redis URL (e.g. redis://127.0.0.1:6379/0): {e}"),
                    );
                    None
                }
            },
        },
        other => {
            ctx.err(
                backend.referenced,
                "store.backend",
                format!("`{other}` is not a store; use memory or redis"),
            );
            None
        }
    };
    let store_path = st.path.as_ref().map(|p| resolve(base, &p.value));
    if let (Some(p), Some(super::StoreSettings::Redis { .. })) = (&st.path, &store) {
        ctx.err(
            p.referenced,
            "store.path",
            "is for backend memory; Redis keeps its own state",
        );
    }
    store.map(|s| match s {
        super::StoreSettings::Memory { .. } => super::StoreSettings::Memory { path: store_path },
        other => other,
    })
}

/// `login:` (the brute-force throttle; `max_concurrent_hashes` is read by the runtime).
fn build_login(ctx: &mut Ctx<'_>, login: &file::Login) -> ThrottlePolicy {
    if login.max_failures == 0 {
        ctx.err(
            Location::UNKNOWN,
            "login.max_failures",
            "must be at least 1",
        );
    }
    if login.max_concurrent_hashes == 0 {
        ctx.err(
            Location::UNKNOWN,
            "login.max_concurrent_hashes",
            "must be at least 1",
        );
    }
    ThrottlePolicy {
        max_failures: login.max_failures,
        failure_window: login.failure_window.0.as_secs(),
        lockout: login.lockout.0.as_secs(),
    }
}

/// `logging:` (format and level).
fn build_logging(ctx: &mut Ctx<'_>, logging: &file::Logging) -> Logging {
    let format = &logging.format;
    let json = match format.value.0.as_str() {
        "json" => true,
        "pretty" => false,
        other => {
            ctx.err(
                format.referenced,
                "logging.format",
                format!("`{other}` is not a log format; use pretty or json"),
            );
            false
        }
    };
    let level = &logging.level;
    if tracing_subscriber::EnvFilter::try_new(level.value.0.as_str()).is_err() {
        ctx.err(
            level.referenced,
            "logging.level",
            format!(
                "`{}` is not a log level or filter (e.g. info, debug, gatehouse=debug)",
                &*level.value
            ),
        );
    }
    Logging {
        json,
        level: level.value.0.clone(),
    }
}

fn origin_of(ctx: &mut Ctx<'_>, u: &S<Text>) -> Option<String> {
    let uri: Option<http::Uri> = u.value.parse().ok();
    let ok = uri.as_ref().and_then(|uri| {
        let scheme = uri.scheme_str()?;
        let authority = uri.authority()?;
        (matches!(scheme, "http" | "https") && authority.as_str().find('@').is_none())
            .then(|| format!("{scheme}://{}", authority.as_str().to_ascii_lowercase()))
    });
    if ok.is_none() {
        ctx.err(
            u.referenced,
            "server.public_url",
            format!(
                "`{}` is not an absolute http(s) URL like \"https://app.example.com\"",
                &*u.value
            ),
        );
    }
    ok
}

fn secs(d: &S<super::units::Dur>) -> u64 {
    d.value.0.as_secs()
}

fn build_tokens(ctx: &mut Ctx<'_>, t: &file::Tokens, base: &Path) -> Option<TokenSettings> {
    let alg = match parse_algorithm(&t.algorithm.value) {
        Ok(a) => a,
        Err(e) => {
            ctx.err(t.algorithm.referenced, "tokens.algorithm", e.to_string());
            return None;
        }
    };
    for (d, key) in [
        (&t.access_ttl, "tokens.access_ttl"),
        (&t.refresh_ttl, "tokens.refresh_ttl"),
        (&t.session_max_age, "tokens.session_max_age"),
    ] {
        if secs(d) == 0 {
            ctx.err(d.referenced, key, "must be at least 1s");
        }
    }
    if t.issuer.is_empty() || t.audience.is_empty() {
        ctx.err(
            Location::UNKNOWN,
            "tokens.issuer",
            "issuer and audience must not be empty",
        );
    }
    // The key that seals what sessions keep secret (an IdP refresh token): derived from the
    // signing secret, so rotating the signing key also rotates it.
    let mut seal_material: Vec<u8> = Vec::new();
    let keys = if is_symmetric(alg) {
        if let Some(k) = &t.signing_key {
            ctx.err(
                k.referenced,
                "tokens.signing_key",
                format!("is for asymmetric algorithms; {alg:?} uses tokens.secret"),
            );
        }
        if let Some(k) = t.verify_keys.first() {
            ctx.err(
                k.referenced,
                "tokens.verify_keys",
                format!("are for asymmetric algorithms; {alg:?} uses tokens.secret"),
            );
        }
        match &t.secret {
            None => {
                ctx.err(Location::UNKNOWN, "tokens.secret", format!("is required for {alg:?} (at least 32 bytes, e.g. from ${{GATEHOUSE_SECRET}})"));
                None
            }
            Some(s) => {
                seal_material = s.value.as_bytes().to_vec();
                KeySet::symmetric(alg, s.value.as_bytes())
                    .map_err(|e| ctx.err(s.referenced, "tokens.secret", e.to_string()))
                    .ok()
            }
        }
    } else {
        if let Some(s) = &t.secret {
            ctx.err(
                s.referenced,
                "tokens.secret",
                format!("is for HS* algorithms; {alg:?} uses tokens.signing_key"),
            );
        }
        let read = |ctx: &mut Ctx<'_>, p: &S<Text>, key: &str| {
            let path = resolve(base, &p.value);
            read_bounded(&path)
                .map_err(|e| {
                    // A missing key is the first thing a new operator (or container) meets.
                    let hint = if e.kind() == std::io::ErrorKind::NotFound {
                        format!(
                            "; create one with `gatehouse gen-key --out {}` (in a container, mount the folder that holds it)",
                            path.display()
                        )
                    } else {
                        String::new()
                    };
                    ctx.err(
                        p.referenced,
                        key,
                        format!("cannot read `{}`: {e}{hint}", path.display()),
                    )
                })
                .ok()
        };
        let Some(signing) = &t.signing_key else {
            ctx.err(
                Location::UNKNOWN,
                "tokens.signing_key",
                format!(
                    "is required for {alg:?}; create one with `gatehouse gen-key --alg {alg:?}`"
                ),
            );
            return None;
        };
        let signing_pem = read(ctx, signing, "tokens.signing_key")?;
        seal_material = signing_pem.clone();
        let mut verify_pems = Vec::new();
        for (i, v) in t.verify_keys.iter().enumerate() {
            verify_pems.extend(read(ctx, v, &format!("tokens.verify_keys[{i}]")));
        }
        let verify_refs: Vec<&[u8]> = verify_pems.iter().map(Vec::as_slice).collect();
        match KeySet::asymmetric(alg, &signing_pem, &verify_refs) {
            Ok(k) => Some(k),
            Err(e) => {
                // Tell which file is at fault.
                let culprit = if KeySet::asymmetric(alg, &signing_pem, &[]).is_err() {
                    (signing.referenced, "tokens.signing_key".to_string())
                } else {
                    (
                        t.verify_keys
                            .first()
                            .map(|v| v.referenced)
                            .unwrap_or(Location::UNKNOWN),
                        "tokens.verify_keys".to_string(),
                    )
                };
                ctx.err(culprit.0, &culprit.1, format!("{e} (algorithm {alg:?})"));
                None
            }
        }
    }?;
    Some(TokenSettings {
        keys,
        issuer: t.issuer.0.clone(),
        audience: t.audience.0.clone(),
        access_ttl: secs(&t.access_ttl),
        refresh_ttl: secs(&t.refresh_ttl),
        session_max_age: secs(&t.session_max_age),
        reuse_grace: t.refresh_reuse_grace.0.as_secs(),
        leeway: t.leeway.0.as_secs(),
        cache: Default::default(),
        seal: crate::seal::SealKey::derive(&seal_material),
    })
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn build_cookies(
    ctx: &mut Ctx<'_>,
    c: &file::Cookies,
    _warnings: &mut Vec<String>,
) -> Option<CookiePolicy> {
    let mut ok = true;
    for (n, key) in [
        (&c.access_name, "cookies.access_name"),
        (&c.refresh_name, "cookies.refresh_name"),
    ] {
        if !is_token(&n.value) || n.value.starts_with("__") {
            ctx.err(
                n.referenced,
                key,
                format!(
                    "`{}` is not a cookie name (letters, digits, `-`, `_`; no leading `__`)",
                    &*n.value
                ),
            );
            ok = false;
        }
    }
    if *c.access_name.value == *c.refresh_name.value {
        ctx.err(
            c.refresh_name.referenced,
            "cookies.refresh_name",
            "must differ from cookies.access_name",
        );
        ok = false;
    }
    let same_site = parse_same_site(&c.same_site.value);
    match same_site {
        None => {
            ctx.err(
                c.same_site.referenced,
                "cookies.same_site",
                format!("`{}` is not strict, lax or none", &*c.same_site.value),
            );
            ok = false;
        }
        Some(cookie::SameSite::None) if !c.secure => {
            ctx.err(c.same_site.referenced, "cookies.same_site", "none requires cookies.secure: true (browsers drop SameSite=None cookies without Secure)");
            ok = false;
        }
        _ => {}
    }
    let domain = c.domain.as_ref().and_then(|d| {
        let v = d.value.trim_start_matches('.');
        match canonical_host(v) {
            Ok(h) if !h.is_empty() => Some(h),
            _ => {
                ctx.err(
                    d.referenced,
                    "cookies.domain",
                    format!("`{}` is not a domain", &*d.value),
                );
                None
            }
        }
    });
    let same_site = same_site?;
    ok.then(|| {
        CookiePolicy::new(
            &c.access_name.value,
            &c.refresh_name.value,
            c.secure,
            same_site,
            domain,
        )
    })
}

fn collect_users(
    ctx: &mut Ctx<'_>,
    key: &str,
    list: &[S<file::User>],
    users: &mut Vec<User>,
    seen: &mut HashMap<String, String>,
) {
    for (i, u) in list.iter().enumerate() {
        let u_key = format!("{key}[{i}]");
        let name = u.value.username.value.0.clone();
        let canonical = canonical_username(&name);
        if canonical.is_empty() || canonical.contains(char::is_control) {
            ctx.err(
                u.value.username.referenced,
                &format!("{u_key}.username"),
                "must not be empty",
            );
            continue;
        }
        let here = format!("{}:{}", ctx.file, u.value.username.referenced.line());
        if let Some(first) = seen.insert(canonical.clone(), here) {
            ctx.err(
                u.value.username.referenced,
                &format!("{u_key}.username"),
                format!("`{name}` is the same user as the one at {first} (usernames are compared trimmed and lowercased)"),
            );
            continue;
        }
        let hash = &u.value.password_hash;
        if let Err(e) = check_hash_format(&hash.value) {
            ctx.err(
                hash.referenced,
                &format!("{u_key}.password_hash"),
                format!("{e}; create one with `gatehouse hash-password`"),
            );
            continue;
        }
        users.push(User {
            username: name.trim().to_string(),
            password_hash: hash.value.0.clone(),
            email: u.value.email.as_ref().map(|e| e.0.clone()),
            roles: u.value.roles.iter().map(|r| r.0.clone()).collect(),
            disabled: u.value.disabled,
            oidc: u.value.oidc.as_ref().map(|o| o.value.0.clone()),
        });
        if let Some(o) = &u.value.oidc {
            ctx.links
                .push((o.referenced, format!("{u_key}.oidc"), o.value.0.clone()));
        }
    }
}

fn prefix(ctx: &mut Ctx<'_>, p: &S<Text>, key: &str) -> Option<String> {
    match canonical_path(&p.value) {
        Ok(c) => {
            let trimmed = c.strip_suffix('/').filter(|t| !t.is_empty()).unwrap_or(&c);
            Some(trimmed.to_string())
        }
        Err(e) => {
            ctx.err(
                p.referenced,
                key,
                format!("`{}` is not a path prefix: {e}", &*p.value),
            );
            None
        }
    }
}

fn upstream(ctx: &mut Ctx<'_>, u: &S<Text>, key: &str) -> Option<Upstream> {
    let parsed: Option<http::Uri> = u.value.parse().ok();
    let Some(uri) = parsed.filter(|uri| uri.authority().is_some() && uri.query().is_none()) else {
        ctx.err(
            u.referenced,
            key,
            format!(
                "`{}` is not a URL like \"http://127.0.0.1:3000\"",
                &*u.value
            ),
        );
        return None;
    };
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            ctx.err(
                u.referenced,
                key,
                "https upstreams are not supported yet; use http to a local upstream",
            );
            return None;
        }
        _ => {
            ctx.err(u.referenced, key, "must start with http://");
            return None;
        }
    }
    let authority = uri.authority()?.clone();
    if authority.as_str().contains('@') {
        ctx.err(u.referenced, key, "must not contain credentials");
        return None;
    }
    Some(Upstream {
        scheme: http::uri::Scheme::HTTP,
        authority,
        base_path: uri.path().trim_end_matches('/').to_string(),
    })
}

fn roles(
    list: &[S<Text>],
    key: &str,
    known: &HashSet<&str>,
    warnings: &mut Vec<String>,
) -> Vec<String> {
    list.iter()
        .map(|r| {
            if !known.contains(r.value.0.as_str()) {
                warnings.push(format!("{key}: no user has the role `{}`", &*r.value));
            }
            r.value.0.clone()
        })
        .collect()
}

fn build_routes(
    ctx: &mut Ctx<'_>,
    list: &[S<file::Route>],
    known: &HashSet<&str>,
    warnings: &mut Vec<String>,
) -> RouteTable {
    let mut names = HashSet::new();
    let mut routes = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let k = format!("routes[{i}]");
        let r = &r.value;
        if r.name.value.is_empty() {
            ctx.err(r.name.referenced, &format!("{k}.name"), "must not be empty");
        } else if !names.insert(r.name.value.0.clone()) {
            ctx.err(
                r.name.referenced,
                &format!("{k}.name"),
                format!("`{}` is already the name of another route", &*r.name.value),
            );
        }
        let host = match &r.host {
            None => Some(HostPattern::Any),
            Some(h) => {
                let v = h.value.trim();
                let (wild, rest) = match v.strip_prefix("*.") {
                    Some(rest) => (true, rest),
                    None => (false, v),
                };
                match canonical_host(rest) {
                    Ok(c) if !c.is_empty() && !c.contains('*') => Some(if wild {
                        HostPattern::Wildcard(format!(".{c}"))
                    } else {
                        HostPattern::Exact(c)
                    }),
                    _ => {
                        ctx.err(
                            h.referenced,
                            &format!("{k}.host"),
                            format!("`{v}` is not a host name or `*.domain` wildcard"),
                        );
                        None
                    }
                }
            }
        };
        let path_prefix = prefix(ctx, &r.path_prefix, &format!("{k}.path_prefix"));
        let up = match &r.upstream {
            Some(u) => upstream(ctx, u, &format!("{k}.upstream")),
            None => {
                ctx.err(
                    r.name.referenced,
                    &format!("{k}.upstream"),
                    "is required: every route needs an upstream URL",
                );
                None
            }
        };
        let public: Vec<String> = r
            .public
            .iter()
            .enumerate()
            .filter_map(|(j, p)| prefix(ctx, p, &format!("{k}.public[{j}]")))
            .collect();
        let mut rules = Vec::new();
        for (j, rule) in r.rules.iter().enumerate() {
            let rk = format!("{k}.rules[{j}]");
            let rule = &rule.value;
            let rp = prefix(ctx, &rule.path_prefix, &format!("{rk}.path_prefix"));
            let methods = rule.methods.as_ref().map(|ms| {
                ms.iter()
                    .filter_map(|m| {
                        let upper = m.value.to_ascii_uppercase();
                        Method::from_bytes(upper.as_bytes())
                            .map_err(|_| {
                                ctx.err(
                                    m.referenced,
                                    &format!("{rk}.methods"),
                                    format!("`{}` is not an HTTP method", &*m.value),
                                )
                            })
                            .ok()
                    })
                    .collect::<Vec<_>>()
            });
            if let Some(rp) = rp {
                if public.iter().any(|p| {
                    crate::canonicalize::under_prefix(&rp, p)
                        || crate::canonicalize::under_prefix(p, &rp)
                }) {
                    warnings.push(format!("{rk}: `{rp}` overlaps a public path of the route; public paths are served without login and rules do not apply to them"));
                }
                rules.push(Rule {
                    prefix: rp,
                    methods,
                    allow_roles: roles(
                        &rule.allow_roles,
                        &format!("{rk}.allow_roles"),
                        known,
                        warnings,
                    ),
                });
            }
        }
        let allow_roles = roles(&r.allow_roles, &format!("{k}.allow_roles"), known, warnings);
        if let (Some(host), Some(prefix), Some(upstream)) = (host, path_prefix, up) {
            routes.push(Route {
                name: r.name.value.0.clone(),
                label: crate::telemetry::metrics::RouteName::new(&r.name.value.0),
                host,
                prefix,
                upstream,
                strip_prefix: r.strip_prefix,
                preserve_host: r.preserve_host,
                public,
                allow_roles,
                rules,
                websocket: r.websocket,
            });
        }
    }
    RouteTable::new(routes)
}

fn build_identity(ctx: &mut Ctx<'_>, h: &file::IdentityHeaders) -> Option<IdentityHeaders> {
    let mut header = |s: &S<Text>, key: &str| {
        HeaderName::from_bytes(s.value.as_bytes())
            .map_err(|_| {
                ctx.err(
                    s.referenced,
                    key,
                    format!("`{}` is not a header name", &*s.value),
                )
            })
            .ok()
    };
    let user = header(&h.user, "identity_headers.user");
    let email = header(&h.email, "identity_headers.email");
    let roles = header(&h.roles, "identity_headers.roles");
    let assertion = match &h.assertion {
        Some(a) => Some(header(a, "identity_headers.assertion")?),
        None => None,
    };
    let (user, email, roles) = (user?, email?, roles?);
    let mut names: Vec<String> = [&user, &email, &roles]
        .into_iter()
        .chain(assertion.as_ref())
        .map(|n| super::loose_header_name(n.as_str()))
        .collect();
    names.sort();
    names.dedup();
    if names.len() != 3 + usize::from(assertion.is_some()) {
        ctx.err(
            Location::UNKNOWN,
            "identity_headers",
            "the identity headers must have distinct names",
        );
        return None;
    }
    Some(IdentityHeaders {
        user,
        email,
        roles,
        assertion,
        strip: Vec::new(),
    })
}

/// The most bytes a logo or extra CSS file may have.
const MAX_LOGO: u64 = 512 * 1024;
const MAX_CSS: u64 = 64 * 1024;

/// A file of `ui`, read whole when it is at most `max` bytes.
fn read_asset(ctx: &mut Ctx<'_>, base: &Path, t: &S<Text>, key: &str, max: u64) -> Option<Vec<u8>> {
    let path = resolve(base, &t.value);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > max) {
        ctx.err(
            t.referenced,
            key,
            format!("`{}` is larger than {} KiB", path.display(), max / 1024),
        );
        return None;
    }
    read_bounded(&path)
        .map_err(|e| {
            ctx.err(
                t.referenced,
                key,
                format!("cannot read `{}`: {e}", path.display()),
            )
        })
        .ok()
}

/// `ui`: the title, the logo file, the accent colour and the extra CSS file.
fn build_ui(ctx: &mut Ctx<'_>, u: &file::Ui, base: &Path) -> crate::ui::Branding {
    let mut branding = crate::ui::Branding::default();
    if let Some(t) = &u.title {
        let title = t.value.trim();
        if title.is_empty() || title.chars().count() > 80 {
            ctx.err(t.referenced, "ui.title", "must be 1 to 80 characters");
        } else {
            branding.title = title.to_string();
        }
    }
    if let Some(c) = &u.accent_color {
        let v = c.value.trim();
        let hex = v.strip_prefix('#').unwrap_or("");
        if matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            branding.accent = v.to_string();
        } else {
            ctx.err(
                c.referenced,
                "ui.accent_color",
                format!("`{v}` is not a colour; write it as \"#rrggbb\" (e.g. \"#2f5fe0\")"),
            );
        }
    }
    if let Some(l) = &u.logo {
        let kind = match Path::new(l.value.trim())
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("svg") => Some("image/svg+xml"),
            Some("png") => Some("image/png"),
            Some("jpg" | "jpeg") => Some("image/jpeg"),
            Some("gif") => Some("image/gif"),
            Some("webp") => Some("image/webp"),
            Some("ico") => Some("image/x-icon"),
            _ => None,
        };
        match kind {
            Some(kind) => {
                if let Some(bytes) = read_asset(ctx, base, l, "ui.logo", MAX_LOGO) {
                    branding.logo = Some((bytes.into(), kind));
                }
            }
            None => ctx.err(
                l.referenced,
                "ui.logo",
                "must be an .svg, .png, .jpg, .gif, .webp or .ico file",
            ),
        }
    }
    if let Some(c) = &u.css {
        if let Some(bytes) = read_asset(ctx, base, c, "ui.css", MAX_CSS) {
            match String::from_utf8(bytes) {
                // Inlined in the page's <style>: it must not be able to end it.
                Ok(css) if css.to_ascii_lowercase().contains("</style") => ctx.err(
                    c.referenced,
                    "ui.css",
                    "must not contain `</style`: it is inlined into the page's styles",
                ),
                Ok(css) => branding.css = css,
                Err(_) => ctx.err(c.referenced, "ui.css", "is not UTF-8 text"),
            }
        }
    }
    branding
}

/// `server.strip_client_headers`: the built-in list, plus `add`, less `keep`.
fn build_strip(ctx: &mut Ctx<'_>, s: &file::StripClientHeaders) -> Vec<String> {
    let mut check = |t: &S<Text>, key: String| {
        let name = t.value.trim();
        let bare = name.strip_suffix('*').unwrap_or(name);
        if bare.is_empty() || HeaderName::from_bytes(bare.as_bytes()).is_err() {
            ctx.err(
                t.referenced,
                &key,
                format!("`{name}` is not a header name (write `X-Name`, or `X-Prefix-*` for every name it begins)"),
            );
            return None;
        }
        Some(super::loose_header_name(name))
    };
    let add: Vec<String> = s
        .add
        .iter()
        .enumerate()
        .filter_map(|(i, t)| check(t, format!("server.strip_client_headers.add[{i}]")))
        .collect();
    let keep: Vec<(usize, String)> = s
        .keep
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            check(t, format!("server.strip_client_headers.keep[{i}]")).map(|n| (i, n))
        })
        .collect();
    for (i, name) in &keep {
        if !super::DEFAULT_STRIPPED.contains(&name.as_str()) {
            ctx.err(
                s.keep[*i].referenced,
                &format!("server.strip_client_headers.keep[{i}]"),
                format!(
                    "`{name}` is not in the built-in list, so there is nothing to keep; the list is: {}",
                    super::DEFAULT_STRIPPED.join(", ")
                ),
            );
        }
    }
    super::DEFAULT_STRIPPED
        .iter()
        .map(|n| n.to_string())
        .filter(|n| !keep.iter().any(|(_, k)| k == n))
        .chain(add)
        .collect()
}
