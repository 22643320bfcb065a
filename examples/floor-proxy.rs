//! The load benchmark's floor: what proxying costs on this machine in tokio *without* hyper,
//! to measure how much of the gap to nginx a hand-written HTTP/1 codec could close.
//!
//! One buffer per direction per connection, heads parsed in place with httparse (borrowed
//! slices, no `http::Request`), the upstream head written directly, one upstream connection per
//! client connection (no pool lookups), one write per response. With a Gatehouse config file
//! as third argument it also does the authenticated request's work the way a hyper-free hot
//! path would: canonicalization, route lookup, the access cookie found in the borrowed Cookie
//! header, `TokenSettings::verify` (the verified-token cache), the revocation lookup, the
//! authorization decision and the auth-decision metric, the client's identity headers and
//! the access cookie stripped, identity and `X-Forwarded-For/-Proto/-Host` headers added, a
//! request id generated and sent both ways, a timer on the upstream exchange, and the
//! per-route latency and status metrics.
//!
//! NOT a proxy to use: it serves only what the benchmark sends (bodiless requests,
//! Content-Length responses) and closes the connection on anything else; no timeouts, no
//! limits, no logs, no metrics, no smuggling defences beyond refusing bodies.
//!
//! `cargo run --release --example floor-proxy -- LISTEN UPSTREAM [gateway.yaml]`

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use gatehouse::store::MemoryStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MAX_HEADERS: usize = 64;
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

struct Auth {
    config: gatehouse::Config,
    store: MemoryStore,
    metrics: gatehouse::telemetry::metrics::Metrics,
}

const UPSTREAM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:3902".into());
    let upstream: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:3900".into())
        .parse()?;
    let auth = match args.next() {
        Some(path) => {
            gatehouse::install_crypto_providers();
            let config = gatehouse::config::load(Path::new(&path), gatehouse::config::process_env)
                .map_err(|e| e.to_string())?;
            let metrics = gatehouse::telemetry::metrics::Metrics::new();
            metrics.prime(config.routes.routes().iter().map(|r| r.name.as_str()));
            Some(Arc::new(Auth {
                config,
                store: MemoryStore::new(),
                metrics,
            }))
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let auth = auth.clone();
        tokio::spawn(async move {
            let _ = connection(stream, upstream, auth.as_deref()).await;
        });
    }
}

async fn connection(
    mut down: TcpStream,
    upstream: SocketAddr,
    auth: Option<&Auth>,
) -> io::Result<()> {
    down.set_nodelay(true)?;
    let peer = down.peer_addr()?.ip();
    let mut up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    let mut inbuf: Vec<u8> = Vec::with_capacity(8192);
    let mut respbuf: Vec<u8> = Vec::with_capacity(8192);
    let mut out: Vec<u8> = Vec::with_capacity(8192);
    loop {
        // Request head.
        let done;
        let head_len = loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&inbuf).map_err(io::Error::other)? {
                httparse::Status::Complete(n) => {
                    out.clear();
                    match request_head(&req, auth, peer, &mut out) {
                        Ok(route) => done = route,
                        Err(()) => {
                            down.write_all(&out).await?;
                            return Ok(());
                        }
                    }
                    break n;
                }
                httparse::Status::Partial => {
                    if inbuf.len() > 16 * 1024 || down.read_buf(&mut inbuf).await? == 0 {
                        return Ok(());
                    }
                }
            }
        };
        let started = std::time::Instant::now();
        inbuf.drain(..head_len);
        let exchange = async {
            up.write_all(&out).await?;
            respbuf.clear();
            response(&mut up, &mut respbuf, &mut out).await
        };
        let request_id = done.as_ref().map(|(_, id)| id.as_str());
        let exchange = match auth {
            Some(_) => tokio::time::timeout(UPSTREAM_TIMEOUT, exchange)
                .await
                .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into())),
            None => exchange.await,
        };
        let Some((status, body)) = exchange? else {
            return Ok(());
        };
        if let Some(id) = request_id {
            // Before the blank line that ends the head.
            out.truncate(out.len().saturating_sub(2));
            header(&mut out, b"x-request-id", id.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(&respbuf[body]);
        down.write_all(&out).await?;
        if let (Some(auth), Some((route, _))) = (auth, done) {
            auth.metrics
                .request_done(route, status, started.elapsed().as_secs_f64());
        }
    }
}

/// Reads the upstream's response into `respbuf` and its rewritten head into `out`: the
/// status and the body's range in `respbuf`, or None for what this floor does not handle.
async fn response(
    up: &mut TcpStream,
    respbuf: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> io::Result<Option<(u16, std::ops::Range<usize>)>> {
    let (head_len, body_len, status) = loop {
        if up.read_buf(respbuf).await? == 0 {
            return Ok(None);
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(n) = resp.parse(respbuf).map_err(io::Error::other)? {
            out.clear();
            let Some(body_len) = response_head(&resp, out) else {
                return Ok(None);
            };
            break (n, body_len, resp.code.unwrap_or(0));
        }
    };
    while respbuf.len() < head_len + body_len {
        if up.read_buf(respbuf).await? == 0 {
            return Ok(None);
        }
    }
    Ok(Some((status, head_len..head_len + body_len)))
}

type Done<'a> = Option<(&'a gatehouse::telemetry::metrics::RouteName, String)>;

/// Writes the upstream request head into `out`: with authentication, the route's metric
/// label and the request id; Err (with a response in `out`) when the request is refused.
fn request_head<'a>(
    req: &httparse::Request<'_, '_>,
    auth: Option<&'a Auth>,
    peer: std::net::IpAddr,
    out: &mut Vec<u8>,
) -> Result<Done<'a>, ()> {
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return refuse(out, "400 Bad Request");
    };
    let has_body = req.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length") && h.value != b"0")
    });
    if has_body || !target.starts_with('/') {
        return refuse(out, "400 Bad Request");
    }
    let host = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .and_then(|h| std::str::from_utf8(h.value).ok());
    let mut identity = None;
    let mut done = None;
    if let Some(auth) = auth {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let Ok(canonical) = gatehouse::canonicalize::canonicalize(host, path, query) else {
            return refuse(out, "400 Bad Request");
        };
        let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
            return refuse(out, "400 Bad Request");
        };
        let Some(matched) = auth.config.routes.lookup(&canonical, &method) else {
            return refuse(out, "404 Not Found");
        };
        let name = auth.config.cookies.access_name.as_bytes();
        let token = req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
            .flat_map(|h| h.value.split(|&b| b == b';'))
            .map(|c| c.trim_ascii())
            .find_map(|c| c.strip_prefix(name).and_then(|r| r.strip_prefix(b"=")));
        let claims = token
            .and_then(|t| std::str::from_utf8(t).ok())
            .and_then(|t| auth.config.tokens.verify(t, gatehouse::clock::now()).ok())
            .filter(|c| !auth.store.is_revoked(&c.sid));
        let Some(claims) = claims else {
            return refuse(out, "401 Unauthorized");
        };
        // What `authorize` decides on: the route's and the rule's roles against the token's.
        let allowed =
            |roles: &[String]| roles.is_empty() || roles.iter().any(|r| claims.roles.contains(r));
        if !allowed(&matched.route.allow_roles) {
            return refuse(out, "403 Forbidden");
        }
        auth.metrics.auth_decision("allowed");
        identity = Some(claims);
        done = Some((&matched.route.label, gatehouse::ids::request_id()));
    }
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.unwrap_or("upstream").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in req.headers.iter() {
        if HOP_BY_HOP.iter().any(|n| h.name.eq_ignore_ascii_case(n)) {
            continue;
        }
        if let Some(auth) = auth {
            if auth.config.identity.drops(h.name)
                || [
                    "x-forwarded-for",
                    "x-forwarded-proto",
                    "x-forwarded-host",
                    "x-request-id",
                ]
                .iter()
                .any(|n| h.name.eq_ignore_ascii_case(n))
            {
                continue;
            }
            if h.name.eq_ignore_ascii_case("cookie") {
                cookie_without(out, h.value, auth.config.cookies.access_name.as_bytes());
                continue;
            }
        }
        header(out, h.name.as_bytes(), h.value);
    }
    if let (Some(auth), Some(claims), Some((_, request_id))) = (auth, identity, &done) {
        let Ok(values) = claims.header_values() else {
            return refuse(out, "502 Bad Gateway");
        };
        use std::io::Write;
        let _ = write!(out, "x-forwarded-for: {peer}\r\n");
        header(out, b"x-forwarded-proto", b"http");
        header(out, b"x-forwarded-host", host.unwrap_or("").as_bytes());
        header(out, b"x-request-id", request_id.as_bytes());
        let id = &auth.config.identity;
        header(out, id.user.as_str().as_bytes(), values.user.as_bytes());
        if let Some(email) = &values.email {
            header(out, id.email.as_str().as_bytes(), email.as_bytes());
        }
        header(out, id.roles.as_str().as_bytes(), values.roles.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    Ok(done)
}

/// The Cookie header minus the access cookie (dropped entirely when nothing else is left).
fn cookie_without(out: &mut Vec<u8>, value: &[u8], name: &[u8]) {
    let mut first = true;
    for c in value.split(|&b| b == b';').map(|c| c.trim_ascii()) {
        if c.strip_prefix(name).is_some_and(|r| r.starts_with(b"=")) || c.is_empty() {
            continue;
        }
        out.extend_from_slice(if first { b"cookie: " } else { b"; " });
        out.extend_from_slice(c);
        first = false;
    }
    if !first {
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes the response head into `out`; the body length, or None if the response has no
/// Content-Length (which this floor does not handle).
fn response_head(resp: &httparse::Response<'_, '_>, out: &mut Vec<u8>) -> Option<usize> {
    let code = resp.code?;
    let mut length = None;
    if !(100..=999).contains(&code) {
        return None;
    }
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&[
        b'0' + (code / 100) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value).ok()?.parse().ok();
        }
        if HOP_BY_HOP[..7]
            .iter()
            .any(|n| h.name.eq_ignore_ascii_case(n))
        {
            continue;
        }
        header(out, h.name.as_bytes(), h.value);
    }
    out.extend_from_slice(b"\r\n");
    length
}

fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn refuse<T>(out: &mut Vec<u8>, status: &str) -> Result<T, ()> {
    out.clear();
    out.extend_from_slice(
        format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes(),
    );
    Err(())
}
