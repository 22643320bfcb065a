//! The express lane: an HTTP/1.1 request loop of our own for the requests that make a
//! gateway's traffic — requests to the apps, without a body or with a small one that arrived
//! with its head — and hyper's server for everything else.
//!
//! Each plain-HTTP connection, and each TLS one without HTTP/2, starts here unless it is
//! switched off: `server.express_lane: false`, or `GATEHOUSE_EXPRESS_LANE=0` (read with the
//! config; see [`crate::config::express_lane_allowed`]), or [`Gateway::set_express_lane`]. A
//! request head is parsed in place with httparse; the lane answers it when the head is plain
//! and names no page of the gateway's own, and otherwise hands the connection, with the bytes
//! it has read and not used, to hyper for the rest of its life — before it has written a byte
//! for that request:
//!
//! - the head: `GET`, `HEAD`, `POST`, `PUT`, `PATCH`, `DELETE` or `OPTIONS`, HTTP/1.1, an
//!   origin-form target without `#`, exactly one `Host`, no header that frames a body other
//!   than by one `Content-Length` or changes the connection (`Transfer-Encoding`,
//!   `Connection`, `Upgrade`, `Expect`, `TE`, `Trailer`, `Keep-Alive`, `Proxy-Connection`,
//!   `HTTP2-Settings`), at most 64 headers, within the size limit;
//! - the body: none, or one `Content-Length` of at most 64 KiB written as plain digits, whose
//!   bytes are all there when the head is (read with it, or by one more read that is ready at
//!   once) — the lane never waits for a body, which hyper's path would already be streaming
//!   upstream; it sends the body upstream in one piece, through the same client;
//! - the path: not under the gateway's prefix (`/.gatehouse/…`: login, refresh, forward-auth
//!   and the rest are hyper's).
//!
//! What the lane does *not* have is a decision, an upstream side or a header policy of its
//! own: the request goes through [`proxy`] — the sequence hyper's path runs for every request
//! to an app: the one decision, the transparent refresh, refusals and login redirects, the same
//! header rewrite, the same pooled hyper HTTP/1 client (whose connections are watched while
//! idle), the same response policy — and ends in [`finish`]. The lane only writes the response
//! head and body onto the client connection, with the framing hyper's server would choose (see
//! [`write_response`]).
//!
//! Timers are those of hyper's path: the whole head within `min(header_read_timeout,
//! idle_timeout)` of the wait starting (then the connection closes, as hyper's does), the
//! upstream client's own connect and response timeouts, and the stream's write-stall timer.
//! On shutdown a connection waiting for a request closes and one serving a request closes
//! after it.

use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::Instrument;

use crate::canonicalize::under_prefix;
use crate::decision::canonical_request;
use crate::forward::client::Outgoing;
use crate::forward::headers::ADDED_UPSTREAM;
use crate::gateway::{finish, proxy, request_span};
use crate::runtime::{request_ctx, Conn, Gateway};

mod write;
use write::write_response;

/// Headers the lane parses in place; a head with more goes to hyper (which takes 100).
const MAX_HEADERS: usize = 64;

/// How a connection left the lane.
pub(crate) enum Ended {
    /// Closed (by either side, a timer or shutdown): nothing more to do.
    Closed,
    /// The next request is not the lane's: hyper serves the connection from these bytes on —
    /// as HTTP/1 only once the lane has answered a request on it (hyper's HTTP/1–HTTP/2
    /// detection belongs to a connection's first bytes: an HTTP/2 preface after HTTP/1
    /// requests is an HTTP/1 request hyper refuses, with the lane as without it).
    HandOff { rest: BytesMut, answered: bool },
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// The whole next request head must arrive within this.
    pub wait_for_request: Duration,
    /// The most bytes a request head may take (hyper answers larger ones).
    pub max_head: usize,
}

/// Serves HTTP/1.1 requests on `io` until one is not the lane's (handed off with the unread
/// bytes) or the connection ends.
pub(crate) async fn serve<IO>(
    gw: &Arc<Gateway>,
    io: &mut IO,
    conn: Conn,
    settings: Settings,
    close: &mut oneshot::Receiver<()>,
) -> Ended
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut inbuf = BytesMut::with_capacity(8192);
    let mut out: Vec<u8> = Vec::with_capacity(8192);
    let deadline = tokio::time::sleep(settings.wait_for_request);
    tokio::pin!(deadline);
    let mut first = true;
    let mut answered = false;
    loop {
        if !first {
            deadline
                .as_mut()
                .reset(Instant::now() + settings.wait_for_request);
        }
        first = false;
        // Read until a whole head is there.
        let (head, head_len) = loop {
            if !inbuf.is_empty() {
                match parse(&inbuf, settings.max_head) {
                    Parsed::Head(head, n) => break (head, n),
                    Parsed::HandOff => {
                        return Ended::HandOff {
                            rest: inbuf,
                            answered,
                        }
                    }
                    Parsed::Partial => {}
                }
            }
            inbuf.reserve(4096);
            tokio::select! {
                biased;
                read = io.read_buf(&mut inbuf) => match read {
                    Ok(0) | Err(_) => return Ended::Closed,
                    Ok(_) => {}
                },
                () = &mut deadline => return Ended::Closed,
                _ = &mut *close => return Ended::Closed,
            }
        };
        // A body is the lane's only when all of it came with its head (one more read that is
        // ready at once may complete it): waiting for the rest would hold the request back
        // from the upstream, which hyper's path streams to at once.
        let whole = head_len + head.body_len;
        if inbuf.len() < whole {
            inbuf.reserve(whole - inbuf.len());
            let _ = io.read_buf(&mut inbuf).now_or_never();
            if inbuf.len() < whole {
                return Ended::HandOff {
                    rest: inbuf,
                    answered,
                };
            }
        }
        let body = &inbuf[head_len..whole];
        // Pinned where it is made: awaited by value, the request's future (~3 KB) was copied
        // twice per request.
        let served = {
            let served = std::pin::pin!(serve_one(gw, io, conn, head, body, &mut out));
            served.await
        };
        match served {
            Served::Answered => {
                inbuf.advance(whole);
                answered = true;
            }
            Served::NotOurs => {
                return Ended::HandOff {
                    rest: inbuf,
                    answered,
                }
            }
            Served::Broken => return Ended::Closed,
        }
        // Shutdown or HTTP/2 idleness (never here) asked to close: the request is done.
        if !matches!(close.try_recv(), Err(oneshot::error::TryRecvError::Empty)) {
            return Ended::Closed;
        }
    }
}

/// A request head as hyper's server would hand it to the gateway.
struct Head {
    method: Method,
    uri: http::Uri,
    headers: HeaderMap,
    /// The body's length from its one `Content-Length` (0 without one).
    body_len: usize,
}

enum Parsed {
    Partial,
    HandOff,
    Head(Box<Head>, usize),
}

/// The longest body the lane reads with its head; a longer one streams through hyper's path.
const MAX_BODY: usize = 64 * 1024;

/// Headers that make a request not the lane's: they frame a body in a way other than one
/// `Content-Length`, or change the connection. Compared in any case.
const REFUSED: [&str; 9] = [
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "http2-settings",
];

/// Parses the head at the start of `buf` into what hyper's server would build from it, when
/// the head is one the lane serves.
fn parse(buf: &[u8], max_head: usize) -> Parsed {
    // Left uninitialized: filling 64 empty headers per request costs more than parsing them.
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) if n <= max_head => n,
        Ok(httparse::Status::Partial) if buf.len() < max_head => return Parsed::Partial,
        _ => return Parsed::HandOff,
    };
    match head(&req) {
        Some(head) => Parsed::Head(Box::new(head), head_len),
        None => Parsed::HandOff,
    }
}

fn head(req: &httparse::Request<'_, '_>) -> Option<Head> {
    let method = match req.method? {
        "GET" => Method::GET,
        "HEAD" => Method::HEAD,
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        "DELETE" => Method::DELETE,
        "OPTIONS" => Method::OPTIONS,
        _ => return None,
    };
    let target = req.path?;
    if req.version != Some(1) || !target.starts_with('/') || target.contains('#') {
        return None;
    }
    let uri = http::Uri::try_from(target).ok()?;
    let mut headers = HeaderMap::with_capacity(req.headers.len() + ADDED_UPSTREAM);
    let mut hosts = 0;
    let mut body_len = None;
    for h in req.headers.iter() {
        if REFUSED.iter().any(|r| h.name.eq_ignore_ascii_case(r)) {
            return None;
        }
        hosts += usize::from(h.name.eq_ignore_ascii_case("host"));
        if h.name.eq_ignore_ascii_case("content-length") {
            // Exactly one, digits only, short: anything else (a list, a repeat, a sign, a
            // huge value) is for hyper's rules to judge.
            if body_len.is_some() {
                return None;
            }
            body_len = Some(content_length(h.value)?);
        }
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        headers.append(name, value);
    }
    (hosts == 1).then_some(Head {
        method,
        uri,
        headers,
        body_len: body_len.unwrap_or(0),
    })
}

/// A `Content-Length` value the lane takes: 1 to 5 ASCII digits, at most [`MAX_BODY`].
fn content_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || value.len() > 5 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = value
        .iter()
        .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
    (n <= MAX_BODY).then_some(n)
}

enum Served {
    /// Answered; the connection can take the next request.
    Answered,
    /// Not the lane's: nothing was written, hyper takes the connection from this request on.
    NotOurs,
    /// The client connection must close (it failed, a body could not be relayed whole, or the
    /// answer said `Connection: close`).
    Broken,
}

/// Serves one request to an app through hyper's path's own sequence ([`proxy`]: the decision,
/// a transparent refresh, forwarding, or the refusal) and writes the answer. Requests to the
/// gateway's own pages are hyper's.
async fn serve_one<IO>(
    gw: &Arc<Gateway>,
    io: &mut IO,
    conn: Conn,
    head: Box<Head>,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Served
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let started = std::time::Instant::now();
    let config = gw.config();
    let canon = canonical_request(&head.uri, &head.headers, http::Version::HTTP_11);
    if canon
        .as_ref()
        .is_ok_and(|canon| under_prefix(canon.path(), &config.auth_prefix))
    {
        return Served::NotOurs;
    }
    // From here on the lane answers this request, whatever the decision.
    gw.lane_served
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let ctx = request_ctx(&config, &head.method, head.uri.path(), &head.headers, conn);
    let span = request_span(&ctx, &head.method);
    let is_head = head.method == Method::HEAD;
    let method = head.method.clone();
    let Head {
        method: m,
        uri,
        headers,
        ..
    } = *head;
    let mut req = Request::new(Outgoing::Buffered(Bytes::copy_from_slice(body)));
    *req.method_mut() = m;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    // Pinned where it is made, then wrapped in the span (see `gateway::handle`).
    let work = std::pin::pin!(async {
        match canon {
            Ok(canon) => proxy(gw, &config, &canon, req, &ctx).await,
            Err(e) => Err(e.into()),
        }
    });
    let result = work.instrument(span.clone()).await;
    let response = finish(gw, &config, &ctx, &method, result, started, &span);
    match write_response(io, response, is_head, out).await {
        Ok(true) => Served::Answered,
        Ok(false) | Err(_) => Served::Broken,
    }
}

/// A stream that yields `prefix` before reading from `io`: how hyper gets a connection the
/// lane has already read from.
pub(crate) struct Prefixed<IO> {
    prefix: bytes::Bytes,
    io: IO,
}

impl<IO> Prefixed<IO> {
    pub(crate) fn new(prefix: BytesMut, io: IO) -> Self {
        Self {
            prefix: prefix.freeze(),
            io,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            // And whatever the socket already holds, as one direct read would have given it:
            // hyper decides some things (draining an unread body) on what one read brought,
            // and must see the same bytes whether or not the lane read the head first. An
            // error or the end of the stream shows at the next read.
            if this.prefix.is_empty() && buf.remaining() > 0 {
                let _ = std::pin::Pin::new(&mut this.io).poll_read(cx, buf);
            }
            return Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
