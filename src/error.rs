//! The one map from errors to responses. Status, short body, `WWW-Authenticate`,
//! `Location`, `Retry-After` and cookie clearing are decided here and nowhere else. The
//! match is exhaustive with no `_` arm, so a new error cannot silently become a 200. Clients
//! never see internals: bodies are fixed strings.

use http::header::{
    HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, LOCATION, RETRY_AFTER, SET_COOKIE,
    WWW_AUTHENTICATE,
};
use http::{Response, StatusCode};

use crate::authenticate::hasher::HashOverloaded;
use crate::authenticate::sessions::SessionError;
use crate::authenticate::AuthFailure;
use crate::authorize::Forbidden;
use crate::body::{full, Body};
use crate::canonicalize::CanonicalError;
use crate::config::Config;
use crate::forward::client::UpstreamError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("bad request: {0}")]
    BadPath(#[from] CanonicalError),
    #[error("malformed request body: {0}")]
    MalformedBody(&'static str),
    #[error("unsupported content type")]
    UnsupportedMediaType,
    #[error("no route for this host and path")]
    NoRoute,
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("not authenticated: {failure}")]
    Unauthenticated {
        failure: AuthFailure,
        /// For a browser navigation: the login URL to send it to.
        login: Option<String>,
        /// The request carried gateway cookies that are no good any more.
        clear_cookies: bool,
    },
    /// Forward-auth: always 401, and always with the login `Location` (SPEC §6).
    #[error("not authenticated (forward-auth): {failure}")]
    ForwardAuthUnauthenticated {
        failure: AuthFailure,
        login: String,
        clear_cookies: bool,
    },
    #[error("forbidden: {0}")]
    Forbidden(#[from] Forbidden),
    #[error("forward-auth headers from a peer outside trusted_proxies")]
    UntrustedForwardAuth,
    #[error("cross-site request refused")]
    CrossSite,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("too many failed logins")]
    LockedOut { retry_after: u64 },
    #[error(transparent)]
    Overloaded(#[from] HashOverloaded),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<SessionError> for GatewayError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Store(s) => GatewayError::Store(s),
            SessionError::Sign(s) => GatewayError::Internal(Box::new(s)),
        }
    }
}

/// Who is to blame, which decides the log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    Client,
    Upstream,
    Gateway,
}

fn json_error(status: StatusCode, code: &str) -> Response<Body> {
    let mut r = Response::new(full(format!("{{\"error\":\"{code}\"}}\n")));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

impl GatewayError {
    pub fn blame(&self) -> Blame {
        match self {
            GatewayError::BadPath(_)
            | GatewayError::MalformedBody(_)
            | GatewayError::UnsupportedMediaType
            | GatewayError::NoRoute
            | GatewayError::NotFound
            | GatewayError::MethodNotAllowed
            | GatewayError::Unauthenticated { .. }
            | GatewayError::ForwardAuthUnauthenticated { .. }
            | GatewayError::UntrustedForwardAuth
            | GatewayError::Forbidden(_)
            | GatewayError::CrossSite
            | GatewayError::PayloadTooLarge
            | GatewayError::BodyTimeout
            | GatewayError::LockedOut { .. } => Blame::Client,
            GatewayError::Upstream(_) => Blame::Upstream,
            GatewayError::Overloaded(_) | GatewayError::Store(_) | GatewayError::Internal(_) => {
                Blame::Gateway
            }
        }
    }

    pub fn into_response(self, config: &Config) -> Response<Body> {
        let mut response = match &self {
            GatewayError::BadPath(_) => text(StatusCode::BAD_REQUEST, "bad request\n"),
            GatewayError::MalformedBody(_) => {
                json_error(StatusCode::BAD_REQUEST, "invalid_request")
            }
            GatewayError::UnsupportedMediaType => {
                json_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            GatewayError::NoRoute | GatewayError::NotFound => {
                text(StatusCode::NOT_FOUND, "not found\n")
            }
            GatewayError::MethodNotAllowed => {
                text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            GatewayError::Unauthenticated { failure, login, .. } => match login {
                Some(location) => {
                    let mut r = text(StatusCode::FOUND, "login required\n");
                    if let Ok(v) = HeaderValue::from_str(location) {
                        r.headers_mut().insert(LOCATION, v);
                    }
                    r
                }
                None => {
                    let mut r = json_error(StatusCode::UNAUTHORIZED, "unauthorized");
                    r.headers_mut()
                        .insert(WWW_AUTHENTICATE, www_authenticate(failure));
                    r
                }
            },
            GatewayError::ForwardAuthUnauthenticated { failure, login, .. } => {
                let mut r = json_error(StatusCode::UNAUTHORIZED, "unauthorized");
                r.headers_mut()
                    .insert(WWW_AUTHENTICATE, www_authenticate(failure));
                if let Ok(v) = HeaderValue::from_str(login) {
                    r.headers_mut().insert(LOCATION, v);
                }
                r
            }
            GatewayError::Forbidden(_)
            | GatewayError::CrossSite
            | GatewayError::UntrustedForwardAuth => json_error(StatusCode::FORBIDDEN, "forbidden"),
            GatewayError::PayloadTooLarge => {
                json_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            GatewayError::BodyTimeout => {
                // The rest of the body may still come: the connection cannot be reused.
                let mut r = json_error(StatusCode::REQUEST_TIMEOUT, "request_timeout");
                r.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
                r
            }
            GatewayError::LockedOut { retry_after } => {
                let mut r = json_error(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
                r.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(*retry_after));
                r
            }
            GatewayError::Overloaded(_) => {
                let mut r = json_error(StatusCode::SERVICE_UNAVAILABLE, "overloaded");
                r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(1u64));
                r
            }
            GatewayError::Store(_) => {
                json_error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
            }
            GatewayError::Upstream(e) => e.response(),
            GatewayError::Internal(_) => {
                text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
            }
        };
        let clear = matches!(
            &self,
            GatewayError::Unauthenticated {
                clear_cookies: true,
                ..
            } | GatewayError::ForwardAuthUnauthenticated {
                clear_cookies: true,
                ..
            }
        );
        if clear {
            for c in config.cookies.clear() {
                response.headers_mut().append(SET_COOKIE, c);
            }
        }
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// RFC 6750 §3: tells an expired token from an invalid one.
fn www_authenticate(failure: &AuthFailure) -> HeaderValue {
    let value = match failure {
        // SPEC §7 asks for `error` on every 401, so API clients branch on one field.
        AuthFailure::Missing => {
            "Bearer realm=\"gatehouse\", error=\"invalid_token\", error_description=\"no access token was presented\""
        }
        f if f.is_expired() => {
            "Bearer realm=\"gatehouse\", error=\"invalid_token\", error_description=\"the access token expired\""
        }
        AuthFailure::Revoked => {
            "Bearer realm=\"gatehouse\", error=\"invalid_token\", error_description=\"the session was revoked\""
        }
        AuthFailure::Token(_) => {
            "Bearer realm=\"gatehouse\", error=\"invalid_token\", error_description=\"the access token is invalid\""
        }
    };
    HeaderValue::from_static(value)
}
