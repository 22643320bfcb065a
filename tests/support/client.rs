//! An HTTP/1.1 client with a cookie jar, one connection per request.
#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;

// ---------------------------------------------------------------- client

#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }
    /// The value a `Set-Cookie` gave `name`, if any.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies().iter().find_map(|c| {
            let first = c.split(';').next()?;
            let (n, v) = first.split_once('=')?;
            (n == name).then(|| v.to_string())
        })
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// An HTTP/1.1 client with a cookie jar, one connection per request.
#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    pub jar: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            jar: Default::default(),
        }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar.lock().unwrap().get(name).cloned()
    }

    pub fn set_cookie(&self, name: &str, value: &str) {
        self.jar.lock().unwrap().insert(name.into(), value.into());
    }

    pub fn clear_cookie(&self, name: &str) {
        self.jar.lock().unwrap().remove(name);
    }

    pub async fn send(&self, req: Request<Full<Bytes>>) -> Resp {
        self.try_send(req)
            .await
            .unwrap_or_else(|e| panic!("request failed: {e}"))
    }

    /// Like `send`, but a dead or dying gateway is an `Err`, not a panic.
    pub async fn try_send(&self, mut req: Request<Full<Bytes>>) -> Result<Resp, String> {
        let cookies: Vec<String> = self
            .jar
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !cookies.is_empty() && !req.headers().contains_key("cookie") {
            req.headers_mut()
                .insert("cookie", cookies.join("; ").parse().unwrap());
        }
        if !req.headers().contains_key("host") {
            req.headers_mut()
                .insert("host", self.addr.to_string().parse().unwrap());
        }
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let resp = tokio::time::timeout(Duration::from_secs(30), sender.send_request(req))
            .await
            .map_err(|_| "the gateway did not answer within 30s".to_string())?
            .map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let resp = Resp {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        let mut jar = self.jar.lock().unwrap();
        for c in resp.set_cookies() {
            let Some((n, v)) = c.split(';').next().and_then(|f| f.split_once('=')) else {
                continue;
            };
            if c.contains("Max-Age=0") || v.is_empty() {
                jar.remove(n);
            } else {
                jar.insert(n.to_string(), v.to_string());
            }
        }
        Ok(resp)
    }

    pub fn request(method: Method, path: &str) -> http::request::Builder {
        Request::builder().method(method).uri(path)
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Request::get(path).body(Full::default()).unwrap())
            .await
    }

    /// A browser navigation.
    pub async fn navigate(&self, path: &str) -> Resp {
        self.send(
            Request::get(path)
                .header("accept", "text/html,application/xhtml+xml")
                .body(Full::default())
                .unwrap(),
        )
        .await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut b = Request::get(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(Full::default()).unwrap()).await
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Resp {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.send(
            Request::post(path)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from(body)))
                .unwrap(),
        )
        .await
    }

    pub async fn post_json(&self, path: &str, json: serde_json::Value) -> Resp {
        self.send(
            Request::post(path)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(json.to_string())))
                .unwrap(),
        )
        .await
    }

    /// Logs in through the form and fails the test if that does not work.
    pub async fn login(&self, user: &str, password: &str) -> Resp {
        let r = self
            .post_form(
                "/.gatehouse/login",
                &[("username", user), ("password", password), ("rd", "/")],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "login failed: {}", r.body);
        r
    }

    /// Logs in as an API client and returns the token response.
    pub async fn login_json(&self, user: &str, password: &str) -> serde_json::Value {
        let r = self
            .post_json(
                "/.gatehouse/login",
                serde_json::json!({"username": user, "password": password}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "login failed: {}", r.body);
        r.json()
    }
}
