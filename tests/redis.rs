//! The Redis backend with a real `redis-server` (SPEC §8): two gateway replicas share
//! sessions, rotation and revocations; Redis going down and coming back.

mod support;
use support::external;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;

struct Redis {
    process: Option<external::Process>,
    bin: PathBuf,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    async fn start() -> Option<Redis> {
        let bin = external::find("redis-server", &["/usr/bin/redis-server"])?;
        let mut r = Redis {
            process: None,
            bin,
            port: external::free_port(),
            dir: temp_dir(),
        };
        r.restart().await;
        Some(r)
    }

    async fn restart(&mut self) {
        let mut cmd = Command::new(&self.bin);
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ])
        .arg("--dir")
        .arg(&self.dir);
        let p = external::Process::spawn(cmd, self.port);
        p.wait_listening(Duration::from_secs(10)).await;
        self.process = Some(p);
    }

    fn stop(&mut self) {
        self.process = None;
    }

    fn yaml(&self, up: &Upstream, extra_tokens: &str) -> String {
        base_yaml(&up.url(), default_routes()).replace("  leeway: 0s\n", &format!("  leeway: 0s\n{extra_tokens}"))
            + &format!("store:\n  backend: redis\n  redis:\n    url: \"redis://127.0.0.1:{}/0\"\n    key_prefix: \"gh:\"\n", self.port)
    }
}

async fn ready(gw: &TestGateway) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.gw.is_ready() {
        assert!(
            Instant::now() < deadline,
            "the gateway never synced with Redis"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn pair(redis: &Redis, up: &Upstream, tokens: &str) -> (TestGateway, TestGateway) {
    let yaml = redis.yaml(up, tokens);
    let a = TestGateway::start(&yaml).await;
    let b = TestGateway::start(&yaml).await;
    ready(&a).await;
    ready(&b).await;
    (a, b)
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

async fn status_with(gw: &TestGateway, token: &str) -> StatusCode {
    Client::new(gw.addr)
        .get_with("/x", &[("authorization", &bearer(token))])
        .await
        .status
}

#[tokio::test]
async fn replicas_share_sessions_and_a_logout_reaches_the_other_within_100ms() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let up = Upstream::start().await;
    let (a, b) = pair(&redis, &up, "").await;

    // Login on A works on B, as bearer and as cookies (including a refresh on B).
    let t = Client::new(a.addr).login_json("alice", "alice-pw").await;
    assert_eq!(
        status_with(&b, t["access_token"].as_str().unwrap()).await,
        StatusCode::OK
    );
    let r = Client::new(b.addr)
        .post_json(
            "/.gatehouse/refresh",
            serde_json::json!({"refresh_token": t["refresh_token"]}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a session made on A refreshes on B"
    );

    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let t = Client::new(a.addr).login_json("bob", "bob-pw").await;
        let access = t["access_token"].as_str().unwrap().to_string();
        assert_eq!(status_with(&b, &access).await, StatusCode::OK);
        let r = Client::new(a.addr)
            .send(
                Request::post("/.gatehouse/logout")
                    .header("authorization", bearer(&access))
                    .body(Full::default())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        let started = Instant::now();
        while status_with(&b, &access).await != StatusCode::UNAUTHORIZED {
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "B never saw the logout"
            );
        }
        worst = worst.max(started.elapsed());
    }
    println!("worst logout propagation A -> B: {worst:?}");
    assert!(worst < Duration::from_millis(100), "worst case {worst:?}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_token_rotated_on_a_and_reused_on_b_after_grace_revokes_the_session_everywhere() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let up = Upstream::start().await;
    let (a, b) = pair(&redis, &up, "  refresh_reuse_grace: 1s\n").await;
    let t = Client::new(a.addr).login_json("alice", "alice-pw").await;
    let r0 = t["refresh_token"].clone();
    let rotated = Client::new(a.addr)
        .post_json(
            "/.gatehouse/refresh",
            serde_json::json!({"refresh_token": r0}),
        )
        .await
        .json();
    let rotated_at = Instant::now();
    let access = rotated["access_token"].as_str().unwrap().to_string();
    past(rotated_at, Duration::from_secs(1)).await;
    let r = Client::new(b.addr)
        .post_json(
            "/.gatehouse/refresh",
            serde_json::json!({"refresh_token": r0}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let deadline = Instant::now() + Duration::from_secs(1);
    while status_with(&a, &access).await != StatusCode::UNAUTHORIZED {
        assert!(
            Instant::now() < deadline,
            "A still accepts a token of the revoked session"
        );
    }
    assert_eq!(status_with(&b, &access).await, StatusCode::UNAUTHORIZED);
    let r = Client::new(a.addr)
        .post_json(
            "/.gatehouse/refresh",
            serde_json::json!({"refresh_token": rotated["refresh_token"]}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "the successor dies with the session"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn parallel_refreshes_on_both_replicas_inside_grace_create_one_successor() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let up = Upstream::start().await;
    let (a, b) = pair(&redis, &up, "").await;
    let t = Client::new(a.addr).login_json("alice", "alice-pw").await;
    let token = t["refresh_token"].clone();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let addr = if i % 2 == 0 { a.addr } else { b.addr };
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            Client::new(addr)
                .post_json(
                    "/.gatehouse/refresh",
                    serde_json::json!({"refresh_token": token}),
                )
                .await
        }));
    }
    let mut successors = 0;
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        let j = r.json();
        assert!(j["access_token"].is_string());
        successors += usize::from(j.get("refresh_token").is_some());
    }
    assert_eq!(successors, 1);
    assert_eq!(
        status_with(&b, t["access_token"].as_str().unwrap()).await,
        StatusCode::OK,
        "not mistaken for theft"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn with_redis_down_tokens_work_login_is_503_and_revocations_catch_up() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let up = Upstream::start().await;
    let yaml = redis.yaml(&up, "")
        + "admin:\n  listen: \"127.0.0.1:0\"\n  token: \"admin-token-0123456789\"\n";
    let a = TestGateway::start(&yaml).await;
    let b = TestGateway::start(&yaml).await;
    ready(&a).await;
    ready(&b).await;
    let keep = Client::new(a.addr).login_json("alice", "alice-pw").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let doomed = Client::new(a.addr).login_json("bob", "bob-pw").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();

    redis.stop();
    let admin = Client::new(a.admin_addr.unwrap());
    let deadline = Instant::now() + Duration::from_secs(5);
    while admin.get("/readyz").await.status != StatusCode::SERVICE_UNAVAILABLE {
        assert!(
            Instant::now() < deadline,
            "readyz stayed 200 with Redis down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for gw in [&a, &b] {
        assert_eq!(
            status_with(gw, &keep).await,
            StatusCode::OK,
            "valid tokens keep working"
        );
    }
    let r = Client::new(a.addr)
        .post_json(
            "/.gatehouse/login",
            serde_json::json!({"username": "alice", "password": "alice-pw"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    // A logout during the outage is in force on A at once...
    let r = Client::new(a.addr)
        .send(
            Request::post("/.gatehouse/logout")
                .header("authorization", bearer(&doomed))
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(status_with(&a, &doomed).await, StatusCode::UNAUTHORIZED);

    // ...and reaches B once Redis is back.
    redis.restart().await;
    ready(&a).await;
    ready(&b).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while status_with(&b, &doomed).await != StatusCode::UNAUTHORIZED {
        assert!(
            Instant::now() < deadline,
            "the outage revocation never reached B"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(admin.get("/readyz").await.status, StatusCode::OK);
    Client::new(b.addr).login_json("alice", "alice-pw").await;
    assert_eq!(status_with(&b, &keep).await, StatusCode::OK);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_replica_started_later_loads_existing_revocations() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let up = Upstream::start().await;
    let yaml = redis.yaml(&up, "");
    let a = TestGateway::start(&yaml).await;
    ready(&a).await;
    let t = Client::new(a.addr).login_json("bob", "bob-pw").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    Client::new(a.addr)
        .send(
            Request::post("/.gatehouse/logout")
                .header("authorization", bearer(&t))
                .body(Full::default())
                .unwrap(),
        )
        .await;
    let late = TestGateway::start(&yaml).await;
    ready(&late).await;
    assert_eq!(status_with(&late, &t).await, StatusCode::UNAUTHORIZED);
    let _ = Path::new("");
    a.stop().await;
    late.stop().await;
}

#[tokio::test]
async fn brute_force_counters_are_shared_between_replicas() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let up = Upstream::start().await;
    let yaml = redis.yaml(&up, "") + "login:\n  max_failures: 3\n  lockout: 1m\n";
    let a = TestGateway::start(&yaml).await;
    let b = TestGateway::start(&yaml).await;
    ready(&a).await;
    ready(&b).await;
    let wrong = serde_json::json!({"username": "alice", "password": "guess"});
    for gw in [&a, &b, &a] {
        let r = Client::new(gw.addr)
            .post_json("/.gatehouse/login", wrong.clone())
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    for gw in [&a, &b] {
        let r = Client::new(gw.addr)
            .post_json(
                "/.gatehouse/login",
                serde_json::json!({"username": "alice", "password": "alice-pw"}),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::TOO_MANY_REQUESTS,
            "three failures across replicas lock everywhere"
        );
        assert!(r.header("retry-after").is_some());
    }
    a.stop().await;
    b.stop().await;
}

/// What `POST /login` as bob answers through `c`.
async fn bob_logs_in(c: Client) -> StatusCode {
    c.post_json(
        "/.gatehouse/login",
        serde_json::json!({"username": "bob", "password": "bob-pw"}),
    )
    .await
    .status
}

/// A CA written to `{ca}.pem` in `dir`, and for each `(name, san)` a certificate it issued,
/// `{name}.pem` and `{name}.key`. Each with a subject of its own: OpenSSL (Redis) takes a
/// leaf whose subject is its issuer's (rcgen's default for both) for a self-signed one.
fn issue_into(dir: &Path, ca: &str, leaves: &[(&str, &str)]) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let named = |sans: Vec<String>, common_name: &str| {
        let mut params = CertificateParams::new(sans).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = named(Vec::new(), ca);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    std::fs::write(dir.join(format!("{ca}.pem")), ca_cert.pem()).unwrap();
    for (name, san) in leaves {
        let key = KeyPair::generate().unwrap();
        let cert = named(vec![san.to_string()], name)
            .signed_by(&key, &issuer)
            .unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

/// `redis-server` speaking TLS only, on a free port, with `dir`'s `redis.pem` and
/// `redis.key`, asking for client certificates issued by `ca.pem` or not.
async fn redis_over_tls(
    bin: &Path,
    dir: &Path,
    ask_for_client_certificates: bool,
) -> (external::Process, u16) {
    let port = external::free_port();
    let redis = redis_over_tls_on(bin, dir, ask_for_client_certificates, port).await;
    (redis, port)
}

/// [`redis_over_tls`] on `port`.
async fn redis_over_tls_on(
    bin: &Path,
    dir: &Path,
    ask_for_client_certificates: bool,
    port: u16,
) -> external::Process {
    let mut cmd = Command::new(bin);
    cmd.args(["--port", "0", "--tls-port", &port.to_string()])
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--tls-auth-clients")
        .arg(if ask_for_client_certificates {
            "yes"
        } else {
            "no"
        })
        .arg("--tls-cert-file")
        .arg(dir.join("redis.pem"))
        .arg("--tls-key-file")
        .arg(dir.join("redis.key"))
        .arg("--tls-ca-cert-file")
        .arg(dir.join("ca.pem"));
    let redis = external::Process::spawn(cmd, port);
    redis.wait_listening(Duration::from_secs(10)).await;
    redis
}

/// A managed Redis speaks TLS (`rediss://`): the gateway checks its certificate against the
/// system's CAs, or `SSL_CERT_FILE`; a certificate it does not trust keeps the store
/// unavailable (login 503, `/readyz` 503) and says why in the log, once. `#insecure` (no
/// check at all) is refused at load. Before, every `rediss://` URL was refused at load.
/// The CAs are read once, at start: redis-rs read them again at every connection, on the
/// async threads, so a reconnection after Redis restarted trusted whatever the file said then.
#[tokio::test]
async fn a_redis_over_tls_is_used_only_with_a_certificate_the_gateway_trusts() {
    let Some(bin) = external::find("redis-server", &["/usr/bin/redis-server"]) else {
        return;
    };
    let dir = temp_dir();
    // A CA, and Redis's certificate signed by it.
    issue_into(&dir, "ca", &[("redis", "127.0.0.1")]);
    // An unrelated CA: what a gateway that does not know Redis's CA trusts.
    issue_into(&dir, "other-ca", &[]);
    let (redis, port) = redis_over_tls(&bin, &dir, false).await;

    let up = Upstream::start().await;
    let store = |url: &str| format!("store:\n  backend: redis\n  redis:\n    url: \"{url}\"\n");
    let url = format!("rediss://127.0.0.1:{port}/0");
    // Each gateway's SSL_CERT_FILE is a copy of the CA's, in a folder of its own.
    let run = |ca: &str| {
        let (own, ca) = (dir.join(ca), dir.join(format!("{ca}.pem")));
        let (gw_port, admin) = (external::free_port(), external::free_port());
        let text = binary::config(&up, gw_port, admin, default_routes()) + &store(&url);
        async move {
            std::fs::create_dir_all(&own).unwrap();
            let trusted = own.join("trusted.pem");
            std::fs::copy(&ca, &trusted).unwrap();
            binary::start_with_env(&own, &text, gw_port, admin, &[("SSL_CERT_FILE", &trusted)])
                .await
        }
    };
    let login = |gw: &binary::Binary| bob_logs_in(Client::new(gw.addr));
    let readyz = |gw: &binary::Binary| {
        let admin = Client::new(gw.admin);
        async move { admin.get("/readyz").await.status }
    };

    // Redis's CA is not trusted: nothing is stored there, and the log says why, once.
    let untrusting = run("other-ca").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(readyz(&untrusting).await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(login(&untrusting).await, StatusCode::SERVICE_UNAVAILABLE);
    let log = untrusting.log();
    let said = log
        .lines()
        .filter(|l| l.contains("redis not reachable"))
        .collect::<Vec<_>>();
    assert_eq!(said.len(), 1, "{log}");
    assert!(said[0].contains("certificate"), "{log}");
    drop(untrusting);

    // Trusted: sessions live in Redis.
    let trusting = run("ca").await;
    binary::eventually(
        "the store syncs over TLS",
        Duration::from_secs(10),
        async || readyz(&trusting).await == StatusCode::OK,
    )
    .await;
    assert_eq!(login(&trusting).await, StatusCode::OK, "{}", trusting.log());

    // The trusted file now names another CA, and Redis restarts: the gateway reconnects with
    // the CAs it read at start.
    std::fs::copy(dir.join("other-ca.pem"), dir.join("ca").join("trusted.pem")).unwrap();
    drop(redis);
    let _redis = redis_over_tls_on(&bin, &dir, false, port).await;
    binary::eventually(
        "the store reconnects over TLS",
        Duration::from_secs(10),
        async || login(&trusting).await == StatusCode::OK,
    )
    .await;

    // No certificate check at all is refused when the config is read.
    let check = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check", "--config"])
        .arg({
            let path = dir.join("insecure.yaml");
            let text =
                binary::config(&up, 1, 2, default_routes()) + &store(&format!("{url}#insecure"));
            std::fs::write(&path, text).unwrap();
            path
        })
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(stderr.contains("store.redis.url: `#insecure`"), "{stderr}");
}

/// A Redis of one's own with TLS asks for client certificates by default
/// (`tls-auth-clients yes`), and its CA is rarely the system's: `store.redis.tls` gives the CA
/// and the certificate to present. Without the certificate Redis refuses the connection and
/// the store stays unavailable; with it, sessions live there. A key that does not match its
/// certificate, or `tls` on a plain `redis://` URL, is refused at load.
#[tokio::test]
async fn a_redis_that_asks_for_a_client_certificate_gets_the_one_store_redis_tls_names() {
    let Some(bin) = external::find("redis-server", &["/usr/bin/redis-server"]) else {
        return;
    };
    let dir = temp_dir();
    issue_into(
        &dir,
        "ca",
        &[("redis", "127.0.0.1"), ("client", "gatehouse")],
    );
    let (_redis, port) = redis_over_tls(&bin, &dir, true).await;

    let up = Upstream::start().await;
    let url = format!("rediss://127.0.0.1:{port}/0");
    let yaml = |url: &str, tls: &str| {
        base_yaml(
            &up.url(),
            &format!(
                "{}store:\n  backend: redis\n  redis:\n    url: \"{url}\"\n    tls:\n{tls}",
                default_routes()
            ),
        )
    };
    let login = |gw: &TestGateway| bob_logs_in(gw.client());

    // The CA alone: Redis wants a certificate, so nothing can be stored.
    let without = TestGateway::start_in(dir.clone(), &yaml(&url, "      ca: ca.pem\n"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(login(&without).await, StatusCode::SERVICE_UNAVAILABLE);
    without.stop().await;

    let client = "      ca: ca.pem\n      client_cert: client.pem\n      client_key: client.key\n";
    let with = TestGateway::start_in(dir.clone(), &yaml(&url, client))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..50 {
        status = login(&with).await;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        status,
        StatusCode::OK,
        "login through a Redis over mutual TLS"
    );
    let redis = ::redis::Client::build_with_tls(
        url.as_str(),
        ::redis::TlsCertificates {
            client_tls: Some(::redis::ClientTlsConfig {
                client_cert: std::fs::read(dir.join("client.pem")).unwrap(),
                client_key: std::fs::read(dir.join("client.key")).unwrap(),
            }),
            root_cert: Some(std::fs::read(dir.join("ca.pem")).unwrap()),
        },
    )
    .unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("gatehouse:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty(), "the session is in Redis");
    with.stop().await;

    // Mistakes are refused at load, naming the key.
    let refused = |text: String| {
        let dir = dir.clone();
        async move { TestGateway::refused_in(dir, &text).await }
    };
    let err = refused(yaml(
        &url,
        "      ca: ca.pem\n      client_cert: client.pem\n      client_key: redis.key\n",
    ))
    .await;
    assert!(
        err.contains("store.redis.tls.client_key") && err.contains("does not match"),
        "{err}"
    );
    let err = refused(yaml(
        &format!("redis://127.0.0.1:{port}/0"),
        "      ca: ca.pem\n",
    ))
    .await;
    assert!(
        err.contains("store.redis.tls") && err.contains("rediss://"),
        "{err}"
    );
}
