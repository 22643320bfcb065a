//! The upstream HTTP client: our own keep-alive pool over hyper's HTTP/1 connections, with
//! TCP_NODELAY and the configured connect timeout; the response timeout (time to first byte)
//! wraps each request. Failures become 502 (refused, unreachable, broken) or 504 (timed out)
//! with a short body.
//!
//! Why not hyper-util's legacy client: for one HTTP/1 upstream per route it paid for a boxed
//! request future, a oneshot and two pool-map lookups per request (12k of the 59k instructions
//! a proxied request cost under callgrind). Here a request takes the most recently used ready
//! connection from a short per-authority list and puts it back as soon as the response head
//! arrives. A connection is handed out again only when hyper says it is ready, which for
//! HTTP/1 means the previous response has been read to its end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

pub use crate::error::UpstreamError;
use crate::trust::ClientTls;

/// A request body going upstream: the client's, streamed (hyper's path), or one the express
/// lane read whole with its head (none at all when the request had none). One type, so both
/// paths share one pool.
#[derive(Debug)]
pub enum Outgoing {
    Streamed(Incoming),
    /// The whole body, sent as one frame; empty once sent (and for a request without one).
    Buffered(bytes::Bytes),
}

impl Outgoing {
    /// No body.
    pub const EMPTY: Outgoing = Outgoing::Buffered(bytes::Bytes::new());
}

impl http_body::Body for Outgoing {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        match self.get_mut() {
            // A client's trailers never go upstream (the response's do not come back either):
            // they would arrive after the header policy, where `X-Forwarded-User` or a cookie
            // of ours could ride along. hyper's HTTP/1 client sends none undeclared anyway;
            // this does not rely on it.
            Outgoing::Streamed(body) => {
                crate::body::end_at_trailers(std::pin::Pin::new(body).poll_frame(cx))
            }
            Outgoing::Buffered(data) if data.is_empty() => std::task::Poll::Ready(None),
            Outgoing::Buffered(data) => {
                std::task::Poll::Ready(Some(Ok(http_body::Frame::data(std::mem::take(data)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Outgoing::Streamed(body) => body.is_end_stream(),
            Outgoing::Buffered(data) => data.is_empty(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            Outgoing::Streamed(body) => body.size_hint(),
            Outgoing::Buffered(data) => http_body::SizeHint::with_exact(data.len() as u64),
        }
    }
}

/// Idle connections kept per upstream authority; more are closed when their response ends.
/// Above the requests a busy gateway has in flight at once (64 HTTP/2 clients with 10 streams
/// each are 640): at 256, such a load closed and reopened an upstream connection for ~1% of its
/// requests.
const MAX_IDLE_PER_AUTHORITY: usize = 1024;
/// A connection unused for this long is closed instead of reused (upstreams commonly drop
/// idle keep-alive connections after 60 s or more; reusing one they just dropped costs a retry).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often idle connections are looked over, so that those past [`IDLE_TIMEOUT`] are closed
/// even when no request comes to take one (after a burst, up to [`MAX_IDLE_PER_AUTHORITY`]
/// would otherwise stay open for as long as the upstream keeps them).
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// At most one warning per upstream this often for failed TLS handshakes.
const TLS_WARNING_EVERY: Duration = Duration::from_secs(10);

struct Idle {
    tx: http1::SendRequest<Outgoing>,
    since: Instant,
}

impl Idle {
    /// Closed by the upstream, or unused for longer than [`IDLE_TIMEOUT`]: not to be reused.
    fn expired(&self, now: Instant) -> bool {
        self.tx.is_closed() || now.saturating_duration_since(self.since) > IDLE_TIMEOUT
    }
}

/// Keyed by the authority's text as the route wrote it: `Authority`'s own `Hash` and `Eq` fold
/// case byte by byte, which cost ~1.3k instructions a request here.
type IdleMap = HashMap<Box<str>, Vec<Idle>, foldhash::fast::RandomState>;

/// Idle connections, plain ones and TLS ones apart (one authority may be both), and those of
/// each route with TLS settings of its own apart from all others: a connection that
/// presented a route's client certificate is never lent to another route.
#[derive(Default)]
struct Pools {
    plain: IdleMap,
    tls: IdleMap,
    /// By [`ClientTls::id`].
    own_tls: HashMap<u64, IdleMap, foldhash::fast::RandomState>,
}

impl Pools {
    fn of(&mut self, tls: Tls<'_>) -> &mut IdleMap {
        match tls {
            Tls::None => &mut self.plain,
            Tls::System => &mut self.tls,
            Tls::Own(settings) => self.own_tls.entry(settings.id).or_default(),
        }
    }
}

/// How a connection to an upstream is made.
#[derive(Debug, Clone, Copy)]
pub enum Tls<'a> {
    /// Plain HTTP.
    None,
    /// TLS checked against the system's CAs ([`crate::trust::connector`]), by the host's name.
    System,
    /// TLS as the route says (`upstream_tls:`).
    Own(&'a ClientTls),
}

/// Where a request goes: an authority, and how to connect to it.
#[derive(Debug, Clone, Copy)]
pub struct Dest<'a> {
    pub authority: &'a Authority,
    pub tls: Tls<'a>,
}

impl<'a> From<&'a Authority> for Dest<'a> {
    /// Plain HTTP.
    fn from(authority: &'a Authority) -> Dest<'a> {
        Dest {
            authority,
            tls: Tls::None,
        }
    }
}

impl<'a> From<&'a crate::route::Upstream> for Dest<'a> {
    fn from(upstream: &'a crate::route::Upstream) -> Dest<'a> {
        let tls = match (&upstream.tls, upstream.scheme == Scheme::HTTPS) {
            (_, false) => Tls::None,
            (None, true) => Tls::System,
            (Some(settings), true) => Tls::Own(settings),
        };
        Dest {
            authority: &upstream.authority,
            tls,
        }
    }
}

#[derive(Clone)]
pub struct UpstreamClient {
    idle: Arc<Mutex<Pools>>,
    /// When each upstream's failed TLS handshake was last logged as a warning.
    tls_warned: Arc<Mutex<HashMap<Box<str>, Instant, foldhash::fast::RandomState>>>,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl UpstreamClient {
    /// Inside a tokio runtime, also starts the sweep that closes expired idle connections; it
    /// ends with the last clone of the client.
    pub fn new(connect_timeout: Duration, response_timeout: Duration) -> UpstreamClient {
        let client = UpstreamClient {
            idle: Arc::new(Mutex::new(Pools::default())),
            tls_warned: Arc::default(),
            connect_timeout,
            response_timeout,
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let idle = Arc::downgrade(&client.idle);
            runtime.spawn(async move {
                let mut every = tokio::time::interval(SWEEP_EVERY);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    let Some(idle) = idle.upgrade() else { break };
                    sweep(&idle, Instant::now());
                }
            });
        }
        client
    }

    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// Sends `req` (origin-form target, `Host` set) to `dest` over HTTP/1.1.
    pub async fn send(
        &self,
        dest: impl Into<Dest<'_>>,
        mut req: Request<Outgoing>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let dest = dest.into();
        let authority = dest.authority;
        if !req.headers().contains_key(http::header::HOST) {
            if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                req.headers_mut().insert(http::header::HOST, host);
            }
        }
        let upgrading = req.headers().contains_key(http::header::UPGRADE);
        // Boxed, as the legacy client boxed its own: inline, the exchange and its timer would
        // add ~900 bytes to the request future that hyper moves on every request. The exchange
        // is pinned where it is made and timed through the pin: moved into the timer by value
        // it was copied several times per request.
        Box::pin(async move {
            let exchange = std::pin::pin!(async {
                loop {
                    let (mut tx, reused) = match self.checkout(dest) {
                        Some(tx) => (tx, true),
                        // Boxed: a new connection (TCP, maybe TLS) is rare next to a pooled
                        // one, and inline its future would be moved with every request's.
                        None => (Box::pin(self.connect(dest)).await?, false),
                    };
                    match tx.try_send_request(req).await {
                        Ok(resp) => {
                            if !upgrading && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
                                self.checkin(dest, tx);
                            }
                            return Ok(resp);
                        }
                        Err(mut e) => match e.take_message() {
                            // A pooled connection the upstream closed before our request was
                            // written: safe to send again, on another connection. Each retry
                            // uses up one pooled connection, then a fresh one ends the loop.
                            Some(back) if reused => req = back,
                            _ => return Err(UpstreamError::Broken(e.into_error())),
                        },
                    }
                }
            });
            match tokio::time::timeout(self.response_timeout, exchange).await {
                Err(_) => Err(UpstreamError::Timeout),
                Ok(result) => result,
            }
        })
        .await
    }

    /// The most recently used ready connection to `authority`, dropping closed or stale ones.
    /// Connections still reading a response stay listed for later.
    fn checkout(&self, dest: Dest<'_>) -> Option<http1::SendRequest<Outgoing>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = match dest.tls {
            // No entry made for a lookup.
            Tls::Own(settings) => idle.own_tls.get_mut(&settings.id)?,
            tls => idle.of(tls),
        }
        .get_mut(dest.authority.as_str())?;
        let now = Instant::now();
        let mut i = list.len();
        while i > 0 {
            i -= 1;
            let entry = &list[i];
            if entry.expired(now) {
                list.swap_remove(i);
            } else if entry.tx.is_ready() {
                return Some(list.swap_remove(i).tx);
            }
        }
        None
    }

    fn checkin(&self, dest: Dest<'_>, tx: http1::SendRequest<Outgoing>) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let idle = idle.of(dest.tls);
        let authority = dest.authority.as_str();
        let list = match idle.get_mut(authority) {
            Some(list) => list,
            None => idle.entry(authority.into()).or_default(),
        };
        if list.len() < MAX_IDLE_PER_AUTHORITY {
            list.push(Idle {
                tx,
                since: Instant::now(),
            });
        }
        // Otherwise dropping `tx` lets the connection finish its response, then close.
    }

    /// A TLS handshake with an upstream failed (a certificate the gateway cannot check, most
    /// often): a warning with the reason, at most one per upstream every
    /// [`TLS_WARNING_EVERY`] (each request would otherwise log its own), the rest at `debug`.
    fn tls_failed(&self, authority: &Authority, e: &std::io::Error) {
        let now = Instant::now();
        let mut warned = self
            .tls_warned
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let due = warned
            .get(authority.as_str())
            .is_none_or(|last| now.saturating_duration_since(*last) >= TLS_WARNING_EVERY);
        if due {
            warned.insert(authority.as_str().into(), now);
            tracing::warn!(upstream = %authority, error = %e, "TLS to the upstream failed; no request was sent (502)");
        } else {
            tracing::debug!(upstream = %authority, error = %e, "TLS to the upstream failed");
        }
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.plain
            .values()
            .chain(idle.tls.values())
            .chain(idle.own_tls.values().flat_map(|m| m.values()))
            .map(Vec::len)
            .sum()
    }

    /// A new connection to `dest`: TCP, then TLS for an `https://` upstream (both within
    /// the connect timeout), then hyper's HTTP/1 handshake; hyper's task drives it from then on.
    async fn connect(&self, dest: Dest<'_>) -> Result<http1::SendRequest<Outgoing>, UpstreamError> {
        let authority = dest.authority;
        let port = authority.port_u16().unwrap_or(match dest.tls {
            Tls::None => 80,
            Tls::System | Tls::Own(_) => 443,
        });
        let host = authority.host();
        let addr = format!("{host}:{port}");
        let open = async {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let own = match dest.tls {
                Tls::None => return Ok::<_, std::io::Error>(Stream::Plain(stream)),
                Tls::System => None,
                Tls::Own(settings) => Some(settings),
            };
            // The name the certificate must carry: the route's `server_name`, or the host, a
            // DNS name or an IP address (`[::1]` without its brackets).
            let name = match own.and_then(|s| s.server_name.clone()) {
                Some(name) => name,
                None => {
                    let bare = host.trim_start_matches('[').trim_end_matches(']');
                    rustls_pki_types::ServerName::try_from(bare.to_string())
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?
                }
            };
            let tls = match own {
                Some(settings) => settings.connector.clone(),
                None => crate::trust::connector()
                    .await
                    .ok_or_else(|| std::io::Error::other("TLS is unavailable"))?,
            };
            match tls.connect(name, stream).await {
                Ok(stream) => Ok(Stream::Tls(Box::new(stream))),
                Err(e) => {
                    self.tls_failed(authority, &e);
                    Err(e)
                }
            }
        };
        let stream = match tokio::time::timeout(self.connect_timeout, open).await {
            Err(_) => return Err(UpstreamError::Timeout),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(UpstreamError::Timeout)
            }
            Ok(Err(e)) => return Err(UpstreamError::Unreachable(e)),
            Ok(Ok(stream)) => stream,
        };
        match stream {
            Stream::Plain(s) => handshake(TokioIo::new(s)).await,
            Stream::Tls(s) => handshake(TokioIo::new(*s)).await,
        }
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// hyper's HTTP/1 handshake on a connected stream; the connection runs in a task of its own.
async fn handshake<IO>(io: IO) -> Result<http1::SendRequest<Outgoing>, UpstreamError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (tx, conn) = http1::handshake(io).await.map_err(UpstreamError::Broken)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(tx)
}

/// Drops the idle connections that are closed or were last used more than [`IDLE_TIMEOUT`]
/// before `now` (hyper's task for each then closes it); returns how many.
fn sweep(idle: &Mutex<Pools>, now: Instant) -> usize {
    let mut idle = idle.lock().unwrap_or_else(PoisonError::into_inner);
    let Pools {
        plain,
        tls,
        own_tls,
    } = &mut *idle;
    let mut dropped = 0;
    let mut sweep_map = |map: &mut IdleMap| {
        map.retain(|_, list| {
            let before = list.len();
            list.retain(|entry| !entry.expired(now));
            dropped += before - list.len();
            !list.is_empty()
        });
    };
    sweep_map(plain);
    sweep_map(tls);
    // A route's pool ends with its last connection (a reload makes new ids).
    own_tls.retain(|_, map| {
        sweep_map(map);
        !map.is_empty()
    });
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// The first connection to `listener`, with its first request head read.
    async fn accept_one_request(listener: &TcpListener) -> TcpStream {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            assert_eq!(stream.read(&mut byte).await.unwrap(), 1);
            head.push(byte[0]);
        }
        stream
    }

    #[tokio::test]
    async fn a_connection_idle_past_the_timeout_is_closed_without_a_request_to_take_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        // Answers one request, then reports when the connection is closed.
        let upstream = tokio::spawn(async move {
            let mut stream = accept_one_request(&listener).await;
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
                .unwrap();
            let mut rest = [0u8; 64];
            stream.read(&mut rest).await.unwrap_or(0)
        });
        let client = UpstreamClient::new(Duration::from_secs(5), Duration::from_secs(5));
        let resp = client
            .send(&authority, Request::get("/").body(Outgoing::EMPTY).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
        assert_eq!(client.idle_count(), 1);

        // Not yet expired: kept.
        assert_eq!(sweep(&client.idle, Instant::now()), 0);
        assert_eq!(client.idle_count(), 1);
        // Expired: dropped from the pool, and the upstream sees the connection end.
        let later = Instant::now() + IDLE_TIMEOUT + Duration::from_secs(1);
        assert_eq!(sweep(&client.idle, later), 1);
        assert_eq!(client.idle_count(), 0);
        let read = tokio::time::timeout(Duration::from_secs(5), upstream)
            .await
            .expect("the expired connection was not closed")
            .unwrap();
        assert_eq!(read, 0, "the upstream read more bytes instead of the end");
    }

    #[tokio::test]
    async fn a_response_still_streaming_when_its_connection_expires_is_delivered_whole() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let (go_on, resume) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let mut stream = accept_one_request(&listener).await;
            let start = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n";
            stream.write_all(start).await.unwrap();
            let _ = resume.await;
            stream.write_all(b"4\r\nlast\r\n0\r\n\r\n").await.unwrap();
        });
        let client = UpstreamClient::new(Duration::from_secs(5), Duration::from_secs(5));
        let resp = client
            .send(&authority, Request::get("/").body(Outgoing::EMPTY).unwrap())
            .await
            .unwrap();
        let mut body = resp.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "first");

        // The connection went back to the pool with its head; expiring it mid-body must not
        // cut the response short.
        let later = Instant::now() + IDLE_TIMEOUT + Duration::from_secs(1);
        assert_eq!(sweep(&client.idle, later), 1);
        go_on.send(()).unwrap();
        let rest = tokio::time::timeout(Duration::from_secs(5), body.collect())
            .await
            .expect("the rest of the body never came")
            .unwrap()
            .to_bytes();
        assert_eq!(rest, "last");
    }
}
