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
use crate::canonicalize::{CanonicalError, RefusedHead};
use crate::config::Config;
use crate::store::StoreError;
use crate::ui;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("bad request: {0}")]
    BadPath(#[from] CanonicalError),
    #[error("{}", match .0 {
        RefusedHead::TooLarge => "the request head is larger than max_request_header_bytes",
        RefusedHead::UriTooLong => "the request-target is too long",
        RefusedHead::Malformed => "the request head is malformed",
    })]
    HeadRefused(RefusedHead),
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
    #[error("forbidden: {reason}")]
    Forbidden {
        reason: Forbidden,
        /// Who is signed in (the 403 page says so).
        user: String,
        /// The request's path and query, for "sign in as someone else" to come back to.
        back_to: String,
    },
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
    #[error("identity provider login failed: {reason}")]
    Oidc {
        failure: OidcFailure,
        /// The audit reason (logged, never shown).
        reason: &'static str,
    },
    #[error("password sign-in is turned off (oidc.password_login: false)")]
    PasswordLoginDisabled,
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Why the upstream gave no usable answer (502 or 504).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the upstream refused or could not be reached")]
    Unreachable(#[source] std::io::Error),
    #[error("the upstream did not answer in time")]
    Timeout,
    #[error("the upstream connection failed")]
    Broken(#[source] hyper::Error),
    #[error("the upstream switched protocols without being asked to")]
    UnexpectedUpgrade,
    #[error("the upstream framed its response with a transfer coding other than chunked")]
    TransferCoding,
}

impl UpstreamError {
    /// The exchange failed because the client's request body did (a chunk size that is no
    /// number, a body that ended before its `Content-Length`): hyper's client reports that as
    /// its own error, with the body's error, itself a `hyper::Error` of the client's
    /// connection, as the cause. The client's fault, not the upstream's.
    pub fn request_body_failed(&self) -> bool {
        match self {
            UpstreamError::Broken(e) => {
                e.is_user()
                    && std::error::Error::source(e)
                        .is_some_and(|cause| cause.downcast_ref::<hyper::Error>().is_some())
            }
            _ => false,
        }
    }

    /// The metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Unreachable(_) => "connect",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Broken(_)
            | UpstreamError::UnexpectedUpgrade
            | UpstreamError::TransferCoding => "protocol",
        }
    }
}

/// How a login through an identity provider failed (SPEC §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OidcFailure {
    /// 400: the `state` is missing, unknown, expired or used, or the answer is malformed.
    BadState,
    /// 401: the provider's tokens or answer are not acceptable.
    BadToken,
    /// 403: an allow-list (domains, roles, verified email, local names) says no.
    Denied,
    /// 503: the provider cannot be reached.
    Unavailable,
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

/// How an error is shown: as a page (the client reads HTML) or as JSON, and the request id.
#[derive(Clone, Copy)]
pub struct Shown<'a> {
    pub wants_html: bool,
    pub request_id: &'a str,
    /// Where the providers end their sessions, for the 403 page's *Sign out* forms.
    pub oidc: &'a crate::oidc::Oidc,
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
            | GatewayError::HeadRefused(_)
            | GatewayError::MalformedBody(_)
            | GatewayError::UnsupportedMediaType
            | GatewayError::NoRoute
            | GatewayError::NotFound
            | GatewayError::MethodNotAllowed
            | GatewayError::Unauthenticated { .. }
            | GatewayError::ForwardAuthUnauthenticated { .. }
            | GatewayError::UntrustedForwardAuth
            | GatewayError::Forbidden { .. }
            | GatewayError::CrossSite
            | GatewayError::PayloadTooLarge
            | GatewayError::BodyTimeout
            | GatewayError::LockedOut { .. }
            | GatewayError::PasswordLoginDisabled => Blame::Client,
            GatewayError::Oidc { failure, .. } => match failure {
                OidcFailure::Unavailable => Blame::Upstream,
                _ => Blame::Client,
            },
            GatewayError::Upstream(_) => Blame::Upstream,
            GatewayError::Overloaded(_) | GatewayError::Store(_) | GatewayError::Internal(_) => {
                Blame::Gateway
            }
        }
    }

    /// The response for this error. `shown` says whether the client reads HTML (an error page,
    /// SPEC §6) or JSON, and the request id the page quotes.
    pub fn into_response(self, config: &Config, shown: Shown<'_>) -> Response<Body> {
        use ui::Remedy;
        // A page for a client that reads HTML, `{"error": code}` for the rest. `who`: the
        // signed-in user and the path to come back to, for the 403 page.
        let shown_as = |status: StatusCode,
                        code: &str,
                        sentence: &str,
                        remedy: Remedy,
                        who: Option<(&str, &str)>| {
            if shown.wants_html {
                let sign_out_origins = match (&config.oidc, who) {
                    (Some(settings), Some(_)) => shown.oidc.logout_origins(settings),
                    _ => String::new(),
                };
                ui::error_page(
                    status,
                    sentence,
                    remedy,
                    ui::ErrorPage {
                        branding: &config.ui,
                        auth_prefix: &config.auth_prefix,
                        request_id: shown.request_id,
                        user: who.map(|(user, _)| user),
                        back_to: who.map_or("/", |(_, back_to)| back_to),
                        sign_out_origins: &sign_out_origins,
                    },
                )
            } else {
                json_error(status, code)
            }
        };
        let page = |status, code, sentence, remedy| shown_as(status, code, sentence, remedy, None);
        let mut response = match &self {
            GatewayError::BadPath(_) => page(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "This address is not one the site can serve.",
                Remedy::None,
            ),
            // HTTP/1: the stand-in head asked to close the connection, so hyper says so.
            GatewayError::HeadRefused(refused) => match refused {
                RefusedHead::TooLarge => page(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "request_header_fields_too_large",
                    "The request's headers are larger than this site takes; \
                     clearing this site's cookies may help.",
                    Remedy::None,
                ),
                RefusedHead::UriTooLong => page(
                    StatusCode::URI_TOO_LONG,
                    "uri_too_long",
                    "This address is longer than this site takes.",
                    Remedy::None,
                ),
                RefusedHead::Malformed => page(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "The request could not be read.",
                    Remedy::None,
                ),
            },
            GatewayError::MalformedBody(_) => page(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The request could not be read.",
                Remedy::None,
            ),
            GatewayError::UnsupportedMediaType => page(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "The request was sent in a form this page does not take.",
                Remedy::None,
            ),
            GatewayError::NoRoute | GatewayError::NotFound => page(
                StatusCode::NOT_FOUND,
                "not_found",
                "There is no page at this address.",
                Remedy::None,
            ),
            GatewayError::MethodNotAllowed => page(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "This page cannot be used that way.",
                Remedy::None,
            ),
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
            GatewayError::Forbidden { user, back_to, .. } => shown_as(
                StatusCode::FORBIDDEN,
                "forbidden",
                "You do not have access to this page.",
                Remedy::SwitchUser,
                Some((user, back_to)),
            ),
            GatewayError::CrossSite => page(
                StatusCode::FORBIDDEN,
                "forbidden",
                "The request came from another site, so it was refused.",
                Remedy::None,
            ),
            // Only proxies call forward-auth: they read JSON.
            GatewayError::UntrustedForwardAuth => json_error(StatusCode::FORBIDDEN, "forbidden"),
            GatewayError::PayloadTooLarge => page(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "The request is larger than this page takes.",
                Remedy::None,
            ),
            GatewayError::BodyTimeout => {
                // The rest of the body may still come: the connection cannot be reused.
                let mut r = page(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "The request took too long to arrive.",
                    Remedy::TryAgain,
                );
                r.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
                r
            }
            GatewayError::LockedOut { retry_after } => {
                let mut r = page(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_attempts",
                    "There were too many failed sign-ins for this account or this network.",
                    Remedy::WaitSeconds(*retry_after),
                );
                r.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(*retry_after));
                r
            }
            GatewayError::Overloaded(_) => {
                let mut r = page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "The sign-in service is busy.",
                    Remedy::TryAgain,
                );
                r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(1u64));
                r
            }
            GatewayError::Store(_) => page(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "The session service cannot be reached.",
                Remedy::TryAgain,
            ),
            GatewayError::Upstream(UpstreamError::Timeout) => page(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "The application did not answer in time.",
                Remedy::TryAgain,
            ),
            GatewayError::Upstream(
                UpstreamError::Unreachable(_)
                | UpstreamError::Broken(_)
                | UpstreamError::UnexpectedUpgrade
                | UpstreamError::TransferCoding,
            ) => page(
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                "The application behind this site could not be reached, or answered with something that is not a valid response.",
                Remedy::TryAgain,
            ),
            GatewayError::Oidc { failure, .. } => {
                let (status, code, sentence) = match failure {
                    OidcFailure::BadState => (
                        StatusCode::BAD_REQUEST,
                        "invalid_state",
                        "This sign-in link has expired or was already used.",
                    ),
                    OidcFailure::BadToken => (
                        StatusCode::UNAUTHORIZED,
                        "login_failed",
                        "The sign-in provider's answer could not be accepted, so you are not signed in.",
                    ),
                    OidcFailure::Denied => (
                        StatusCode::FORBIDDEN,
                        "access_denied",
                        "Your account at the sign-in provider is not allowed to use this site.",
                    ),
                    OidcFailure::Unavailable => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "provider_unavailable",
                        "The sign-in provider cannot be reached right now.",
                    ),
                };
                let mut r = page(status, code, sentence, Remedy::SignInAgain);
                if *failure == OidcFailure::Unavailable {
                    r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(5u64));
                }
                r
            }
            GatewayError::PasswordLoginDisabled => page(
                StatusCode::FORBIDDEN,
                "password_login_disabled",
                "Signing in with a password is turned off here; use your organisation's sign-in.",
                Remedy::SignInAgain,
            ),
            GatewayError::Internal(_) => page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Something went wrong on the gateway's side.",
                Remedy::TryAgain,
            ),
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
