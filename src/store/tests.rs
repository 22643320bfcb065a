//! The store contract, run against every backend.

use super::*;

/// Times are Unix milliseconds: every absolute time below is `B + n`.
const B: u64 = 1_765_000_000_000;

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
    }
}

fn backends() -> Vec<Store> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let path =
        std::env::temp_dir().join(format!("gatehouse-store-{}-{n}.redb", std::process::id()));
    let _ = std::fs::remove_file(&path);
    vec![
        Store::Memory(MemoryStore::new()),
        Store::Durable(DurableStore::open(&path, B).unwrap()),
    ]
}

#[tokio::test]
async fn the_durable_store_comes_back_as_it_was() {
    let path = std::env::temp_dir().join(format!("gatehouse-reopen-{}.redb", std::process::id()));
    let _ = std::fs::remove_file(&path);
    {
        let store = Store::Durable(DurableStore::open(&path, B + 100).unwrap());
        let (t0, t1) = (hash_token("t0"), hash_token("t1"));
        store
            .create_session(session("s", "alice", B + 100), t0)
            .await
            .unwrap();
        store.rotate(&t0, t1, B + 101, POLICY).await.unwrap();
        store
            .create_session(session("gone", "bob", B + 100), hash_token("b"))
            .await
            .unwrap();
        store.revoke_session("gone", B + 102, 400).await.unwrap();
    }
    let store = Store::Durable(DurableStore::open(&path, B + 103).unwrap());
    assert!(store.is_revoked("gone"));
    assert_eq!(store.session("gone").await.unwrap(), None);
    assert_eq!(
        store.session("s").await.unwrap().map(|s| s.last_refresh),
        Some(B + 101)
    );
    // The used token is still known as used: within grace, then reuse.
    assert!(matches!(
        store
            .rotate(&hash_token("t0"), hash_token("x"), B + 104, POLICY)
            .await
            .unwrap(),
        RotateOutcome::WithinGrace(_)
    ));
    assert!(matches!(
        store
            .rotate(&hash_token("t1"), hash_token("t2"), B + 104, POLICY)
            .await
            .unwrap(),
        RotateOutcome::Rotated(_)
    ));
    assert!(matches!(
        store
            .rotate(&hash_token("t0"), hash_token("y"), B + 200, POLICY)
            .await
            .unwrap(),
        RotateOutcome::ReuseDetected { .. }
    ));
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn a_rotated_token_has_exactly_one_successor() {
    for store in backends() {
        let (t0, t1, t2) = (hash_token("t0"), hash_token("t1"), hash_token("t2"));
        store
            .create_session(session("s", "alice", B + 100), t0)
            .await
            .unwrap();
        assert!(matches!(
            store.rotate(&t0, t1, B + 101, POLICY).await.unwrap(),
            RotateOutcome::Rotated(_)
        ));
        // A second use inside grace: the session, and no successor.
        assert!(matches!(
            store.rotate(&t0, t2, B + 102, POLICY).await.unwrap(),
            RotateOutcome::WithinGrace(_)
        ));
        assert_eq!(
            store
                .rotate(&t2, hash_token("x"), B + 103, POLICY)
                .await
                .unwrap(),
            RotateOutcome::Invalid
        );
        // The successor works.
        assert!(matches!(
            store.rotate(&t1, t2, B + 104, POLICY).await.unwrap(),
            RotateOutcome::Rotated(_)
        ));
    }
}

#[tokio::test]
async fn reused_refresh_token_after_grace_revokes_the_session() {
    for store in backends() {
        let (t0, t1) = (hash_token("t0"), hash_token("t1"));
        store
            .create_session(session("s", "alice", B + 100), t0)
            .await
            .unwrap();
        store.rotate(&t0, t1, B + 100, POLICY).await.unwrap();
        let reuse = store
            .rotate(&t0, hash_token("t9"), B + 100 + GRACE + 1, POLICY)
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
                .rotate(&t1, hash_token("t2"), B + 112, POLICY)
                .await
                .unwrap(),
            RotateOutcome::Invalid
        );
    }
}

#[tokio::test]
async fn expired_and_revoked_tokens_are_invalid() {
    for store in backends() {
        let t0 = hash_token("t0");
        let mut s = session("s", "bob", B + 100);
        s.idle_expires_at = B + 200;
        store.create_session(s, t0).await.unwrap();
        assert_eq!(
            store
                .rotate(&t0, hash_token("a"), B + 201, POLICY)
                .await
                .unwrap(),
            RotateOutcome::Invalid
        );

        let t1 = hash_token("t1");
        store
            .create_session(session("s2", "bob", B + 100), t1)
            .await
            .unwrap();
        assert!(store.revoke_session("s2", B + 101, 400).await.unwrap());
        assert_eq!(
            store
                .rotate(&t1, hash_token("b"), B + 102, POLICY)
                .await
                .unwrap(),
            RotateOutcome::Invalid
        );
    }
}

#[tokio::test]
async fn rotation_never_extends_past_the_session_end() {
    for store in backends() {
        let t0 = hash_token("t0");
        let mut s = session("s", "carol", B + 100);
        s.expires_at = B + 1000;
        store.create_session(s, t0).await.unwrap();
        match store
            .rotate(&t0, hash_token("t1"), B + 900, POLICY)
            .await
            .unwrap()
        {
            RotateOutcome::Rotated(s) => assert_eq!(s.idle_expires_at, B + 1000),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            store
                .rotate(&hash_token("t1"), hash_token("t2"), B + 1001, POLICY)
                .await
                .unwrap(),
            RotateOutcome::Invalid
        );
    }
}

#[tokio::test]
async fn revoking_a_user_ends_all_their_sessions_only() {
    for store in backends() {
        store
            .create_session(session("a1", "alice", B + 100), hash_token("1"))
            .await
            .unwrap();
        store
            .create_session(session("a2", "alice", B + 100), hash_token("2"))
            .await
            .unwrap();
        store
            .create_session(session("b1", "bob", B + 100), hash_token("3"))
            .await
            .unwrap();
        let mut revoked = store.revoke_user("alice", B + 101, 400).await.unwrap();
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
            .create_session(session("s", "alice", B + 100), hash_token("1"))
            .await
            .unwrap();
        store.revoke_session("s", B + 100, 400).await.unwrap();
        store
            .create_session(session("live", "bob", B + 100), hash_token("2"))
            .await
            .unwrap();
        store.sweep(B + 499);
        assert_eq!(store.counts().revocations, 1);
        store.sweep(B + 500);
        assert_eq!(store.counts().revocations, 0);
        store.sweep(B + 100 + 3601);
        let c = store.counts();
        assert_eq!((c.sessions, c.refresh_tokens), (0, 0));
    }
}

#[tokio::test]
async fn concurrent_rotations_of_one_token_create_one_successor() {
    let store = std::sync::Arc::new(Store::Memory(MemoryStore::new()));
    let t0 = hash_token("t0");
    store
        .create_session(session("s", "alice", B + 100), t0)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .rotate(&t0, hash_token(&format!("succ{i}")), B + 101, POLICY)
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
    for store in backends() {
        let t0 = hash_token("t0");
        let mut s = session("s", "bob", B);
        s.idle_expires_at = B + 200;
        store.create_session(s, t0).await.unwrap();
        // At its instant, not a millisecond later, the refresh token is dead.
        assert_eq!(
            store
                .rotate(&t0, hash_token("a"), B + 200, POLICY)
                .await
                .unwrap(),
            RotateOutcome::Invalid
        );
        // The grace window ends at its instant too.
        let t1 = hash_token("t1");
        store
            .create_session(session("g", "bob", B), t1)
            .await
            .unwrap();
        store.rotate(&t1, hash_token("n"), B, POLICY).await.unwrap();
        assert!(matches!(
            store
                .rotate(&t1, hash_token("m"), B + GRACE - 1, POLICY)
                .await
                .unwrap(),
            RotateOutcome::WithinGrace(_)
        ));
        assert!(matches!(
            store
                .rotate(&t1, hash_token("o"), B + GRACE, POLICY)
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
    let now_s = B / 1000;
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
    let store = Store::Durable(DurableStore::open(&path, B + 1000).unwrap());
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
            .rotate(&hash_token("r"), hash_token("r2"), B + 2000, POLICY)
            .await
            .unwrap(),
        RotateOutcome::Rotated(_)
    ));
    let _ = std::fs::remove_file(&path);
}
