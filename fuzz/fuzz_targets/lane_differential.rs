//! The express lane against hyper's path, from both sides at once (SPEC §7 "One behaviour").
//!
//! Two gateways run in this process with one config — the express lane on in one, off in the
//! other — in front of one raw upstream. An input is a client byte stream and, after a line
//! `====`, the upstream's byte stream (a default `200` when absent); `TOKEN` in the client part
//! becomes a valid access token. Each gateway gets the client bytes on a fresh connection (then
//! the client's write side closes) while the upstream answers every request it receives with the
//! upstream bytes and closes. What the client received and what the upstream received must be
//! the same byte for byte, request ids and dates aside.
#![no_main]
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PASSWORD_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$Lk9PLgBOdU2ezEcqPGClHg$nRzowdpw0IqQjmI+PmzuL2QDD2GNoNACkk3wEob3RS0";

struct Harness {
    rt: tokio::runtime::Runtime,
    lane_on: SocketAddr,
    lane_off: SocketAddr,
    upstream: Arc<Script>,
    token: String,
}

/// What the upstream answers with, and what it received (connections separated).
#[derive(Default)]
struct Script {
    answer: Mutex<Vec<u8>>,
    received: Mutex<Vec<u8>>,
}

fn config(upstream: SocketAddr) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:0"
  limits:
    header_read_timeout: 2s
    idle_timeout: 2s
    upstream_connect_timeout: 1s
    upstream_response_timeout: 1s
tokens:
  algorithm: HS256
  secret: "fuzz-secret-fuzz-secret-fuzz-secret-0123"
  access_ttl: 1h
cookies:
  secure: false
users:
  - username: alice
    password_hash: "{PASSWORD_HASH}"
    email: alice@example.com
    roles: [admin, staff]
routes:
  - name: app
    upstream: "http://{upstream}"
    public: ["/public/"]
    websocket: true
    rules:
      - path_prefix: /admin
        allow_roles: [admin]
"#
    )
}

async fn upstream_connection(mut s: TcpStream, script: Arc<Script>) {
    let mut got = Vec::new();
    // The head (or whatever arrives within 50 ms of silence), then the answer, then close.
    loop {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(Duration::from_millis(50), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
        }
        if got.windows(4).any(|w| w == b"\r\n\r\n") {
            // Give a body that follows the head a moment to arrive with it.
            tokio::time::sleep(Duration::from_millis(2)).await;
            let mut chunk = [0u8; 65536];
            while let Ok(n) = s.try_read(&mut chunk) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&chunk[..n]);
            }
            break;
        }
    }
    {
        let mut received = script.received.lock().unwrap();
        received.extend_from_slice(b"--connection--\n");
        received.extend_from_slice(&got);
    }
    let answer = script.answer.lock().unwrap().clone();
    let _ = s.write_all(&answer).await;
    let _ = s.shutdown().await;
}

async fn start_gateway(upstream: SocketAddr, lane: bool) -> SocketAddr {
    let text = config(upstream);
    let config = gatehouse::config::parse(&text, std::path::Path::new("fuzz.yaml"), |_| None)
        .expect("the fuzz config loads");
    let gw = gatehouse::Gateway::new(config).expect("the store opens");
    gw.set_express_lane(lane);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(gatehouse::serve(listener, gw, std::future::pending()));
    addr
}

/// A last request after the client's bytes, so that a gateway that read them all closes the
/// connection once it answered it (closing our write side instead would race hyper's server,
/// which may drop a connection whose client half-closed before its answer was ready).
const LAST: &[u8] = b"GET /.gatehouse/healthz HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n";

/// Sends `bytes` and [`LAST`], and reads everything until the gateway closes, or 300 ms pass
/// without a byte (the client's bytes left the connection waiting), or 5 s in all.
async fn talk(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // One write: where TCP splits a stream is not what is compared.
    let _ = s.write_all(&[bytes, LAST].concat()).await;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut chunk = [0u8; 16384];
        let quiet = tokio::time::Instant::now() + Duration::from_millis(300);
        match tokio::time::timeout_at(quiet.min(deadline), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    out
}

async fn login(addr: SocketAddr) -> String {
    let body = r#"{"username":"alice","password":"fuzz-pw"}"#;
    let req = format!(
        "POST /.gatehouse/login HTTP/1.1\r\nhost: app\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let out = String::from_utf8_lossy(&talk(addr, req.as_bytes()).await).into_owned();
    let at = out
        .find("\"access_token\":\"")
        .unwrap_or_else(|| panic!("login answers with a token: {out}"))
        + 16;
    out[at..].split('"').next().unwrap().to_string()
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        gatehouse::install_crypto_providers();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let upstream = Arc::new(Script::default());
        let (lane_on, lane_off, token) = rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let up = listener.local_addr().unwrap();
            let script = upstream.clone();
            tokio::spawn(async move {
                while let Ok((s, _)) = listener.accept().await {
                    tokio::spawn(upstream_connection(s, script.clone()));
                }
            });
            let on = start_gateway(up, true).await;
            let off = start_gateway(up, false).await;
            // A token of a session in `on`'s store; `off` has no revocation for it, so it
            // verifies there too.
            let token = login(on).await;
            (on, off, token)
        });
        Harness {
            rt,
            lane_on,
            lane_off,
            upstream,
            token,
        }
    })
}

/// Masks the values of headers that differ between runs by design.
fn masked(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with(b"date:") || lower.starts_with(b"x-request-id:") {
            let name_end = line.iter().position(|&b| b == b':').unwrap_or(0);
            out.extend_from_slice(&line[..=name_end]);
            out.extend_from_slice(b" *\r\n");
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

fn split(data: &[u8]) -> (Vec<u8>, Vec<u8>) {
    const SEPARATOR: &[u8] = b"\n====\n";
    match data.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
        Some(at) => (data[..at].to_vec(), data[at + SEPARATOR.len()..].to_vec()),
        None => (
            data.to_vec(),
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
        ),
    }
}

fn with_token(client: &[u8], token: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(client.len() + token.len());
    let mut rest = client;
    while let Some(at) = rest.windows(5).position(|w| w == b"TOKEN") {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(token.as_bytes());
        rest = &rest[at + 5..];
    }
    out.extend_from_slice(rest);
    out
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    let (client, answer) = split(data);
    let client = with_token(&client, &h.token);
    *h.upstream.answer.lock().unwrap() = answer;
    let mut seen = Vec::new();
    for addr in [h.lane_on, h.lane_off] {
        h.upstream.received.lock().unwrap().clear();
        let to_client = h.rt.block_on(async {
            let out = talk(addr, &client).await;
            // Let the upstream's close reach the pool before the next run.
            tokio::time::sleep(Duration::from_millis(5)).await;
            out
        });
        let to_upstream = h.upstream.received.lock().unwrap().clone();
        seen.push((masked(&to_client), masked(&to_upstream)));
    }
    let (on, off) = (&seen[0], &seen[1]);
    assert!(
        on.1 == off.1,
        "the upstream received different bytes\nlane on:\n{}\nlane off:\n{}",
        String::from_utf8_lossy(&on.1),
        String::from_utf8_lossy(&off.1)
    );
    assert!(
        on.0 == off.0,
        "the client received different bytes\nlane on:\n{}\nlane off:\n{}",
        String::from_utf8_lossy(&on.0),
        String::from_utf8_lossy(&off.0)
    );
});
