//! The store contract, run against every backend.

use super::*;

/// Times are Unix milliseconds: every absolute time below is `b() + n`, from one real instant
/// of this test process (Redis expires keys by the wall clock).
fn b() -> u64 {
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BASE.get_or_init(crate::clock::now_ms)
}

const GRACE: u64 = 10;
const POLICY: RotationPolicy = RotationPolicy {
    refresh_ttl: 3600,
    reuse_grace: GRACE,
    revocation_ttl: 400,
};

fn session(sid: &str, user: &str, now: u64) -> SessionRecord {
    SessionRecord {
        sid: sid.into(),
        user: user.into(),
        created_at: now,
        expires_at: now + 86_400,
        last_refresh: now,
        idle_expires_at: now + 3600,
        client_ip: "127.0.0.1".into(),
        user_agent: "test".into(),
        credential_fingerprint: "fp".into(),
        idp: None,
    }
}

/// A redis-server of the test's own on a free loopback port, stopped when dropped.
struct RedisServer(std::process::Child);

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Redis backend against a fresh redis-server, when one is installed: `None` (after
/// saying so) otherwise, and a failure under `GATEHOUSE_REQUIRE_EXTERNAL=1` (CI).
#[allow(clippy::disallowed_methods)] // the test reads whether CI requires the program
async fn redis_backend() -> Option<(Store, RedisServer)> {
    let required = std::env::var("GATEHOUSE_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn();
    let child = match child {
        Ok(child) => RedisServer(child),
        Err(e) if required => panic!("redis-server is required here: {e}"),
        Err(e) => {
            eprintln!("SKIPPING the store suite on Redis: no redis-server ({e})");
            return None;
        }
    };
    let client = ::redis::Client::open(format!("redis://127.0.0.1:{port}/0")).ok()?;
    let store = RedisStore::start(client, "conformance:".into());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !store.is_healthy() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Redis did not come up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Some((Store::Redis(store), child))
}

/// Memory and durable, and Redis when a redis-server is there: the backends the protocol
/// tests run on (counts and sweeping are exact on the first two only).
async fn every_backend() -> (Vec<Store>, Option<RedisServer>) {
    let mut stores = backends();
    let server = match redis_backend().await {
        Some((store, server)) => {
            stores.push(store);
            Some(server)
        }
        None => None,
    };
    (stores, server)
}

fn backends() -> Vec<Store> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let path =
        std::env::temp_dir().join(format!("gatehouse-store-{}-{n}.redb", std::process::id()));
    let _ = std::fs::remove_file(&path);
    vec![
        Store::Memory(MemoryStore::new()),
        Store::Durable(DurableStore::open(&path, b()).unwrap()),
    ]
}

#[tokio::test]
async fn the_durable_store_comes_back_as_it_was() {
    let path = std::env::temp_dir().join(format!("gatehouse-reopen-{}.redb", std::process::id()));
    let _ = std::fs::remove_file(&path);
    {
        let store = Store::Durable(DurableStore::open(&path, b() + 100).unwrap());
        let (t0, t1) = (hash_token("t0"), hash_token("t1"));
        store
            .create_session(session("s", "alice", b() + 100), t0)
            .await
            .unwrap();
        store.rotate(&t0, t1, b() + 101, POLICY).await.unwrap();
        store
            .create_session(session("gone", "bob", b() + 100), hash_token("b"))
            .await
            .unwrap();
        store.revoke_session("gone", b() + 102, 400).await.unwrap();
    }
    let store = Store::Durable(DurableStore::open(&path, b() + 103).unwrap());
    assert!(store.is_revoked("gone"));
    assert_eq!(store.session("gone").await.unwrap(), None);
    assert_eq!(
        store.session("s").await.unwrap().map(|s| s.last_refresh),
        Some(b() + 101)
    );
    // The used token is still known as used: within grace, then reuse.
    assert!(matches!(
        store
            .rotate(&hash_token("t0"), hash_token("x"), b() + 104, POLICY)
            .await
            .unwrap(),
        RotateOutcome::WithinGrace(_)
    ));
    assert!(matches!(
        store
            .rotate(&hash_token("t1"), hash_token("t2"), b() + 104, POLICY)
            .await
            .unwrap(),
        RotateOutcome::Rotated(_)
    ));
    assert!(matches!(
        store
            .rotate(&hash_token("t0"), hash_token("y"), b() + 200, POLICY)
            .await
            .unwrap(),
        RotateOutcome::ReuseDetected { .. }
    ));
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn a_rotated_token_has_exactly_one_successor() {
    let (stores, _redis) = every_backend().await;
    for store in stores {
        let (t0, t1, t2) = (hash_token("t0"), hash_token("t1"), hash_token("t2"));
        store
            .create_session(session("s", "alice", b() + 100), t0)
            .await
            .unwrap();
        assert!(matches!(
            store.rotate(&t0, t1, b() + 101, POLICY).await.unwrap(),
            RotateOutcome::Rotated(_)
        ));
        // A second use inside grace: the session, and no successor.
        assert!(matches!(
            store.rotate(&t0, t2, b() + 102, POLICY).await.unwrap(),
            RotateOutcome::WithinGrace(_)
        ));
        assert_eq!(
            store
                .rotate(&t2, hash_token("x"), b() + 103, POLICY)
                .await
                .unwrap(),
            RotateOutcome::Invalid
        );
        // The successor works.
        assert!(matches!(
            store.rotate(&t1, t2, b() + 104, POLICY).await.unwrap(),
            RotateOutcome::Rotated(_)
        ));
    }
}

#[tokio::test]
async fn reused_refresh_token_after_grace_revokes_the_session() {
    let (stores, _redis) = every_backend().await;
    for store in stores {
        let (t0, t1) = (hash_token("t0"), hash_token("t1"));
        store
            .create_session(session("s", "alice", b() + 100), t0)
            .await
            .unwrap();
        store.rotate(&t0, t1, b() + 100, POLICY).await.unwrap();
        let reuse = store
            .rotate(&t0, hash_token("t9"), b() + 100 + GRACE + 1, POLICY)
            .await
            .unwrap();
        assert_eq!(
            reuse,
            RotateOutcome::ReuseDetected {
                sid: "s".into(),
                user: "alice".into()
            }
        );
        assert!(store.is_revoked("s"));
        // The legitimate successor dies with the session.
        assert_eq!(
            store
                .rotate(&t1, hash_token("t2"), b() + 112, POLICY)
                .await
                .unwrap(),
            RotateOutcome::Invalid
        );
    }
}

#[tokio::test]
async fn expired_and_revoked_tokens_are_invalid() {
    let (stores, _redis) = every_backend().await;
    for store in stores {
        let t0 = hash_token("t0");
        let mut s = session("s", "bob", b() + 100);
        s.idle_expires_at = b() + 200;
        store.create_session(s, t0).await.unwrap();
        assert_eq!(
            store
                .rotate(&t0, hash_token("a"), b() + 201, POLICY)
                .await
                .unwrap(),
            RotateOutcome::Invalid
        );

        let t1 = hash_token("t1");
        store
            .create_session(session("s2", "bob", b() + 100), t1)
            .await
            .unwrap();
        assert!(store.revoke_session("s2", b() + 101, 400).await.unwrap());
        assert_eq!(
            store
                .rotate(&t1, hash_token("b"), b() + 102, POLICY)
                .await
                .unwrap(),
            RotateOutcome::Invalid
        );
    }
}

#[tokio::test]
async fn rotation_never_extends_past_the_session_end() {
    let (stores, _redis) = every_backend().await;
    for store in stores {
        let t0 = hash_token("t0");
        let mut s = session("s", "carol", b() + 100);
        s.expires_at = b() + 60_000;
        s.idle_expires_at = b() + 60_000;
        store.create_session(s, t0).await.unwrap();
        match store
            .rotate(&t0, hash_token("t1"), b() + 59_000, POLICY)
            .await
            .unwrap()
        {
            RotateOutcome::Rotated(s) => assert_eq!(s.idle_expires_at, b() + 60_000),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            store
                .rotate(&hash_token("t1"), hash_token("t2"), b() + 60_001, POLICY)
                .await
                .unwrap(),
            RotateOutcome::Invalid
        );
    }
}

#[tokio::test]
async fn revoking_a_user_ends_all_their_sessions_only() {
    let (stores, _redis) = every_backend().await;
    for store in stores {
        store
            .create_session(session("a1", "alice", b() + 100), hash_token("1"))
            .await
            .unwrap();
        store
            .create_session(session("a2", "alice", b() + 100), hash_token("2"))
            .await
            .unwrap();
        store
            .create_session(session("b1", "bob", b() + 100), hash_token("3"))
            .await
            .unwrap();
        let mut revoked = store.revoke_user("alice", b() + 101, 400).await.unwrap();
        revoked.sort();
        assert_eq!(revoked, vec!["a1".to_string(), "a2".to_string()]);
        assert!(store.is_revoked("a1") && store.is_revoked("a2") && !store.is_revoked("b1"));
        assert_eq!(store.sessions_of("alice").await.unwrap(), vec![]);
        assert_eq!(store.sessions_of("bob").await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn sweeping_bounds_memory_to_live_state() {
    for store in backends() {
        store
            .create_session(session("s", "alice", b() + 100), hash_token("1"))
            .await
            .unwrap();
        store.revoke_session("s", b() + 100, 400).await.unwrap();
        store
            .create_session(session("live", "bob", b() + 100), hash_token("2"))
            .await
            .unwrap();
        store.sweep(b() + 499);
        assert_eq!(store.counts().revocations, 1);
        store.sweep(b() + 500);
        assert_eq!(store.counts().revocations, 0);
        store.sweep(b() + 100 + 3601);
        let c = store.counts();
        assert_eq!((c.sessions, c.refresh_tokens), (0, 0));
    }
}

#[tokio::test]
async fn concurrent_rotations_of_one_token_create_one_successor() {
    let store = std::sync::Arc::new(Store::Memory(MemoryStore::new()));
    let t0 = hash_token("t0");
    store
        .create_session(session("s", "alice", b() + 100), t0)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .rotate(&t0, hash_token(&format!("succ{i}")), b() + 101, POLICY)
                .await
                .unwrap()
        }));
    }
    let mut rotated = 0;
    for t in tasks {
        match t.await.unwrap() {
            RotateOutcome::Rotated(_) => rotated += 1,
            RotateOutcome::WithinGrace(_) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(rotated, 1);
    assert_eq!(store.counts().refresh_tokens, 2);
    assert!(!store.is_revoked("s"));
}

#[tokio::test]
async fn every_expiry_is_exclusive() {
    let (stores, _redis) = every_backend().await;
    for store in stores {
        let t0 = hash_token("t0");
        let mut s = session("s", "bob", b());
        s.idle_expires_at = b() + 200;
        store.create_session(s, t0).await.unwrap();
        // At its instant, not a millisecond later, the refresh token is dead.
        assert_eq!(
            store
                .rotate(&t0, hash_token("a"), b() + 200, POLICY)
                .await
                .unwrap(),
            RotateOutcome::Invalid
        );
        // The grace window ends at its instant too.
        let t1 = hash_token("t1");
        store
            .create_session(session("g", "bob", b()), t1)
            .await
            .unwrap();
        store
            .rotate(&t1, hash_token("n"), b(), POLICY)
            .await
            .unwrap();
        assert!(matches!(
            store
                .rotate(&t1, hash_token("m"), b() + GRACE - 1, POLICY)
                .await
                .unwrap(),
            RotateOutcome::WithinGrace(_)
        ));
        assert!(matches!(
            store
                .rotate(&t1, hash_token("o"), b() + GRACE, POLICY)
                .await
                .unwrap(),
            RotateOutcome::ReuseDetected { .. }
        ));
    }
}

/// A database written by a version that kept times in whole seconds loads with its sessions
/// and revocations intact.
#[tokio::test]
async fn a_durable_store_written_in_seconds_loads_as_milliseconds() {
    let path = std::env::temp_dir().join(format!("gatehouse-legacy-{}.redb", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let now_s = b() / 1000;
    {
        // The old code's values: whole seconds.
        let store = Store::Durable(DurableStore::open(&path, now_s).unwrap());
        let mut s = session("old", "alice", now_s);
        s.expires_at = now_s + 86_400;
        s.idle_expires_at = now_s + 3600;
        store.create_session(s, hash_token("r")).await.unwrap();
        store
            .create_session(session("revoked", "bob", now_s), hash_token("q"))
            .await
            .unwrap();
        store.revoke_session("revoked", now_s, 400).await.unwrap();
    }
    let store = Store::Durable(DurableStore::open(&path, b() + 1000).unwrap());
    let s = store
        .session("old")
        .await
        .unwrap()
        .expect("the session survived");
    assert_eq!(s.expires_at, (now_s + 86_400) * 1000);
    assert_eq!(s.idle_expires_at, (now_s + 3600) * 1000);
    assert!(store.is_revoked("revoked"), "the revocation survived");
    assert!(matches!(
        store
            .rotate(&hash_token("r"), hash_token("r2"), b() + 2000, POLICY)
            .await
            .unwrap(),
        RotateOutcome::Rotated(_)
    ));
    let _ = std::fs::remove_file(&path);
}

fn idp_session(sid: &str, user: &str, sub: &str, idp_sid: Option<&str>) -> SessionRecord {
    let mut s = session(sid, user, b());
    s.idp = Some(IdpLink {
        provider: "corp".into(),
        sub: sub.into(),
        sid: idp_sid.map(str::to_string),
        email: Some(format!("{user}@example.com")),
        roles: Vec::new(),
        refresh_token: Some("sealed".into()),
        id_token: Some("sealed-id-token".into()),
        checked_at: b(),
    });
    s
}

#[tokio::test]
async fn provider_sessions_are_found_by_idp_sid_or_sub_and_survive_rotation_on_every_backend() {
    let (stores, _server) = every_backend().await;
    for store in &stores {
        for (sid, user, sub, idp_sid) in [
            ("p1", "ann", "sub-ann", Some("idp-1")),
            ("p2", "ann", "sub-ann", Some("idp-2")),
            ("p3", "bob", "sub-bob", Some("idp-1")),
        ] {
            store
                .create_session(idp_session(sid, user, sub, idp_sid), hash_token(sid))
                .await
                .unwrap();
        }
        store
            .create_session(session("local", "ann", b()), hash_token("local"))
            .await
            .unwrap();
        let sids = |v: Vec<SessionRecord>| {
            let mut s: Vec<String> = v.into_iter().map(|s| s.sid).collect();
            s.sort();
            s
        };
        let by_sub = store
            .sessions_of_idp("corp", Some("sub-ann"), None)
            .await
            .unwrap();
        assert_eq!(sids(by_sub), ["p1", "p2"]);
        let by_sid = store
            .sessions_of_idp("corp", Some("sub-ann"), Some("idp-1"))
            .await
            .unwrap();
        assert_eq!(sids(by_sid), ["p1"], "sid and sub together narrow");
        let other_provider = store
            .sessions_of_idp("other", Some("sub-ann"), None)
            .await
            .unwrap();
        assert!(other_provider.is_empty());
        // Rotation (a Lua script on Redis) keeps the link intact, roles list included.
        let outcome = store
            .rotate(&hash_token("p1"), hash_token("p1b"), b() + 1, POLICY)
            .await
            .unwrap();
        let RotateOutcome::Rotated(rotated) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(
            rotated.idp,
            idp_session("p1", "ann", "sub-ann", Some("idp-1")).idp
        );
        // A recheck's update is kept; a revoked session is not updated.
        let mut link = rotated.idp.clone().unwrap();
        link.roles = vec!["admin".into()];
        link.checked_at = b() + 5;
        assert!(store.update_idp("p1", &link).await.unwrap());
        assert_eq!(
            store.session("p1").await.unwrap().unwrap().idp,
            Some(link.clone())
        );
        store.revoke_session("p2", b() + 2, 400).await.unwrap();
        assert!(!store.update_idp("p2", &link).await.unwrap());
        let after = store
            .sessions_of_idp("corp", Some("sub-ann"), None)
            .await
            .unwrap();
        assert_eq!(sids(after), ["p1"], "a revoked session is not found");
    }
}

#[tokio::test]
async fn a_key_is_remembered_once_until_it_expires_on_every_backend() {
    let (stores, _server) = every_backend().await;
    for store in &stores {
        let until = crate::clock::now_ms() + 60_000;
        let now = crate::clock::now_ms();
        assert!(store.remember_once("jti-1", now, until).await.unwrap());
        assert!(!store.remember_once("jti-1", now, until).await.unwrap());
        assert!(store.remember_once("jti-2", now, until).await.unwrap());
    }
    // In memory the expiry is exact (Redis expires keys on its own clock).
    let m = Store::Memory(MemoryStore::new());
    assert!(m.remember_once("k", 1_000, 2_000).await.unwrap());
    assert!(!m.remember_once("k", 1_999, 3_000).await.unwrap());
    assert!(m.remember_once("k", 2_000, 3_000).await.unwrap());
}
