//! Phase 1 (SPEC §3 `limits`, §9 shutdown): accept connections on bound listeners (plain,
//! TLS, admin), enforce `max_connections` (excess connections wait in the kernel backlog),
//! header size and header read timeout, and drain in-flight requests on shutdown for up to
//! `shutdown_grace`.

pub mod heads;
pub mod idle;
pub mod lane;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, Semaphore};

use crate::gateway::handle;
use crate::runtime::{Conn, Gateway};

use self::heads::{Flags, Found, RefusedHead, Watched};
use self::idle::{tracked, Activity, Timed};

/// How often expired sessions, revocations and throttle counters are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Whether connections start with a TLS handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Plain,
    Tls,
}

/// Serves the public plain-HTTP listener until `shutdown` resolves, then stops accepting and
/// waits for open requests up to `shutdown_grace`. Also runs the store sweeper.
pub async fn serve(
    listener: TcpListener,
    gw: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let sweeper = {
        let gw = gw.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            loop {
                tick.tick().await;
                gw.sweep();
            }
        })
    };
    let result = serve_inner(listener, gw, shutdown, Transport::Plain, handle, true).await;
    sweeper.abort();
    result
}

/// Serves the HTTPS listener (HTTP/1.1 and HTTP/2 by ALPN) with the certificates of the
/// current config snapshot; HTTP/1.1 connections start in the express lane, as on the plain
/// listener.
pub async fn serve_tls(
    listener: TcpListener,
    gw: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_inner(listener, gw, shutdown, Transport::Tls, handle, true).await
}

/// The accept loop shared by every listener: `handler` answers each request.
pub async fn serve_with<H, F>(
    listener: TcpListener,
    gw: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
    transport: Transport,
    handler: H,
) -> std::io::Result<()>
where
    H: Fn(Arc<Gateway>, hyper::Request<hyper::body::Incoming>, Conn) -> F
        + Clone
        + Send
        + Sync
        + 'static,
    F: Future<Output = hyper::Response<crate::body::Body>> + Send + 'static,
{
    serve_inner(listener, gw, shutdown, transport, handler, false).await
}

/// The accept loop; `lane_allowed` on the public listeners, where `handler` is [`handle`] and
/// connections may start in the express lane (plain ones, and TLS ones without HTTP/2).
async fn serve_inner<H, F>(
    listener: TcpListener,
    gw: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
    transport: Transport,
    handler: H,
    lane_allowed: bool,
) -> std::io::Result<()>
where
    H: Fn(Arc<Gateway>, hyper::Request<hyper::body::Incoming>, Conn) -> F
        + Clone
        + Send
        + Sync
        + 'static,
    F: Future<Output = hyper::Response<crate::body::Body>> + Send + 'static,
{
    let config = gw.config();
    let limits = config.limits.clone();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // Shutdown: every connection task holds a receiver until its connection is done, so
    // `closed()` on the sender is the moment the last one finished.
    let (stop_tx, stop_rx) = watch::channel(());
    // The most bytes a request head may take: hyper's limit, and the head tracker's.
    let max_head = limits.max_request_header_bytes.max(8192);
    // How long a connection may wait for its next request head: hyper's HTTP/1 header timer
    // runs from the end of the previous response (so it is also the keep-alive idle limit)
    // and, for the first request, `Timed` covers the bytes before hyper starts it.
    let wait_for_request = limits.header_read_timeout.min(limits.idle_timeout);
    // A client that reads nothing of its response for this long is disconnected; an HTTP/2
    // connection with no request in flight for this long is closed.
    let write_stall = limits.idle_timeout;
    let idle_timeout = limits.idle_timeout;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(wait_for_request)
        .max_buf_size(max_head);
    builder
        .http2()
        .timer(TokioTimer::new())
        // Twice the limit: a list over the limit and under this gets the gateway's 431 page
        // (`heads::h2_header_list_size`); `h2` answers a larger one with a bare 431.
        .max_header_list_size(
            u32::try_from(limits.max_request_header_bytes.saturating_mul(2)).unwrap_or(u32::MAX),
        );
    // The auto builder's HTTP/1 settings, for a connection the lane hands over after answering
    // requests on it (hyper-util's `http1_only` does nothing with upgrades).
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(wait_for_request)
        .max_buf_size(max_head);
    let servers = Arc::new(Servers {
        auto: builder,
        http1,
    });

    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let conn_info = Conn {
            peer,
            tls: transport == Transport::Tls,
        };
        // New connections get the certificates of the current snapshot (reloaded certs).
        let tls_config = gw.config().tls.as_ref().map(|t| t.server_config.clone());
        let handshake_timeout = limits.header_read_timeout;
        let flags = Arc::new(Flags::default());
        let activity = Arc::new(Activity::default());
        let service = {
            let gw = gw.clone();
            let handler = handler.clone();
            let flags = flags.clone();
            let activity = activity.clone();
            service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                match flags.take(req.uri()) {
                    Some(Found::Fragment(raw)) => {
                        req.extensions_mut().insert(raw);
                    }
                    Some(Found::Refused(refused)) => {
                        req.extensions_mut().insert(refused);
                    }
                    None => {}
                }
                if req.version() == http::Version::HTTP_2
                    && heads::h2_header_list_size(&req) > max_head
                {
                    req.extensions_mut().insert(RefusedHead::TooLarge);
                }
                // HTTP/2 requests are counted for the connection's idle timer.
                let in_flight = (req.version() == http::Version::HTTP_2).then(|| activity.start());
                // Boxed: hyper moves the service future (HTTP/2 spawns a task per stream with
                // it inside), and a pointer moves for less than the request's state machine.
                let fut = Box::pin(handler(gw.clone(), req, conn_info));
                async move {
                    let response = fut.await;
                    Ok::<_, Infallible>(match in_flight {
                        Some(guard) => response.map(|body| tracked(body, guard)),
                        None => response,
                    })
                }
            })
        };
        let servers = servers.clone();
        let stop = stop_rx.clone();
        // Plain connections start in the express lane, and so do TLS connections that did not
        // negotiate HTTP/2 (checked after the handshake).
        let lane = (lane_allowed && gw.express_lane()).then(|| {
            (
                gw.clone(),
                lane::Settings {
                    wait_for_request,
                    max_head,
                },
            )
        });
        // Shutdown and HTTP/2 idleness are watched by a task of their own, which tells the
        // connection's task through one oneshot: the connection's task wakes for every
        // read and write, and polls only that receiver besides the connection.
        let (close_tx, close_rx) = oneshot::channel::<()>();
        {
            let mut stop = stop_rx.clone();
            let activity = activity.clone();
            let mut close_tx = close_tx;
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.changed() => {}
                    () = activity.idle_for(idle_timeout) => {}
                    () = close_tx.closed() => return,
                }
                let _ = close_tx.send(());
            });
        }
        tokio::spawn(async move {
            let _permit = permit;
            // Held until the connection is done: shutdown waits for every copy to go.
            let _stop = stop;
            let result = match (transport, tls_config) {
                (Transport::Plain, _) => {
                    let mut stream = Timed::new(stream, wait_for_request, write_stall, activity);
                    let mut close_rx = close_rx;
                    let (prefix, answered) = match lane {
                        Some((gw, settings)) => {
                            match lane::serve(&gw, &mut stream, conn_info, settings, &mut close_rx)
                                .await
                            {
                                lane::Ended::Closed => return,
                                lane::Ended::HandOff { rest, answered } => (rest, answered),
                            }
                        }
                        None => (bytes::BytesMut::new(), false),
                    };
                    let stream = lane::Prefixed::new(prefix, stream);
                    let io = TokioIo::new(Watched::new(stream, flags, max_head, answered));
                    serve_hyper(&servers, io, service, answered, close_rx).await
                }
                (Transport::Tls, Some(config)) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(mut tls)) => {
                            // The TLS 1.3 session tickets are queued behind the handshake:
                            // send them now, not with the first response, so a client that
                            // reconnects before that can still resume.
                            let _ = tokio::io::AsyncWriteExt::flush(&mut tls).await;
                            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                            let mut tls = Timed::new(tls, wait_for_request, write_stall, activity);
                            let mut close_rx = close_rx;
                            let (prefix, answered) = match lane.filter(|_| !h2) {
                                Some((gw, settings)) => {
                                    match lane::serve(
                                        &gw,
                                        &mut tls,
                                        conn_info,
                                        settings,
                                        &mut close_rx,
                                    )
                                    .await
                                    {
                                        lane::Ended::Closed => return,
                                        lane::Ended::HandOff { rest, answered } => (rest, answered),
                                    }
                                }
                                None => (bytes::BytesMut::new(), false),
                            };
                            let tls = lane::Prefixed::new(prefix, tls);
                            let io = TokioIo::new(Watched::new(tls, flags, max_head, answered));
                            serve_hyper(&servers, io, service, answered, close_rx).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake timed out");
                            Ok(())
                        }
                    }
                }
                (Transport::Tls, None) => Ok(()),
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(());
    if tokio::time::timeout(limits.shutdown_grace, stop_tx.closed())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace elapsed with requests still open");
    }
    Ok(())
}

/// How hyper serves a connection the lane handed over (or never had).
struct Servers {
    /// HTTP/1 or HTTP/2, told by the connection's first bytes.
    auto: auto::Builder<TokioExecutor>,
    /// HTTP/1 only, with the auto builder's HTTP/1 settings.
    http1: hyper::server::conn::http1::Builder,
}

type ConnError = Box<dyn std::error::Error + Send + Sync>;

/// Serves a connection with hyper from `io` on, until it ends: HTTP/1 or HTTP/2 by its first
/// bytes, or HTTP/1 only when the express lane has already answered requests on it (then the
/// connection is HTTP/1, as hyper's detection would have found at its start).
async fn serve_hyper<I, S>(
    servers: &Servers,
    io: I,
    service: S,
    http1_only: bool,
    close: oneshot::Receiver<()>,
) -> Result<(), ConnError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<crate::body::Body>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    if http1_only {
        let conn = servers.http1.serve_connection(io, service).with_upgrades();
        drive(conn, |c| c.graceful_shutdown(), close)
            .await
            .map_err(Into::into)
    } else {
        let conn = servers.auto.serve_connection_with_upgrades(io, service);
        drive(conn, |c| c.graceful_shutdown(), close).await
    }
}

/// Serves one connection until it ends. When `close` fires (shutdown, or an idle HTTP/2
/// connection), the connection is shut down gracefully: requests in flight finish, then it
/// closes.
async fn drive<C, E>(
    conn: C,
    graceful: fn(Pin<&mut C>),
    mut close: oneshot::Receiver<()>,
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    tokio::pin!(conn);
    tokio::select! {
        biased;
        result = conn.as_mut() => return result,
        fired = &mut close => {
            if fired.is_err() {
                // The watcher is gone without firing (it cannot be, while we hold the
                // receiver); serve on.
                return conn.await;
            }
        }
    }
    graceful(conn.as_mut());
    conn.await
}
