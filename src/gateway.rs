//! One request, top to bottom: accept → canonicalize → route → authenticate → authorize →
//! forward, then [`finish`]: the single exit that maps errors to responses and writes the
//! request's log line. No phase logs its own failure.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::header::{ACCEPT, SET_COOKIE};
use http::{HeaderMap, Method, Request, Response};
use hyper::body::Incoming;
use tracing::{field, Instrument};

use crate::accept::fragment::RawFragment;
use crate::authenticate::credentials;
use crate::authenticate::hasher::Hasher;
use crate::authenticate::throttle::{Locked, Throttle, ThrottlePolicy};
use crate::authenticate::{
    refresh_in_proxy, verify_access, AuthFailure, Identity, Unauthenticated,
};
use crate::authorize::{authorize, public, Forbidden, Permit};
use crate::body::Body;
use crate::canonicalize::{canonicalize, under_prefix, CanonicalError, CanonicalRequest};
use crate::config::Config;
use crate::error::{Blame, GatewayError};
use crate::forward::client::{Outgoing, UpstreamClient};
use crate::forward::headers::{incoming_request_id, Origin, X_REQUEST_ID};
use crate::route::Matched;
use crate::store::{MemoryStore, Store};
use crate::telemetry::metrics::{Metrics, RouteKind, RouteName};
use crate::{clock, endpoints, forward, ids};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// Everything a request needs besides its config snapshot.
pub struct Gateway {
    config: ArcSwap<Config>,
    pub(crate) store: Store,
    pub(crate) throttle: Throttle,
    pub(crate) hasher: Hasher,
    pub(crate) client: UpstreamClient,
    /// Identity providers' discovery and keys (SPEC §11).
    pub(crate) oidc: Arc<crate::oidc::Oidc>,
    pub metrics: Metrics,
    /// False after a reload was rejected, until a good one loads (`/readyz`).
    pub(crate) config_ok: AtomicBool,
    /// New plain-HTTP connections start in the express lane (`accept::lane`).
    express_lane: AtomicBool,
    /// Requests the express lane answered (the rest went through hyper's path).
    pub(crate) lane_served: std::sync::atomic::AtomicU64,
}

impl Gateway {
    /// Builds the runtime around a config: opens the store (loading a durable one) and starts
    /// its background work. Needs a tokio runtime.
    pub fn new(config: Config) -> Result<Arc<Gateway>, crate::store::OpenError> {
        let hasher = Hasher::new(config.max_concurrent_hashes);
        let client = UpstreamClient::new(
            config.limits.upstream_connect_timeout,
            config.limits.upstream_response_timeout,
        );
        let store = match &config.store {
            crate::config::StoreSettings::Memory { path: None } => {
                Store::Memory(MemoryStore::new())
            }
            crate::config::StoreSettings::Memory { path: Some(path) } => {
                // Blocking, once, at start: loading the database before serving.
                let open = || crate::store::DurableStore::open(path, clock::now_ms());
                let multi_thread = tokio::runtime::Handle::try_current().is_ok_and(|h| {
                    h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
                });
                Store::Durable(if multi_thread {
                    tokio::task::block_in_place(open)?
                } else {
                    open()?
                })
            }
            crate::config::StoreSettings::Redis { client, key_prefix } => Store::Redis(
                crate::store::RedisStore::start(client.clone(), key_prefix.clone()),
            ),
        };
        let metrics = Metrics::new();
        metrics.prime(config.routes.routes().iter().map(|r| r.name.as_str()));
        let express_lane = config.express_lane;
        let oidc = Arc::new(crate::oidc::Oidc::new());
        oidc.apply(config.oidc.as_ref());
        Ok(Arc::new(Gateway {
            oidc,
            config: ArcSwap::from_pointee(config),
            store,
            throttle: Throttle::new(),
            hasher,
            client,
            metrics,
            config_ok: AtomicBool::new(true),
            express_lane: AtomicBool::new(express_lane),
            lane_served: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    /// The current config snapshot.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Swaps in a new, already validated config. Sessions of users who were removed,
    /// disabled or whose password changed are revoked at once (SPEC §9), so their access
    /// tokens stop working now rather than at their `exp`.
    pub async fn apply_config(&self, new: Config) {
        let old = self.config.load_full();
        let now = clock::now_ms();
        let ttl = new.tokens.revocation_ttl().max(old.tokens.revocation_ttl());
        let gone: Vec<String> = old
            .users
            .iter()
            .filter_map(|u| {
                let name = crate::authenticate::users::canonical_username(&u.username);
                let still_ok = new.users.get(&name).is_some_and(|n| {
                    !n.disabled && n.credential_fingerprint() == u.credential_fingerprint()
                });
                (!still_ok).then_some(name)
            })
            .collect();
        self.metrics
            .prime(new.routes.routes().iter().map(|r| r.name.as_str()));
        if new.express_lane != old.express_lane {
            tracing::info!(
                express_lane = new.express_lane,
                "express lane switched for new connections"
            );
        }
        self.set_express_lane(new.express_lane);
        // A reload fetches every provider's discovery again.
        self.oidc.apply(new.oidc.as_ref());
        self.config.store(Arc::new(new));
        self.config_ok.store(true, Ordering::SeqCst);
        for user in gone {
            match self.store.revoke_user(&user, now, ttl).await {
                Ok(sids) if !sids.is_empty() => {
                    crate::telemetry::audit::sessions_revoked(&user, &sids, "user_changed")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(user, error = %e, "revoking sessions of a changed user failed")
                }
            }
        }
    }

    /// Brute-force check (SPEC §3 `login`): shared across replicas with Redis, local
    /// otherwise, and local again if Redis cannot answer, so throttling never switches off.
    pub async fn throttle_check(&self, user: &str, ip: IpAddr, now: u64) -> Result<(), Locked> {
        if let Store::Redis(r) = &self.store {
            if let Ok(shared) = r.throttle_locked(&throttle_ids(user, ip)).await {
                return match shared {
                    Some(retry_after) => Err(Locked { retry_after }),
                    None => self.throttle.check(user, ip, now),
                };
            }
        }
        self.throttle.check(user, ip, now)
    }

    /// Counts a failed login; returns the lock if this failure set one.
    pub async fn throttle_failure(
        &self,
        user: &str,
        ip: IpAddr,
        now: u64,
        policy: ThrottlePolicy,
    ) -> Option<Locked> {
        let local = self.throttle.record_failure(user, ip, now, policy);
        if let Store::Redis(r) = &self.store {
            let shared = r
                .throttle_failure(
                    &throttle_ids(user, ip),
                    policy.failure_window,
                    policy.max_failures,
                    policy.lockout,
                )
                .await;
            if let Ok(shared) = shared {
                return shared.map(|retry_after| Locked { retry_after }).or(local);
            }
        }
        local
    }

    pub async fn throttle_success(&self, user: &str) {
        self.throttle.record_success(user);
        if let Store::Redis(r) = &self.store {
            let _ = r.throttle_success(&format!("u:{user}")).await;
        }
    }

    /// Whether new plain-HTTP connections start in the express lane.
    pub fn express_lane(&self) -> bool {
        self.express_lane.load(Ordering::Relaxed)
    }

    /// Turns the express lane on or off for connections accepted from now on.
    pub fn set_express_lane(&self, on: bool) {
        self.express_lane.store(on, Ordering::Relaxed);
    }

    /// How many requests the express lane has answered.
    pub fn lane_served(&self) -> u64 {
        self.lane_served.load(Ordering::Relaxed)
    }

    /// Records that a reload was refused: `/readyz` answers 503 until a good one loads.
    pub fn reject_config(&self) {
        self.config_ok.store(false, Ordering::SeqCst);
    }

    /// Ready: the config on disk loaded and the store answers.
    pub fn is_ready(&self) -> bool {
        self.config_ok.load(Ordering::SeqCst) && self.store.is_healthy()
    }

    /// Drops expired sessions, revocations and throttle counters.
    pub fn sweep(&self) {
        let now = clock::now_ms();
        self.store.sweep(now);
        self.throttle.sweep(now, self.config.load().throttle);
    }
}

/// The connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// What every phase may read about the request besides the request itself.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    pub request_id: String,
    pub client_ip: IpAddr,
    pub peer_ip: IpAddr,
    pub peer_trusted: bool,
    pub proto: &'static str,
    /// Whole seconds: for JWT claims.
    pub now: u64,
    /// The same instant in milliseconds: for every time the gateway keeps itself.
    pub now_ms: u64,
    /// The client reads HTML (`Accept` names `text/html`): errors are pages, not JSON.
    pub wants_html: bool,
    /// The route name once known: the metrics label.
    pub route: OnceLock<RouteName>,
}

impl RequestCtx {
    pub fn origin(&self) -> Origin<'_> {
        Origin {
            client_ip: self.client_ip,
            peer_ip: self.peer_ip,
            peer_trusted: self.peer_trusted,
            proto: self.proto,
            request_id: &self.request_id,
        }
    }
}

fn throttle_ids(user: &str, ip: IpAddr) -> [String; 2] {
    [format!("u:{user}"), format!("ip:{ip}")]
}

pub(crate) fn trusted(config: &Config, ip: IpAddr) -> bool {
    config.trusted_proxies.iter().any(|net| net.contains(&ip))
}

/// The client's address: the peer, or — when the peer is a trusted proxy — the rightmost
/// `X-Forwarded-For` entry that is not itself a trusted proxy.
fn client_ip(config: &Config, headers: &HeaderMap, peer: IpAddr) -> (IpAddr, bool) {
    if !trusted(config, peer) {
        return (peer, false);
    }
    let chain: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let ip = chain
        .iter()
        .rev()
        .find(|ip| !trusted(config, **ip))
        .or(chain.first())
        .copied()
        .unwrap_or(peer);
    (ip, true)
}

/// A top-level browser navigation (a `GET` or `HEAD` from a client that reads HTML) gets a
/// login redirect; anything else gets a 401.
fn is_navigation(method: &Method, ctx: &RequestCtx) -> bool {
    (method == Method::GET || method == Method::HEAD) && ctx.wants_html
}

/// The 403 for an identity the route or rule does not admit.
fn forbidden(reason: Forbidden, identity: &Identity, canon: &CanonicalRequest) -> GatewayError {
    GatewayError::Forbidden {
        reason,
        user: identity.user().to_string(),
        back_to: canon.path_and_query(),
    }
}

/// The size of the per-request future, for the benchmark that keeps it small.
pub fn request_future_size(gw: Arc<Gateway>, req: Request<Incoming>, conn: Conn) -> usize {
    std::mem::size_of_val(&handle(gw, req, conn))
}

pub async fn handle(gw: Arc<Gateway>, req: Request<Incoming>, conn: Conn) -> Response<Body> {
    let started = Instant::now();
    let config = gw.config();
    let ctx = request_ctx(&config, req.headers(), conn);
    let span = request_span(&ctx, req.method());
    let method = req.method().clone();
    let result = process(&gw, &config, req, &ctx)
        .instrument(span.clone())
        .await;
    finish(&gw, &config, &ctx, &method, result, started, &span)
}

/// What every phase may read about a request, from its headers and connection.
pub(crate) fn request_ctx(config: &Config, headers: &HeaderMap, conn: Conn) -> RequestCtx {
    let (client_ip, peer_trusted) = client_ip(config, headers, conn.peer.ip());
    let now_ms = clock::now_ms();
    RequestCtx {
        request_id: incoming_request_id(headers).unwrap_or_else(ids::request_id),
        client_ip,
        peer_ip: conn.peer.ip(),
        peer_trusted,
        proto: if conn.tls { "https" } else { "http" },
        now: now_ms / 1000,
        now_ms,
        wants_html: accepts_html(headers),
        route: OnceLock::new(),
    }
}

/// Whether the client reads HTML: a browser names `text/html` in `Accept` on navigations and
/// form posts alike; API clients and scripts do not.
pub fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

/// The span every line about one request is logged in.
pub(crate) fn request_span(ctx: &RequestCtx, method: &Method) -> tracing::Span {
    tracing::info_span!(
        "request",
        request_id = %ctx.request_id,
        client.ip = %ctx.client_ip,
        method = %method,
        route = field::Empty,
        user = field::Empty,
    )
}

async fn process(
    gw: &Arc<Gateway>,
    config: &Config,
    req: Request<Incoming>,
    ctx: &RequestCtx,
) -> Result<Response<Body>, GatewayError> {
    // 2. canonicalize
    if req.extensions().get::<RawFragment>().is_some() {
        return Err(CanonicalError::Fragment.into());
    }
    let canon = canonical_request(req.uri(), req.headers())?;
    if under_prefix(canon.path(), &config.auth_prefix) {
        let _ = ctx.route.set(gw.metrics.gateway_route.clone());
        // Boxed: the gateway's own pages (login, refresh, ...) have big futures that the
        // proxied hot path should not carry (hyper moves the request future).
        return Box::pin(endpoints::serve(gw, config, req, &canon, ctx)).await;
    }
    // 3.–5. route, authenticate, authorize: the one decision.
    let decision = decide(config, &gw.store, &canon, req.method(), req.headers(), ctx);
    let admitted = match decision {
        Decision::Forward(admitted) => admitted,
        Decision::Refuse(e) => {
            record_refusal(gw, &e);
            return Err(e);
        }
        Decision::Refresh(pending) => {
            // Boxed: rotation (and its store I/O) is rare next to plain verification; keep
            // its state out of every request's future.
            let admitted = Box::pin(pending.refresh(gw, config, ctx.now_ms)).await;
            admitted.inspect_err(|e| record_refusal(gw, e))?
        }
    };
    admitted.record(gw);
    let Admitted {
        matched,
        permit,
        identity,
        set_cookies,
        ..
    } = admitted;
    // 6. forward
    let upgrading = req.headers().contains_key(http::header::UPGRADE);
    let tunnel_watch = identity.as_ref().filter(|_| upgrading).map(|id| {
        let (gw, sid) = (gw.clone(), id.sid().to_string());
        Box::new(move || !gw.store.is_revoked(&sid)) as forward::TunnelWatch
    });
    let mut response = forward::forward(
        &gw.client,
        config,
        matched.route,
        permit,
        identity.as_ref(),
        &canon,
        req.map(Outgoing::Streamed),
        &ctx.origin(),
        tunnel_watch,
    )
    .await?;
    for cookie in set_cookies {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    Ok(response)
}

/// Phase 2 for a request as hyper or the express lane parsed it: the `Host` header (or the
/// target's authority), path and query → [`CanonicalRequest`], or 400.
pub(crate) fn canonical_request(
    uri: &http::Uri,
    headers: &HeaderMap,
) -> Result<CanonicalRequest, CanonicalError> {
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
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
    /// The `gatehouse_auth_decisions_total` label (none for public paths).
    result: Option<&'static str>,
}

impl Admitted<'_> {
    /// The auth-decision metric and the span's `route` and `user`, once the request goes on
    /// (inside its span, on either path).
    pub(crate) fn record(&self, gw: &Gateway) {
        tracing::Span::current().record("route", self.matched.route.name.as_str());
        if let Some(result) = self.result {
            gw.metrics.auth_decision(result);
            if let Some(identity) = &self.identity {
                tracing::Span::current().record("user", identity.user());
            }
        }
    }
}

fn record_refusal(gw: &Gateway, e: &GatewayError) {
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
                result: None,
            }),
            (Some(permit), Err(_)) => Ok(Admitted {
                matched: self.matched,
                permit,
                identity: None,
                set_cookies: Vec::new(),
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
    let creds = credentials::extract(headers, &config.cookies);
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
                result,
            });
        }
        Err(failure) => failure,
    };
    let navigation = is_navigation(method, ctx);
    if let Some(token) = creds.refresh_cookie {
        return Decision::Refresh(PendingRefresh {
            matched,
            token,
            failure,
            canon,
            navigation,
        });
    }
    match public(&matched) {
        Some(permit) => Decision::Forward(Admitted {
            matched,
            permit,
            identity: None,
            set_cookies: Vec::new(),
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

/// The single exit: error → response, then one log line.
pub(crate) fn finish(
    gw: &Gateway,
    config: &Config,
    ctx: &RequestCtx,
    method: &Method,
    result: Result<Response<Body>, GatewayError>,
    started: Instant,
    span: &tracing::Span,
) -> Response<Body> {
    let _entered = span.enter();
    let upstream_kind = match &result {
        Err(GatewayError::Upstream(e)) => Some(e.kind()),
        _ => None,
    };
    let (mut response, error) = match result {
        Ok(r) => (r, None),
        Err(e) => {
            let blame = e.blame();
            let message = e.to_string();
            let shown = crate::error::Shown {
                wants_html: ctx.wants_html,
                request_id: &ctx.request_id,
            };
            (e.into_response(config, shown), Some((blame, message)))
        }
    };
    if let Ok(v) = http::HeaderValue::from_str(&ctx.request_id) {
        response.headers_mut().insert(&X_REQUEST_ID, v);
    }
    record(
        gw,
        ctx,
        method,
        response.status().as_u16(),
        started,
        upstream_kind,
        error,
    );
    response
}

/// A finished request's metrics and its one log line; the caller is inside its span. The
/// express lane, which writes its response heads itself, ends its requests here too.
pub(crate) fn record(
    gw: &Gateway,
    ctx: &RequestCtx,
    method: &Method,
    status: u16,
    started: Instant,
    upstream_kind: Option<&'static str>,
    error: Option<(Blame, String)>,
) {
    let elapsed = started.elapsed().as_secs_f64();
    // Microsecond resolution, printed as a short decimal (`0.039`, not `0.038627999999999996`).
    let latency_ms = (elapsed * 1e6).round() / 1e3;
    let route = ctx.route.get().unwrap_or(&gw.metrics.no_route);
    gw.metrics.request_done(route, status, elapsed);
    if let Some(kind) = upstream_kind {
        gw.metrics
            .upstream_errors
            .get_or_create(&RouteKind {
                route: route.clone(),
                kind,
            })
            .inc();
    }
    match error {
        None => tracing::info!(status, latency_ms, %method, "request"),
        Some((Blame::Client, error)) => {
            tracing::info!(status, latency_ms, %method, error, "request")
        }
        Some((Blame::Upstream, error)) => {
            tracing::warn!(status, latency_ms, %method, error, "request")
        }
        Some((Blame::Gateway, error)) => {
            tracing::error!(status, latency_ms, %method, error, "request")
        }
    }
}
