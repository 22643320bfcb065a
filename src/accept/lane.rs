//! The express lane: an HTTP/1.1 loop of our own for the requests that dominate a gateway's
//! traffic — a plain `GET`/`HEAD` with a valid access cookie to an authorized route — and
//! hyper for everything else.
//!
//! Each plain-HTTP connection starts here (unless it is switched off: [`Gateway::set_express_lane`],
//! which the binary, the demo and the test harness call with `false` when [`ENV`] is `0`). A
//! request head is read and parsed in place; the lane forwards it only when *every* check
//! below says so, and otherwise hands the connection, with the bytes it has read and not
//! used, to hyper for the rest of its life — before it has written a byte for that request:
//!
//! - the head: `GET` or `HEAD`, HTTP/1.1, an origin-form target without `#`, exactly one
//!   `Host`, no header that frames a body or changes the connection (`Content-Length`,
//!   `Transfer-Encoding`, `Connection`, `Upgrade`, `Expect`, `TE`, `Trailer`, `Keep-Alive`,
//!   `Proxy-Connection`, `HTTP2-Settings`), no `Proxy-Authorization`, at most one
//!   `Authorization`, at most 64 headers, the whole head within the size limit;
//! - the decision, made by the same functions hyper's path calls: canonicalization passes,
//!   the path is not under the gateway's own prefix, a route matches and is not public, the
//!   credential verifies and its session is not revoked — the `Authorization: Bearer` token
//!   when there is an `Authorization` header (hyper's path tries it first), else the access
//!   cookie — `authorize` permits, no assertion header is configured.
//!
//! So every refusal, redirect, transparent refresh, own page, upgrade, body and error response
//! keeps its single implementation in hyper's path. The request head is rewritten by
//! [`forward::prepare`], the function hyper's path uses; the response head goes through
//! [`finish`] (request id, metrics, log line). What the lane adds is HTTP/1 framing: it writes
//! the upstream head itself to a pooled keep-alive connection, reads the response head with
//! httparse and relays the body by its framing — `Content-Length` as is; chunked or
//! close-delimited bodies re-chunked (trailers and chunk extensions dropped); none for `HEAD`,
//! 1xx (skipped), 204 and 304 — with one write per response when it fits.
//!
//! Timers are those of hyper's path: the whole head within `min(header_read_timeout,
//! idle_timeout)` of the wait starting (then the connection closes, as hyper's does), the
//! upstream's connect and response timeouts (504; 502 when it cannot be reached or answers
//! garbage), and the stream's own write-stall timer. On shutdown a connection waiting for a
//! request closes and one serving a request closes after it.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::header::DATE;
use http::uri::Authority;
use http::{HeaderMap, Method, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::authenticate::credentials::CookieScan;
use crate::authenticate::credentials::{self, AccessCheck};
use crate::authenticate::{identify, reidentify, Identity};
use crate::authorize::{authorize, public};
use crate::canonicalize::{canonical_host_bytes, canonicalize_with_host, under_prefix};
use crate::config::Config;
use crate::forward;
use crate::forward::client::UpstreamError;
use crate::gateway::{
    finish, record, request_span, trusted, untrusted_request_ctx, Conn, Gateway, RequestCtx,
};

/// The environment variable that switches the lane off (`0`, `false`, `off`, `no`); it is on
/// otherwise.
pub const ENV: &str = "GATEHOUSE_EXPRESS_LANE";

/// Whether the lane should be on, given the environment: yes unless [`ENV`] says no.
pub fn wanted(env: impl Fn(&str) -> Option<String>) -> bool {
    !env(ENV).is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "0" | "false" | "off" | "no"
        )
    })
}

/// Headers the lane parses in place; a head with more goes to hyper (which takes 100).
const MAX_HEADERS: usize = 64;
/// Body bytes relayed per read.
const RELAY_CHUNK: usize = 64 * 1024;

/// How a connection left the lane.
pub(crate) enum Ended {
    /// Closed (by either side, a timer or shutdown): nothing more to do.
    Closed,
    /// The next request is not the lane's: hyper serves the connection from these bytes on.
    HandOff(BytesMut),
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
    let mut held = None;
    let ended = serve_requests(gw, io, conn, settings, close, &mut held).await;
    // The upstream connection this one kept for its next request goes back to the pool.
    if let Some(Held {
        authority,
        stream,
        since,
    }) = held
    {
        gw.lane_pool.checkin(&authority, stream, since);
    }
    ended
}

/// The upstream connection a client connection's last request used, kept for its next one:
/// a pool round trip less per request while the client keeps sending.
struct Held {
    authority: Authority,
    stream: TcpStream,
    since: Instant,
}

async fn serve_requests<IO>(
    gw: &Arc<Gateway>,
    io: &mut IO,
    conn: Conn,
    settings: Settings,
    close: &mut oneshot::Receiver<()>,
    held: &mut Option<Held>,
) -> Ended
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut inbuf = BytesMut::with_capacity(8192);
    let mut upbuf = BytesMut::with_capacity(8192);
    let mut out: Vec<u8> = Vec::with_capacity(8192);
    let mut headbuf: Vec<u8> = Vec::with_capacity(1024);
    let mut memo = Memo::default();
    // Two timers, each only ever pushed later while the client keeps sending: tokio extends a
    // registered timer in place then, where moving one earlier re-files it in the wheel.
    let deadline = tokio::time::sleep(settings.wait_for_request);
    tokio::pin!(deadline);
    let answer_by = tokio::time::sleep(gw.client.response_timeout());
    tokio::pin!(answer_by);
    let mut first = true;
    loop {
        if !first {
            deadline
                .as_mut()
                .reset(Instant::now() + settings.wait_for_request);
        }
        first = false;
        // Read until a whole head is there and decide on it.
        let plan = loop {
            if !inbuf.is_empty() {
                match plan(gw, &inbuf, conn, settings.max_head, &mut out, &mut memo) {
                    Step::Go(plan) => break plan,
                    Step::HandOff => return Ended::HandOff(inbuf),
                    Step::Partial => {}
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
        inbuf.advance(plan.head_len);
        let bufs = Buffers {
            upbuf: &mut upbuf,
            out: &mut out,
            headbuf: &mut headbuf,
        };
        match relay(gw, io, plan, bufs, answer_by.as_mut(), held).await {
            Ok(()) => {}
            Err(_) => return Ended::Closed,
        }
        // Shutdown or HTTP/2 idleness (never here) asked to close: the request is done.
        if !matches!(close.try_recv(), Err(oneshot::error::TryRecvError::Empty)) {
            return Ended::Closed;
        }
    }
}

/// A request the lane forwards.
struct Plan {
    config: Arc<Config>,
    ctx: RequestCtx,
    span: tracing::Span,
    method: Method,
    authority: Authority,
    started: std::time::Instant,
    head_len: usize,
}

enum Step {
    Partial,
    HandOff,
    Go(Box<Plan>),
}

/// Headers that make a request not the lane's: they frame a body, change the connection or
/// carry credentials the lane leaves to hyper's path. Compared in any case.
/// (`Authorization` is the lane's only as one bearer token that verifies: see [`decide`].)
const REFUSED: [&str; 12] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "http2-settings",
    "proxy-authorization",
    "proxy-authenticate",
];

fn refused_header(name: &str) -> bool {
    REFUSED.iter().any(|r| name.eq_ignore_ascii_case(r))
}

/// Parses the head at the start of `buf` and, when the lane takes it, writes the upstream
/// request head into `out`.
/// What this connection's last request had, reused when the next repeats it byte for byte:
/// a client sends the same `Host` and `Cookie` on every request of a connection.
#[derive(Default)]
struct Memo {
    host_raw: Vec<u8>,
    host: String,
    known: Option<Known>,
}

/// The identity a `Cookie` header's bytes gave under one config snapshot.
struct Known {
    cookie: Vec<u8>,
    config: Arc<Config>,
    seen: CookieScan<'static>,
    identity: Identity,
}

impl Memo {
    /// The request's cookie facts and identity. A lone `Cookie` header identical to the last
    /// request's, under the same config snapshot, carries the same verified token: only the
    /// clock window and revocation are checked again (`reidentify`). Anything else takes the
    /// full path: one scan, then `identify`.
    fn identify(
        &mut self,
        gw: &Gateway,
        config: &Arc<Config>,
        headers: &[httparse::Header<'_>],
        now: u64,
    ) -> Option<(CookieScan<'static>, Identity)> {
        let values = || {
            headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
                .map(|h| h.value)
        };
        let mut all = values();
        let single = match (all.next(), all.next()) {
            (Some(value), None) => Some(value),
            _ => None,
        };
        if let (Some(value), Some(known)) = (single, &self.known) {
            if known.cookie == value && Arc::ptr_eq(&known.config, config) {
                let identity = reidentify(&config.tokens, &gw.store, &known.identity, now).ok()?;
                return Some((known.seen, identity));
            }
        }
        // The token's shape is checked by `verify` on a cache miss; a second copy of the
        // access cookie (which copy counts depends on that check) is left to hyper's path.
        let seen =
            credentials::scan_cookies_with(values(), &config.cookies, AccessCheck::Unchecked);
        if seen.access_copies != 1 {
            return None;
        }
        let identity = identify(&config.tokens, &gw.store, seen.creds.access_cookie?, now).ok()?;
        let seen = seen.facts();
        if let Some(value) = single {
            let mut cookie = self.known.take().map(|k| k.cookie).unwrap_or_default();
            cookie.clear();
            cookie.extend_from_slice(value);
            self.known = Some(Known {
                cookie,
                config: config.clone(),
                seen,
                identity: identity.clone(),
            });
        }
        Some((seen, identity))
    }

    /// [`canonical_host_bytes`] of `raw`.
    fn host(&mut self, raw: &[u8]) -> Option<String> {
        if self.host_raw != raw || self.host.is_empty() {
            self.host = canonical_host_bytes(raw).ok()?;
            self.host_raw.clear();
            self.host_raw.extend_from_slice(raw);
        }
        Some(self.host.clone())
    }
}

fn plan(
    gw: &Gateway,
    buf: &[u8],
    conn: Conn,
    max_head: usize,
    out: &mut Vec<u8>,
    memo: &mut Memo,
) -> Step {
    // Left uninitialized: filling 64 empty headers per request costs more than parsing them.
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) if n <= max_head => n,
        Ok(httparse::Status::Partial) if buf.len() < max_head => return Step::Partial,
        _ => return Step::HandOff,
    };
    match decide(gw, &req, conn, out, memo) {
        Some(mut plan) => {
            plan.head_len = head_len;
            Step::Go(plan)
        }
        None => Step::HandOff,
    }
}

/// The path and query of an origin-form target as hyper reads them (`http::Uri`). A target of
/// plain URI characters is split where it stands; anything else goes through `http::Uri`,
/// which copies it.
fn split_target(target: &str) -> Option<(&str, Option<&str>)> {
    // Every byte here is one `http::Uri` takes as it is, in a path and in a query.
    let plain = |b: u8| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
                    | b'%'
                    | b'?'
            )
    };
    if target.starts_with('/') && target.len() < 4096 && target.bytes().all(plain) {
        return Some(match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        });
    }
    let uri = http::Uri::try_from(target).ok()?;
    let path_and_query = uri.path_and_query()?;
    // `uri` owns its copy; the caller borrows from `target`, so find the same text there.
    let path = path_and_query.path();
    let query = path_and_query.query();
    let path = target.get(..path.len()).filter(|p| *p == path)?;
    let query = match query {
        Some(q) => Some(
            target
                .get(path.len() + 1..path.len() + 1 + q.len())
                .filter(|t| *t == q)?,
        ),
        None => None,
    };
    Some((path, query))
}

fn decide(
    gw: &Gateway,
    req: &httparse::Request<'_, '_>,
    conn: Conn,
    out: &mut Vec<u8>,
    memo: &mut Memo,
) -> Option<Box<Plan>> {
    let started = std::time::Instant::now();
    let method = match req.method? {
        "GET" => Method::GET,
        "HEAD" => Method::HEAD,
        _ => return None,
    };
    let target = req.path?;
    if req.version != Some(1) || !target.starts_with('/') || target.contains('#') {
        return None;
    }
    let mut host = None;
    let mut request_id = None;
    let mut authorization = None;
    for h in req.headers.iter() {
        if refused_header(h.name) {
            return None;
        }
        if h.name.eq_ignore_ascii_case("authorization") {
            if authorization.replace(h.value).is_some() {
                return None;
            }
        } else if h.name.eq_ignore_ascii_case("host") {
            if host.replace(h.value).is_some() {
                return None;
            }
        } else if request_id.is_none() && h.name.eq_ignore_ascii_case("x-request-id") {
            request_id = Some(h.value);
        }
    }
    let (path, query) = split_target(target)?;
    let canon = canonicalize_with_host(memo.host(host?)?, path, query).ok()?;
    let config = gw.config();
    if under_prefix(canon.path(), &config.auth_prefix) || config.identity.assertion.is_some() {
        return None;
    }
    let matched = config.routes.lookup(&canon, &method)?;
    let route = matched.route;
    if public(&matched).is_some()
        || route.upstream.scheme != http::uri::Scheme::HTTP
        || trusted(&config, conn.peer.ip())
    {
        return None;
    }
    let ctx = untrusted_request_ctx(conn, request_id);
    let (cookies, identity) = match authorization {
        // Hyper's path tries the bearer token first and forwards with it when it verifies (a
        // verified token is ours: `typ: at+jwt`, which forwarding drops); any other
        // `Authorization` — not a bearer, or one that fails and leaves the cookie to decide
        // or a 401 to answer — is hyper's path's.
        Some(value) => {
            let token = credentials::bearer_value(value)?;
            let identity = identify(&config.tokens, &gw.store, token, ctx.now).ok()?;
            let cookies = req
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("cookie"));
            let seen = credentials::scan_cookies_with(
                cookies.map(|h| h.value),
                &config.cookies,
                AccessCheck::Unchecked,
            );
            (seen.facts(), identity)
        }
        None => memo.identify(gw, &config, req.headers, ctx.now)?,
    };
    let _permit = authorize(&matched, &identity).ok()?;
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(forward::upstream_path(route, &canon).as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    forward::headers::write_request_headers(
        out,
        req.headers,
        &config.identity,
        &config.cookies,
        &ctx.origin(),
        &identity,
        (!route.preserve_host).then(|| route.upstream.authority.as_str()),
        &cookies,
        authorization.is_some(),
    )?;
    out.extend_from_slice(b"\r\n");
    // Decided: from here on the lane answers this request.
    let span = request_span(&ctx, &method);
    span.record("route", route.name.as_str());
    span.record("user", identity.user());
    let _ = ctx.route.set(route.label.clone());
    gw.metrics.auth_decision("allowed");
    gw.lane_served
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let authority = route.upstream.authority.clone();
    Some(Box::new(Plan {
        config: config.clone(),
        ctx,
        span,
        method,
        authority,
        started,
        head_len: 0,
    }))
}

fn write_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// How an upstream response's body is delimited (RFC 9112 §6.3, as hyper's client reads it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    Close,
}

/// The upstream's response head, parsed; its status line and end-to-end headers are written
/// into the connection's head buffer.
struct UpHead {
    status: StatusCode,
    has_date: bool,
    framing: Framing,
    /// The upstream connection can carry another request after this response.
    reusable: bool,
}

/// A connection's buffers: upstream input, output, the upstream response head rewritten.
struct Buffers<'a> {
    upbuf: &'a mut BytesMut,
    out: &'a mut Vec<u8>,
    headbuf: &'a mut Vec<u8>,
}

/// Forwards the planned request (its head in `out`) and relays the answer. `deadline` is the
/// connection's upstream response timer, set here from the request's start. An error means
/// the client connection must close.
async fn relay<IO>(
    gw: &Gateway,
    io: &mut IO,
    plan: Box<Plan>,
    bufs: Buffers<'_>,
    mut deadline: std::pin::Pin<&mut tokio::time::Sleep>,
    held: &mut Option<Held>,
) -> io::Result<()>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let Buffers {
        upbuf,
        out,
        headbuf,
    } = bufs;
    let Plan {
        config,
        ctx,
        span,
        method,
        authority,
        started,
        ..
    } = *plan;
    let is_head = method == Method::HEAD;
    let pool = &gw.lane_pool;
    deadline
        .as_mut()
        .reset(Instant::from_std(started) + gw.client.response_timeout());
    let exchanged = tokio::select! {
        biased;
        exchanged = exchange(
            pool,
            held,
            &authority,
            out,
            upbuf,
            headbuf,
            is_head,
            gw.client.connect_timeout(),
        ) => exchanged,
        () = deadline.as_mut() => Err(UpstreamError::Timeout),
    };
    let (mut upstream, head) = match exchanged {
        Ok(x) => x,
        Err(e) => {
            let response = finish(gw, &config, &ctx, &method, Err(e.into()), started, &span);
            return write_whole(io, response, out).await;
        }
    };
    // The upstream's headers are already in `headbuf`; the gateway adds its request id (as
    // `finish` does: ids are generated or checked to be header-safe) and logs the request.
    span.in_scope(|| record(gw, &ctx, &method, head.status.as_u16(), started, None, None));
    out.clear();
    out.extend_from_slice(headbuf);
    out.extend_from_slice(b"x-request-id: ");
    out.extend_from_slice(ctx.request_id.as_bytes());
    out.extend_from_slice(b"\r\n");
    if !head.has_date {
        date_header(out);
    }
    let framing = head.framing;
    if matches!(framing, Framing::Chunked | Framing::Close) {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let complete = match framing {
        Framing::None => {
            io.write_all(out).await?;
            true
        }
        Framing::Length(n) => relay_sized(io, &mut upstream, upbuf, out, n).await?,
        Framing::Chunked => relay_chunked(io, &mut upstream, upbuf, out).await?,
        Framing::Close => {
            relay_until_close(io, &mut upstream, upbuf, out).await?;
            false
        }
    };
    if complete && head.reusable && upbuf.is_empty() {
        *held = Some(Held {
            authority,
            stream: upstream,
            since: Instant::now(),
        });
    }
    upbuf.clear();
    Ok(())
}

/// Writes a response the gateway made itself (an upstream error) with a sized body.
async fn write_whole<IO>(
    io: &mut IO,
    response: http::Response<crate::body::Body>,
    out: &mut Vec<u8>,
) -> io::Result<()>
where
    IO: AsyncWrite + Unpin,
{
    use http_body_util::BodyExt;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(io::Error::other)?.to_bytes();
    out.clear();
    status_line(out, parts.status, None);
    write_headers(out, &parts.headers);
    if !parts.headers.contains_key(DATE) {
        date_header(out);
    }
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&body);
    io.write_all(out).await
}

fn status_line(out: &mut Vec<u8>, status: StatusCode, reason: Option<&[u8]>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    match reason {
        Some(reason) => out.extend_from_slice(reason),
        None => out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes()),
    }
    out.extend_from_slice(b"\r\n");
}

/// `date: <IMF-fixdate>\r\n`, formatted once a second per thread (as hyper caches its own).
fn date_header(out: &mut Vec<u8>) {
    thread_local! {
        static CACHED: std::cell::RefCell<(u64, String)> =
            const { std::cell::RefCell::new((0, String::new())) };
    }
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHED.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != secs || cached.1.is_empty() {
            *cached = (secs, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(cached.1.as_bytes());
        out.extend_from_slice(b"\r\n");
    });
}

/// Sends the head in `out` on a pooled (or new) connection and reads the response head. The
/// body bytes read with it stay in `upbuf`. A pooled connection that turns out closed before
/// any byte of an answer is retried on another (GET and HEAD are safe to send again).
#[allow(clippy::too_many_arguments)]
async fn exchange(
    pool: &Pool,
    held: &mut Option<Held>,
    authority: &Authority,
    out: &[u8],
    upbuf: &mut BytesMut,
    headbuf: &mut Vec<u8>,
    is_head: bool,
    connect_timeout: Duration,
) -> Result<(TcpStream, UpHead), UpstreamError> {
    // The connection the last request used, if it went to the same upstream and has not
    // been idle long enough to need the pool's probe; otherwise it goes back to the pool.
    let mut kept = match held.take() {
        Some(h)
            if h.authority.as_str() == authority.as_str() && h.since.elapsed() <= PROBE_AFTER =>
        {
            Some(h.stream)
        }
        Some(h) => {
            pool.checkin(&h.authority, h.stream, h.since);
            None
        }
        None => None,
    };
    loop {
        upbuf.clear();
        let (mut stream, reused) = match kept.take().or_else(|| pool.checkout(authority)) {
            Some(s) => (s, true),
            None => (connect(authority, connect_timeout).await?, false),
        };
        if let Err(e) = stream.write_all(out).await {
            if reused {
                continue;
            }
            return Err(UpstreamError::Unreachable(e));
        }
        match read_response_head(&mut stream, upbuf, headbuf, is_head).await {
            Ok(head) => return Ok((stream, head)),
            Err(HeadError::ClosedEarly) if reused => continue,
            Err(HeadError::ClosedEarly) => {
                return Err(UpstreamError::Malformed(
                    "the upstream closed the connection without answering",
                ))
            }
            Err(HeadError::Io(e)) if reused && upbuf.is_empty() => {
                tracing::debug!(error = %e, "pooled upstream connection failed; retrying");
                continue;
            }
            Err(HeadError::Io(e)) => return Err(UpstreamError::Unreachable(e)),
            Err(HeadError::Malformed(why)) => return Err(UpstreamError::Malformed(why)),
        }
    }
}

async fn connect(authority: &Authority, timeout: Duration) -> Result<TcpStream, UpstreamError> {
    let port = authority.port_u16().unwrap_or(80);
    let addr = format!("{}:{port}", authority.host());
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(UpstreamError::Timeout),
        Ok(Err(e)) if e.kind() == io::ErrorKind::TimedOut => return Err(UpstreamError::Timeout),
        Ok(Err(e)) => return Err(UpstreamError::Unreachable(e)),
        Ok(Ok(stream)) => stream,
    };
    stream
        .set_nodelay(true)
        .map_err(UpstreamError::Unreachable)?;
    Ok(stream)
}

enum HeadError {
    /// The connection ended before a byte of the response.
    ClosedEarly,
    Io(io::Error),
    Malformed(&'static str),
}

/// The largest upstream response head read (hyper's client reads up to ~400 kB; upstream heads
/// larger than this are refused as malformed).
const MAX_UPSTREAM_HEAD: usize = 256 * 1024;

async fn read_response_head(
    stream: &mut TcpStream,
    upbuf: &mut BytesMut,
    headbuf: &mut Vec<u8>,
    is_head: bool,
) -> Result<UpHead, HeadError> {
    loop {
        if !upbuf.is_empty() {
            match parse_response_head(upbuf, is_head, headbuf)? {
                Parsed::Partial => {}
                // A 1xx other than 101 is informational: skipped, as hyper's client does.
                Parsed::Informational(n) => {
                    upbuf.advance(n);
                    continue;
                }
                Parsed::Head(head, n) => {
                    upbuf.advance(n);
                    return Ok(head);
                }
            }
            if upbuf.len() > MAX_UPSTREAM_HEAD {
                return Err(HeadError::Malformed(
                    "the upstream response head is too large",
                ));
            }
        }
        upbuf.reserve(8192);
        let was_empty = upbuf.is_empty();
        match stream.read_buf(upbuf).await {
            Ok(0) if was_empty => return Err(HeadError::ClosedEarly),
            Ok(0) => {
                return Err(HeadError::Malformed(
                    "the upstream response head was cut short",
                ))
            }
            Ok(_) => {}
            Err(e) => return Err(HeadError::Io(e)),
        }
    }
}

enum Parsed {
    Partial,
    Informational(usize),
    Head(UpHead, usize),
}

const MAX_UPSTREAM_HEADERS: usize = 100;

fn parse_response_head(
    buf: &[u8],
    is_head: bool,
    headbuf: &mut Vec<u8>,
) -> Result<Parsed, HeadError> {
    let malformed = |why| HeadError::Malformed(why);
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_UPSTREAM_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    let n = match config.parse_response_with_uninit_headers(&mut resp, buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(_) => return Err(malformed("the upstream sent a malformed response head")),
    };
    let code = resp.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| malformed("bad upstream status"))?;
    match code {
        101 => {
            return Err(malformed(
                "the upstream switched protocols without being asked to",
            ))
        }
        100..=199 => return Ok(Parsed::Informational(n)),
        _ => {}
    }
    let http11 = resp.version == Some(1);
    let headers: &[httparse::Header<'_>] = resp.headers;
    let named = |name: &'static str| {
        headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    // One pass for what framing needs; the rare lists are read again below.
    let (mut te, mut cl, mut connection) = (false, false, false);
    for h in headers {
        match h.name.len() {
            17 => te |= h.name.eq_ignore_ascii_case("transfer-encoding"),
            14 => cl |= h.name.eq_ignore_ascii_case("content-length"),
            10 => connection |= h.name.eq_ignore_ascii_case("connection"),
            _ => {}
        }
    }
    let framing = if is_head || code == 204 || code == 304 {
        Framing::None
    } else if te {
        if !http11 {
            return Err(malformed("HTTP/1.0 response with Transfer-Encoding"));
        }
        if last_encoding_is_chunked(named("transfer-encoding")) {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else if cl {
        Framing::Length(
            content_length(named("content-length"))
                .ok_or(malformed("bad upstream Content-Length"))?,
        )
    } else {
        Framing::Close
    };
    let says_close = connection
        && named("connection")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("close"));
    let reusable = http11 && !says_close && framing != Framing::Close;
    headbuf.clear();
    status_line(headbuf, status, Some(resp.reason.unwrap_or("").as_bytes()));
    // A re-chunked body's length is the chunks'; 204 and 304 have none (hyper's server drops
    // the header from both as well).
    let drop_length =
        matches!(framing, Framing::Chunked | Framing::Close) || code == 204 || code == 304;
    let seen = crate::forward::headers::write_response_headers(headbuf, headers, drop_length);
    Ok(Parsed::Head(
        UpHead {
            status,
            has_date: seen.has_date,
            framing,
            reusable,
        },
        n,
    ))
}

fn last_encoding_is_chunked<'a>(values: impl Iterator<Item = &'a [u8]>) -> bool {
    values
        .last()
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.rsplit(',').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"))
}

/// Every `Content-Length` value (comma lists included) must be the same number.
fn content_length<'a>(values: impl Iterator<Item = &'a [u8]>) -> Option<u64> {
    let mut length = None;
    for value in values {
        for part in value.split(|&b| b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() {
                return None;
            }
            let mut n: u64 = 0;
            for &b in part {
                if !b.is_ascii_digit() {
                    return None;
                }
                n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            }
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        }
    }
    length
}

/// Relays a `Content-Length` body: the head in `out` goes out with the body's first bytes.
/// True when the whole body was relayed.
async fn relay_sized<IO>(
    io: &mut IO,
    upstream: &mut TcpStream,
    upbuf: &mut BytesMut,
    out: &mut Vec<u8>,
    length: u64,
) -> io::Result<bool>
where
    IO: AsyncWrite + Unpin,
{
    let mut left = length;
    let take = usize::try_from(left).unwrap_or(usize::MAX).min(upbuf.len());
    out.extend_from_slice(&upbuf[..take]);
    upbuf.advance(take);
    left -= take as u64;
    io.write_all(out).await?;
    while left > 0 {
        upbuf.clear();
        upbuf.reserve(RELAY_CHUNK);
        let n = upstream.read_buf(upbuf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the upstream body ended early",
            ));
        }
        let take = usize::try_from(left).unwrap_or(usize::MAX).min(upbuf.len());
        io.write_all(&upbuf[..take]).await?;
        upbuf.advance(take);
        left -= take as u64;
    }
    Ok(true)
}

/// Relays a close-delimited body as chunks, then the last chunk.
async fn relay_until_close<IO>(
    io: &mut IO,
    upstream: &mut TcpStream,
    upbuf: &mut BytesMut,
    out: &mut Vec<u8>,
) -> io::Result<()>
where
    IO: AsyncWrite + Unpin,
{
    loop {
        if !upbuf.is_empty() {
            chunk(out, upbuf);
            upbuf.clear();
        }
        io.write_all(out).await?;
        out.clear();
        upbuf.reserve(RELAY_CHUNK);
        if upstream.read_buf(upbuf).await? == 0 {
            out.extend_from_slice(b"0\r\n\r\n");
            return io.write_all(out).await;
        }
    }
}

/// Appends `data` as one chunk.
fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    use std::io::Write;
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Relays a chunked body: decoded and re-chunked, extensions and trailers dropped.
async fn relay_chunked<IO>(
    io: &mut IO,
    upstream: &mut TcpStream,
    upbuf: &mut BytesMut,
    out: &mut Vec<u8>,
) -> io::Result<bool>
where
    IO: AsyncWrite + Unpin,
{
    let mut decoder = ChunkDecoder::default();
    loop {
        let mut data = Vec::new();
        let used = decoder
            .decode(upbuf, &mut data)
            .map_err(|why| io::Error::new(io::ErrorKind::InvalidData, why))?;
        upbuf.advance(used);
        chunk(out, &data);
        if decoder.done() {
            out.extend_from_slice(b"0\r\n\r\n");
            io.write_all(out).await?;
            return Ok(true);
        }
        if !out.is_empty() {
            io.write_all(out).await?;
            out.clear();
        }
        upbuf.reserve(RELAY_CHUNK);
        if upstream.read_buf(upbuf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the upstream chunked body ended early",
            ));
        }
    }
}

/// RFC 9112 §7.1 chunked decoding, a byte state machine that can stop anywhere.
#[derive(Debug, Default)]
struct ChunkDecoder {
    state: ChunkState,
    size: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Start,
    Size,
    /// Whitespace or an extension after the size, up to CR.
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

impl ChunkDecoder {
    fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes from `input`, appending chunk data to `data`; returns the bytes consumed.
    fn decode(&mut self, input: &[u8], data: &mut Vec<u8>) -> Result<usize, &'static str> {
        use ChunkState::*;
        let mut i = 0;
        while i < input.len() && self.state != Done {
            if self.state == Data {
                let take = usize::try_from(self.size)
                    .unwrap_or(usize::MAX)
                    .min(input.len() - i);
                data.extend_from_slice(&input[i..i + take]);
                i += take;
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = DataCr;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            self.state = match (self.state, b) {
                (Start | Size, b) if b.is_ascii_hexdigit() => {
                    let digit = u64::from(char::from(b).to_digit(16).unwrap_or(0));
                    self.size = self
                        .size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(digit))
                        .ok_or("chunk size overflows")?;
                    Size
                }
                (Size | Ext, b'\r') => SizeLf,
                (Size | Ext, b';' | b' ' | b'\t') => Ext,
                (Ext, b'\n') => return Err("bare LF in a chunk extension"),
                (Ext, _) => Ext,
                (SizeLf, b'\n') if self.size == 0 => TrailerStart,
                (SizeLf, b'\n') => Data,
                (DataCr, b'\r') => DataLf,
                (DataLf, b'\n') => Start,
                (TrailerStart, b'\r') => EndLf,
                (Trailer, b'\r') => TrailerLf,
                (TrailerStart | Trailer, b'\n') => return Err("bare LF in a trailer"),
                (TrailerStart | Trailer, _) => Trailer,
                (TrailerLf, b'\n') => TrailerStart,
                (EndLf, b'\n') => Done,
                _ => return Err("malformed chunked body"),
            };
        }
        Ok(i)
    }
}

/// Idle upstream connections of the lane, per authority, most recently used last.
type IdleMap =
    std::collections::HashMap<Box<str>, Vec<(TcpStream, Instant)>, foldhash::fast::RandomState>;

#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<IdleMap>,
}

/// Idle connections kept per authority.
const MAX_IDLE_PER_AUTHORITY: usize = 256;
/// A connection idle for longer is dropped instead of reused.
const IDLE_FOR_AT_MOST: Duration = Duration::from_secs(30);
/// A connection idle for longer is probed (one non-blocking read) before reuse: an upstream
/// that closed it, or sent something unasked, has it dropped.
const PROBE_AFTER: Duration = Duration::from_secs(1);

impl Pool {
    fn checkout(&self, authority: &Authority) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(authority.as_str())?;
        let now = Instant::now();
        while let Some((stream, since)) = list.pop() {
            let idle_for = now.duration_since(since);
            if idle_for > IDLE_FOR_AT_MOST {
                continue;
            }
            if idle_for > PROBE_AFTER && !quiet(&stream) {
                continue;
            }
            return Some(stream);
        }
        None
    }

    /// Puts back a connection idle since `since`.
    fn checkin(&self, authority: &Authority, stream: TcpStream, since: Instant) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = match idle.get_mut(authority.as_str()) {
            Some(list) => list,
            None => idle.entry(authority.as_str().into()).or_default(),
        };
        let now = Instant::now();
        // The oldest sit at the front, where checkout never reaches while newer ones serve:
        // drop those idle too long here, so their sockets do not linger.
        let stale = list
            .iter()
            .take_while(|(_, since)| now.duration_since(*since) > IDLE_FOR_AT_MOST)
            .count();
        list.drain(..stale);
        if list.len() < MAX_IDLE_PER_AUTHORITY {
            list.push((stream, since));
        }
    }
}

/// True when an idle connection has nothing to read and is not closed.
fn quiet(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
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

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
        /// The lane reads a target's path and query as `http::Uri` (hyper's path) does, and
        /// refuses what it refuses.
        #[test]
        fn targets_split_as_http_uri_reads_them(
            target in "/[a/?%.;=&'\"{}|^`<>\\\\ \t\u{e9}\u{7f}\\[\\]*!$()+,:@~-]{0,12}",
        ) {
            let ours = split_target(&target);
            match http::Uri::try_from(target.as_str()) {
                Ok(uri) => {
                    let pq = uri.path_and_query().unwrap();
                    proptest::prop_assert_eq!(ours, Some((pq.path(), pq.query())));
                }
                Err(_) => proptest::prop_assert_eq!(ours, None),
            }
        }
    }

    fn decode_split(input: &[u8], at: usize) -> Result<(Vec<u8>, usize, bool), &'static str> {
        let mut d = ChunkDecoder::default();
        let mut data = Vec::new();
        let first = d.decode(&input[..at], &mut data)?;
        assert_eq!(first, at, "a partial input is consumed whole");
        let second = d.decode(&input[at..], &mut data)?;
        Ok((data, at + second, d.done()))
    }

    #[test]
    fn chunked_bodies_decode_across_every_split() {
        let body = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for at in 0..body.len() - 4 {
            let (data, used, done) = decode_split(body, at).unwrap();
            assert_eq!(data, b"hello, world", "split at {at}");
            assert!(done);
            assert_eq!(used, body.len() - 4, "stops before the next message");
        }
    }

    #[test]
    fn malformed_chunked_bodies_are_errors() {
        for bad in [
            &b"5\r\nhelloXX\r\n0\r\n\r\n"[..],
            b"g\r\n",
            b"5\nhello",
            b"ffffffffffffffffff\r\n",
            b"0\r\nX\n",
        ] {
            let mut d = ChunkDecoder::default();
            assert!(d.decode(bad, &mut Vec::new()).is_err(), "{bad:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_pool_hands_out_the_newest_and_forgets_connections_idle_too_long() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let authority: Authority = addr.to_string().parse().unwrap();
        let pool = Pool::default();
        let connect = || TcpStream::connect(addr);
        pool.checkin(&authority, connect().await.unwrap(), Instant::now());
        tokio::time::advance(IDLE_FOR_AT_MOST + Duration::from_secs(1)).await;
        // Too old to hand out.
        assert!(pool.checkout(&authority).is_none());
        pool.checkin(&authority, connect().await.unwrap(), Instant::now());
        tokio::time::advance(IDLE_FOR_AT_MOST + Duration::from_secs(1)).await;
        let newest = connect().await.unwrap();
        let newest_port = newest.local_addr().unwrap().port();
        // Checking in a connection drops the stale ones behind it.
        pool.checkin(&authority, newest, Instant::now());
        assert_eq!(pool.idle.lock().unwrap()[authority.as_str()].len(), 1);
        let got = pool.checkout(&authority).expect("the fresh connection");
        assert_eq!(got.local_addr().unwrap().port(), newest_port);
        assert!(pool.checkout(&authority).is_none());
        // Idle past the probe threshold but quiet and open: still handed out.
        pool.checkin(&authority, got, Instant::now());
        tokio::time::advance(PROBE_AFTER + Duration::from_millis(10)).await;
        assert!(pool.checkout(&authority).is_some());
    }

    #[test]
    fn content_lengths_must_agree() {
        let of = |values: &[&str]| content_length(values.iter().map(|v| v.as_bytes()));
        assert_eq!(of(&["12"]), Some(12));
        assert_eq!(of(&["12", "12, 12"]), Some(12));
        assert_eq!(of(&["12", "12, 12", "13"]), None);
        assert_eq!(of(&["+1"]), None);
        assert_eq!(of(&[""]), None);
        assert_eq!(of(&["1,"]), None);
        assert_eq!(of(&[" 7 "]), Some(7));
        assert_eq!(of(&["99999999999999999999999"]), None);
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let framing = |raw: &str, is_head| match parse_response_head(
            raw.as_bytes(),
            is_head,
            &mut Vec::new(),
        ) {
            Ok(Parsed::Head(h, _)) => Some((h.framing, h.reusable)),
            _ => None,
        };
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n", false),
            Some((Framing::Length(3), true))
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n", true),
            Some((Framing::None, true))
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
                false
            ),
            Some((Framing::Chunked, true))
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
                false
            ),
            Some((Framing::Close, false))
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\n\r\n", false),
            Some((Framing::Close, false))
        );
        assert_eq!(
            framing(
                "HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n",
                false
            ),
            Some((Framing::None, true))
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n",
                false
            ),
            Some((Framing::Length(1), false))
        );
        assert_eq!(
            framing("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n", false),
            Some((Framing::Length(1), false))
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
                false
            ),
            None
        );
        assert_eq!(framing("HTTP/1.1 101 Switching\r\n\r\n", false), None);
        assert!(matches!(
            parse_response_head(
                b"HTTP/1.1 103 Early Hints\r\nlink: x\r\n\r\n",
                false,
                &mut Vec::new()
            ),
            Ok(Parsed::Informational(37))
        ));
    }
}
