//! Reload (SPEC §9): on SIGHUP, and when the content of `gateway.yaml` or `users_file`
//! changes. The new file is built and validated off the executor first; a bad edit is logged
//! (`config_rejected`) and the old config stays, with `/readyz` at 503 until a good one loads.
//! A good one is swapped in atomically: open connections and in-flight requests keep the
//! snapshot they started with. Change detection compares content hashes every second, which
//! also catches editors and Kubernetes replacing files by rename.
//!
//! Listener addresses, `limits`, `max_concurrent_hashes` and `store` take effect at the next
//! start; a reload that changes them says so in the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, read_bounded};
use crate::runtime::Gateway;
use crate::telemetry::audit;

pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// Resolves `${VAR}` during reloads.
pub type EnvLookup = fn(&str) -> Option<String>;

/// Builds the config at `path` and applies it if valid. Returns whether it was applied.
pub async fn reload(gw: &Gateway, path: &Path, lookup: EnvLookup) -> bool {
    let p = path.to_path_buf();
    let built = tokio::task::spawn_blocking(move || config::load(&p, lookup)).await;
    let shown = path.display().to_string();
    match built {
        Ok(Ok(new)) => {
            let old = gw.config();
            if old.listen != new.listen
                || old.admin.as_ref().map(|a| a.listen) != new.admin.as_ref().map(|a| a.listen)
            {
                tracing::warn!("listener addresses changed; they take effect at the next start");
            }
            let (routes, users) = (new.routes.routes().len(), new.users.len());
            gw.apply_config(new).await;
            audit::config_reloaded(&shown, routes, users);
            true
        }
        Ok(Err(errors)) => {
            gw.reject_config();
            let each: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
            audit::config_rejected(&shown, &each);
            false
        }
        Err(join) => {
            gw.reject_config();
            audit::config_rejected(&shown, &[join.to_string()]);
            false
        }
    }
}

fn fingerprint(paths: &[PathBuf]) -> Vec<u8> {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in paths {
        match read_bounded(p) {
            Ok(bytes) => ctx.update(&bytes),
            Err(_) => ctx.update(b"\0missing\0"),
        }
        ctx.update(b"\0");
    }
    ctx.finish().as_ref().to_vec()
}

fn watched(gw: &Gateway, path: &Path) -> Vec<PathBuf> {
    let config = gw.config();
    let mut paths = vec![path.to_path_buf()];
    paths.extend(config.users_file.clone());
    if let Some(tls) = &config.tls {
        paths.extend(crate::config::tls::paths(tls).map(Path::to_path_buf));
    }
    for route in config.routes.routes() {
        if let Some(tls) = &route.upstream.tls {
            paths.extend(tls.paths.iter().cloned());
        }
    }
    paths
}

/// Reloads on SIGHUP and on file changes until the task is dropped.
pub async fn watch(gw: Arc<Gateway>, path: PathBuf, lookup: EnvLookup) {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let files = watched(&gw, &path);
    let mut last = tokio::task::spawn_blocking(move || fingerprint(&files))
        .await
        .unwrap_or_default();
    let mut tick = tokio::time::interval(POLL_EVERY);
    loop {
        let sighup = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        let forced = tokio::select! {
            () = sighup => true,
            _ = tick.tick() => false,
        };
        let files = watched(&gw, &path);
        let now = tokio::task::spawn_blocking(move || fingerprint(&files))
            .await
            .unwrap_or_default();
        if forced || now != last {
            if forced {
                tracing::info!("SIGHUP: reloading the configuration");
            }
            reload(&gw, &path, lookup).await;
            // Remember the content as it was *before* this reload (applied or rejected): an
            // edit that lands during the reload differs from it and triggers another.
            last = now;
        }
    }
}
