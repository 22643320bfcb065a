//! The upstream HTTP client: a pooled hyper client with TCP_NODELAY and the configured
//! connect timeout; the response timeout (time to first byte) wraps each request. Failures
//! become 502 (refused, unreachable, broken) or 504 (timed out) with a short body.

use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::body::{full, Body};

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the upstream refused or could not be reached")]
    Unreachable(#[source] hyper_util::client::legacy::Error),
    #[error("the upstream did not answer in time")]
    Timeout,
    #[error("the upstream connection failed")]
    Broken(#[source] hyper_util::client::legacy::Error),
    #[error("the upstream switched protocols without being asked to")]
    UnexpectedUpgrade,
}

impl UpstreamError {
    /// The metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Unreachable(_) => "connect",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Broken(_) | UpstreamError::UnexpectedUpgrade => "protocol",
        }
    }

    pub fn response(&self) -> Response<Body> {
        let (status, body) = match self {
            UpstreamError::Timeout => (StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n"),
            UpstreamError::Unreachable(_)
            | UpstreamError::Broken(_)
            | UpstreamError::UnexpectedUpgrade => {
                (StatusCode::BAD_GATEWAY, "upstream unavailable\n")
            }
        };
        let mut r = Response::new(full(body));
        *r.status_mut() = status;
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    }
}

fn is_timeout(err: &hyper_util::client::legacy::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = e.source();
    }
    false
}

#[derive(Clone)]
pub struct UpstreamClient {
    client: Client<HttpConnector, Incoming>,
    response_timeout: Duration,
}

impl UpstreamClient {
    pub fn new(connect_timeout: Duration, response_timeout: Duration) -> UpstreamClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build(connector);
        UpstreamClient {
            client,
            response_timeout,
        }
    }

    pub async fn send(&self, req: Request<Incoming>) -> Result<Response<Incoming>, UpstreamError> {
        match tokio::time::timeout(self.response_timeout, self.client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) if is_timeout(&e) => Err(UpstreamError::Timeout),
            Ok(Err(e)) if e.is_connect() => Err(UpstreamError::Unreachable(e)),
            Ok(Err(e)) => Err(UpstreamError::Broken(e)),
        }
    }
}
