//! The one response body type: our own small bodies and streamed upstream bodies alike.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

/// A polled body frame, with trailers turned into the end of the body: trailers arrive after
/// the header policies ran, so neither a client's nor an upstream's are passed on (SPEC §7).
/// RFC 9110 §6.5.1 lets a recipient discard trailers.
pub fn end_at_trailers<D, E>(
    polled: std::task::Poll<Option<Result<http_body::Frame<D>, E>>>,
) -> std::task::Poll<Option<Result<http_body::Frame<D>, E>>> {
    match polled {
        std::task::Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => {
            std::task::Poll::Ready(None)
        }
        polled => polled,
    }
}

pub fn stream<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}
