//! Phase 3 (SPEC §7): choose the route for a canonical request. Hosts first: an exact host
//! beats a wildcard (the longest suffix first), which beats routes without a host; within the
//! chosen host tier, the longest `path_prefix` on a segment boundary. Then, inside the route:
//! is the path public, and which rule applies. Pure.

use http::Method;

use crate::canonicalize::{under_prefix, CanonicalRequest};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Any,
    Exact(String),
    /// `*.example.com` stored as `.example.com`: any subdomain, not the apex.
    Wildcard(String),
}

impl HostPattern {
    fn tier(&self, host: &str) -> Option<usize> {
        match self {
            HostPattern::Exact(h) => (h == host).then_some(usize::MAX),
            HostPattern::Wildcard(suffix) => (host.len() > suffix.len()
                && host.ends_with(suffix.as_str()))
            .then_some(suffix.len()),
            HostPattern::Any => Some(0),
        }
    }
}

/// Where requests of a route go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// `authority` as the `Host` header a request carries upstream (unless the route keeps
    /// the client's, `preserve_host`), made once with the config.
    pub host: http::HeaderValue,
    /// Path the upstream URL carried, without a trailing slash (`""` for none).
    pub base_path: String,
    /// The route's own TLS settings (`upstream_tls:`) for an `https://` upstream; `None`: the
    /// system's CAs, the upstream's host as the name, no client certificate.
    pub tls: Option<std::sync::Arc<crate::trust::ClientTls>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub prefix: String,
    pub methods: Option<Vec<Method>>,
    pub allow_roles: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    pub host: HostPattern,
    pub prefix: String,
    pub upstream: Upstream,
    pub strip_prefix: bool,
    pub preserve_host: bool,
    pub public: Vec<String>,
    pub allow_roles: Vec<String>,
    pub rules: Vec<Rule>,
    pub websocket: bool,
    /// The name as a metric label (shared, cheap to clone).
    pub label: crate::telemetry::metrics::RouteName,
}

/// Which rule governs a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleMatch<'a> {
    /// No rule covers the path: the route's `allow_roles` decide.
    None,
    Rule(&'a Rule),
    /// Rules cover the path, but none lists this method: refused. Rules that name methods
    /// enumerate what is allowed under their prefix; an unlisted method is not let through
    /// with only the route's looser check.
    MethodNotListed,
}

#[derive(Debug, Clone, Copy)]
pub struct Matched<'a> {
    pub route: &'a Route,
    pub rule: RuleMatch<'a>,
    pub public: bool,
}

#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> RouteTable {
        RouteTable { routes }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn lookup<'a>(&'a self, req: &CanonicalRequest, method: &Method) -> Option<Matched<'a>> {
        let path = req.match_path();
        let route = self
            .routes
            .iter()
            .filter_map(|r| {
                let tier = r.host.tier(req.host())?;
                under_prefix(path, &r.prefix).then_some((tier, r.prefix.len(), r))
            })
            .max_by_key(|(tier, len, _)| (*tier, *len))
            .map(|(_, _, r)| r)?;
        let public = route.public.iter().any(|p| under_prefix(path, p));
        Some(Matched {
            route,
            rule: rule_for(route, path, method),
            public,
        })
    }
}

fn rule_for<'a>(route: &'a Route, path: &str, method: &Method) -> RuleMatch<'a> {
    let mut covered = false;
    for rule in route.rules.iter().filter(|r| under_prefix(path, &r.prefix)) {
        covered = true;
        match &rule.methods {
            Some(methods) if !methods.contains(method) => continue,
            _ => return RuleMatch::Rule(rule),
        }
    }
    if covered {
        RuleMatch::MethodNotListed
    } else {
        RuleMatch::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonicalize::canonicalize;

    fn route(name: &str, host: HostPattern, prefix: &str) -> Route {
        Route {
            name: name.into(),
            label: crate::telemetry::metrics::RouteName::new(name),
            host,
            prefix: prefix.into(),
            upstream: Upstream {
                scheme: http::uri::Scheme::HTTP,
                authority: "127.0.0.1:1".parse().unwrap(),
                host: http::HeaderValue::from_static("127.0.0.1:1"),
                base_path: String::new(),
                tls: None,
            },
            strip_prefix: false,
            preserve_host: true,
            public: vec!["/static".into()],
            allow_roles: vec![],
            rules: vec![
                Rule {
                    prefix: "/admin".into(),
                    methods: Some(vec![Method::GET, Method::POST]),
                    allow_roles: vec!["admin".into()],
                },
                Rule {
                    prefix: "/api".into(),
                    methods: Some(vec![Method::POST]),
                    allow_roles: vec!["writer".into()],
                },
                Rule {
                    prefix: "/api".into(),
                    methods: None,
                    allow_roles: vec![],
                },
            ],
            websocket: false,
        }
    }

    fn table() -> RouteTable {
        RouteTable::new(vec![
            route("default", HostPattern::Any, "/"),
            route("default-app", HostPattern::Any, "/app"),
            route("wild", HostPattern::Wildcard(".example.com".into()), "/"),
            route("exact", HostPattern::Exact("app.example.com".into()), "/"),
            route(
                "exact-api",
                HostPattern::Exact("app.example.com".into()),
                "/v2",
            ),
        ])
    }

    fn pick(host: &str, path: &str) -> Option<String> {
        let t = table();
        let req = canonicalize(Some(host), path, None).unwrap();
        t.lookup(&req, &Method::GET).map(|m| m.route.name.clone())
    }

    #[test]
    fn exact_host_beats_wildcard_beats_any() {
        assert_eq!(pick("app.example.com", "/x").as_deref(), Some("exact"));
        assert_eq!(pick("APP.example.com:8080", "/x").as_deref(), Some("exact"));
        assert_eq!(pick("other.example.com", "/x").as_deref(), Some("wild"));
        assert_eq!(pick("example.com", "/x").as_deref(), Some("default"));
        assert_eq!(
            pick("elsewhere.org", "/app/x").as_deref(),
            Some("default-app")
        );
    }

    #[test]
    fn longest_prefix_on_a_segment_boundary_wins() {
        assert_eq!(
            pick("app.example.com", "/v2/x").as_deref(),
            Some("exact-api")
        );
        assert_eq!(pick("app.example.com", "/v2").as_deref(), Some("exact-api"));
        assert_eq!(pick("app.example.com", "/v2x").as_deref(), Some("exact"));
        assert_eq!(pick("h", "/application").as_deref(), Some("default"));
    }

    #[test]
    fn no_route_is_none() {
        let t = RouteTable::new(vec![route("only", HostPattern::Exact("a".into()), "/")]);
        let req = canonicalize(Some("b"), "/", None).unwrap();
        assert!(t.lookup(&req, &Method::GET).is_none());
    }

    #[test]
    fn rules_match_by_prefix_then_method_and_unlisted_methods_are_refused() {
        let t = table();
        let get = |path: &str, m: Method| {
            let req = canonicalize(Some("h"), path, None).unwrap();
            let matched = t.lookup(&req, &m).unwrap();
            (matched.rule, matched.public)
        };
        assert!(
            matches!(get("/admin/x", Method::GET).0, RuleMatch::Rule(r) if r.prefix == "/admin")
        );
        assert_eq!(get("/admin", Method::DELETE).0, RuleMatch::MethodNotListed);
        assert_eq!(get("/admin-old", Method::GET).0, RuleMatch::None);
        assert!(
            matches!(get("/api/x", Method::POST).0, RuleMatch::Rule(r) if r.allow_roles == ["writer"])
        );
        assert!(
            matches!(get("/api/x", Method::GET).0, RuleMatch::Rule(r) if r.allow_roles.is_empty())
        );
        assert!(get("/static/app.css", Method::GET).1);
        assert!(!get("/staticx", Method::GET).1);
    }
}
