//! Identity providers for the OIDC tests:
//! - [`RealProvider`]: panva's `oidc-provider` (OpenID-certified), pinned in
//!   `tests/oidc/package.json`, run by node on a free loopback port;
//! - [`HostileProvider`]: our own small provider that answers the token endpoint with
//!   whatever ID token a test scripts (wrong `iss`, `alg: none`, HS256 signed with the public
//!   key, ...) — what a real provider would never send.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;

use super::external;
use super::Client;

// ---------------------------------------------------------------- the real provider

pub struct RealProvider {
    pub process: external::Process,
    pub issuer: String,
}

fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

impl RealProvider {
    /// Starts `oidc-provider` with these clients and accounts on a free loopback port;
    /// `None` (after saying why) when node or the pinned package is missing, a failure under
    /// CI. A port taken by someone else between choosing and binding it is chosen again: the
    /// provider counts as started once it answers its own discovery document.
    pub async fn start(clients: Value, accounts: Value) -> Option<RealProvider> {
        let node = external::find("node", &["/usr/bin/node", "/usr/local/bin/node"])?;
        if !provider_dir().join("node_modules/oidc-provider").is_dir() {
            external::missing(
                "tests/oidc/node_modules (run `npm ci` in tests/oidc)",
                "the pinned oidc-provider package is not installed",
            );
            return None;
        }
        for _ in 0..5 {
            let port = external::free_port();
            let config = json!({"port": port, "clients": clients, "accounts": accounts});
            let mut cmd = Command::new(&node);
            cmd.current_dir(provider_dir())
                .arg("provider.mjs")
                .arg(config.to_string());
            let mut process = external::Process::spawn(cmd, port);
            let issuer = format!("http://127.0.0.1:{port}");
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while std::time::Instant::now() < deadline {
                if process.child.try_wait().ok().flatten().is_some() {
                    break; // it exited: most likely the port was taken
                }
                if answers_as(port, &issuer).await {
                    return Some(RealProvider { process, issuer });
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("oidc-provider did not start (node {})", node.display());
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.process.port))
    }

    /// A test control: the account disappears at the provider.
    pub async fn disable(&self, account: &str) {
        let c = Client::new(self.addr());
        let r = c
            .send(
                Request::post(format!("/test/disable?account={account}"))
                    .body(Full::default())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }

    /// A test control: the provider sends its back-channel logout for the account's last
    /// session at the client, and returns once the gateway answered it. Returns the IdP sid.
    pub async fn backchannel_logout(&self, client: &str, account: &str) -> String {
        let c = Client::new(self.addr());
        let r = c
            .send(
                Request::post(format!(
                    "/test/backchannel?client={client}&account={account}"
                ))
                .body(Full::default())
                .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body
    }

    /// Signs in at the provider as a browser would, from the gateway's `start` redirect to
    /// the gateway's callback: the devInteractions login form (any password), consent given
    /// automatically. Returns the callback's path and query on the gateway.
    pub async fn sign_in(&self, authorize_url: &str, account: &str) -> String {
        self.sign_in_with(&Client::new(self.addr()), authorize_url, account)
            .await
    }

    /// [`RealProvider::sign_in`] with `idp` as the browser's cookies at the provider: its
    /// session there outlives the sign-in.
    pub async fn sign_in_with(&self, idp: &Client, authorize_url: &str, account: &str) -> String {
        let mut url = strip_origin(authorize_url, &self.issuer);
        for _ in 0..12 {
            let r = idp.get(&url).await;
            if r.status == StatusCode::OK && r.body.contains("<form") {
                // The login form (or a consent form): post it where it says, hidden fields
                // and all, with the account as the login.
                let action = between(&r.body, "action=\"", "\"").expect("form action");
                let mut fields = hidden_fields(&r.body);
                if r.body.contains("name=\"login\"") {
                    fields.push(("login".into(), account.into()));
                    fields.push(("password".into(), "any".into()));
                }
                let form: Vec<(&str, &str)> = fields
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let r = idp
                    .post_form(&strip_origin(&action, &self.issuer), &form)
                    .await;
                assert!(r.status.is_redirection(), "{} {}", r.status, r.body);
                url = strip_origin(r.header("location").unwrap(), &self.issuer);
                continue;
            }
            assert!(r.status.is_redirection(), "{} {}", r.status, r.body);
            let next = r.header("location").unwrap().to_string();
            if !next.starts_with(&self.issuer) && !next.starts_with('/') {
                return strip_any_origin(&next);
            }
            url = strip_origin(&next, &self.issuer);
        }
        panic!("the provider never sent the browser back");
    }
}

/// Whether the provider on `port` answers discovery as `issuer` (and not some other program
/// that took the port).
async fn answers_as(port: u16, issuer: &str) -> bool {
    let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return false;
    };
    tokio::spawn(conn);
    let req = Request::get("/.well-known/openid-configuration")
        .header("host", format!("127.0.0.1:{port}"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req)).await
    else {
        return false;
    };
    let Ok(body) = resp.into_body().collect().await else {
        return false;
    };
    serde_json::from_slice::<Value>(&body.to_bytes())
        .is_ok_and(|v| v["issuer"].as_str() == Some(issuer))
}

// ---------------------------------------------------------------- the hostile provider

/// How the next ID token is made.
#[derive(Clone, Default)]
pub enum Signing {
    /// ES256 with the key in the provider's JWKS.
    #[default]
    Good,
    /// `alg: none`, no signature.
    None,
    /// HS256 with the provider's public key (PEM) as the HMAC secret.
    HmacWithPublicKey,
    /// ES256 with a key the JWKS does not have, under a `kid` it does not list.
    UnknownKey,
}

/// What the token endpoint answers next.
#[derive(Clone, Default)]
pub struct Script {
    /// Claims set (or, with `Value::Null`, removed) over the defaults.
    pub claims: Map<String, Value>,
    pub signing: Signing,
    /// The `nonce` to put in the token (the test copies it from the start redirect).
    pub nonce: Option<String>,
    /// The PKCE challenge the code must be redeemed with.
    pub challenge: Option<String>,
    /// Also issue a refresh token.
    pub refresh_token: Option<String>,
    /// Answer the token request this much later, with `iat` the time it answers (a slow
    /// provider: the token is issued in a later second than the request reached the gateway).
    pub delay: Option<std::time::Duration>,
}

#[derive(Default)]
struct HostileState {
    script: Script,
    token_requests: Vec<String>,
    /// Codes already redeemed (a code is one use, as at a real provider).
    used_codes: Vec<String>,
}

pub struct HostileProvider {
    pub addr: SocketAddr,
    pub issuer: String,
    state: Arc<Mutex<HostileState>>,
    key_pem: String,
    public_pem: String,
    kid: String,
    jwks: Value,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HostileProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn es256_pem() -> String {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem()
}

impl HostileProvider {
    pub async fn start() -> HostileProvider {
        Self::start_with(|_| {}).await
    }

    /// [`HostileProvider::start`] with its discovery document edited by `edit`.
    pub async fn start_with(edit: impl FnOnce(&mut Value)) -> HostileProvider {
        gatehouse::install_crypto_providers();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let issuer = format!("http://{addr}");
        let key_pem = es256_pem();
        let keys = gatehouse::authenticate::tokens::KeySet::asymmetric(
            jsonwebtoken::Algorithm::ES256,
            key_pem.as_bytes(),
            &[],
        )
        .unwrap();
        let jwks = serde_json::to_value(keys.jwks().unwrap()).unwrap();
        let kid = keys.signing_kid().to_string();
        let public_pem = {
            let pair = rcgen::KeyPair::from_pem(&key_pem).unwrap();
            pair.public_key_pem()
        };
        let state = Arc::new(Mutex::new(HostileState::default()));
        let mut discovery = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "userinfo_endpoint": format!("{issuer}/userinfo"),
            "jwks_uri": format!("{issuer}/jwks"),
            "end_session_endpoint": format!("{issuer}/logout"),
            "id_token_signing_alg_values_supported": ["ES256", "HS256", "none"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
        });
        edit(&mut discovery);
        let shared = Arc::new((
            state.clone(),
            discovery,
            jwks.clone(),
            issuer.clone(),
            key_pem.clone(),
            public_pem.clone(),
            kid.clone(),
        ));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(hostile_handle(req, &shared).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        HostileProvider {
            addr,
            issuer,
            state,
            key_pem,
            public_pem,
            kid,
            jwks,
            task,
        }
    }

    pub fn script(&self, script: Script) {
        self.state.lock().unwrap().script = script;
    }

    pub fn token_requests(&self) -> Vec<String> {
        self.state.lock().unwrap().token_requests.clone()
    }

    /// A JWT signed as `signing` says, for logout tokens and tests of our own.
    pub fn sign(&self, claims: &Value, signing: &Signing, typ: Option<&str>) -> String {
        sign(
            claims,
            signing,
            &self.key_pem,
            &self.public_pem,
            &self.kid,
            typ,
        )
    }
}

type Shared = (
    Arc<Mutex<HostileState>>,
    Value,
    Value,
    String,
    String,
    String,
    String,
);

fn sign(
    claims: &Value,
    signing: &Signing,
    key_pem: &str,
    public_pem: &str,
    kid: &str,
    typ: Option<&str>,
) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    match signing {
        Signing::Good | Signing::UnknownKey => {
            let (pem, kid) = match signing {
                Signing::UnknownKey => (es256_pem(), "not-in-the-jwks".to_string()),
                _ => (key_pem.to_string(), kid.to_string()),
            };
            let mut h = Header::new(Algorithm::ES256);
            h.kid = Some(kid);
            h.typ = typ.map(str::to_string);
            jsonwebtoken::encode(
                &h,
                claims,
                &EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
            )
            .unwrap()
        }
        Signing::HmacWithPublicKey => {
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some(kid.to_string());
            jsonwebtoken::encode(&h, claims, &EncodingKey::from_secret(public_pem.as_bytes()))
                .unwrap()
        }
        Signing::None => {
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
            let body = URL_SAFE_NO_PAD.encode(claims.to_string());
            format!("{header}.{body}.")
        }
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn hostile_handle(req: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let (state, discovery, jwks, issuer, key_pem, public_pem, kid) = shared;
    let json_response = |status: StatusCode, v: &Value| {
        let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
        *r.status_mut() = status;
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r
    };
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/.well-known/openid-configuration" => json_response(StatusCode::OK, discovery),
        "/jwks" => json_response(StatusCode::OK, jwks),
        "/token" => {
            let auth = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let form: Map<String, Value> = form_urlencoded::parse(&body)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect();
            let field = |n: &str| {
                form.get(n)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let code = (field("grant_type") == "authorization_code").then(|| field("code"));
            // The lock is not held across the delay below.
            let (script, reused) = {
                let mut st = state.lock().unwrap();
                st.token_requests
                    .push(format!("{} auth={auth}", String::from_utf8_lossy(&body)));
                let reused = match &code {
                    Some(code) if st.used_codes.contains(code) => true,
                    Some(code) => {
                        st.used_codes.push(code.clone());
                        false
                    }
                    None => false,
                };
                (st.script.clone(), reused)
            };
            if reused {
                return json_response(StatusCode::BAD_REQUEST, &json!({"error": "invalid_grant"}));
            }
            if code.is_some() {
                // PKCE S256: the verifier must hash to the challenge the browser carried.
                if let Some(challenge) = &script.challenge {
                    let digest = aws_lc_rs::digest::digest(
                        &aws_lc_rs::digest::SHA256,
                        field("code_verifier").as_bytes(),
                    );
                    if &URL_SAFE_NO_PAD.encode(digest.as_ref()) != challenge {
                        return json_response(
                            StatusCode::BAD_REQUEST,
                            &json!({"error": "invalid_grant", "error_description": "PKCE"}),
                        );
                    }
                }
            }
            if let Some(delay) = script.delay {
                tokio::time::sleep(delay).await;
            }
            let t = now();
            let mut claims = json!({
                "iss": issuer,
                "aud": "gatehouse",
                "sub": "user-1",
                "email": "dana@example.com",
                "email_verified": true,
                "preferred_username": "dana",
                "iat": t,
                "exp": t + 300,
                "sid": "idp-session-1",
            });
            if let Some(nonce) = &script.nonce {
                claims["nonce"] = Value::String(nonce.clone());
            }
            for (k, v) in &script.claims {
                if v.is_null() {
                    claims.as_object_mut().unwrap().remove(k);
                } else {
                    claims[k] = v.clone();
                }
            }
            let id_token = sign(&claims, &script.signing, key_pem, public_pem, kid, None);
            let mut answer =
                json!({"access_token": "at-1", "token_type": "Bearer", "id_token": id_token});
            if let Some(rt) = &script.refresh_token {
                answer["refresh_token"] = Value::String(rt.clone());
            }
            json_response(StatusCode::OK, &answer)
        }
        "/userinfo" => json_response(StatusCode::OK, &json!({"sub": "user-1"})),
        _ => json_response(StatusCode::NOT_FOUND, &json!({"error": "not_found"})),
    }
}

// ---------------------------------------------------------------- flow helpers

/// `s` between `start` and the next `end`.
/// The action of the 403 page's *Sign in as someone else* form (the `secondary` button's).
pub fn switch_user_action(page: &str) -> String {
    let before = page.split("\"><button class=\"secondary\"").next().unwrap();
    before
        .rsplit("action=\"")
        .next()
        .expect("Sign in as someone else")
        .replace("&amp;", "&")
}

/// A page's hidden form fields, name and value, as a browser would send them.
pub fn hidden_fields(page: &str) -> Vec<(String, String)> {
    page.split("<input")
        .skip(1)
        .filter(|i| i.contains("type=\"hidden\""))
        .filter_map(|i| Some((between(i, "name=\"", "\"")?, between(i, "value=\"", "\"")?)))
        .collect()
}

/// The href of a login page's first *Sign in with NAME* button.
pub fn provider_link(page: &str) -> String {
    between(page, "class=\"button provider\" href=\"", "\"")
        .expect("a provider button")
        .replace("&amp;", "&")
}

pub fn between(s: &str, start: &str, end: &str) -> Option<String> {
    let from = s.find(start)? + start.len();
    let len = s[from..].find(end)?;
    Some(s[from..from + len].replace("&amp;", "&"))
}

fn strip_origin(url: &str, origin: &str) -> String {
    url.strip_prefix(origin).unwrap_or(url).to_string()
}

/// `http://host:port/path?q` → `/path?q`.
pub fn strip_any_origin(url: &str) -> String {
    match url.split_once("://") {
        Some((_, rest)) => rest
            .find('/')
            .map_or("/".to_string(), |i| rest[i..].to_string()),
        None => url.to_string(),
    }
}

/// One query parameter of a URL.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// What the gateway's `start` redirect carried.
#[derive(Debug, Clone)]
pub struct Started {
    pub location: String,
    pub state: String,
    pub nonce: String,
    pub challenge: String,
}

/// `GET {auth_prefix}/oidc/{id}/start?rd=...` as a browser.
pub async fn start(gateway: &Client, id: &str, rd: &str) -> Started {
    let rd: String = form_urlencoded::byte_serialize(rd.as_bytes()).collect();
    let r = gateway
        .navigate(&format!("/.gatehouse/oidc/{id}/start?rd={rd}"))
        .await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    let location = r.header("location").unwrap().to_string();
    Started {
        state: query_param(&location, "state").unwrap(),
        nonce: query_param(&location, "nonce").unwrap(),
        challenge: query_param(&location, "code_challenge").unwrap(),
        location,
    }
}
