//! `POST /refresh` (SPEC §6): the refresh token from the cookie or a JSON body; every use
//! rotates (SPEC §4). Any failure is 401 and clears both cookies.

use http::header::SET_COOKIE;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use super::login::{set_token_cookies, token_body};
use super::{body_kind, json, read_body, refuse_cross_site, BodyKind};
use crate::authenticate::credentials::extract;
use crate::authenticate::refresh_with_audit;
use crate::authenticate::sessions::RefreshError;
use crate::body::Body;
use crate::config::Config;
use crate::error::GatewayError;
use crate::runtime::{Gateway, RequestCtx};

#[derive(Deserialize)]
struct JsonRefresh {
    refresh_token: String,
}

pub async fn refresh(
    gw: &Gateway,
    config: &Config,
    req: Request<Incoming>,
    ctx: &RequestCtx,
) -> Result<Response<Body>, GatewayError> {
    refuse_cross_site(config, req.headers(), ctx)?;
    let cookie = extract(req.headers(), &config.cookies)
        .refresh_cookie
        .map(str::to_string);
    let is_json = body_kind(req.headers()) == Some(BodyKind::Json);
    let body = read_body(req, &config.limits).await?;
    let from_body = if is_json && !body.is_empty() {
        let parsed: JsonRefresh = serde_json::from_slice(&body)
            .map_err(|_| GatewayError::MalformedBody("expected {\"refresh_token\"}"))?;
        Some(parsed.refresh_token)
    } else {
        None
    };
    let Some(presented) = from_body.or(cookie) else {
        return Ok(invalid(config));
    };
    match refresh_with_audit(
        config.policy(),
        &gw.store,
        &gw.metrics,
        &gw.oidc,
        &presented,
        ctx.now_ms,
    )
    .await
    {
        Ok(issued) => {
            let mut r = json(StatusCode::OK, &token_body(&issued));
            set_token_cookies(config, &mut r, &issued);
            Ok(r)
        }
        Err(RefreshError::Store(e)) => Err(GatewayError::Store(e)),
        Err(RefreshError::Sign(e)) => Err(GatewayError::Internal(Box::new(e))),
        Err(
            RefreshError::Invalid
            | RefreshError::ReuseDetected { .. }
            | RefreshError::UserChanged { .. }
            | RefreshError::IdpRefused { .. },
        ) => Ok(invalid(config)),
    }
}

fn invalid(config: &Config) -> Response<Body> {
    let mut r = json(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({"error": "invalid_grant"}),
    );
    for c in config.cookies.clear() {
        r.headers_mut().append(SET_COOKIE, c);
    }
    r
}
