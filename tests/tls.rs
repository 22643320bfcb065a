//! The HTTPS listener (SPEC §3 `server.tls`, §5): rustls with a test CA, HTTP/2 and
//! HTTP/1.1 by ALPN, `Secure` + `__Host-` cookies, certificates reloaded with the config.

mod support;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, ServerName};
use support::external;
use support::*;

struct Ca {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca() -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        cert_der: cert.der().clone(),
        cert_pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// Writes a leaf certificate for localhost/127.0.0.1 and its key; returns the cert DER.
fn leaf(ca: &Ca, dir: &Path) -> CertificateDer<'static> {
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    cert.der().clone()
}

fn client_config(ca: &Ca, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut c = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

struct TlsResp {
    status: StatusCode,
    version: Version,
    set_cookies: Vec<String>,
    peer_cert: CertificateDer<'static>,
    body: Bytes,
}

async fn send(addr: std::net::SocketAddr, ca: &Ca, h2: bool, req: Request<Full<Bytes>>) -> TlsResp {
    let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
    let connector = tokio_rustls::TlsConnector::from(client_config(ca, alpn));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let peer_cert = tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned();
    let negotiated = tls.get_ref().1.alpn_protocol().map(|p| p.to_vec());
    assert_eq!(negotiated.as_deref(), Some(alpn[0]));
    let resp = if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    };
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    TlsResp {
        body,
        status: parts.status,
        version: parts.version,
        set_cookies: parts
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect(),
        peer_cert,
    }
}

fn tls_yaml(up: &Upstream) -> String {
    base_yaml(&up.url(), default_routes())
        .replace("cookies:\n  secure: false\n", "cookies:\n  secure: true\n")
        .replace(
            "server:\n",
            "server:\n  tls:\n    listen: \"127.0.0.1:0\"\n    cert: cert.pem\n    key: key.pem\n",
        )
}

#[tokio::test]
async fn https_with_h2_and_http1_secure_cookies_and_identity() {
    let up = Upstream::start().await;
    let ca = ca();
    let dir = temp_dir();
    leaf(&ca, &dir);
    let gw = TestGateway::start_in(dir, &tls_yaml(&up)).await.unwrap();
    let addr = gw.tls_addr.unwrap();
    let login = Request::post("https://localhost/.gatehouse/login")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            r#"{"username":"alice","password":"alice-pw"}"#,
        )))
        .unwrap();
    let r = send(addr, &ca, true, login).await;
    assert_eq!((r.status, r.version), (StatusCode::OK, Version::HTTP_2));
    let access = r
        .set_cookies
        .iter()
        .find(|c| c.starts_with("__Host-gatehouse_access="))
        .expect("__Host- cookie");
    assert!(
        access.contains("Secure")
            && access.contains("HttpOnly")
            && access.contains("Path=/")
            && !access.contains("Domain")
    );
    let cookie = access.split(';').next().unwrap().to_string();
    for h2 in [true, false] {
        let req = Request::get(if h2 { "https://localhost/app" } else { "/app" })
            .header("host", "localhost")
            .header("cookie", &cookie)
            .body(Full::default())
            .unwrap();
        let lane_before = gw.gw.lane_served();
        let r = send(addr, &ca, h2, req).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.version,
            if h2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            }
        );
        let seen = up.last();
        assert_eq!(seen.header("x-forwarded-user"), Some("alice"));
        assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
        assert!(seen.header("cookie").is_none());
        // HTTPS/1.1 goes through the express lane like plain HTTP (unless it is switched
        // off); HTTP/2 through hyper.
        let lane = gatehouse::config::express_lane_allowed(gatehouse::config::process_env);
        assert_eq!(
            gw.gw.lane_served() - lane_before,
            u64::from(lane && !h2),
            "h2: {h2}"
        );
        // A small body that comes with its head goes the same way, and arrives whole.
        let post = Request::post(if h2 {
            "https://localhost/echo-body"
        } else {
            "/echo-body"
        })
        .header("host", "localhost")
        .header("cookie", &cookie)
        .body(Full::new(Bytes::from_static(b"a body over TLS")))
        .unwrap();
        let lane_before = gw.gw.lane_served();
        let r = send(addr, &ca, h2, post).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, "a body over TLS");
        assert_eq!(up.last().body, "a body over TLS");
        assert_eq!(up.last().header("x-forwarded-user"), Some("alice"));
        assert_eq!(
            gw.gw.lane_served() - lane_before,
            u64::from(lane && !h2),
            "POST, h2: {h2}"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn certificates_are_reloaded_with_the_config() {
    let up = Upstream::start().await;
    let ca = ca();
    let dir = temp_dir();
    let first = leaf(&ca, &dir);
    let yaml = tls_yaml(&up);
    let gw = TestGateway::start_in(dir.clone(), &yaml).await.unwrap();
    let addr = gw.tls_addr.unwrap();
    let get = || {
        Request::get("https://localhost/.gatehouse/healthz")
            .body(Full::default())
            .unwrap()
    };
    assert_eq!(send(addr, &ca, true, get()).await.peer_cert, first);
    let second = leaf(&ca, &dir);
    assert_ne!(first, second);
    gw.apply(&yaml).await;
    let r = send(addr, &ca, true, get()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.peer_cert, second,
        "new connections get the new certificate"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_key_that_does_not_match_the_certificate_is_refused_at_load() {
    let up = Upstream::start().await;
    let ca = ca();
    let dir = temp_dir();
    leaf(&ca, &dir);
    std::fs::write(
        dir.join("key.pem"),
        KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let err = TestGateway::start_in(dir.clone(), &tls_yaml(&up))
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("server.tls"), "{err}");
    std::fs::write(dir.join("cert.pem"), "not a certificate").unwrap();
    let err = TestGateway::start_in(dir, &tls_yaml(&up))
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[tokio::test]
async fn a_tls_connection_that_sends_nothing_after_the_handshake_is_closed() {
    use tokio::io::AsyncReadExt;
    let up = Upstream::start().await;
    let ca = ca();
    let dir = temp_dir();
    leaf(&ca, &dir);
    let text = tls_yaml(&up).replace(
        "server:\n",
        "server:\n  limits:\n    header_read_timeout: 1s\n",
    );
    let gw = TestGateway::start_in(dir, &text).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_config(&ca, &[b"http/1.1"]));
    let tcp = tokio::net::TcpStream::connect(gw.tls_addr.unwrap())
        .await
        .unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    // The handshake is done; the client never sends a request.
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(6), tls.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was not closed");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    gw.stop().await;
}

/// `https://` upstreams: the gateway speaks TLS to the app and checks its certificate against
/// the CAs it trusts (the system's, or `SSL_CERT_FILE` as here), by IP address and by name;
/// an app whose certificate it cannot check gets no request (502, and the log says why).
/// Before, every `https://` upstream was refused at load.
#[tokio::test]
async fn https_upstreams_get_requests_over_tls_only_with_a_certificate_the_gateway_trusts() {
    let ca = ca();
    let dir = temp_dir();
    leaf(&ca, &dir);
    std::fs::write(dir.join("ca.pem"), &ca.cert_pem).unwrap();
    let other = self::ca();
    std::fs::write(dir.join("other-ca.pem"), &other.cert_pem).unwrap();
    let up = Upstream::start_tls(&dir.join("cert.pem"), &dir.join("key.pem")).await;
    let port = up.addr.port();
    let routes = format!(
        "routes:\n  - name: by-ip\n    path_prefix: /ip\n    upstream: \"https://127.0.0.1:{port}\"\n    preserve_host: false\n    strip_prefix: true\n    websocket: true\n  - name: by-name\n    path_prefix: /name\n    upstream: \"https://localhost:{port}/base\"\n    strip_prefix: true\n"
    );
    let start = |trusted: &str| {
        let (run, ca) = (dir.join(trusted), dir.join(format!("{trusted}.pem")));
        let (gw, admin) = (external::free_port(), external::free_port());
        let text = binary::config(&up, gw, admin, &routes);
        async move {
            std::fs::create_dir_all(&run).unwrap();
            binary::start_with_env(&run, &text, gw, admin, &[("SSL_CERT_FILE", &ca)]).await
        }
    };

    let gw = start("ca").await;
    let c = Client::new(gw.addr);
    let t = c.login_json("alice", "alice-pw").await;
    let bearer = format!("Bearer {}", t["access_token"].as_str().unwrap());
    let r = c.get_with("/ip/x?y=1", &[("authorization", &bearer)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}\n{}", r.body, gw.log());
    let seen = up.last();
    assert_eq!(seen.uri, "/x?y=1");
    assert_eq!(seen.header("x-forwarded-user"), Some("alice"));
    assert_eq!(
        seen.header("host"),
        Some(format!("127.0.0.1:{port}").as_str())
    );
    // A body, and the name in the certificate checked as a DNS name.
    let r = c
        .send(
            Request::post("/name/echo-body")
                .header("authorization", &bearer)
                .body(Full::new(Bytes::from_static(b"over tls")))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}\n{}", r.body, gw.log());
    assert_eq!(up.last().uri, "/base/echo-body");
    assert_eq!(up.last().body, Bytes::from_static(b"over tls"));
    // A WebSocket: the upgrade, then the spliced bytes, over the TLS connection too.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let upgrade = format!(
        "GET /ip/ws HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nauthorization: {bearer}\r\n\r\n"
    );
    s.write_all(upgrade.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1, "closed after {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s.write_all(b"\x81\x85hello").await.unwrap();
    let mut back = [0u8; 7];
    tokio::time::timeout(std::time::Duration::from_secs(5), s.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"\x81\x85hello");
    drop(gw);

    // The app's CA is not one the gateway trusts: no request reaches it.
    let before = up.count();
    let gw = start("other-ca").await;
    let c = Client::new(gw.addr);
    let t = c.login_json("alice", "alice-pw").await;
    let bearer = format!("Bearer {}", t["access_token"].as_str().unwrap());
    for _ in 0..3 {
        let r = c.get_with("/ip/x", &[("authorization", &bearer)]).await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.body);
    }
    assert_eq!(up.count(), before);
    // Said once, not once per request.
    let log = gw.log();
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("TLS to the upstream failed"))
        .collect();
    assert_eq!(said.len(), 1, "{log}");
    assert!(said[0].contains("certificate"), "{log}");
}
