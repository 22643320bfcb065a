//! The real gateway on 127.0.0.1:0 (in process), and the test configs.
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

    /// The error a config that must be refused is refused with, as the operator reads it.
    pub async fn refused_in(dir: PathBuf, yaml: &str) -> String {
        Self::start_in(dir, yaml)
            .await
            .err()
            .expect("the config was accepted")
            .to_string()
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
