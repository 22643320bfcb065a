//! The HTTP client towards identity providers: `https` with rustls and the system's CA store
//! (`SSL_CERT_FILE` is honoured), plain `http` only to a loopback address (development), one
//! request per connection (IdP calls are rare: logins, refresh rechecks, discovery), a timeout
//! over the whole exchange, a cap on the response size, and no redirects followed at all.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;

/// The most an IdP answer may weigh (discovery, JWKS, tokens, userinfo).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// The whole exchange: connect, TLS, request, response.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("`{0}` is not an https URL (plain http is allowed only to a loopback address)")]
    NotAllowed(String),
    #[error("cannot connect to {0}: {1}")]
    Connect(String, String),
    #[error("{0} did not answer within 10s")]
    Timeout(String),
    #[error("{0} answered with a redirect to elsewhere; redirects are not followed")]
    Redirect(String),
    #[error("{0} answered with more than 1 MiB")]
    TooLarge(String),
    #[error("{0} answered with something that is not JSON: {1}")]
    NotJson(String, String),
    #[error("{0}: {1}")]
    Protocol(String, String),
}

/// A JSON answer and its status.
#[derive(Debug)]
pub struct JsonResponse {
    pub status: StatusCode,
    pub body: serde_json::Value,
}

/// The client carries no state of its own: the TLS settings ([`crate::trust`]) are shared by
/// every gateway in the process.
#[derive(Clone, Default)]
pub struct IdpHttp {}

impl std::fmt::Debug for IdpHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdpHttp")
    }
}

/// Whether a URL may be fetched: `https`, or `http` to a loopback address.
pub fn allowed_url(url: &str) -> bool {
    let Ok(uri) = url.parse::<Uri>() else {
        return false;
    };
    match (uri.scheme_str(), uri.host()) {
        (Some("https"), Some(_)) => true,
        (Some("http"), Some(host)) => is_loopback(host),
        _ => false,
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl IdpHttp {
    pub fn new() -> IdpHttp {
        IdpHttp {}
    }

    pub async fn get_json(
        &self,
        url: &str,
        bearer: Option<&str>,
    ) -> Result<JsonResponse, HttpError> {
        let mut req = Request::builder().method(Method::GET).uri(url);
        if let Some(token) = bearer {
            req = req.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        self.send(url, req, Bytes::new()).await
    }

    /// A form POST; `basic`: client id and secret for `client_secret_basic` (RFC 6749 §2.3.1).
    pub async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Result<JsonResponse, HttpError> {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some((id, secret)) = basic {
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", enc(id), enc(secret));
            let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
            req = req.header(AUTHORIZATION, format!("Basic {b64}"));
        }
        self.send(url, req, Bytes::from(body)).await
    }

    async fn send(
        &self,
        url: &str,
        req: http::request::Builder,
        body: Bytes,
    ) -> Result<JsonResponse, HttpError> {
        let what = redact(url);
        match tokio::time::timeout(TIMEOUT, self.exchange(url, &what, req, body)).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout(what)),
        }
    }

    async fn exchange(
        &self,
        url: &str,
        what: &str,
        req: http::request::Builder,
        body: Bytes,
    ) -> Result<JsonResponse, HttpError> {
        if !allowed_url(url) {
            return Err(HttpError::NotAllowed(what.to_string()));
        }
        let uri: Uri = url
            .parse()
            .map_err(|_| HttpError::NotAllowed(what.to_string()))?;
        let https = uri.scheme_str() == Some("https");
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|| host.clone());
        let connect_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tcp = tokio::net::TcpStream::connect((connect_host.as_str(), port))
            .await
            .map_err(|e| HttpError::Connect(what.to_string(), e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let req = req
            .uri(path)
            .header(HOST, authority)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(body))
            .map_err(|e| HttpError::Protocol(what.to_string(), e.to_string()))?;
        let response = if https {
            let name = rustls_pki_types::ServerName::try_from(connect_host.clone())
                .map_err(|e| HttpError::Connect(what.to_string(), e.to_string()))?;
            let tls = crate::trust::connector()
                .await
                .ok_or_else(|| HttpError::Connect(what.to_string(), "TLS is unavailable".into()))?
                .connect(name, tcp)
                .await
                .map_err(|e| HttpError::Connect(what.to_string(), e.to_string()))?;
            round_trip(TokioIo::new(tls), req, what).await?
        } else {
            round_trip(TokioIo::new(tcp), req, what).await?
        };
        let status = response.status();
        if status.is_redirection() {
            return Err(HttpError::Redirect(what.to_string()));
        }
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    HttpError::TooLarge(what.to_string())
                } else {
                    HttpError::Protocol(what.to_string(), e.to_string())
                }
            })?
            .to_bytes();
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| HttpError::NotJson(what.to_string(), e.to_string()))?
        };
        Ok(JsonResponse { status, body })
    }
}

async fn round_trip<I>(
    io: I,
    req: Request<Full<Bytes>>,
    what: &str,
) -> Result<http::Response<hyper::body::Incoming>, HttpError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| HttpError::Protocol(what.to_string(), e.to_string()))?;
    // The connection task ends with the response (one request per connection).
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
        .send_request(req)
        .await
        .map_err(|e| HttpError::Protocol(what.to_string(), e.to_string()))
}

/// The URL without its query (which may carry codes or tokens), for messages and logs.
fn redact(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or(url).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_is_fetched() {
        assert!(allowed_url("https://idp.example.com/x"));
        assert!(allowed_url("http://127.0.0.1:8080/x"));
        assert!(allowed_url("http://localhost:1/x"));
        assert!(allowed_url("http://[::1]:1/x"));
        assert!(!allowed_url("http://idp.example.com/x"));
        assert!(!allowed_url("http://10.0.0.1/x"));
        assert!(!allowed_url("ftp://idp.example.com/x"));
        assert!(!allowed_url("not a url"));
    }
}
