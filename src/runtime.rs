//! The gateway's runtime state: the [`Gateway`] (config snapshot, store, hasher, throttle,
//! upstream client, identity providers, metrics), the connection a request came on ([`Conn`])
//! and what every phase may read about a request ([`RequestCtx`]). Below the request sequence
//! (`gateway.rs`) and the decision (`decision.rs`), which both use it.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use http::header::ACCEPT;
use http::HeaderMap;

use crate::authenticate::hasher::Hasher;
use crate::authenticate::throttle::Throttle;
use crate::config::Config;
use crate::forward::client::UpstreamClient;
use crate::forward::headers::{client_ip, incoming_request_id, Origin};
use crate::store::{MemoryStore, Store};
use crate::telemetry::metrics::{Metrics, RouteName};
use crate::{clock, ids};

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
        let new = Arc::new(new);
        self.config.store(new.clone());
        self.config_ok.store(true, Ordering::SeqCst);
        crate::authenticate::sessions::revoke_changed_users(
            &old.users,
            &new.users,
            &self.store,
            now,
            ttl,
        )
        .await;
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
    /// A browser navigation: a `GET` or `HEAD` whose `Accept` names `text/html` (SPEC §7): an
    /// unauthenticated one is sent to the login page, anything else gets a 401.
    pub navigation: bool,
    /// Errors are pages, not JSON (SPEC §6): for a navigation, and for a browser submitting
    /// one of the gateway's own forms (the login form; *Sign out* on the 403 page), whose
    /// answer a person reads just the same.
    pub pages: bool,
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

/// What every phase may read about a request, from its headers and connection.
pub(crate) fn request_ctx(
    config: &Config,
    method: &http::Method,
    path: &str,
    headers: &HeaderMap,
    conn: Conn,
) -> RequestCtx {
    let navigation =
        (method == http::Method::GET || method == http::Method::HEAD) && accepts_html(headers);
    let (client_ip, peer_trusted) = client_ip(&config.trusted_proxies, headers, conn.peer.ip());
    let now_ms = clock::now_ms();
    RequestCtx {
        request_id: incoming_request_id(headers).unwrap_or_else(ids::request_id),
        client_ip,
        peer_ip: conn.peer.ip(),
        peer_trusted,
        proto: if conn.tls { "https" } else { "http" },
        now: now_ms / 1000,
        now_ms,
        navigation,
        pages: navigation
            || (method == http::Method::POST
                && accepts_html(headers)
                && is_form(headers)
                && crate::canonicalize::under_prefix(path, &config.auth_prefix)),
        route: OnceLock::new(),
    }
}

/// A form's body: what a browser sends when a person submits an HTML form.
fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
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
