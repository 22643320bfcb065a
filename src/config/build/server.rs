//! `server:`, `admin:`, `store:`, `login:` and `logging:`: listeners, TLS, limits, the admin
//! listener, the store backend, login throttling and the log format.

use std::path::Path;

use serde_saphyr::Location;

use super::{resolve, Ctx};
use crate::authenticate::throttle::ThrottlePolicy;
use crate::canonicalize::canonical_path;
use crate::config::expand::Text;
use crate::config::file::{self, S};
use crate::config::{read_bounded, Limits, Logging};

/// `server:` (listeners, TLS, public URL, prefix, trusted proxies, limits).
pub(super) struct ServerParts {
    pub(super) listen: Option<std::net::SocketAddr>,
    pub(super) tls: Option<crate::config::tls::TlsSettings>,
    pub(super) public_origin: Option<String>,
    pub(super) auth_prefix: Option<String>,
    pub(super) trusted_proxies: Vec<ipnet::IpNet>,
    pub(super) limits: Limits,
}

pub(super) fn build_server(ctx: &mut Ctx<'_>, server: &file::Server, base: &Path) -> ServerParts {
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
pub(super) fn build_admin(
    ctx: &mut Ctx<'_>,
    admin: Option<&S<file::Admin>>,
) -> Option<crate::config::AdminSettings> {
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
    Some(crate::config::AdminSettings {
        listen: listen?,
        token: crate::config::Secret(token?),
    })
}

/// `store:` (memory, with an optional `path`, or Redis).
pub(super) fn build_store(
    ctx: &mut Ctx<'_>,
    st: &file::Store,
    base: &Path,
    warnings: &mut Vec<String>,
) -> Option<crate::config::StoreSettings> {
    let backend = &st.backend;
    let store = match backend.value.0.as_str() {
        "memory" => {
            if st.redis.is_some() {
                warnings
                    .push("store.redis is set but store.backend is memory; it is ignored".into());
            }
            Some(crate::config::StoreSettings::Memory { path: None })
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
            Some(r) => match redis_client(ctx, base, r) {
                // `rediss://…#insecure` would take any certificate: whoever sits between the
                // gateway and Redis could read and forge every session.
                Ok(client)
                    if matches!(
                        client.get_connection_info().addr,
                        redis::ConnectionAddr::TcpTls { insecure: true, .. }
                    ) =>
                {
                    ctx.err(
                        r.referenced,
                        "store.redis.url",
                        "`#insecure` (TLS without checking the certificate) is not supported: \
                         trust the server's CA instead (store.redis.tls.ca: ca.pem)",
                    );
                    None
                }
                Ok(client) => Some(crate::config::StoreSettings::Redis {
                    client,
                    key_prefix: r.value.key_prefix.0.clone(),
                }),
                Err(()) => None,
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
    if let (Some(p), Some(crate::config::StoreSettings::Redis { .. })) = (&st.path, &store) {
        ctx.err(
            p.referenced,
            "store.path",
            "is for backend memory; Redis keeps its own state",
        );
    }
    store.map(|s| match s {
        crate::config::StoreSettings::Memory { .. } => {
            crate::config::StoreSettings::Memory { path: store_path }
        }
        other => other,
    })
}

/// The Redis client for `store.redis`: its URL, and with `tls:` the CAs to trust instead of
/// the system's and a client certificate. `Err` once the problem is reported.
fn redis_client(ctx: &mut Ctx<'_>, base: &Path, r: &S<file::Redis>) -> Result<redis::Client, ()> {
    let url = r.value.url.0.as_str();
    let client = redis::Client::open(url).map_err(|e| {
        ctx.err(
            r.referenced,
            "store.redis.url",
            format!("not a Redis URL (e.g. redis://127.0.0.1:6379/0): {e}"),
        )
    })?;
    let tls_url = matches!(
        client.get_connection_info().addr,
        redis::ConnectionAddr::TcpTls { .. }
    );
    let Some(t) = &r.value.tls else {
        if !tls_url {
            return Ok(client);
        }
        // The system's CAs, read once here: given none, redis-rs reads them itself at every
        // connection, on the async threads (and fails every connection for one unreadable
        // file in the store).
        let certificates = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(crate::trust::system_roots_pem()),
        };
        return redis::Client::build_with_tls(url, certificates).map_err(|e| {
            ctx.err(r.referenced, "store.redis.url", format!("{e}"));
        });
    };
    if !tls_url {
        ctx.err(
            t.referenced,
            "store.redis.tls",
            "is for rediss:// URLs; store.redis.url is not one",
        );
        return Err(());
    }
    let files = super::TlsFiles {
        ca: t.value.ca.as_ref(),
        server_name: None,
        client_cert: t.value.client_cert.as_ref(),
        client_key: t.value.client_key.as_ref(),
    };
    // Read and checked as an upstream's are (a key that does not match its certificate is
    // refused here, not at the first connection); redis-rs builds its own rustls config from
    // the same PEM.
    let (_, pem) = super::tls_settings(ctx, base, "store.redis.tls", &files).ok_or(())?;
    let certificates = redis::TlsCertificates {
        client_tls: pem
            .client
            .map(|(client_cert, client_key)| redis::ClientTlsConfig {
                client_cert,
                client_key,
            }),
        root_cert: Some(pem.ca.unwrap_or_else(crate::trust::system_roots_pem)),
    };
    redis::Client::build_with_tls(url, certificates).map_err(|e| {
        ctx.err(t.referenced, "store.redis.tls", format!("{e}"));
    })
}

/// `login:` (the brute-force throttle; `max_concurrent_hashes` is read by the runtime).
pub(super) fn build_login(ctx: &mut Ctx<'_>, login: &file::Login) -> ThrottlePolicy {
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
pub(super) fn build_logging(ctx: &mut Ctx<'_>, logging: &file::Logging) -> Logging {
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
    if !is_log_filter(level.value.0.as_str()) {
        ctx.err(
            level.referenced,
            "logging.level",
            format!(
                "`{}` is not a log level; use error, warn, info, debug, trace or off, or a \
                 filter that names a level for each target (e.g. info,gatehouse=debug)",
                &*level.value
            ),
        );
    }
    Logging {
        json,
        level: level.value.0.clone(),
    }
}

/// A level (`info`) or a filter whose every directive names its level (`gatehouse=debug`,
/// `info,hyper=warn`). `tracing` would also take a bare word as a target with every level
/// on, so a misspelt level (`infp`) silently turned every other log line off.
fn is_log_filter(text: &str) -> bool {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let directives_name_levels = text.split(',').all(|d| {
        let d = d.trim();
        d.contains('=') || d.contains('[') || LEVELS.iter().any(|l| d.eq_ignore_ascii_case(l))
    });
    directives_name_levels && tracing_subscriber::EnvFilter::try_new(text).is_ok()
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
