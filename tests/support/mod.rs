//! Test harness: the real gateway on 127.0.0.1:0 in front of a real recording upstream, over
//! real sockets. No mocks of our own components.
#![allow(dead_code)]

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

pub mod binary;
pub mod external;
pub mod oidc;

pub const SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// Password hashes are expensive; make each once per test binary.
pub fn hash_of(password: &str) -> String {
    static CACHE: OnceLock<Mutex<BTreeMap<String, String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap();
    cache
        .entry(password.to_string())
        .or_insert_with(|| {
            gatehouse::authenticate::users::hash_password(password.as_bytes()).unwrap()
        })
        .clone()
}

// ---------------------------------------------------------------- recording upstream

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }
    /// Every header name, lowercased as hyper stores it.
    pub fn names(&self) -> Vec<String> {
        self.headers
            .keys()
            .map(|k| k.as_str().to_string())
            .collect()
    }
}

pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Recorded>>>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn upstream_handle(
    mut req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Recorded>>>,
) -> Result<Response<http_body_util::combinators::BoxBody<Bytes, Infallible>>, Infallible> {
    if req.uri().path() == "/ws" {
        return Ok(websocket_echo(&mut req, &seen));
    }
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    // `/stream-echo` answers before reading: proves the request body streams.
    let body = if path == "/no-read" {
        Bytes::new()
    } else {
        body.collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default()
    };
    seen.lock().unwrap().push(Recorded {
        method: parts.method.clone(),
        uri: parts.uri.to_string(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    let ok = |b: Bytes| Response::new(Full::new(b).boxed());
    Ok(match path.as_str() {
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            ok(Bytes::from_static(b"slow"))
        }
        "/echo-body" => ok(body),
        "/set-app-cookie" => {
            let mut r = ok(Bytes::from_static(b"cookie set"));
            r.headers_mut()
                .insert("set-cookie", "app_session=xyz; Path=/".parse().unwrap());
            r
        }
        "/stream" => {
            // Three chunks with pauses: the client must see the first before the last is sent.
            let chunks = futures_stream(vec![
                b"first;".to_vec(),
                b"second;".to_vec(),
                b"third".to_vec(),
            ]);
            Response::new(StreamBody::new(chunks).boxed())
        }
        _ => {
            let mut r = ok(Bytes::from(format!(
                "upstream saw {} {}",
                parts.method, parts.uri
            )));
            r.headers_mut().insert("x-upstream", "yes".parse().unwrap());
            r
        }
    })
}

/// Completes a WebSocket handshake (RFC 6455 §4.2.2) and echoes every byte back.
fn websocket_echo(
    req: &mut Request<Incoming>,
    seen: &Arc<Mutex<Vec<Recorded>>>,
) -> Response<http_body_util::combinators::BoxBody<Bytes, Infallible>> {
    seen.lock().unwrap().push(Recorded {
        method: req.method().clone(),
        uri: req.uri().to_string(),
        headers: req.headers().clone(),
        body: Bytes::new(),
    });
    let key = req
        .headers()
        .get("sec-websocket-key")
        .map(|k| k.as_bytes().to_vec())
        .unwrap_or_default();
    let mut input = key;
    input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    use base64::Engine as _;
    let accept = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let mut io = TokioIo::new(upgraded);
            let mut buf = [0u8; 1024];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    });
    let mut r = Response::new(Full::new(Bytes::new()).boxed());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    r.headers_mut()
        .insert("upgrade", "websocket".parse().unwrap());
    r.headers_mut()
        .insert("connection", "upgrade".parse().unwrap());
    r.headers_mut()
        .insert("sec-websocket-accept", accept.parse().unwrap());
    r
}

fn futures_stream(
    chunks: Vec<Vec<u8>>,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        for c in chunks {
            if tx.send(Ok(Frame::data(Bytes::from(c)))).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    tokio_stream_from(rx)
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_core::Stream<Item = T> + Send + Sync + 'static {
    struct S<T>(Mutex<tokio::sync::mpsc::Receiver<T>>);
    impl<T> futures_core::Stream for S<T> {
        type Item = T;
        fn poll_next(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<T>> {
            self.0.lock().unwrap().poll_recv(cx)
        }
    }
    let _ = &mut rx;
    S(Mutex::new(rx))
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| upstream_handle(req, s.clone()));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream { addr, seen, task }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn last(&self) -> Recorded {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the upstream saw no request")
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

// ---------------------------------------------------------------- gateway

pub struct TestGateway {
    pub addr: SocketAddr,
    /// The admin listener, when the config has `admin`.
    pub admin_addr: Option<SocketAddr>,
    /// The HTTPS listener, when the config has `server.tls`.
    pub tls_addr: Option<SocketAddr>,
    pub gw: Arc<gatehouse::Gateway>,
    pub dir: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// The test configs' environment: the secret, and `GATEHOUSE_EXPRESS_LANE` from the real one
/// (so `GATEHOUSE_EXPRESS_LANE=0 cargo test` keeps the lane off across reloads too).
fn env(name: &str) -> Option<String> {
    match name {
        "TEST_SECRET" => Some(SECRET.to_string()),
        gatehouse::config::EXPRESS_LANE_ENV => gatehouse::config::process_env(name),
        _ => None,
    }
}

pub fn temp_dir() -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("gatehouse-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A config with users alice (admin, staff), bob (staff), carol (disabled), HS256, cookies
/// without `Secure` (plain-HTTP tests), and `{routes}` appended. `UPSTREAM` in the text is
/// replaced by the upstream's URL.
pub fn base_yaml(upstream: &str, extra: &str) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:0"
tokens:
  algorithm: HS256
  secret: "${{TEST_SECRET}}"
  access_ttl: 5m
  leeway: 0s
cookies:
  secure: false
users:
  - username: alice
    password_hash: "{alice}"
    email: alice@example.com
    roles: [admin, staff]
  - username: bob
    password_hash: "{bob}"
    roles: [staff]
  - username: carol
    password_hash: "{carol}"
    roles: [staff]
    disabled: true
{extra}"#,
        alice = hash_of("alice-pw"),
        bob = hash_of("bob-pw"),
        carol = hash_of("carol-pw"),
    )
    .replace("UPSTREAM", upstream)
}

pub fn default_routes() -> &'static str {
    r#"routes:
  - name: app
    upstream: "UPSTREAM"
    public: ["/public/", "/favicon.ico"]
    rules:
      - path_prefix: /admin
        allow_roles: [admin]
"#
}

impl TestGateway {
    pub async fn start(yaml: &str) -> TestGateway {
        Self::try_start(yaml)
            .await
            .unwrap_or_else(|e| panic!("config refused: {e}"))
    }

    pub async fn try_start(yaml: &str) -> Result<TestGateway, gatehouse::config::ConfigErrors> {
        Self::start_in(temp_dir(), yaml).await
    }

    pub async fn start_in(
        dir: PathBuf,
        yaml: &str,
    ) -> Result<TestGateway, gatehouse::config::ConfigErrors> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, dir, yaml).await
    }

    /// On a listener bound beforehand: for configs that name their own address
    /// (`public_url`, redirect URIs registered at an identity provider).
    pub async fn start_on(
        listener: TcpListener,
        dir: PathBuf,
        yaml: &str,
    ) -> Result<TestGateway, gatehouse::config::ConfigErrors> {
        gatehouse::install_crypto_providers();
        let path = dir.join("gateway.yaml");
        std::fs::write(&path, yaml).unwrap();
        let config = gatehouse::config::parse(yaml, &path, env)?;
        let addr = listener.local_addr().unwrap();
        let has_admin = config.admin.is_some();
        let has_tls = config.tls.is_some();
        let gw = gatehouse::Gateway::new(config).expect("the store opens");
        // `GATEHOUSE_EXPRESS_LANE=0 cargo test` runs every test with the express lane off: the
        // config reads it through `env`.
        let admin_addr = if has_admin {
            let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let admin_addr = admin.local_addr().unwrap();
            tokio::spawn(gatehouse::serve_admin(
                admin,
                gw.clone(),
                std::future::pending(),
            ));
            Some(admin_addr)
        } else {
            None
        };
        let tls_addr = if has_tls {
            let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let tls_addr = tls.local_addr().unwrap();
            tokio::spawn(gatehouse::serve_tls(
                tls,
                gw.clone(),
                std::future::pending(),
            ));
            Some(tls_addr)
        } else {
            None
        };
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(gatehouse::serve(listener, gw.clone(), async {
            let _ = rx.await;
        }));
        Ok(TestGateway {
            addr,
            admin_addr,
            tls_addr,
            gw,
            dir,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// Replaces the running config with `yaml`, as a reload would.
    pub async fn apply(&self, yaml: &str) {
        let path = self.dir.join("gateway.yaml");
        let config = gatehouse::config::parse(yaml, &path, env).unwrap();
        self.gw.apply_config(config).await;
    }

    pub fn client(&self) -> Client {
        Client::new(self.addr)
    }

    /// Stops the gateway and fails the test if its task panicked.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("gateway task panicked")
                .expect("serve failed");
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

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
        let stream = TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
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

/// A loopback port nothing listens on (bound, then released).
pub fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends raw bytes and returns everything the gateway answered before closing (or 5 s).
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP response.
pub fn raw_status(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A gateway that still answers its health check.
pub async fn assert_alive(addr: SocketAddr) {
    let r = Client::new(addr).get("/.gatehouse/healthz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "ok\n");
}

/// A gateway config for forward-auth tests: loopback proxies trusted, 1 s access tokens and
/// refresh grace, so a test can wait past both.
pub fn forward_auth_yaml(up: &Upstream) -> String {
    base_yaml(&up.url(), default_routes())
        .replace(
            "server:\n",
            "server:\n  trusted_proxies: [\"127.0.0.1/32\"]\n",
        )
        .replace(
            "  access_ttl: 5m\n",
            "  access_ttl: 1s\n  refresh_reuse_grace: 1s\n",
        )
}

/// Past `access_ttl` (twice): the proxy in front must deliver both refreshed cookies, and the
/// rotated refresh token must keep working (a lost one trips reuse detection after grace).
pub async fn refreshed_cookies_reach_the_browser(client: &Client, path: &str) {
    for round in 0..2 {
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        client.clear_cookie("gatehouse_access");
        let old_refresh = client.cookie("gatehouse_refresh").unwrap();
        let r = client.get(path).await;
        assert_eq!(r.status, http::StatusCode::OK, "round {round}");
        assert!(
            r.cookie("gatehouse_access").is_some(),
            "round {round}: {:?}",
            r.set_cookies()
        );
        let new_refresh = r
            .cookie("gatehouse_refresh")
            .expect("the rotated refresh cookie reached the browser");
        assert_ne!(new_refresh, old_refresh);
    }
}
