//! The one decision (phases 3–5, SPEC §7): route, credentials, identity (revocation
//! included) and permit, for a canonical request and its headers. hyper's path, the express
//! lane and forward-auth all take it; they differ only in what they do with it.

use http::{HeaderMap, Method};

use crate::authenticate::credentials;
use crate::authenticate::{
    refresh_in_proxy, verify_access, AuthFailure, Identity, Unauthenticated,
};
use crate::authorize::{authorize, public, Forbidden, Permit};
use crate::canonicalize::{
    canonical_host, canonicalize, named_host, CanonicalError, CanonicalRequest,
};
use crate::config::Config;
use crate::error::GatewayError;
use crate::forward::headers::{cookie_rewrite, CookieRewrite};
use crate::route::Matched;
use crate::runtime::{Gateway, RequestCtx};
use crate::store::Store;

/// The 403 for an identity the route or rule does not admit.
fn forbidden(reason: Forbidden, identity: &Identity, canon: &CanonicalRequest) -> GatewayError {
    GatewayError::Forbidden {
        reason,
        user: identity.user().to_string(),
        back_to: canon.path_and_query(),
    }
}

/// Phase 2 for a request as hyper or the express lane parsed it: the `Host` header (or the
/// target's authority), path and query → [`CanonicalRequest`], or 400.
pub(crate) fn canonical_request(
    uri: &http::Uri,
    headers: &HeaderMap,
    version: http::Version,
) -> Result<CanonicalRequest, CanonicalError> {
    let mut hosts = headers.get_all(http::header::HOST).iter();
    let first = hosts.next();
    // RFC 9112 §3.2: 400 for an HTTP/1.1 request without `Host` and for any with two — a
    // proxy in front and the app behind could each read another one.
    if hosts.next().is_some() {
        return Err(CanonicalError::TwoHosts);
    }
    if first.is_none() && version == http::Version::HTTP_11 {
        return Err(CanonicalError::NoHost);
    }
    // RFC 9113 §8.3.1: a `Host` that names another host than `:authority` is malformed.
    if let (http::Version::HTTP_2, Some(authority), Some(host)) = (version, uri.authority(), first)
    {
        let named = |raw: &str| canonical_host(raw).ok();
        if host.to_str().ok().and_then(named) != named(authority.as_str()) {
            return Err(CanonicalError::HostNotAuthority);
        }
    }
    let host = named_host(uri.authority(), first).and_then(|h| std::str::from_utf8(h).ok());
    canonicalize(host, uri.path(), uri.query())
}

/// What a request head decides before any I/O (phases 3–5, SPEC §7): the route, the
/// credentials, the identity (revocation included) and the permit. hyper's path, the express
/// lane and forward-auth all take this one decision; they differ only in what they do with
/// it. Nothing is recorded here: the caller records the outcome once it acts on it.
pub(crate) enum Decision<'c, 'h> {
    /// Allowed as it stands: forward it.
    Forward(Admitted<'c>),
    /// No access token verified, but a refresh cookie is there: rotate it (store I/O), then
    /// admit or refuse.
    Refresh(PendingRefresh<'c, 'h>),
    /// Refused: 404 (no route), 401/302 (not signed in), 403 (not allowed).
    Refuse(GatewayError),
}

/// A request the decision lets through.
pub(crate) struct Admitted<'c> {
    pub matched: Matched<'c>,
    pub permit: Permit,
    /// `None` only on a public path without valid credentials.
    pub identity: Option<Identity>,
    /// Cookies a transparent refresh issued, for the response.
    pub set_cookies: Vec<http::HeaderValue>,
    /// What forwarding does with the request's `Cookie` headers, from the scan that found
    /// its credentials.
    pub cookies: CookieRewrite,
    /// The `gatehouse_auth_decisions_total` label (none for public paths).
    result: Option<&'static str>,
}

impl Admitted<'_> {
    /// The auth-decision metric and the span's `user`, once the request goes on (inside its
    /// span, on either path). [`decide`] recorded the `route` already: a field recorded twice
    /// is written twice on the request's log line.
    pub(crate) fn record(&self, gw: &Gateway) {
        if let Some(result) = self.result {
            gw.metrics.auth_decision(result);
            if let Some(identity) = &self.identity {
                tracing::Span::current().record("user", identity.user());
            }
        }
    }
}

pub(crate) fn record_refusal(gw: &Gateway, e: &GatewayError) {
    match e {
        GatewayError::Forbidden { .. } => gw.metrics.auth_decision("forbidden"),
        GatewayError::Unauthenticated { .. } => gw.metrics.auth_decision("unauthenticated"),
        _ => {}
    }
}

/// The transparent refresh a decision asks for, with what it needs to finish deciding.
pub(crate) struct PendingRefresh<'c, 'h> {
    matched: Matched<'c>,
    token: &'h str,
    failure: AuthFailure,
    /// The original request, for the login redirect if the refresh fails.
    canon: &'h CanonicalRequest,
    navigation: bool,
    cookies: CookieRewrite,
}

impl<'c> PendingRefresh<'c, '_> {
    /// `now_ms`: the request's time in milliseconds.
    pub(crate) async fn refresh(
        self,
        gw: &Gateway,
        config: &Config,
        now_ms: u64,
    ) -> Result<Admitted<'c>, GatewayError> {
        let refreshed = refresh_in_proxy(
            config.policy(),
            &gw.store,
            &gw.metrics,
            &gw.oidc,
            self.token,
            self.failure,
            now_ms,
        )
        .await;
        match (public(&self.matched), refreshed) {
            (Some(permit), Ok(a)) => Ok(Admitted {
                matched: self.matched,
                permit,
                identity: Some(a.identity),
                set_cookies: a.set_cookies,
                cookies: self.cookies,
                result: None,
            }),
            (Some(permit), Err(_)) => Ok(Admitted {
                matched: self.matched,
                permit,
                identity: None,
                set_cookies: Vec::new(),
                cookies: self.cookies,
                result: None,
            }),
            (None, Ok(a)) => {
                let permit = authorize(&self.matched, &a.identity)
                    .map_err(|reason| forbidden(reason, &a.identity, self.canon))?;
                Ok(Admitted {
                    matched: self.matched,
                    permit,
                    identity: Some(a.identity),
                    set_cookies: a.set_cookies,
                    cookies: self.cookies,
                    result: Some("refreshed"),
                })
            }
            (None, Err(unauth)) => {
                Err(unauthenticated(config, self.canon, self.navigation, unauth))
            }
        }
    }
}

/// The decision (see [`Decision`]) for a canonical request and its headers.
pub(crate) fn decide<'c, 'h>(
    config: &'c Config,
    store: &Store,
    canon: &'h CanonicalRequest,
    method: &Method,
    headers: &'h HeaderMap,
    ctx: &RequestCtx,
) -> Decision<'c, 'h> {
    let Some(matched) = config.routes.lookup(canon, method) else {
        return Decision::Refuse(GatewayError::NoRoute);
    };
    tracing::Span::current().record("route", matched.route.name.as_str());
    let _ = ctx.route.set(matched.route.label.clone());
    let (creds, scan) = credentials::extract_scanned(headers, &config.cookies);
    let cookies = cookie_rewrite(&scan);
    let failure = match verify_access(&config.tokens, store, &creds, ctx.now) {
        Ok(identity) => {
            let (permit, result) = match public(&matched) {
                Some(permit) => (permit, None),
                None => match authorize(&matched, &identity) {
                    Ok(permit) => (permit, Some("allowed")),
                    Err(reason) => return Decision::Refuse(forbidden(reason, &identity, canon)),
                },
            };
            return Decision::Forward(Admitted {
                matched,
                permit,
                identity: Some(identity),
                set_cookies: Vec::new(),
                cookies,
                result,
            });
        }
        Err(failure) => failure,
    };
    // A top-level browser navigation gets a login redirect; anything else gets a 401.
    let navigation = ctx.navigation;
    if let Some(token) = creds.refresh_cookie {
        return Decision::Refresh(PendingRefresh {
            matched,
            token,
            failure,
            canon,
            navigation,
            cookies,
        });
    }
    match public(&matched) {
        Some(permit) => Decision::Forward(Admitted {
            matched,
            permit,
            identity: None,
            set_cookies: Vec::new(),
            cookies,
            result: None,
        }),
        None => Decision::Refuse(unauthenticated(
            config,
            canon,
            navigation,
            Unauthenticated {
                failure,
                clear_cookies: creds.access_cookie.is_some(),
                store_error: None,
            },
        )),
    }
}

/// The login URL for a browser, with the original path as `rd`.
pub fn login_url(config: &Config, rd: &str) -> String {
    let base = config.public_origin.as_deref().unwrap_or("");
    let rd: String = form_urlencoded::byte_serialize(rd.as_bytes()).collect();
    format!("{base}{}/login?rd={rd}", config.auth_prefix)
}

/// The refusal for a request without an identity: a login redirect for a browser
/// navigation, a 401 otherwise, a 503 when the store failed during a refresh.
pub fn unauthenticated(
    config: &Config,
    canon: &CanonicalRequest,
    navigation: bool,
    unauth: Unauthenticated,
) -> GatewayError {
    if let Some(e) = unauth.store_error {
        return GatewayError::Store(e);
    }
    GatewayError::Unauthenticated {
        failure: unauth.failure,
        login: navigation.then(|| login_url(config, &canon.path_and_query())),
        clear_cookies: unauth.clear_cookies,
    }
}
