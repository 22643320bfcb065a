//! One request, top to bottom: accept → canonicalize → route → authenticate → authorize →
//! forward, then [`finish`]: the single exit that maps errors to responses and writes the
//! request's log line. No phase logs its own failure. The state lives in `runtime.rs`, the
//! decision of phases 3–5 in `decision.rs`.

use std::sync::Arc;
use std::time::Instant;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use tracing::{field, Instrument};

use crate::body::Body;
use crate::canonicalize::{
    under_prefix, CanonicalError, CanonicalRequest, RawFragment, RefusedHead,
};
use crate::config::Config;
use crate::decision::{canonical_request, decide, record_refusal, Admitted, Decision};
use crate::error::{Blame, GatewayError};
use crate::forward::client::Outgoing;
use crate::forward::headers::X_REQUEST_ID;
use crate::runtime::{request_ctx, Conn, Gateway, RequestCtx};
use crate::telemetry::metrics::RouteKind;
use crate::{endpoints, forward};

/// The size of the per-request future, for the benchmark that keeps it small.
pub fn request_future_size(gw: Arc<Gateway>, req: Request<Incoming>, conn: Conn) -> usize {
    std::mem::size_of_val(&handle(gw, req, conn))
}

pub async fn handle(gw: Arc<Gateway>, req: Request<Incoming>, conn: Conn) -> Response<Body> {
    let started = Instant::now();
    let config = gw.config();
    let ctx = request_ctx(&config, req.method(), req.uri().path(), req.headers(), conn);
    let span = request_span(&ctx, req.method());
    let method = req.method().clone();
    // Pinned where it is made, and the span wrapped around the pin: wrapped by value, the
    // whole request future (~2.8 KB) would be copied into the wrapper on every request.
    let work = std::pin::pin!(process(&gw, &config, req, &ctx));
    let result = work.instrument(span.clone()).await;
    finish(&gw, &config, &ctx, &method, result, started, &span)
}

/// The span every line about one request is logged in.
pub(crate) fn request_span(ctx: &RequestCtx, method: &Method) -> tracing::Span {
    tracing::info_span!(
        "request",
        request_id = %ctx.request_id,
        client.ip = %ctx.client_ip,
        method = %method,
        route = field::Empty,
        user = field::Empty,
    )
}

async fn process(
    gw: &Arc<Gateway>,
    config: &Config,
    req: Request<Incoming>,
    ctx: &RequestCtx,
) -> Result<Response<Body>, GatewayError> {
    // 2. canonicalize
    if let Some(refused) = req.extensions().get::<RefusedHead>() {
        return Err(GatewayError::HeadRefused(*refused));
    }
    if req.extensions().get::<RawFragment>().is_some() {
        return Err(CanonicalError::Fragment.into());
    }
    let canon = canonical_request(req.uri(), req.headers(), req.version())?;
    if under_prefix(canon.path(), &config.auth_prefix) {
        let _ = ctx.route.set(gw.metrics.gateway_route.clone());
        // Boxed: the gateway's own pages (login, refresh, ...) have big futures that the
        // proxied hot path should not carry (hyper moves the request future).
        return Box::pin(endpoints::serve(gw, config, req, &canon, ctx)).await;
    }
    proxy(gw, config, &canon, req.map(Outgoing::Streamed), ctx).await
}

/// Phases 3–6 for a request to an app (not to the gateway's own pages): the one decision, the
/// transparent refresh when it asks for one, then forwarding. hyper's path and the express
/// lane both serve every such request through here, so they refuse, redirect, refresh and
/// forward alike.
pub(crate) async fn proxy(
    gw: &Arc<Gateway>,
    config: &Config,
    canon: &CanonicalRequest,
    req: Request<Outgoing>,
    ctx: &RequestCtx,
) -> Result<Response<Body>, GatewayError> {
    // 3.–5. route, authenticate, authorize: the one decision.
    let decision = decide(config, &gw.store, canon, req.method(), req.headers(), ctx);
    let admitted = match decision {
        Decision::Forward(admitted) => admitted,
        Decision::Refuse(e) => {
            record_refusal(gw, &e);
            return Err(e);
        }
        Decision::Refresh(pending) => {
            // Boxed: rotation (and its store I/O) is rare next to plain verification; keep
            // its state out of every request's future.
            let admitted = Box::pin(pending.refresh(gw, config, ctx.now_ms)).await;
            admitted.inspect_err(|e| record_refusal(gw, e))?
        }
    };
    admitted.record(gw);
    let Admitted {
        matched,
        permit,
        identity,
        set_cookies,
        cookies,
        ..
    } = admitted;
    // 6. forward
    let upgrading = req.headers().contains_key(http::header::UPGRADE);
    let tunnel_watch = identity.as_ref().filter(|_| upgrading).map(|id| {
        let (gw, sid) = (gw.clone(), id.sid().to_string());
        Box::new(move || !gw.store.is_revoked(&sid)) as forward::TunnelWatch
    });
    let mut response = forward::forward(
        &gw.client,
        config,
        matched.route,
        permit,
        identity.as_ref(),
        cookies,
        canon,
        req,
        &ctx.origin(),
        tunnel_watch,
    )
    .await?;
    forward::response::add_session_cookies(response.headers_mut(), set_cookies);
    Ok(response)
}

/// The single exit: error → response, then one log line.
pub(crate) fn finish(
    gw: &Gateway,
    config: &Config,
    ctx: &RequestCtx,
    method: &Method,
    result: Result<Response<Body>, GatewayError>,
    started: Instant,
    span: &tracing::Span,
) -> Response<Body> {
    let _entered = span.enter();
    let upstream_kind = match &result {
        Err(GatewayError::Upstream(e)) => Some(e.kind()),
        _ => None,
    };
    let (mut response, error) = match result {
        Ok(r) => (r, None),
        Err(e) => {
            let blame = e.blame();
            let message = e.to_string();
            let shown = crate::error::Shown {
                wants_html: ctx.pages,
                request_id: &ctx.request_id,
                oidc: &gw.oidc,
            };
            (e.into_response(config, shown), Some((blame, message)))
        }
    };
    if let Some(v) = request_id_value(&ctx.request_id) {
        response.headers_mut().insert(&X_REQUEST_ID, v);
    }
    record(
        gw,
        ctx,
        method,
        response.status().as_u16(),
        started,
        upstream_kind,
        error,
    );
    response
}

/// A finished request's metrics and its one log line; the caller is inside its span. The
/// express lane, which writes its response heads itself, ends its requests here too.
pub(crate) fn record(
    gw: &Gateway,
    ctx: &RequestCtx,
    method: &Method,
    status: u16,
    started: Instant,
    upstream_kind: Option<&'static str>,
    error: Option<(Blame, String)>,
) {
    let elapsed = started.elapsed().as_secs_f64();
    // Microsecond resolution, printed as a short decimal (`0.039`, not `0.038627999999999996`).
    let latency_ms = (elapsed * 1e6).round() / 1e3;
    let route = ctx.route.get().unwrap_or(&gw.metrics.no_route);
    gw.metrics.request_done(route, status, elapsed);
    if let Some(kind) = upstream_kind {
        gw.metrics
            .upstream_errors
            .get_or_create(&RouteKind {
                route: route.clone(),
                kind,
            })
            .inc();
    }
    match error {
        None => tracing::info!(status, latency_ms, %method, "request"),
        Some((Blame::Client, error)) => {
            tracing::info!(status, latency_ms, %method, error, "request")
        }
        Some((Blame::Upstream, error)) => {
            tracing::warn!(status, latency_ms, %method, error, "request")
        }
        Some((Blame::Gateway, error)) => {
            tracing::error!(status, latency_ms, %method, error, "request")
        }
    }
}

/// The response's `x-request-id` value. Unique per response, so HTTP/2's header compression is
/// told never to index it (sensitive): otherwise every id would go into the connection's
/// table, evicting entries that repeat and lengthening the chain the next response's id is
/// compared against (measured: +3.9% HTTP/2 requests per core without that work).
fn request_id_value(request_id: &str) -> Option<http::HeaderValue> {
    let mut v = http::HeaderValue::from_str(request_id).ok()?;
    v.set_sensitive(true);
    Some(v)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_request_id_is_never_indexed_by_header_compression() {
        let v = super::request_id_value("ak5JoxLS4TC4Y7Px").unwrap();
        assert_eq!(v, "ak5JoxLS4TC4Y7Px");
        assert!(v.is_sensitive());
        // An id that is not a header value is left out rather than sent broken.
        assert!(super::request_id_value("a\r\nb").is_none());
    }
}
