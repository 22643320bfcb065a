//! The admin listener (SPEC §6): `/metrics`, `/healthz`, `/readyz`, and, with
//! `Authorization: Bearer <admin.token>`, the session API. None of it is served on the public
//! listener: the public router has no route to any of these handlers.

use std::future::Future;
use std::sync::Arc;

use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::accept::{serve_with, Transport};
use crate::authenticate::sessions;
use crate::body::{empty, full, Body};
use crate::runtime::{Conn, Gateway};
use crate::telemetry::audit;

pub async fn serve_admin(
    listener: TcpListener,
    gw: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(
        listener,
        gw,
        shutdown,
        Transport::Plain,
        |gw, req, _conn: Conn| async move { handle(&gw, req).await },
    )
    .await
}

fn text(status: StatusCode, body: impl Into<bytes::Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(value.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Compares digests, so the time taken says nothing about the token.
fn token_matches(presented: &str, expected: &str) -> bool {
    use aws_lc_rs::digest::{digest, SHA256};
    let (a, b) = (
        digest(&SHA256, presented.as_bytes()),
        digest(&SHA256, expected.as_bytes()),
    );
    a.as_ref()
        .iter()
        .zip(b.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

async fn handle(gw: &Gateway, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/metrics") => {
            let counts = gw.store.counts();
            gw.metrics.sessions_active.set(counts.sessions as i64);
            gw.metrics.revocations_active.set(counts.revocations as i64);
            let mut r = text(StatusCode::OK, gw.metrics.encode());
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        (Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (Method::GET, "/readyz") => {
            if gw.is_ready() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        (_, p) if p == "/admin" || p.starts_with("/admin/") => {
            let config = gw.config();
            let Some(admin) = &config.admin else {
                return text(StatusCode::NOT_FOUND, "not found\n");
            };
            let presented = req
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if !token_matches(presented, &admin.token.0) {
                let mut r = json(
                    StatusCode::UNAUTHORIZED,
                    serde_json::json!({"error": "unauthorized"}),
                );
                r.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"gatehouse-admin\""),
                );
                return r;
            }
            admin_api(gw, req, &config).await
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

async fn admin_api(gw: &Gateway, req: Request<Incoming>, config: &crate::Config) -> Response<Body> {
    let now = crate::clock::now_ms();
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let unavailable = || {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"error": "store_unavailable"}),
        )
    };
    match (method, path.as_str()) {
        (Method::GET, "/admin/sessions") => {
            let user = req.uri().query().and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "user")
                    .map(|(_, v)| crate::authenticate::users::canonical_username(&v))
            });
            let Some(user) = user else {
                return json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"error": "user is required"}),
                );
            };
            match sessions::sessions_of(&gw.store, &user).await {
                Ok(sessions) => {
                    let list: Vec<serde_json::Value> = sessions
                        .into_iter()
                        .map(|s| {
                            serde_json::json!({
                                // Unix seconds (the store keeps milliseconds).
                                "sid": s.sid, "user": s.user, "created_at": s.created_at / 1000,
                                "expires_at": s.expires_at / 1000, "last_refresh": s.last_refresh / 1000,
                                "idle_expires_at": s.idle_expires_at / 1000,
                                "client_ip": s.client_ip, "user_agent": s.user_agent,
                            })
                        })
                        .collect();
                    json(StatusCode::OK, serde_json::json!({"sessions": list}))
                }
                Err(_) => unavailable(),
            }
        }
        (Method::DELETE, p) if p.starts_with("/admin/sessions/") => {
            let sid = &p["/admin/sessions/".len()..];
            let Some(session) = sessions::session(&gw.store, sid).await.ok().flatten() else {
                return json(
                    StatusCode::NOT_FOUND,
                    serde_json::json!({"error": "no such session"}),
                );
            };
            match sessions::end(&config.tokens, &gw.store, sid, now).await {
                Ok(_) => {
                    audit::sessions_revoked(&session.user, &[sid.to_string()], "admin");
                    let mut r = Response::new(empty());
                    *r.status_mut() = StatusCode::NO_CONTENT;
                    r
                }
                Err(_) => unavailable(),
            }
        }
        (Method::POST, "/admin/revoke") => {
            // A stalled body is cut off like a login's (SPEC §10: never a hang).
            let read = Limited::new(req.into_body(), 4096).collect();
            let body = match tokio::time::timeout(config.limits.header_read_timeout, read).await {
                Err(_) => {
                    return json(
                        StatusCode::REQUEST_TIMEOUT,
                        serde_json::json!({"error": "request_timeout"}),
                    )
                }
                Ok(Ok(b)) => b.to_bytes(),
                Ok(Err(_)) => {
                    return json(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        serde_json::json!({"error": "too large"}),
                    )
                }
            };
            #[derive(serde::Deserialize)]
            struct Revoke {
                user: String,
            }
            let Ok(Revoke { user }) = serde_json::from_slice(&body) else {
                return json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"error": "expected {\"user\": NAME}"}),
                );
            };
            let user = crate::authenticate::users::canonical_username(&user);
            match sessions::end_all(&config.tokens, &gw.store, &user, now).await {
                Ok(sids) => {
                    audit::sessions_revoked(&user, &sids, "admin");
                    json(StatusCode::OK, serde_json::json!({"revoked": sids.len()}))
                }
                Err(_) => unavailable(),
            }
        }
        _ => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "not found"}),
        ),
    }
}
