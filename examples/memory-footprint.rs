//! Bytes of memory per live session and per revocation in the in-memory store, measured as
//! the process's resident-set growth for 1M of each, with the allocator the `gatehouse`
//! binary uses (mimalloc). `cargo run --release --example memory-footprint`

use gatehouse::store::{hash_token, MemoryStore, SessionRecord};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    const N: u64 = 1_000_000;
    let store = MemoryStore::new();
    let before = rss_bytes();
    for i in 0..N {
        let sid = gatehouse::ids::session_id();
        let session = SessionRecord {
            sid,
            user: format!("user{}", i % 10_000),
            created_at: 1_800_000_000,
            expires_at: 1_802_592_000,
            last_refresh: 1_800_000_000,
            idle_expires_at: 1_800_604_800,
            client_ip: "203.0.113.7".into(),
            user_agent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0".into(),
            credential_fingerprint: "xV3b9Q2mN8kL1pR7tY4wEg".into(),
            idp: None,
        };
        store.create_session(session, hash_token(&gatehouse::ids::random(32)));
    }
    let sessions = rss_bytes();
    for _ in 0..N {
        store.revoke_session(&gatehouse::ids::session_id(), 1_800_000_000, 330);
    }
    let revocations = rss_bytes();
    println!(
        "live session (session record + its refresh record): {} bytes",
        (sessions - before) / N
    );
    println!("revocation: {} bytes", (revocations - sessions) / N);
    println!("(1M of each; resident-set growth; user agent 86 bytes)");
}
