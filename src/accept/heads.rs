//! What hyper reads of an HTTP/1 connection, read first by us: [`Watched`] wraps a
//! connection's stream and follows HTTP/1 message framing the way hyper does (heads parsed by
//! httparse with hyper's settings and its checks, request bodies skipped by `Content-Length`
//! or by the chunked framing), for two things hyper cannot do:
//!
//! - **A raw `#` in a request-target** (SPEC §7: 400). hyper builds the request's `Uri` with
//!   the `http` crate, which cuts `#fragment` off without a trace, so the request the gateway
//!   is handed cannot show it. [`Flags`] remembers which request heads, counted from the start
//!   of the connection, had a `#` in their target; the service counts the requests hyper hands
//!   it, in order, and marks the flagged one with [`RawFragment`]; phase 2 refuses it.
//! - **A head hyper would refuse** (too large, more than 100 header lines, malformed): hyper
//!   answers those itself with a status line and no body, where SPEC §6 and §10 want the
//!   gateway's error page (HTML for a browser, `{"error": …}` for the rest) and a short body.
//!   So a head reaches hyper only once it is whole and one hyper accepts: the start of a head
//!   is held back until the rest has arrived (hyper's header timer runs meanwhile, as it
//!   would), and a head hyper would refuse is replaced by a stand-in head (`GET /%00`, with
//!   `Connection: close`, and the refused head's `Accept` when it asks for HTML) flagged as
//!   [`RefusedHead`], after which hyper reads nothing more. The service answers the
//!   stand-in with the error; hyper writes that answer after any response still going out on
//!   the connection, and closes. The stand-in's target is one phase 2 refuses anyway, so it
//!   is never forwarded, flag or not.
//!
//! Anything the tracker does not follow (an upgrade or CONNECT, HTTP/2's preface at the start
//! of a connection, a `Transfer-Encoding` with a `Content-Length`, chunked framing hyper
//! refuses) stops the tracking for the rest of that connection: from there the bytes pass
//! untouched, a `#` is cut as hyper cuts it, and what remains is both checked and forwarded.
//! A flag is used only when both the request's position and its target (parsed from the raw
//! bytes exactly as hyper parses them) match, so the tracker cannot refuse a request that
//! had no `#` or was not refused.

use std::collections::VecDeque;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// hyper's limit on header lines in a request head (`DEFAULT_MAX_HEADERS`).
const MAX_HEADERS: usize = 100;

/// hyper's limit on a request-target's length (`MAX_URI_LEN`).
const MAX_URI_LEN: usize = (u16::MAX - 1) as usize;

/// What an HTTP/2 connection starts with (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The target of the stand-in head that replaces a refused one.
const STAND_IN_TARGET: &str = "/%00";

pub use crate::canonicalize::{RawFragment, RefusedHead};

/// What the tracker found about one request head.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Flag {
    /// Its raw target held `#`; the `Uri` hyper builds from it.
    Fragment(http::Uri),
    /// It was refused; hyper got the stand-in head in its place.
    Refused(RefusedHead),
}

/// What the service learns about a request from its raw head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Fragment(RawFragment),
    Refused(RefusedHead),
}

/// What one connection's tracker found, shared with the service that answers its requests.
#[derive(Debug, Default)]
pub struct Flags {
    /// Requests handed to the service so far.
    served: AtomicU64,
    /// Whether anything was ever flagged (the common case reads only this).
    any: AtomicBool,
    /// (head index, what was found) of the flagged heads, in order.
    flagged: Mutex<VecDeque<(u64, Flag)>>,
}

impl Flags {
    /// Called once for each request hyper hands the service, in order: what the tracker found
    /// about this request's head, if anything.
    pub fn take(&self, uri: &http::Uri) -> Option<Found> {
        let index = self.served.fetch_add(1, Ordering::Relaxed);
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let mut flagged = self.flagged.lock().unwrap_or_else(PoisonError::into_inner);
        // Flags of heads that never reached the service are behind us.
        while flagged.front().is_some_and(|(i, _)| *i < index) {
            flagged.pop_front();
        }
        let found = match flagged.front() {
            Some((i, Flag::Fragment(flagged_uri))) if *i == index => {
                (flagged_uri == uri).then_some(Found::Fragment(RawFragment))
            }
            Some((i, Flag::Refused(refused))) if *i == index => {
                (uri == STAND_IN_TARGET).then_some(Found::Refused(*refused))
            }
            _ => return None,
        };
        flagged.pop_front();
        found
    }

    fn flag(&self, index: u64, flag: Flag) {
        self.flagged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back((index, flag));
        self.any.store(true, Ordering::Release);
    }
}

/// Reads `stream` as the start of one connection and returns how many request heads the
/// tracker counted in it (for the hot-path benchmark).
pub fn count_heads(stream: &[u8]) -> u64 {
    let mut tracker = Tracker::new(usize::MAX, false);
    tracker.feed(stream, &Flags::default());
    tracker.heads
}

/// An HTTP/2 request's header list size as RFC 9113 §6.5.2 counts it: every field line's
/// name and value plus 32 octets, the pseudo-header fields included. Over
/// `max_request_header_bytes`, the request is refused with [`RefusedHead::TooLarge`] — the
/// gateway's 431 page; `h2` itself answers a bare 431 only to lists over twice that (its
/// `max_header_list_size`, see `accept::serve_inner`).
pub fn h2_header_list_size<B>(req: &http::Request<B>) -> usize {
    const OVERHEAD: usize = 32;
    let uri = req.uri();
    let pseudo = [
        (":method", req.method().as_str().len()),
        (":scheme", uri.scheme_str().map_or(0, str::len)),
        (
            ":authority",
            uri.authority().map_or(0, |a| a.as_str().len()),
        ),
        (
            ":path",
            uri.path_and_query().map_or(0, |p| p.as_str().len()),
        ),
    ];
    let pseudo: usize = pseudo
        .iter()
        .map(|(name, len)| name.len() + len + OVERHEAD)
        .sum();
    let fields: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + OVERHEAD)
        .sum();
    pseudo + fields
}

/// A connection's stream, with a tracker reading along and holding back what hyper should not
/// read yet (see the module's documentation).
pub struct Watched<IO> {
    io: IO,
    tracker: Tracker,
    flags: Arc<Flags>,
    /// Bytes for hyper before anything more is read: held bytes released, a stand-in head.
    out: Vec<u8>,
    /// How much of `out` hyper has read.
    out_read: usize,
    /// A head was refused: after `out`, hyper reads nothing more.
    ended: bool,
}

impl<IO> Watched<IO> {
    /// `max_head`: the most bytes a request head may take (`max_request_header_bytes`, also
    /// hyper's `max_buf_size`). `http1_only`: the connection is known to be HTTP/1 (the
    /// express lane answered requests on it), so HTTP/2's preface is not looked for.
    pub fn new(io: IO, flags: Arc<Flags>, max_head: usize, http1_only: bool) -> Self {
        Self {
            io,
            tracker: Tracker::new(max_head, !http1_only),
            flags,
            out: Vec::new(),
            out_read: 0,
            ended: false,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_read < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_read);
                buf.put_slice(&this.out[this.out_read..this.out_read + n]);
                this.out_read += n;
                if this.out_read == this.out.len() {
                    this.out = Vec::new();
                    this.out_read = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.ended {
                // Nothing more, ever: not the end of the stream, which would make hyper drop
                // the connection before it has answered the stand-in (it does not half-close).
                // The stand-in asked to close, so hyper does not wait for another request.
                return Poll::Pending;
            }
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
            if buf.filled().len() == before {
                // The end of the stream; held bytes of an unfinished head go with it.
                return Poll::Ready(Ok(()));
            }
            let fed = this.tracker.feed(&buf.filled()[before..], &this.flags);
            match fed.release {
                Release::Prefix(n) => buf.set_filled(before + n),
                Release::Joined(bytes) => {
                    buf.set_filled(before);
                    this.out = bytes;
                }
            }
            if let Some(stand_in) = fed.stand_in {
                this.out.extend_from_slice(&stand_in);
                this.ended = true;
            }
            if buf.filled().len() > before {
                return Poll::Ready(Ok(()));
            }
            // Nothing for hyper yet: hand over `out`, or read on.
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The head hyper is handed in place of a refused one: a request phase 2 refuses whatever
/// happens, that closes the connection, and that asks for HTML when the refused head did (so
/// a browser gets a page), `HEAD` when it was one (so no body is written).
fn stand_in(refused: &[u8]) -> Vec<u8> {
    let method = if refused.starts_with(b"HEAD ") {
        "HEAD"
    } else {
        "GET"
    };
    // A page only for a navigation (SPEC §6: `GET`/`HEAD` asking for HTML), JSON otherwise.
    let navigation = refused.starts_with(b"GET ") || refused.starts_with(b"HEAD ");
    let accept = if navigation && asks_for_html(refused) {
        "accept: text/html\r\n"
    } else {
        ""
    };
    format!(
        "{method} {STAND_IN_TARGET} HTTP/1.1\r\nhost: refused.invalid\r\n{accept}connection: close\r\n\r\n"
    )
    .into_bytes()
}

/// Whether some `Accept` line of a head that may not parse names `text/html` (read leniently:
/// the head is refused anyway; this only picks a page or JSON for the refusal).
fn asks_for_html(head: &[u8]) -> bool {
    const ACCEPT: &[u8] = b"accept:";
    head.split(|&b| b == b'\n').skip(1).any(|line| {
        line.len() > ACCEPT.len()
            && line[..ACCEPT.len()].eq_ignore_ascii_case(ACCEPT)
            && memchr::memmem::find(&line[ACCEPT.len()..], b"text/html").is_some()
    })
}

/// Where the tracker is in the request stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Reading a request head.
    Head,
    /// Skipping this many body bytes.
    Body(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// Not tracking any more on this connection.
    Off,
}

/// The states of hyper's chunked decoder (`proto::h1::decode::ChunkedState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Start,
    Size,
    SizeLws,
    Extension,
    SizeLf,
    Data(u64),
    DataCr,
    DataLf,
    EndCr,
    Trailer,
    TrailerLf,
    EndLf,
}

/// Follows one connection's request stream.
#[derive(Debug)]
struct Tracker {
    framing: Framing,
    /// Held back from hyper: the start of a head that has not fully arrived yet.
    partial: Vec<u8>,
    /// Request heads seen so far.
    heads: u64,
    /// The size of the chunk being read.
    chunk_size: u64,
    max_head: usize,
    /// The stream may start with HTTP/2's preface (hyper's automatic detection reads it).
    preface_possible: bool,
    /// Heads parsed (or parses begun), for a test.
    #[cfg(test)]
    parses: usize,
}

/// What a complete request head says.
struct Head {
    /// The head's length in bytes.
    len: usize,
    /// The target as hyper parses it, when the raw target held `#`.
    fragment: Option<http::Uri>,
    /// The framing after the head.
    next: Framing,
}

/// What hyper may read of the bytes just read from the connection.
#[derive(Debug, PartialEq, Eq)]
enum Release {
    /// The first `n` of them; the rest is held back (the start of a head) or refused.
    Prefix(usize),
    /// These bytes instead: held bytes joined with the new ones, up to where the tracker
    /// holds back or refuses again.
    Joined(Vec<u8>),
}

#[derive(Debug, PartialEq, Eq)]
struct Fed {
    release: Release,
    /// A head was refused: hyper reads this stand-in after the released bytes, and then
    /// nothing more.
    stand_in: Option<Vec<u8>>,
}

/// What the tracker makes of the bytes at the start of a head.
enum Step {
    /// A whole head hyper accepts, this long.
    Pass(usize),
    /// Not all of it yet.
    Hold,
    Refuse(RefusedHead),
}

impl Tracker {
    fn new(max_head: usize, preface_possible: bool) -> Self {
        Self {
            framing: Framing::Head,
            partial: Vec::new(),
            heads: 0,
            chunk_size: 0,
            max_head,
            preface_possible,
            #[cfg(test)]
            parses: 0,
        }
    }

    /// Reads along `data`, the next bytes of the stream: what of them hyper may read now.
    fn feed(&mut self, data: &[u8], flags: &Flags) -> Fed {
        if self.partial.is_empty() {
            let (n, stand_in) = self.follow(data, flags);
            return Fed {
                release: Release::Prefix(n),
                stand_in,
            };
        }
        // A held head goes on. Read again from its start only when the new bytes may end it
        // (an empty line) or reach the limit: a head trickling in byte by byte is not parsed
        // at every byte (hyper's `is_complete_fast` does the same).
        let before = self.partial.len();
        self.partial.extend_from_slice(data);
        if self.partial.len() < self.max_head && !may_end_a_head(&self.partial, before) {
            return Fed {
                release: Release::Joined(Vec::new()),
                stand_in: None,
            };
        }
        let mut joined = std::mem::take(&mut self.partial);
        let (n, stand_in) = self.follow(&joined, flags);
        joined.truncate(n);
        Fed {
            release: Release::Joined(joined),
            stand_in,
        }
    }

    /// Follows `data` (with nothing held before it): how many of its bytes hyper may read, and
    /// the stand-in when a head in it was refused. The start of an unfinished head is kept in
    /// `partial`.
    fn follow(&mut self, data: &[u8], flags: &Flags) -> (usize, Option<Vec<u8>>) {
        let mut at = 0;
        while at < data.len() {
            let rest = &data[at..];
            match self.framing {
                Framing::Off => break,
                Framing::Head => match self.head(rest, flags) {
                    Step::Pass(len) => at += len,
                    Step::Hold => {
                        self.partial = rest.to_vec();
                        return (at, None);
                    }
                    Step::Refuse(refused) => {
                        flags.flag(self.heads, Flag::Refused(refused));
                        self.heads += 1;
                        self.stop();
                        return (at, Some(stand_in(rest)));
                    }
                },
                Framing::Body(left) => {
                    let (after, left) = skip(rest, left);
                    at = data.len() - after.len();
                    self.framing = if left == 0 {
                        Framing::Head
                    } else {
                        Framing::Body(left)
                    };
                }
                Framing::Chunked(Chunk::Data(left)) => {
                    let (after, left) = skip(rest, left);
                    at = data.len() - after.len();
                    self.framing = Framing::Chunked(if left == 0 {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(left)
                    });
                }
                Framing::Chunked(state) => {
                    self.framing = self.chunk_byte(state, rest[0]);
                    at += 1;
                }
            }
        }
        (data.len(), None)
    }

    /// Reads the request head at the start of `buf`.
    fn head(&mut self, buf: &[u8], flags: &Flags) -> Step {
        if self.preface_possible && self.heads == 0 {
            if buf.starts_with(H2_PREFACE) {
                // HTTP/2: hyper's, untouched.
                self.stop();
                return Step::Pass(0);
            }
            if H2_PREFACE.starts_with(buf) {
                return Step::Hold;
            }
        }
        #[cfg(test)]
        {
            self.parses += 1;
        }
        // A head must end within `max_head` bytes: what lies beyond is never read as one.
        let window = &buf[..buf.len().min(self.max_head)];
        match parse_head(window) {
            Parsed::Partial if window.len() < self.max_head => Step::Hold,
            Parsed::Partial => Step::Refuse(RefusedHead::TooLarge),
            Parsed::Refused(refused) => Step::Refuse(refused),
            Parsed::Complete(head) => {
                if let Some(uri) = head.fragment {
                    flags.flag(self.heads, Flag::Fragment(uri));
                }
                self.heads += 1;
                self.framing = head.next;
                Step::Pass(head.len)
            }
        }
    }

    /// One byte of chunked framing outside chunk data, as hyper's decoder reads it.
    fn chunk_byte(&mut self, state: Chunk, byte: u8) -> Framing {
        let next = match (state, byte) {
            (Chunk::Start, _) => match hex(byte).and_then(|d| self.push_digit(d)) {
                Some(()) => Chunk::Size,
                None => return Framing::Off,
            },
            (Chunk::Size, b'\t' | b' ') | (Chunk::SizeLws, b'\t' | b' ') => Chunk::SizeLws,
            (Chunk::Size | Chunk::SizeLws, b';') => Chunk::Extension,
            (Chunk::Size | Chunk::SizeLws | Chunk::Extension, b'\r') => Chunk::SizeLf,
            (Chunk::Size, _) => match hex(byte).and_then(|d| self.push_digit(d)) {
                Some(()) => Chunk::Size,
                None => return Framing::Off,
            },
            (Chunk::Extension, b'\n') => return Framing::Off,
            (Chunk::Extension, _) => Chunk::Extension,
            (Chunk::SizeLf, b'\n') => {
                let size = std::mem::take(&mut self.chunk_size);
                if size == 0 {
                    Chunk::EndCr
                } else {
                    Chunk::Data(size)
                }
            }
            (Chunk::DataCr, b'\r') => Chunk::DataLf,
            (Chunk::DataLf, b'\n') => Chunk::Start,
            (Chunk::EndCr, b'\r') => Chunk::EndLf,
            (Chunk::EndCr | Chunk::Trailer, _) => {
                if byte == b'\r' {
                    Chunk::TrailerLf
                } else {
                    Chunk::Trailer
                }
            }
            (Chunk::TrailerLf, b'\n') => Chunk::EndCr,
            (Chunk::EndLf, b'\n') => return Framing::Head,
            _ => return Framing::Off,
        };
        Framing::Chunked(next)
    }

    fn push_digit(&mut self, digit: u8) -> Option<()> {
        self.chunk_size = self
            .chunk_size
            .checked_mul(16)?
            .checked_add(u64::from(digit))?;
        Some(())
    }

    fn stop(&mut self) {
        self.framing = Framing::Off;
        self.partial = Vec::new();
    }
}

/// Whether `buf`, of which the bytes from `new` on just arrived, may hold the empty line that
/// ends a head (`\n\n` or `\n\r\n`, the first part possibly before `new`).
fn may_end_a_head(buf: &[u8], new: usize) -> bool {
    let from = new.saturating_sub(2);
    memchr::memchr_iter(b'\n', &buf[from..]).any(|i| {
        let after = &buf[from + i + 1..];
        after.starts_with(b"\n") || after.starts_with(b"\r\n")
    })
}

/// Skips up to `left` bytes of `data`: the rest of `data`, and how many are still to skip.
fn skip(data: &[u8], left: u64) -> (&[u8], u64) {
    let n = usize::try_from(left).map_or(data.len(), |l| l.min(data.len()));
    (&data[n..], left - n as u64)
}

fn hex(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

enum Parsed {
    Partial,
    Complete(Head),
    /// A head hyper refuses (it answers with a bare status line and closes).
    Refused(RefusedHead),
}

/// Parses a request head with hyper's parser settings, its checks and its framing rules
/// (`proto::h1::role::Server::parse`).
fn parse_head(buf: &[u8]) -> Parsed {
    let mut headers = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        buf,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Refused(RefusedHead::TooLarge),
        Err(_) => return Parsed::Refused(RefusedHead::Malformed),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Parsed::Refused(RefusedHead::Malformed);
    };
    if target.len() > MAX_URI_LEN {
        return Parsed::Refused(RefusedHead::UriTooLong);
    }
    if http::Method::from_bytes(method.as_bytes()).is_err() {
        return Parsed::Refused(RefusedHead::Malformed);
    }
    // The same call hyper makes on the same bytes, so a flagged request's `Uri` is exactly
    // the one the service will be handed.
    let Ok(uri) = http::Uri::from_maybe_shared(bytes::Bytes::copy_from_slice(target.as_bytes()))
    else {
        return Parsed::Refused(RefusedHead::Malformed);
    };
    let mut upgrade = method == "CONNECT";
    let mut content_length: Option<u64> = None;
    let mut any_content_length = false;
    let mut transfer_encoding = false;
    let mut chunked = false;
    for header in req.headers.iter() {
        let name = header.name;
        if name.len() >= 1 << 16 {
            return Parsed::Refused(RefusedHead::TooLarge);
        }
        if name.eq_ignore_ascii_case("transfer-encoding") {
            if version != 1 {
                return Parsed::Refused(RefusedHead::Malformed);
            }
            transfer_encoding = true;
            chunked = last_is_chunked(header.value);
        } else if name.eq_ignore_ascii_case("content-length") {
            any_content_length = true;
            if transfer_encoding {
                continue;
            }
            let Some(len) = digits(header.value) else {
                return Parsed::Refused(RefusedHead::Malformed);
            };
            if content_length.is_some_and(|previous| previous != len) {
                return Parsed::Refused(RefusedHead::Malformed);
            }
            // hyper's `DecodedLength::checked_new`.
            if len > u64::MAX - 2 {
                return Parsed::Refused(RefusedHead::TooLarge);
            }
            content_length = Some(len);
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    if transfer_encoding && !chunked {
        return Parsed::Refused(RefusedHead::Malformed);
    }
    let next = match (upgrade, transfer_encoding, content_length) {
        // The bytes after an upgrade may be another protocol.
        (true, _, _) => Framing::Off,
        // hyper closes the connection after a request with both.
        (false, true, _) if any_content_length => Framing::Off,
        (false, true, _) => Framing::Chunked(Chunk::Start),
        (false, false, None | Some(0)) => Framing::Head,
        (false, false, Some(len)) => Framing::Body(len),
    };
    Parsed::Complete(Head {
        len,
        fragment: target.contains('#').then_some(uri),
        next,
    })
}

/// hyper's `headers::is_chunked_`: whether the last transfer coding is `chunked`.
/// Like `HeaderValue::to_str`, it reads only visible ASCII and tabs.
fn last_is_chunked(value: &[u8]) -> bool {
    if !value.iter().all(|&b| b == b'\t' || (32..127).contains(&b)) {
        return false;
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.rsplit(',').next())
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}

/// hyper's `headers::content_length_parse`: ASCII digits only.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, b| {
        let d = char::from(*b).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

#[cfg(test)]
mod tests;
