//! Keeping one replica's revocation map complete: subscribe to the channel, load every live
//! revocation after each (re)connect, then publish what was queued during an outage.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use dashmap::DashMap;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

use super::{CALL_TIMEOUT, RECONNECT_EVERY, REVOKE};

pub(super) async fn revoke_in_redis(
    script: &Script,
    c: &mut ConnectionManager,
    prefix: &str,
    sid: &str,
    until: u64,
) -> redis::RedisResult<bool> {
    let mut inv = script.arg(prefix);
    inv.arg(sid).arg(until);
    let was_live: i64 = inv.invoke_async(c).await?;
    Ok(was_live == 1)
}

/// Writes and publishes the revocations queued during an outage.
async fn flush_pending(
    conn: &ArcSwapOption<ConnectionManager>,
    prefix: &str,
    pending: &DashMap<String, u64>,
) -> redis::RedisResult<()> {
    let Some(c) = conn.load_full() else {
        return Ok(());
    };
    let mut c = (*c).clone();
    let script = Script::new(REVOKE);
    let queued: Vec<(String, u64)> = pending
        .iter()
        .map(|e| (e.key().clone(), *e.value()))
        .collect();
    for (sid, until) in queued {
        revoke_in_redis(&script, &mut c, prefix, &sid, until).await?;
        pending.remove(&sid);
    }
    Ok(())
}

/// Keeps this replica subscribed and its revocation map complete, forever.
pub(super) async fn sync_loop(
    client: redis::Client,
    prefix: String,
    conn: Arc<ArcSwapOption<ConnectionManager>>,
    revoked: Arc<DashMap<String, u64>>,
    synced: Arc<AtomicBool>,
    pending: Arc<DashMap<String, u64>>,
) {
    let channel = format!("{prefix}revocations");
    // Said once at `warn` (a TLS certificate Redis's clients do not trust, a wrong password,
    // nothing listening), then at `debug` while the same error repeats every retry.
    let mut last_error: Option<String> = None;
    loop {
        let ready = match subscribe_and_load(&client, &prefix, &channel, &conn, &revoked).await {
            Ok(pubsub) => flush_pending(&conn, &prefix, &pending)
                .await
                .map(|()| pubsub),
            Err(e) => Err(e),
        };
        match ready {
            Ok(mut pubsub) => {
                last_error = None;
                synced.store(true, Ordering::SeqCst);
                tracing::info!("redis store connected; revocations loaded");
                let mut messages = pubsub.on_message();
                while let Some(msg) = messages.next().await {
                    let payload: String = msg.get_payload().unwrap_or_default();
                    if let Some((sid, until)) = payload.split_once(' ') {
                        if let Ok(until) = until.parse::<u64>() {
                            revoked.insert(sid.to_string(), crate::clock::legacy_to_ms(until));
                        }
                    }
                }
                synced.store(false, Ordering::SeqCst);
                tracing::warn!("redis subscription lost; reconnecting");
            }
            Err(e) => {
                synced.store(false, Ordering::SeqCst);
                let error = e.to_string();
                if last_error.as_deref() == Some(error.as_str()) {
                    tracing::debug!(error = %error, "redis not reachable");
                } else {
                    tracing::warn!(error = %error, "redis not reachable; retrying every {} ms (login and refresh answer 503 meanwhile)", RECONNECT_EVERY.as_millis());
                    last_error = Some(error);
                }
            }
        }
        tokio::time::sleep(RECONNECT_EVERY).await;
    }
}

async fn subscribe_and_load(
    client: &redis::Client,
    prefix: &str,
    channel: &str,
    conn: &ArcSwapOption<ConnectionManager>,
    revoked: &DashMap<String, u64>,
) -> redis::RedisResult<redis::aio::PubSub> {
    // Subscribe first, then load: a revocation published in between is in both, never in
    // neither.
    let mut pubsub = tokio::time::timeout(CALL_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::IoError, "connect timed out")))??;
    pubsub.subscribe(channel).await?;
    if conn.load().is_none() {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(CALL_TIMEOUT)
            .set_response_timeout(CALL_TIMEOUT)
            .set_number_of_retries(1);
        let manager = client.get_connection_manager_with_config(config).await?;
        conn.store(Some(Arc::new(manager)));
    }
    let mut c = conn
        .load_full()
        .map(|c| (*c).clone())
        .ok_or_else(|| redis::RedisError::from((redis::ErrorKind::IoError, "no connection")))?;
    // From now in seconds: that takes entries a version before wrote in seconds too.
    let now = crate::clock::now_ms();
    let live: Vec<(String, u64)> = c
        .zrangebyscore_withscores(format!("{prefix}revoked"), now / 1000, "+inf")
        .await?;
    for (sid, until) in live {
        let until = crate::clock::legacy_to_ms(until);
        if now < until {
            revoked.insert(sid, until);
        }
    }
    Ok(pubsub)
}
