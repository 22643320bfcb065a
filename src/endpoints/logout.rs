//! `GET`/`POST /logout` (SPEC §6): revoke the current session (or, with `all=true`, every
//! session of the user) and clear the cookies. The session is found from the access token or,
//! if that has expired, from the refresh cookie, so logout works at any point of a session.

use http::header::{LOCATION, SET_COOKIE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::redirect::safe_return;
use super::{query_param, refuse_cross_site, wants_json};
use crate::authenticate::credentials::extract;
use crate::authenticate::users::canonical_username;
use crate::authenticate::{identify_any, sessions};
use crate::body::{empty, Body};
use crate::canonicalize::CanonicalRequest;
use crate::config::Config;
use crate::error::GatewayError;
use crate::runtime::{Gateway, RequestCtx};
use crate::telemetry::audit;

pub async fn logout(
    gw: &Gateway,
    config: &Config,
    req: Request<Incoming>,
    canon: &CanonicalRequest,
    ctx: &RequestCtx,
) -> Result<Response<Body>, GatewayError> {
    // A `GET` another site started (a link, an image, a redirect) ends nothing: a browser
    // is asked first, on a page of ours whose button posts the same logout (SPEC §6 refuses
    // cross-site state changes; a `GET` that ended sessions would let any page log its
    // visitors out, everywhere with `all=true`).
    let asked_elsewhere = refuse_cross_site(config, req.headers(), ctx).is_err();
    if asked_elsewhere && (req.method() == Method::POST || !ctx.pages) {
        return Err(GatewayError::CrossSite);
    }
    let all = query_param(canon, "all").is_some_and(|v| v == "true" || v == "1");
    let creds = extract(req.headers(), &config.cookies);
    let access = creds.bearer.iter().chain(creds.access_cookie.iter());
    let session = match identify_any(&config.tokens, &gw.store, access.copied(), ctx.now) {
        Ok(identity) => Some((
            canonical_username(identity.user()),
            identity.sid().to_string(),
        )),
        Err(_) => match creds.refresh_cookie {
            Some(token) => sessions::session_of_refresh_token(&gw.store, token)
                .await?
                .map(|s| (s.user, s.sid)),
            None => None,
        },
    };
    if asked_elsewhere {
        let origins = config
            .oidc
            .as_ref()
            .map(|settings| gw.oidc.logout_origins(settings))
            .unwrap_or_default();
        return Ok(crate::ui::sign_out_question(
            &config.ui,
            &config.auth_prefix,
            crate::ui::SignOutQuestion {
                user: session.as_ref().map(|(user, _)| user.as_str()),
                everywhere: all,
                query: canon.query(),
                sign_out_origins: &origins,
            },
        ));
    }
    // `logout: idp`: the provider's session ends too (RP-initiated logout), for a browser.
    let mut idp_logout = None;
    if let Some((_, sid)) = session.as_ref().filter(|_| !wants_json(req.headers())) {
        if let Some(link) = sessions::session(&gw.store, sid).await?.and_then(|s| s.idp) {
            let after = query_param(canon, "rd")
                .map(|rd| after_signing_in(&safe_return(Some(&rd)), &config.auth_prefix));
            idp_logout =
                super::oidc::idp_logout_url(gw, config, sid, &link, after.as_deref()).await;
        }
    }
    if let Some((user, sid)) = session {
        if all {
            let sids = sessions::end_all(&config.tokens, &gw.store, &user, ctx.now_ms).await?;
            audit::sessions_revoked(&user, &sids, "logout_all");
        } else {
            sessions::end(&config.tokens, &gw.store, &sid, ctx.now_ms).await?;
        }
        audit::logout(&user, &sid, all);
    }
    let mut r = Response::new(empty());
    if wants_json(req.headers()) {
        *r.status_mut() = StatusCode::NO_CONTENT;
    } else {
        *r.status_mut() = StatusCode::SEE_OTHER;
        let target = match (idp_logout, query_param(canon, "rd")) {
            (Some(idp), _) => idp,
            (None, Some(rd)) => safe_return(Some(&rd)),
            (None, None) => format!("{}/login", config.auth_prefix),
        };
        let location = HeaderValue::from_str(&target).unwrap_or(HeaderValue::from_static("/"));
        r.headers_mut().insert(LOCATION, location);
    }
    for c in config.cookies.clear() {
        r.headers_mut().append(SET_COOKIE, c);
    }
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    Ok(r)
}

/// Where a person who signs in again after this logout goes on to: `rd` itself, or, when `rd`
/// is our login page (*Sign in as someone else* on the 403 page), the `rd` that page was
/// given. The provider's logout brings the browser back to the login page with it as `state`
/// (its `post_logout_redirect_uri` is registered without a query, so `rd` cannot ride there).
fn after_signing_in(rd: &str, auth_prefix: &str) -> String {
    let login = format!("{auth_prefix}/login");
    match rd.split_once('?') {
        Some((path, query)) if path == login => form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "rd")
            .map_or_else(|| "/".to_string(), |(_, v)| safe_return(Some(&v))),
        None if rd == login => "/".to_string(),
        _ => rd.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::after_signing_in;

    #[test]
    fn signing_in_again_goes_on_to_where_the_login_page_was_to_go() {
        let cases = [
            ("/.gatehouse/login?rd=%2Fadmin%3Fx%3D1", "/admin?x=1"),
            ("/.gatehouse/login?rd=%2F%2Fevil.example", "/"),
            ("/.gatehouse/login", "/"),
            ("/.gatehouse/login?other=1", "/"),
            ("/reports/q3?y=2026", "/reports/q3?y=2026"),
            (
                "/.gatehouse/loginx?rd=%2Fadmin",
                "/.gatehouse/loginx?rd=%2Fadmin",
            ),
        ];
        for (rd, after) in cases {
            assert_eq!(after_signing_in(rd, "/.gatehouse"), after, "{rd}");
        }
    }
}
