//! Login through an identity provider (SPEC §11): `GET /oidc/{id}/start` sends the browser to
//! the provider, `GET /oidc/{id}/callback` brings it back with a code and ends in an ordinary
//! Gatehouse session, `POST /oidc/{id}/backchannel-logout` lets the provider end sessions.
//!
//! The login state (`state`, `nonce`, PKCE verifier, `rd`, provider) lives in the
//! `gatehouse_oidc` cookie, sealed with the gateway's key, one entry per login in flight (so
//! several tabs can log in at once), ten minutes at most. A `state` is used once: its entry
//! leaves the cookie, and the store remembers it (across replicas with Redis) until it would
//! have expired anyway.

use std::sync::Arc;

use cookie::Cookie;
use http::header::{CACHE_CONTROL, COOKIE, LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::login::set_token_cookies;
use super::redirect::safe_return;
use super::{login_context, query_param, read_body};
use crate::authenticate::sessions;
use crate::body::{empty, full, Body};
use crate::canonicalize::CanonicalRequest;
use crate::config::Config;
use crate::error::{GatewayError, OidcFailure};
use crate::oidc::{map_claims, OidcError, ProviderSettings};
use crate::runtime::{Gateway, RequestCtx};
use crate::store::IdpLink;
use crate::telemetry::audit;

use crate::authenticate::cookies::OIDC_STATE_COOKIE as STATE_COOKIE;
/// How long a login may take at the provider.
const STATE_TTL_MS: u64 = 10 * 60 * 1000;
/// Logins in flight one browser may have at once (tabs); the oldest gives way.
const MAX_PENDING: usize = 4;

/// One login in flight.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    /// Provider id.
    p: String,
    /// `state`.
    s: String,
    /// `nonce`.
    n: String,
    /// PKCE verifier.
    v: String,
    /// Where to go afterwards (already validated).
    r: String,
    /// Expiry, Unix ms.
    e: u64,
}

/// `__Host-gatehouse_oidc` when cookies are `Secure` (never a `Domain`: host-only always).
fn cookie_name(config: &Config) -> &'static str {
    if config.cookies.secure {
        "__Host-gatehouse_oidc"
    } else {
        STATE_COOKIE
    }
}

fn provider<'c>(config: &'c Config, id: &str) -> Result<&'c Arc<ProviderSettings>, GatewayError> {
    config
        .oidc
        .as_ref()
        .and_then(|o| o.provider(id))
        .ok_or(GatewayError::NotFound)
}

/// The logins in flight this browser holds, unexpired.
fn pending(config: &Config, headers: &HeaderMap, now: u64) -> Vec<Pending> {
    let name = cookie_name(config);
    let sealed = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| Cookie::split_parse(v.to_string()))
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string());
    sealed
        .and_then(|s| config.tokens.seal.open(&s, STATE_COOKIE.as_bytes()))
        .and_then(|plain| serde_json::from_slice::<Vec<Pending>>(&plain).ok())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| now < p.e)
        .collect()
}

/// The `Set-Cookie` that stores `list` (or deletes the cookie when it is empty).
fn state_cookie(config: &Config, list: &[Pending], now: u64) -> HeaderValue {
    let value = serde_json::to_vec(list)
        .ok()
        .filter(|_| !list.is_empty())
        .and_then(|json| config.tokens.seal.seal(&json, STATE_COOKIE.as_bytes()));
    let max_age = list
        .iter()
        .map(|p| p.e.saturating_sub(now) / 1000)
        .max()
        .unwrap_or(0);
    let c = Cookie::build((cookie_name(config), value.unwrap_or_default()))
        .http_only(true)
        .path("/")
        .secure(config.cookies.secure)
        // The provider's redirect back is a cross-site top-level navigation: Lax lets the
        // cookie ride on it, Strict would not.
        .same_site(cookie::SameSite::Lax)
        .max_age(cookie::time::Duration::seconds(max_age as i64))
        .build();
    HeaderValue::from_str(&c.to_string()).unwrap_or(HeaderValue::from_static(
        "gatehouse_oidc=; Max-Age=0; Path=/",
    ))
}

fn oidc_error(e: OidcError) -> GatewayError {
    let failure = match e {
        OidcError::Unavailable(_) => OidcFailure::Unavailable,
        OidcError::BadToken(_) | OidcError::Refused(_) => OidcFailure::BadToken,
    };
    GatewayError::Oidc {
        failure,
        reason: e.reason(),
    }
}

/// `GET /oidc/{id}/start?rd=PATH`: to the provider, with PKCE, `state` and `nonce`.
pub async fn start(
    gw: &Gateway,
    config: &Config,
    req: &Request<Incoming>,
    canon: &CanonicalRequest,
    ctx: &RequestCtx,
    id: &str,
) -> Result<Response<Body>, GatewayError> {
    let p = provider(config, id)?;
    let d = gw.oidc.discovered(p).await.map_err(oidc_error)?;
    let rd = safe_return(query_param(canon, "rd").as_deref());
    let entry = Pending {
        p: p.id.clone(),
        s: crate::ids::random(24),
        n: crate::ids::random(24),
        v: crate::ids::random(32),
        r: rd,
        e: ctx.now_ms + STATE_TTL_MS,
    };
    let scope = p.scopes.join(" ");
    let challenge = crate::oidc::pkce_challenge(&entry.v);
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("response_type", "code")
        .append_pair("client_id", &p.client_id)
        .append_pair("redirect_uri", &p.redirect_uri)
        .append_pair("scope", &scope)
        .append_pair("state", &entry.s)
        .append_pair("nonce", &entry.n)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    // *Sign in as someone else*: our session has ended, the provider's has not, and without
    // this it would sign the same person in again at once.
    if query_param(canon, "switch_account").is_some_and(|v| v == "1") {
        if let Some(prompt) = d.switch_account_prompt {
            query.append_pair("prompt", prompt);
        }
    }
    let query = query.finish();
    let sep = if d.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    let location = format!("{}{sep}{query}", d.authorization_endpoint);
    let mut list = pending(config, req.headers(), ctx.now_ms);
    list.push(entry);
    while list.len() > MAX_PENDING {
        list.remove(0);
    }
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::FOUND;
    let location =
        HeaderValue::from_str(&location).map_err(|e| GatewayError::Internal(Box::new(e)))?;
    r.headers_mut().insert(LOCATION, location);
    r.headers_mut()
        .append(SET_COOKIE, state_cookie(config, &list, ctx.now_ms));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// A failed callback: audit, metric, and the error page; the used `state` (if any) leaves
/// the cookie either way.
struct Failed {
    error: GatewayError,
    user: String,
}

fn failed(failure: OidcFailure, reason: &'static str) -> Failed {
    Failed {
        error: GatewayError::Oidc { failure, reason },
        user: String::new(),
    }
}

/// `GET /oidc/{id}/callback`: state, code exchange, ID token, claims, allow-lists, session.
pub async fn callback(
    gw: &Gateway,
    config: &Config,
    req: &Request<Incoming>,
    canon: &CanonicalRequest,
    ctx: &RequestCtx,
    id: &str,
) -> Result<Response<Body>, GatewayError> {
    let p = provider(config, id)?;
    let mut list = pending(config, req.headers(), ctx.now_ms);
    let state = query_param(canon, "state");
    let entry = state.as_deref().and_then(|s| {
        let i = list.iter().position(|e| e.s == s && e.p == p.id)?;
        Some(list.remove(i))
    });
    let outcome = match entry {
        None => Err(failed(
            OidcFailure::BadState,
            if state.is_none() {
                "missing_state"
            } else if list.is_empty() {
                "missing_state_cookie"
            } else {
                "state_mismatch"
            },
        )),
        Some(entry) => complete(gw, config, req.headers(), canon, ctx, p, &entry).await,
    };
    let ip = ctx.client_ip.to_string();
    let mut r = match outcome {
        Ok(r) => r,
        Err(f) => {
            let reason = match &f.error {
                GatewayError::Oidc { reason, .. } => *reason,
                _ => "error",
            };
            audit::oidc_login_failed(&f.user, &ip, &p.id, reason);
            gw.metrics.login("failure", &p.id);
            let mut r = f.error.into_response(
                config,
                crate::error::Shown {
                    wants_html: ctx.pages,
                    request_id: &ctx.request_id,
                    oidc: &gw.oidc,
                },
            );
            // The reason goes to the request's log line too.
            tracing::info!(provider = %p.id, reason, "sign-in through the provider refused");
            r.headers_mut()
                .append(SET_COOKIE, state_cookie(config, &list, ctx.now_ms));
            return Ok(r);
        }
    };
    r.headers_mut()
        .append(SET_COOKIE, state_cookie(config, &list, ctx.now_ms));
    Ok(r)
}

async fn complete(
    gw: &Gateway,
    config: &Config,
    headers: &HeaderMap,
    canon: &CanonicalRequest,
    ctx: &RequestCtx,
    p: &ProviderSettings,
    entry: &Pending,
) -> Result<Response<Body>, Failed> {
    // One use, across replicas: the store remembers the state until it would expire anyway.
    let first = sessions::first_use(
        &gw.store,
        &format!("oidc-state:{}", entry.s),
        ctx.now_ms,
        entry.e,
    )
    .await
    .map_err(|_| failed(OidcFailure::Unavailable, "store_unavailable"))?;
    if !first {
        return Err(failed(OidcFailure::BadState, "state_replayed"));
    }
    let d = gw.oidc.discovered(p).await.map_err(|e| Failed {
        error: oidc_error(e),
        user: String::new(),
    })?;
    // RFC 9207: an `iss` in the answer must be this provider's (mix-up defence), and a
    // provider that promises to send it must.
    match query_param(canon, "iss") {
        Some(iss) if iss != p.issuer => {
            return Err(failed(OidcFailure::BadState, "issuer_mismatch"))
        }
        None if d.sends_iss => return Err(failed(OidcFailure::BadState, "issuer_missing")),
        _ => {}
    }
    if let Some(error) = query_param(canon, "error") {
        tracing::info!(provider = %p.id, error = %error.chars().take(64).collect::<String>(), "the provider answered with an error");
        return Err(failed(
            if error == "access_denied" {
                OidcFailure::Denied
            } else {
                OidcFailure::BadToken
            },
            "provider_error",
        ));
    }
    let code = query_param(canon, "code")
        .filter(|c| !c.is_empty())
        .ok_or(failed(OidcFailure::BadState, "missing_code"))?;
    let tokens = gw
        .oidc
        .exchange_code(p, &d, &code, &entry.v)
        .await
        .map_err(|e| Failed {
            error: oidc_error(e),
            user: String::new(),
        })?;
    let id_token = tokens
        .id_token
        .as_deref()
        .ok_or(failed(OidcFailure::BadToken, "missing_id_token"))?;
    let leeway = config.tokens.leeway;
    let mut claims = gw
        .oidc
        .verify_id_token(p, id_token, Some(&entry.n), leeway)
        .await
        .map_err(|e| Failed {
            error: oidc_error(e),
            user: String::new(),
        })?;
    if crate::oidc::claims::needs_userinfo(p, &claims) {
        if let Some(access) = &tokens.access_token {
            let info = gw.oidc.userinfo(p, &d, access).await.map_err(|e| Failed {
                error: oidc_error(e),
                user: String::new(),
            })?;
            if let Some(info) = info {
                // Core §5.3.2: userinfo must be about the same `sub`.
                if info.get("sub") != claims.get("sub") {
                    return Err(failed(OidcFailure::BadToken, "userinfo_sub_mismatch"));
                }
                for (k, v) in info {
                    claims.entry(k).or_insert(v);
                }
            }
        }
    }
    let who = map_claims(p, &claims).map_err(|r| {
        failed(
            if r.status == 403 {
                OidcFailure::Denied
            } else {
                OidcFailure::BadToken
            },
            r.reason,
        )
    })?;
    let user = sessions::provider_user(
        &config.users,
        &p.id,
        &who.username,
        who.email.as_deref(),
        &who.roles,
    )
    .map_err(|reason| Failed {
        error: GatewayError::Oidc {
            failure: OidcFailure::Denied,
            reason,
        },
        user: who.username.clone(),
    })?;
    let link = IdpLink {
        provider: p.id.clone(),
        sub: who.sub.clone(),
        sid: who.sid.clone(),
        email: who.email.clone(),
        roles: who.roles.clone(),
        refresh_token: None,
        id_token: None,
        checked_at: ctx.now_ms,
    };
    let ip = ctx.client_ip.to_string();
    let issued = sessions::login_with_provider(
        &config.tokens,
        &gw.store,
        &user,
        link,
        sessions::IdpTokens {
            refresh_token: tokens.refresh_token.as_deref(),
            // Kept only where the logout sends it back.
            id_token: Some(id_token).filter(|_| p.logout_at_idp),
        },
        login_context(headers, ctx),
        ctx.now_ms,
    )
    .await
    .map_err(|e| Failed {
        error: e.into(),
        user: who.username.clone(),
    })?;
    audit::oidc_login_succeeded(&user.username, issued.identity.sid(), &ip, &p.id);
    gw.metrics.login("success", &p.id);
    // `SameSite=Strict` cookies would not ride on a redirect that ends a chain begun on the
    // provider's site: a page of ours goes on instead (`ui::continue_page`).
    let mut r = if config.cookies.same_site == cookie::SameSite::Strict {
        crate::ui::continue_page(&config.ui, &config.auth_prefix, &entry.r)
    } else {
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::SEE_OTHER;
        let location = HeaderValue::from_str(&entry.r).unwrap_or(HeaderValue::from_static("/"));
        r.headers_mut().insert(LOCATION, location);
        r
    };
    set_token_cookies(config, &mut r, &issued);
    Ok(r)
}

/// `POST /oidc/{id}/backchannel-logout` (Back-Channel Logout 1.0 §2.5, §2.8): `200` once
/// every matching session is revoked, `400 {"error":"invalid_request"}` for a bad token.
pub async fn backchannel_logout(
    gw: &Gateway,
    config: &Config,
    req: Request<Incoming>,
    ctx: &RequestCtx,
    id: &str,
) -> Result<Response<Body>, GatewayError> {
    let p = provider(config, id)?.clone();
    let body = read_body(req, &config.limits).await?;
    let token = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned());
    let refuse = |reason: &'static str| {
        tracing::info!(provider = %p.id, reason, "back-channel logout refused");
        let mut r = super::json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"error": "invalid_request", "error_description": reason}),
        );
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    };
    let Some(token) = token else {
        return Ok(refuse("missing_logout_token"));
    };
    let logout = match gw
        .oidc
        .verify_logout_token(&p, &token, config.tokens.leeway)
        .await
    {
        Ok(l) => l,
        Err(OidcError::Unavailable(_)) => {
            return Err(GatewayError::Oidc {
                failure: OidcFailure::Unavailable,
                reason: "provider_unavailable",
            })
        }
        Err(e) => return Ok(refuse(e.reason())),
    };
    let fresh = sessions::first_use(
        &gw.store,
        &format!("oidc-jti:{}:{}", p.id, logout.jti),
        ctx.now_ms,
        logout.remember_until,
    )
    .await?;
    if !fresh {
        return Ok(refuse("jti_replayed"));
    }
    let by_user = sessions::end_provider_sessions(
        &config.tokens,
        &gw.store,
        &p.id,
        logout.sub.as_deref(),
        logout.sid.as_deref(),
        ctx.now_ms,
    )
    .await?;
    for (user, sids) in &by_user {
        audit::sessions_revoked_by_provider(user, sids, &p.id, "backchannel_logout");
    }
    let mut r = Response::new(full(""));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// For `logout: idp`: where to send the browser after our logout so the provider ends its
/// session too (RP-initiated logout), if the provider has an end-session endpoint.
/// `after`: where to go once signed in again, sent as `state`, which the provider hands back
/// to the login page (RP-Initiated Logout 1.0 §2; the login page reads it as `rd`). The
/// session's latest ID token goes as `id_token_hint`: several providers (IdentityServer,
/// Connect2id, Okta) honour `post_logout_redirect_uri` only with it, and others skip their
/// confirmation with it.
pub async fn idp_logout_url(
    gw: &Gateway,
    config: &Config,
    sid: &str,
    link: &IdpLink,
    after: Option<&str>,
) -> Option<String> {
    let p = config.oidc.as_ref()?.provider(&link.provider)?;
    if !p.logout_at_idp {
        return None;
    }
    let d = gw.oidc.discovered(p).await.ok()?;
    let end = d.end_session_endpoint.as_ref()?;
    let back = format!(
        "{}{}/login",
        config.public_origin.as_deref().unwrap_or(""),
        config.auth_prefix
    );
    let mut query = form_urlencoded::Serializer::new(String::new());
    if let Some(hint) = sessions::id_token_hint(&config.tokens, sid, link) {
        query.append_pair("id_token_hint", &hint);
    }
    query
        .append_pair("client_id", &p.client_id)
        .append_pair("post_logout_redirect_uri", &back);
    if let Some(after) = after.filter(|a| *a != "/") {
        query.append_pair("state", after);
    }
    let query = query.finish();
    let sep = if end.contains('?') { '&' } else { '?' };
    Some(format!("{end}{sep}{query}"))
}
