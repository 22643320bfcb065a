//! Audit events (SPEC §9), one function per event, all on target `audit`. Fields are user
//! names, session ids, IPs and reasons: never secrets.

use tracing::{info, warn};

pub fn login_succeeded(user: &str, sid: &str, ip: &str) {
    info!(target: "audit", event = "login_succeeded", user, session = sid, client.ip = ip, "login succeeded");
}

pub fn login_failed(user: &str, ip: &str, reason: &'static str) {
    warn!(target: "audit", event = "login_failed", user, client.ip = ip, reason, "login failed");
}

pub fn login_locked(user: &str, ip: &str, retry_after: u64) {
    warn!(target: "audit", event = "login_locked", user, client.ip = ip, retry_after, "login locked");
}

pub fn refresh_rotated(user: &str, sid: &str, within_grace: bool) {
    info!(target: "audit", event = "refresh_rotated", user, session = sid, within_grace, "refresh token rotated");
}

pub fn refresh_reuse_detected(user: &str, sid: &str) {
    warn!(target: "audit", event = "refresh_reuse_detected", user, session = sid, "a used refresh token was presented again; session revoked");
}

pub fn logout(user: &str, sid: &str, all: bool) {
    info!(target: "audit", event = "logout", user, session = sid, all, "logout");
}

pub fn sessions_revoked(user: &str, sids: &[String], reason: &'static str) {
    info!(target: "audit", event = "sessions_revoked", user, count = sids.len(), reason, "sessions revoked");
}

/// Sessions ended because an identity provider said so (a refused recheck, a back-channel
/// logout).
pub fn sessions_revoked_by_provider(user: &str, sids: &[String], provider: &str, reason: &str) {
    info!(target: "audit", event = "sessions_revoked", user, count = sids.len(), provider, reason, "sessions revoked");
}

pub fn oidc_login_succeeded(user: &str, sid: &str, ip: &str, provider: &str) {
    info!(target: "audit", event = "login_succeeded", user, session = sid, client.ip = ip, provider, "login succeeded");
}

pub fn oidc_login_failed(user: &str, ip: &str, provider: &str, reason: &str) {
    warn!(target: "audit", event = "login_failed", user, client.ip = ip, provider, reason, "login failed");
}

/// An upstream tried to set one of the gateway's cookies; the `Set-Cookie` was removed.
pub fn upstream_cookie_dropped(route: &str, cookie: &str) {
    warn!(target: "audit", event = "upstream_cookie_dropped", route, cookie, "the upstream tried to set a gateway cookie; removed");
}

pub fn config_reloaded(path: &str, routes: usize, users: usize) {
    info!(target: "audit", event = "config_reloaded", path, routes, users, "configuration reloaded");
}

/// A reload was refused: one line per error, each readable on its own.
pub fn config_rejected(path: &str, errors: &[String]) {
    let count = errors.len();
    for (i, error) in errors.iter().enumerate() {
        let n = i + 1;
        warn!(target: "audit", event = "config_rejected", path, n, count, error = %error, "configuration rejected; the previous one stays in force");
    }
}
