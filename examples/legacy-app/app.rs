//! "A legacy app": knows nothing about authentication and simply shows the identity headers
//! the gateway adds. Pages: `/` (who am I), `/admin` (admins only, by gateway rule),
//! `/static/style.css` (public), `/api/whoami` (JSON).

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> &'a str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(req: &Request<Incoming>, title: &str) -> String {
    let user = escape(header(req, "x-forwarded-user"));
    let rows: String = [
        "x-forwarded-user",
        "x-forwarded-email",
        "x-forwarded-groups",
        "x-forwarded-for",
        "x-request-id",
        "cookie",
    ]
    .iter()
    .map(|h| {
        format!(
            "<tr><th>{h}</th><td><code>{}</code></td></tr>",
            escape(header(req, h))
        )
    })
    .collect();
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="/static/style.css"></head><body>
<h1>{title}</h1>
<p id="greeting">Hello, <strong id="user">{user}</strong>!</p>
<p>This app has no login code: the gateway in front of it authenticated you and told it who you are.</p>
<table>{rows}</table>
<p><a href="/">Home</a> · <a href="/admin">Admin area</a> (role <code>admin</code>) ·
<form method="post" action="/.gatehouse/logout" style="display:inline"><button>Log out</button></form></p>
</body></html>"#
    )
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (ct, body) = match req.uri().path() {
        "/static/style.css" => ("text/css", "body{font-family:system-ui,sans-serif;margin:2rem}th{text-align:left;padding-right:1rem}".to_string()),
        "/api/whoami" => (
            "application/json",
            serde_json::json!({
                "user": header(&req, "x-forwarded-user"),
                "email": header(&req, "x-forwarded-email"),
                "groups": header(&req, "x-forwarded-groups"),
            })
            .to_string(),
        ),
        p if p == "/admin" || p.starts_with("/admin/") => ("text/html; charset=utf-8", page(&req, "Admin area")),
        _ => ("text/html; charset=utf-8", page(&req, "Legacy app")),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    if let Ok(v) = ct.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    Ok(resp)
}

/// Serves the app on `listener` forever.
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
        });
    }
}
