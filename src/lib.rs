//! Gatehouse: a reverse-proxy authentication gateway.
//!
//! A request goes through six phases, each a plain function with typed input and output
//! (see `gateway.rs`, which runs them in order):
//!
//! 1. [`accept`]: listeners, connection limits, timeouts, graceful shutdown.
//! 2. [`canonicalize`]: host and path → `CanonicalRequest`, or 400. Pure.
//! 3. [`route`]: `RouteTable::lookup` → route, rule, public?. Pure.
//! 4. [`authenticate`]: credentials → verified token → live session → `Identity`;
//!    transparent refresh; login, rotation and revocation in `authenticate::sessions`.
//! 5. [`authorize`]: (route, rule, identity) → `Permit` or `Forbidden`. Pure.
//! 6. [`forward`]: header rewriting and the upstream client; streaming; WebSocket.
//!
//! Beside the path: [`endpoints`] (the gateway's own pages under `auth_prefix`), [`store`]
//! (sessions and revocations; never imports `endpoints` or `forward`), [`config`] (YAML →
//! runtime config), [`error`] (the one error → response map), [`telemetry`] (logs, audit).
//!
//! Walls: the pure modules touch no socket, file, clock or store. Only `authenticate` builds
//! an `Identity`; only `authorize` builds a `Permit`; only `canonicalize` builds a
//! `CanonicalRequest`.
#![forbid(unsafe_code)]

pub mod accept;
pub mod admin;
pub mod authenticate;
pub mod authorize;
pub mod body;
pub mod canonicalize;
pub mod clock;
pub mod config;
pub mod decision;
pub mod endpoints;
pub mod env;
pub mod error;
pub mod forward;
pub mod gateway;
pub mod ids;
pub mod oidc;
pub mod reload;
pub mod route;
pub mod runtime;
pub mod seal;
pub mod store;
pub mod telemetry;
pub mod trust;
pub mod ui;

pub use accept::{serve, serve_tls};
pub use admin::serve_admin;
pub use config::Config;
pub use runtime::Gateway;

/// Installs the process-wide crypto providers (aws-lc-rs for rustls and jsonwebtoken).
/// Call once at start-up; later calls are no-ops.
pub fn install_crypto_providers() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
        &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
    );
}
