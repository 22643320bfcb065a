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

/// Writes `{name}.pem` and `{name}-key.pem`: a certificate for `names` issued by `ca`.
fn issued(ca: &Ca, dir: &Path, name: &str, names: &[&str]) {
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
}

/// `upstream_tls:` — a route's own CAs (an internal CA the system does not trust), the name
/// the certificate carries (the app is reached by IP, its certificate names `app.internal`)
/// and a client certificate (mutual TLS). Another route to the same upstream without the
/// client certificate never borrows a connection that presented it; routes without the CA or
/// the name get no request through (502).
#[tokio::test]
async fn a_route_s_own_ca_name_and_client_certificate_and_no_other_route_borrows_them() {
    let (server_ca, client_ca) = (ca(), ca());
    let dir = temp_dir();
    std::fs::write(dir.join("internal-ca.pem"), &server_ca.cert_pem).unwrap();
    std::fs::write(dir.join("client-ca.pem"), &client_ca.cert_pem).unwrap();
    issued(&server_ca, &dir, "app", &["app.internal"]);
    issued(&client_ca, &dir, "gateway-client", &["gatehouse"]);
    let up = Upstream::start_mtls(
        &dir.join("app.pem"),
        &dir.join("app-key.pem"),
        &dir.join("client-ca.pem"),
    )
    .await;
    let target = format!("https://127.0.0.1:{}", up.addr.port());
    let route = |name: &str, tls: &str| {
        format!(
            "  - name: {name}\n    path_prefix: /{name}\n    upstream: \"{target}\"\n    strip_prefix: true\n{tls}"
        )
    };
    let own = "    upstream_tls:\n      ca: internal-ca.pem\n      server_name: app.internal\n";
    let client =
        "      client_cert: gateway-client.pem\n      client_key: gateway-client-key.pem\n";
    let routes = [
        route("mtls", &format!("{own}{client}")),
        route("ca", own),
        route("noname", "    upstream_tls:\n      ca: internal-ca.pem\n"),
        route("system", ""),
    ]
    .concat();
    let gw = TestGateway::start_in(dir, &base_yaml(&up.url(), &format!("routes:\n{routes}")))
        .await
        .unwrap_or_else(|e| panic!("config refused: {e}"));
    let c = gw.client();
    let t = c.login_json("alice", "alice-pw").await;
    let bearer = format!("Bearer {}", t["access_token"].as_str().unwrap());
    let get = |path: &'static str| {
        let (c, bearer) = (&c, &bearer);
        async move { c.get_with(path, &[("authorization", bearer)]).await }
    };
    for round in 0..2 {
        let r = get("/mtls/x").await;
        assert_eq!(r.status, StatusCode::OK, "round {round}: {}", r.body);
        assert_eq!(up.last().uri, "/x");
        assert_eq!(up.last().header("x-test-client-certificate"), Some("yes"));
        assert_eq!(up.last().header("x-forwarded-user"), Some("alice"));
        // The same upstream, its connection pooled: never the one that presented the
        // certificate.
        let r = get("/ca/y").await;
        assert_eq!(r.status, StatusCode::OK, "round {round}: {}", r.body);
        assert_eq!(up.last().uri, "/y");
        assert_eq!(up.last().header("x-test-client-certificate"), Some("no"));
    }
    let before = up.count();
    // The certificate names app.internal, not the IP address; the system does not trust the
    // internal CA.
    assert_eq!(get("/noname/z").await.status, StatusCode::BAD_GATEWAY);
    assert_eq!(get("/system/z").await.status, StatusCode::BAD_GATEWAY);
    assert_eq!(up.count(), before, "nothing reached the app");
    gw.stop().await;
}

/// Mistakes in `upstream_tls:` are refused at load with the key and what to do.
#[tokio::test]
async fn upstream_tls_mistakes_are_refused_at_load_with_their_key() {
    let ca = ca();
    let dir = temp_dir();
    std::fs::write(dir.join("ca.pem"), &ca.cert_pem).unwrap();
    std::fs::write(dir.join("not-a-cert.pem"), "hello").unwrap();
    issued(&ca, &dir, "client", &["gatehouse"]);
    issued(&ca, &dir, "other", &["gatehouse"]);
    let refused = |upstream: &str, tls: &str| {
        let yaml = base_yaml(
            upstream,
            &format!(
                "routes:\n  - name: app\n    upstream: \"{upstream}\"\n    upstream_tls:\n{tls}"
            ),
        );
        let dir = dir.clone();
        async move { TestGateway::refused_in(dir, &yaml).await }
    };
    let https = "https://127.0.0.1:1";
    for (upstream, tls, key, says) in [
        (
            "http://127.0.0.1:1",
            "      ca: ca.pem\n",
            "routes[0].upstream_tls",
            "https://",
        ),
        (
            https,
            "      ca: missing.pem\n",
            "routes[0].upstream_tls.ca",
            "cannot read",
        ),
        (
            https,
            "      ca: not-a-cert.pem\n",
            "routes[0].upstream_tls.ca",
            "no PEM certificate",
        ),
        (
            https,
            "      client_cert: client.pem\n",
            "routes[0].upstream_tls",
            "add client_key",
        ),
        (
            https,
            "      ca: ca.pem\n      client_cert: client.pem\n      client_key: other-key.pem\n",
            "routes[0].upstream_tls.client_key",
            "does not match",
        ),
        (
            https,
            "      ca: ca.pem\n      server_name: \"not a name\"\n",
            "routes[0].upstream_tls.server_name",
            "not a DNS name",
        ),
        (
            https,
            "      cert: client.pem\n",
            "routes[0].upstream_tls",
            "unknown field",
        ),
    ] {
        let err = refused(upstream, tls).await;
        assert!(err.contains(key) && err.contains(says), "{tls}: {err}");
    }
}
