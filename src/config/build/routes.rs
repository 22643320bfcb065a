//! `routes:`, `identity_headers:` and `strip_client_headers:`: prefixes, upstreams, roles,
//! rules, and the header names the request policy removes and sets.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use http::{HeaderName, Method};
use serde_saphyr::Location;

use super::{tls_settings, Ctx, TlsFiles};
use crate::canonicalize::{canonical_host, canonical_path};
use crate::config::expand::Text;
use crate::config::file::{self, S};
use crate::config::IdentityHeaders;
use crate::route::{HostPattern, Route, RouteTable, Rule, Upstream};

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
    // `https://`: TLS to the upstream, its certificate checked against the system's CAs or
    // `SSL_CERT_FILE` (`crate::trust`).
    let scheme = match uri.scheme_str() {
        Some("http") => http::uri::Scheme::HTTP,
        Some("https") => http::uri::Scheme::HTTPS,
        _ => {
            ctx.err(u.referenced, key, "must start with http:// or https://");
            return None;
        }
    };
    let authority = uri.authority()?.clone();
    if authority.as_str().contains('@') {
        ctx.err(u.referenced, key, "must not contain credentials");
        return None;
    }
    // Every byte an `Authority` holds is one a header value may: this does not fail.
    let Ok(host) = http::HeaderValue::from_str(authority.as_str()) else {
        ctx.err(
            u.referenced,
            key,
            "its host and port cannot be a Host header",
        );
        return None;
    };
    Some(Upstream {
        scheme,
        authority,
        host,
        base_path: uri.path().trim_end_matches('/').to_string(),
        tls: None,
    })
}

/// `upstream_tls:`: the route's own CAs, certificate name and client certificate for its
/// `https://` upstream, read and checked now (a reload reads them again).
fn upstream_tls(
    ctx: &mut Ctx<'_>,
    base: &Path,
    t: &S<file::UpstreamTls>,
    key: &str,
    upstream: Option<&Upstream>,
) -> Option<Arc<crate::trust::ClientTls>> {
    if upstream.is_some_and(|u| u.scheme != http::uri::Scheme::HTTPS) {
        ctx.err(
            t.referenced,
            key,
            "is for https:// upstreams; this route's upstream is plain http://",
        );
        return None;
    }
    let t = &t.value;
    let files = TlsFiles {
        ca: t.ca.as_ref(),
        server_name: t.server_name.as_ref(),
        client_cert: t.client_cert.as_ref(),
        client_key: t.client_key.as_ref(),
    };
    tls_settings(ctx, base, key, &files).map(|(tls, _)| Arc::new(tls))
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

pub(super) fn build_routes(
    ctx: &mut Ctx<'_>,
    base: &Path,
    list: &[S<file::Route>],
    auth_prefix: Option<&str>,
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
        if let (Some(p), Some(auth)) = (&path_prefix, auth_prefix) {
            if crate::canonicalize::under_prefix(p, auth) {
                ctx.err(
                    r.path_prefix.referenced,
                    &format!("{k}.path_prefix"),
                    format!(
                        "`{p}` is under server.auth_prefix `{auth}`, where the gateway answers \
                         every request itself: this route would never be used; choose another \
                         path_prefix (or another auth_prefix)"
                    ),
                );
            }
        }
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
        let tls = r
            .upstream_tls
            .as_ref()
            .map(|t| upstream_tls(ctx, base, t, &format!("{k}.upstream_tls"), up.as_ref()));
        let up = match tls {
            // Refused: the route is not built (the config is refused anyway).
            Some(None) => None,
            Some(Some(tls)) => up.map(|u| Upstream {
                tls: Some(tls),
                ..u
            }),
            None => up,
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

/// `identity_headers`, with `strip` (built by [`build_strip`]) for the other names removed
/// from every client request.
pub(super) fn build_identity(
    ctx: &mut Ctx<'_>,
    h: &file::IdentityHeaders,
    strip: Vec<String>,
) -> Option<IdentityHeaders> {
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
        .map(|n| crate::config::loose_header_name(n.as_str()))
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
    Some(IdentityHeaders::with_strip(
        user, email, roles, assertion, strip,
    ))
}

/// `server.strip_client_headers`: the built-in list, plus `add`, less `keep`.
pub(super) fn build_strip(ctx: &mut Ctx<'_>, s: &file::StripClientHeaders) -> Vec<String> {
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
        Some(crate::config::loose_header_name(name))
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
        if !crate::config::DEFAULT_STRIPPED.contains(&name.as_str()) {
            ctx.err(
                s.keep[*i].referenced,
                &format!("server.strip_client_headers.keep[{i}]"),
                format!(
                    "`{name}` is not in the built-in list, so there is nothing to keep; the list is: {}",
                    crate::config::DEFAULT_STRIPPED.join(", ")
                ),
            );
        }
    }
    crate::config::DEFAULT_STRIPPED
        .iter()
        .map(|n| n.to_string())
        .filter(|n| !keep.iter().any(|(_, k)| k == n))
        .chain(add)
        .collect()
}
