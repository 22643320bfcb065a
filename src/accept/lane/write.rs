//! The lane's answer on the wire: a response written as hyper's HTTP/1.1 server would write
//! it (moved out of `lane.rs` unchanged).

use std::io;

use futures_util::FutureExt;
use http::header::{CONNECTION, CONTENT_LENGTH, DATE};
use http::{Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::body::Body;

/// Writes a response as hyper's HTTP/1.1 server encodes it (`Server::encode_headers`), for the
/// heads [`proxy`] and [`finish`] produce — which carry no `Transfer-Encoding` or `Trailer`
/// (the response policy removes them) — and says whether the connection stays open (not
/// when the head says `Connection: close`, as hyper's server closes then):
/// - the status line with the upstream's reason phrase when hyper's client kept one;
/// - headers in map order, names lowercase; only the first `Content-Length`;
/// - the body by its length: an upstream `Content-Length` as is; else a known length as
///   `content-length` (none added for `HEAD`, and none at all for 1xx, 204, 304); else chunked;
///   no body bytes for `HEAD`, 204 and 304; trailers dropped;
/// - `date` when the response has none.
pub(super) async fn write_response<IO>(
    io: &mut IO,
    response: Response<Body>,
    is_head: bool,
    out: &mut Vec<u8>,
) -> io::Result<bool>
where
    IO: AsyncWrite + Unpin,
{
    let (parts, mut body) = response.into_parts();
    let keep_alive = !parts
        .headers
        .get_all(CONNECTION)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let status = parts.status;
    let no_length = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let can_have_body = !(is_head || no_length);
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    match parts.extensions.get::<hyper::ext::ReasonPhrase>() {
        Some(reason) => out.extend_from_slice(reason.as_bytes()),
        None => out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes()),
    }
    out.extend_from_slice(b"\r\n");
    // hyper's `BodyLength`: none for a body already at its end, else known or unknown.
    let length = match (body.is_end_stream(), body.size_hint().exact()) {
        (true, _) => None,
        (false, exact) => Some(exact),
    };
    let mut wrote_length = false;
    let mut has_date = false;
    for (name, value) in &parts.headers {
        if *name == CONTENT_LENGTH {
            // The first one only; for an empty body, only when answering `HEAD` (else hyper
            // writes its own `0` below).
            if wrote_length || (length.is_none() && !is_head) {
                continue;
            }
            wrote_length = true;
        }
        has_date |= *name == DATE;
        write_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    let mut chunked = false;
    if !wrote_length && !no_length {
        match length {
            Some(None) if can_have_body => {
                write_header(out, b"transfer-encoding", b"chunked");
                chunked = true;
            }
            Some(None) => {}
            None | Some(Some(0)) if !is_head => write_header(out, b"content-length", b"0"),
            None | Some(Some(0)) => {}
            Some(Some(n)) => write_header(out, b"content-length", n.to_string().as_bytes()),
        }
    }
    if !has_date {
        date_header(out);
    }
    out.extend_from_slice(b"\r\n");
    if !can_have_body || length.is_none() {
        return io.write_all(out).await.map(|()| keep_alive);
    }
    // The body, frame by frame, as it arrives: a frame that is ready joins what is waiting to
    // be written (the head goes out with the first one); before waiting for the next frame,
    // what is there is written, so a streamed body is never held back.
    loop {
        let frame = match body.frame().now_or_never() {
            Some(frame) => frame,
            None => {
                io.write_all(out).await?;
                out.clear();
                body.frame().await
            }
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(io::Error::other)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers: dropped, as hyper's server drops them without `TE: trailers`
        };
        if chunked {
            if !data.is_empty() {
                use std::io::Write;
                // Uppercase hex, as hyper writes chunk sizes.
                let _ = write!(out, "{:X}\r\n", data.len());
                out.extend_from_slice(&data);
                out.extend_from_slice(b"\r\n");
            }
        } else {
            out.extend_from_slice(&data);
        }
        if out.len() >= 64 * 1024 {
            io.write_all(out).await?;
            out.clear();
        }
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    io.write_all(out).await.map(|()| keep_alive)
}

fn write_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
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
        write_header(out, b"date", cached.1.as_bytes());
    });
}
