//! `GET /userinfo` (SPEC §6): who is logged in, for the app's JavaScript and API clients.
//! Refreshes transparently like any protected request.

use http::header::SET_COOKIE;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::json;
use crate::authenticate::authenticate;
use crate::authenticate::credentials::extract;
use crate::body::Body;
use crate::canonicalize::CanonicalRequest;
use crate::config::Config;
use crate::error::GatewayError;
use crate::runtime::{Gateway, RequestCtx};

pub async fn userinfo(
    gw: &Gateway,
    config: &Config,
    req: &Request<Incoming>,
    _canon: &CanonicalRequest,
    ctx: &RequestCtx,
) -> Result<Response<Body>, GatewayError> {
    let creds = extract(req.headers(), &config.cookies);
    let auth = authenticate(
        config.policy(),
        &gw.store,
        &gw.metrics,
        &gw.oidc,
        &creds,
        ctx.now_ms,
    )
    .await
    .map_err(|unauth| {
        if let Some(e) = unauth.store_error {
            return GatewayError::Store(e);
        }
        GatewayError::Unauthenticated {
            failure: unauth.failure,
            login: None,
            clear_cookies: unauth.clear_cookies,
        }
    })?;
    let id = &auth.identity;
    let session = crate::authenticate::sessions::session(&gw.store, id.sid()).await?;
    // Unix seconds, like the token's claims (the store keeps milliseconds).
    let expires_at = session
        .map(|s| s.expires_at / 1000)
        .unwrap_or(id.token_exp());
    let mut r = json(
        StatusCode::OK,
        &serde_json::json!({
            "user": id.user(),
            "email": id.email(),
            "roles": id.roles(),
            "session_expires_at": expires_at,
        }),
    );
    for c in auth.set_cookies {
        r.headers_mut().append(SET_COOKIE, c);
    }
    Ok(r)
}
