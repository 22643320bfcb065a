//! A raw `#` in an HTTP/1 request-target (SPEC §7: 400). hyper builds the request's `Uri`
//! with the `http` crate, which cuts `#fragment` off without a trace, so the request the
//! gateway is handed cannot show it. This module watches the bytes hyper reads instead:
//! [`Watched`] wraps a connection's stream and follows HTTP/1 message framing the way hyper
//! does (heads parsed by httparse with hyper's settings, request bodies skipped by
//! `Content-Length` or by the chunked framing), and [`Fragments`] remembers which request
//! heads, counted from the start of the connection, had a `#` in their target. The service
//! counts the requests hyper hands it, in order, and marks the flagged one with
//! [`RawFragment`]; phase 2 refuses it with 400.
//!
//! Anything the tracker does not follow exactly (an upgrade or CONNECT, HTTP/2's preface, a
//! head hyper refuses, a `Transfer-Encoding` that is not chunked or comes with a
//! `Content-Length`) stops the tracking for the rest of that connection; from there a `#`
//! is cut as hyper cuts it, and what remains is both checked and forwarded. A flag is used
//! only when both the request's position and its target (parsed from the raw bytes exactly
//! as hyper parses them) match, so the tracker cannot refuse a request that had no `#`.

use std::collections::VecDeque;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// hyper's limit on header lines in a request head (`DEFAULT_MAX_HEADERS`).
const MAX_HEADERS: usize = 100;

pub use crate::canonicalize::RawFragment;

/// What one connection's tracker found, shared with the service that answers its requests.
#[derive(Debug, Default)]
pub struct Fragments {
    /// Requests handed to the service so far.
    served: AtomicU64,
    /// Whether anything was ever flagged (the common case reads only this).
    any: AtomicBool,
    /// (head index, the target as hyper parses it) of heads whose target held `#`.
    flagged: Mutex<VecDeque<(u64, http::Uri)>>,
}

impl Fragments {
    /// Called once for each request hyper hands the service, in order: whether this
    /// request's raw target held a `#`.
    pub fn had_fragment(&self, uri: &http::Uri) -> bool {
        let index = self.served.fetch_add(1, Ordering::Relaxed);
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let mut flagged = self.flagged.lock().unwrap_or_else(PoisonError::into_inner);
        // Flags of heads that never reached the service (hyper refused them) are behind us.
        while flagged.front().is_some_and(|(i, _)| *i < index) {
            flagged.pop_front();
        }
        match flagged.front() {
            Some((i, flagged_uri)) if *i == index => {
                let hit = flagged_uri == uri;
                flagged.pop_front();
                hit
            }
            _ => false,
        }
    }

    fn flag(&self, index: u64, uri: http::Uri) {
        self.flagged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back((index, uri));
        self.any.store(true, Ordering::Release);
    }
}

/// Reads `stream` as the start of one connection and returns how many request heads the
/// tracker counted in it (for the hot-path benchmark).
pub fn count_heads(stream: &[u8]) -> u64 {
    let mut tracker = Tracker::new(usize::MAX);
    tracker.feed(stream, &Fragments::default());
    tracker.heads
}

/// A connection's stream, with a tracker reading along.
pub struct Watched<IO> {
    io: IO,
    tracker: Tracker,
    fragments: Arc<Fragments>,
}

impl<IO> Watched<IO> {
    /// `max_head`: the most bytes a request head may take (hyper's `max_buf_size`).
    pub fn new(io: IO, fragments: Arc<Fragments>, max_head: usize) -> Self {
        Self {
            io,
            tracker: Tracker::new(max_head),
            fragments,
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
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.tracker.feed(&buf.filled()[before..], &this.fragments);
        }
        polled
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
    /// The start of a head that has not fully arrived yet.
    partial: Vec<u8>,
    /// Request heads seen so far.
    heads: u64,
    /// The size of the chunk being read.
    chunk_size: u64,
    max_head: usize,
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

impl Tracker {
    fn new(max_head: usize) -> Self {
        Self {
            framing: Framing::Head,
            partial: Vec::new(),
            heads: 0,
            chunk_size: 0,
            max_head,
        }
    }

    /// Reads along `data`, the next bytes of the stream.
    fn feed(&mut self, mut data: &[u8], fragments: &Fragments) {
        while !data.is_empty() {
            match self.framing {
                Framing::Off => return,
                Framing::Head => data = self.head(data, fragments),
                Framing::Body(left) => {
                    let (rest, left) = skip(data, left);
                    data = rest;
                    self.framing = if left == 0 {
                        Framing::Head
                    } else {
                        Framing::Body(left)
                    };
                }
                Framing::Chunked(Chunk::Data(left)) => {
                    let (rest, left) = skip(data, left);
                    data = rest;
                    self.framing = Framing::Chunked(if left == 0 {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(left)
                    });
                }
                Framing::Chunked(state) => {
                    self.framing = self.chunk_byte(state, data[0]);
                    data = &data[1..];
                }
            }
        }
    }

    /// Reads a request head from `data`; returns what follows it.
    fn head<'a>(&mut self, data: &'a [u8], fragments: &Fragments) -> &'a [u8] {
        let before = self.partial.len();
        let parsed = if before == 0 {
            parse_head(data)
        } else {
            self.partial.extend_from_slice(data);
            parse_head(&self.partial)
        };
        match parsed {
            Parsed::Partial => {
                if before == 0 {
                    self.partial.extend_from_slice(data);
                }
                if self.partial.len() > self.max_head {
                    self.stop();
                }
                &[]
            }
            Parsed::Bad => {
                self.stop();
                &[]
            }
            Parsed::Complete(head) => {
                let Some(rest) = head.len.checked_sub(before).and_then(|n| data.get(n..)) else {
                    self.stop();
                    return &[];
                };
                self.partial.clear();
                if let Some(uri) = head.fragment {
                    fragments.flag(self.heads, uri);
                }
                self.heads += 1;
                self.framing = head.next;
                rest
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
    /// A head hyper refuses (it answers 400 and closes), or one the tracker does not follow.
    Bad,
}

/// Reads a request head the way hyper does.
fn parse_head(buf: &[u8]) -> Parsed {
    quick_head(buf).unwrap_or_else(|| full_head(buf))
}

/// The common head in a fraction of a full parse: CRLF line ends, an HTTP/1 request line
/// without `#` or CONNECT, and no header line that changes the framing. It only finds where the head ends;
/// `None` sends anything else to [`full_head`]. A head that only this path accepts is one
/// hyper refuses with 400, closing the connection, so it cannot shift the count.
fn quick_head(buf: &[u8]) -> Option<Parsed> {
    let mut lines = memchr::memchr_iter(b'\n', buf);
    let first = lines.next()?;
    // Empty lines before the request line, a `#` in it, or a bare LF: the full parse.
    if first == 0 || buf[first - 1] != b'\r' {
        return None;
    }
    let request_line = &buf[..first - 1];
    if matches!(buf[0], b'\r' | b'\n')
        || memchr::memchr(b'#', request_line).is_some()
        || request_line.starts_with(b"CONNECT ")
        || !(request_line.ends_with(b" HTTP/1.1") || request_line.ends_with(b" HTTP/1.0"))
    {
        return None;
    }
    let mut start = first + 1;
    for end in lines {
        if buf[end - 1] != b'\r' {
            return None;
        }
        let line = &buf[start..end - 1];
        if line.is_empty() {
            return Some(Parsed::Complete(Head {
                len: end + 1,
                fragment: None,
                next: Framing::Head,
            }));
        }
        if matches!(line[0], b'c' | b'C' | b't' | b'T' | b'u' | b'U')
            && FRAMING_HEADERS.iter().any(|name| {
                line.len() > name.len()
                    && line[name.len()] == b':'
                    && line[..name.len()].eq_ignore_ascii_case(name)
            })
        {
            return None;
        }
        start = end + 1;
    }
    Some(Parsed::Partial)
}

/// Header lines that change where the next request head starts (httparse allows no space
/// before the colon in a request).
const FRAMING_HEADERS: [&[u8]; 3] = [b"content-length", b"transfer-encoding", b"upgrade"];

/// Parses a request head with hyper's parser settings and its framing rules
/// (`proto::h1::role::Server::parse`).
fn full_head(buf: &[u8]) -> Parsed {
    let mut headers = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        buf,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Bad,
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Parsed::Bad;
    };
    let mut upgrade = method == "CONNECT";
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked = false;
    for header in req.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("transfer-encoding") {
            if version != 1 {
                return Parsed::Bad;
            }
            transfer_encoding = true;
            chunked = last_is_chunked(header.value);
        } else if name.eq_ignore_ascii_case("content-length") {
            let Some(len) = digits(header.value) else {
                return Parsed::Bad;
            };
            if content_length.is_some_and(|previous| previous != len) {
                return Parsed::Bad;
            }
            content_length = Some(len);
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    let next = match (upgrade, transfer_encoding, content_length) {
        // The bytes after an upgrade may be another protocol.
        (true, _, _) => Framing::Off,
        // hyper closes the connection after a request with both.
        (false, true, Some(_)) => Framing::Off,
        (false, true, None) if chunked => Framing::Chunked(Chunk::Start),
        (false, true, None) => return Parsed::Bad,
        (false, false, None | Some(0)) => Framing::Head,
        (false, false, Some(len)) => Framing::Body(len),
    };
    let fragment = if target.contains('#') {
        // The same call hyper makes on the same bytes, so the flagged request's `Uri` is
        // exactly the one the service will be handed.
        http::Uri::from_maybe_shared(bytes::Bytes::copy_from_slice(target.as_bytes())).ok()
    } else {
        None
    };
    Parsed::Complete(Head {
        len,
        fragment,
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
