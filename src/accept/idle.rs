//! Timers hyper does not have (SPEC §3 `header_read_timeout`, `idle_timeout`; §10 never a
//! hang), on every accepted connection's stream:
//!
//! - the wait for the first bytes: hyper-util's automatic HTTP/1–HTTP/2 detection reads them
//!   with no timer of its own, so a client that connects and sends nothing — or the start of
//!   the HTTP/2 preface and then nothing — would hold a connection slot (of
//!   `max_connections`) for ever. The deadline disarms as soon as the bytes read tell the
//!   protocol: the first byte that departs from the HTTP/2 preface (then hyper's HTTP/1
//!   header timer takes over) or the whole preface;
//! - a stalled write: a client that stops reading (a "slow read") would hold the connection,
//!   and the upstream response behind it, for ever. A write that cannot progress for
//!   `idle_timeout` fails, which ends the connection;
//! - an idle HTTP/2 connection: hyper's HTTP/2 server has no idle timer (its pings only find
//!   dead peers), so [`Activity`] counts the requests in flight on the connection and
//!   resolves once none has been for `idle_timeout`; the accept loop then shuts the
//!   connection down gracefully. HTTP/1 needs none of this: hyper's header timer runs
//!   between its requests.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Sleep;

use crate::body::{Body, BoxError};

/// What an HTTP/2 connection starts with (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A connection stream whose first bytes must arrive before a deadline, and whose writes
/// may not stall for longer than a limit.
pub struct Timed<IO> {
    io: IO,
    /// Armed until the protocol is known.
    deadline: Option<Pin<Box<Sleep>>>,
    /// How many bytes read so far match the HTTP/2 preface.
    matched: usize,
    write_stall: Duration,
    /// The stalled write's timer, kept between stalls to be reset rather than reallocated.
    stall: Option<Pin<Box<Sleep>>>,
    /// A write is pending and `stall` runs for it.
    stalled: bool,
    /// Told when the whole HTTP/2 preface has arrived.
    activity: Arc<Activity>,
}

impl<IO> Timed<IO> {
    /// Must be called inside the runtime (it starts a timer).
    pub fn new(
        io: IO,
        first_bytes_within: Duration,
        write_stall: Duration,
        activity: Arc<Activity>,
    ) -> Self {
        Self {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(first_bytes_within))),
            matched: 0,
            write_stall,
            stall: None,
            stalled: false,
            activity,
        }
    }

    /// Passes a write's result through; a write still pending after `write_stall` becomes
    /// an error.
    fn watch_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = false;
            return polled;
        }
        let at = tokio::time::Instant::now() + self.write_stall;
        let stall = match (&mut self.stall, self.stalled) {
            (Some(stall), true) => stall,
            (Some(stall), false) => {
                stall.as_mut().reset(at);
                stall
            }
            (None, _) => self.stall.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        self.stalled = true;
        if stall.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing for idle_timeout",
            )));
        }
        Poll::Pending
    }

    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            // End of stream: nothing more to wait for.
            self.deadline = None;
            return;
        }
        let rest = &H2_PREFACE[self.matched..];
        let n = bytes.len().min(rest.len());
        if bytes[..n] != rest[..n] {
            self.deadline = None;
        } else if self.matched + n == H2_PREFACE.len() {
            self.deadline = None;
            self.activity.http2_started();
        } else {
            self.matched += n;
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Timed<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        match (&polled, this.deadline.as_mut()) {
            (_, None) => {}
            (Poll::Ready(Ok(())), Some(_)) => this.saw(&buf.filled()[before..]),
            (Poll::Pending, Some(deadline)) => {
                if deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request started within the timeout",
                    )));
                }
            }
            (Poll::Ready(Err(_)), Some(_)) => {}
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Timed<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch_write(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.watch_write(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The requests in flight on one connection, counted for HTTP/2 only.
#[derive(Debug, Default)]
pub struct Activity {
    http2: AtomicBool,
    in_flight: AtomicUsize,
    changed: Notify,
}

impl Activity {
    fn http2_started(&self) {
        self.http2.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Counts a request until the returned guard (kept by its response body) is dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
        InFlight(self.clone())
    }

    /// Resolves once this is an HTTP/2 connection and no request has been in flight on it for
    /// `limit`; never for HTTP/1.
    pub async fn idle_for(&self, limit: Duration) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the state is read, so no change is missed in between.
            changed.as_mut().enable();
            let idle =
                self.http2.load(Ordering::Acquire) && self.in_flight.load(Ordering::Acquire) == 0;
            if !idle {
                changed.await;
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(limit) => return,
                () = changed => {}
            }
        }
    }
}

/// One request in flight (see [`Activity::start`]).
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}

/// A response body that keeps its request counted as in flight until hyper drops it (sent
/// to the end, or the stream reset).
pub fn tracked(body: Body, guard: InFlight) -> Body {
    use http_body_util::BodyExt;
    Tracked {
        body,
        _guard: guard,
    }
    .boxed()
}

struct Tracked {
    body: Body,
    _guard: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn read_after(sent: &[u8], within: Duration) -> io::Result<Vec<u8>> {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(sent).await?;
        let mut watched = Timed::new(server, within, within, Arc::default());
        let mut out = vec![0u8; 64];
        let mut got = Vec::new();
        loop {
            let n = watched.read(&mut out).await?;
            got.extend_from_slice(&out[..n]);
            if got.len() >= sent.len() {
                // The sender is idle from here on: a second read waits past the deadline
                // unless the deadline was disarmed (then the outer timeout ends it).
                return match tokio::time::timeout(within * 3, watched.read(&mut out)).await {
                    Ok(Err(e)) => Err(e),
                    _ => Ok(got),
                };
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn silence_times_out_and_any_http1_byte_disarms() {
        let within = Duration::from_secs(1);
        let silent = read_after(b"", within).await;
        assert_eq!(silent.map_err(|e| e.kind()), Err(io::ErrorKind::TimedOut));
        // "G" is not the start of the preface: HTTP/1, hyper's own header timer takes over.
        assert_eq!(read_after(b"G", within).await.unwrap(), b"G");
        // "PRX" departs from the preface at its third byte.
        assert_eq!(read_after(b"PRX", within).await.unwrap(), b"PRX");
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_does_not_read_fails_after_the_limit_and_not_before() {
        let limit = Duration::from_secs(2);
        let (mut client, server) = tokio::io::duplex(1024);
        let mut timed = Timed::new(server, limit, limit, Arc::default());
        // The peer reads slowly but steadily: every pause is shorter than the limit.
        let chunk = vec![7u8; 4096];
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 1024];
            let mut total = 0;
            while total < 4096 {
                tokio::time::sleep(limit / 2).await;
                total += client.read(&mut buf).await.unwrap();
            }
            (client, total)
        });
        timed.write_all(&chunk[..4096]).await.unwrap();
        let (client, total) = reader.await.unwrap();
        assert_eq!(total, 4096);
        // Now the peer stops reading: the write fails once the limit has passed.
        let started = tokio::time::Instant::now();
        let stalled = timed.write_all(&chunk).await;
        assert_eq!(stalled.map_err(|e| e.kind()), Err(io::ErrorKind::TimedOut));
        assert!(started.elapsed() >= limit, "{:?}", started.elapsed());
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn an_http2_connection_is_idle_only_with_no_request_in_flight_for_the_limit() {
        let limit = Duration::from_secs(2);
        let activity = Arc::new(Activity::default());
        let waits = |d| tokio::time::timeout(d, activity.idle_for(limit));
        // Not known to be HTTP/2 (an HTTP/1 connection): never idle here.
        assert!(waits(limit * 10).await.is_err());
        activity.http2_started();
        // A request in flight for longer than the limit keeps it busy...
        let request = activity.start();
        assert!(waits(limit * 3).await.is_err());
        drop(request);
        // ...and the limit counts from its end.
        let ended = tokio::time::Instant::now();
        waits(limit * 3).await.unwrap();
        assert!(ended.elapsed() >= limit, "{:?}", ended.elapsed());
        // A request that starts during the wait restarts it.
        let started = tokio::time::Instant::now();
        let watcher = tokio::spawn({
            let activity = activity.clone();
            async move { activity.idle_for(limit).await }
        });
        tokio::time::sleep(limit / 2).await;
        drop(activity.start());
        watcher.await.unwrap();
        assert!(
            started.elapsed() >= limit + limit / 2,
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_whole_preface_marks_the_connection_as_http2() {
        let (mut client, server) = tokio::io::duplex(64);
        let activity = Arc::new(Activity::default());
        let mut timed = Timed::new(
            server,
            Duration::from_secs(1),
            Duration::from_secs(1),
            activity.clone(),
        );
        client.write_all(&H2_PREFACE[..10]).await.unwrap();
        let mut buf = [0u8; 64];
        let _ = timed.read(&mut buf).await.unwrap();
        assert!(!activity.http2.load(Ordering::Acquire));
        client.write_all(&H2_PREFACE[10..]).await.unwrap();
        let _ = timed.read(&mut buf).await.unwrap();
        assert!(activity.http2.load(Ordering::Acquire));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_http2_preface_times_out_and_a_whole_one_disarms() {
        let within = Duration::from_secs(1);
        for cut in 1..H2_PREFACE.len() {
            let stalled = read_after(&H2_PREFACE[..cut], within).await;
            assert_eq!(
                stalled.map_err(|e| e.kind()),
                Err(io::ErrorKind::TimedOut),
                "preface cut at {cut}"
            );
        }
        assert_eq!(read_after(H2_PREFACE, within).await.unwrap(), H2_PREFACE);
    }
}
