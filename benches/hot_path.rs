//! Micro-benchmarks of the per-request work: token verification per algorithm (cold and
//! cached), canonicalization, route matching, header rewriting, revocation lookup.
//! `cargo bench --bench hot_path`; compare numbers within one run only.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use gatehouse::authenticate::keygen::generate;
use gatehouse::authenticate::sessions::TokenSettings;
use gatehouse::authenticate::tokens::{AccessClaims, Expectations, KeySet, ACCESS_TOKEN_TYP};
use gatehouse::canonicalize::canonicalize;
use gatehouse::store::MemoryStore;
use http::{HeaderMap, HeaderValue, Method};
use jsonwebtoken::Algorithm;

const NOW: u64 = 1_800_000_000;

fn claims() -> AccessClaims {
    AccessClaims {
        iss: "gatehouse".into(),
        aud: "gatehouse".into(),
        sub: "alice".into(),
        sid: "f3ZgW0Sx2mGq1L9m7m7mZw".into(),
        jti: "Zx9VbL1q".into(),
        iat: NOW,
        nbf: NOW,
        exp: NOW + 300,
        email: Some("alice@example.com".into()),
        roles: vec!["admin".into(), "staff".into()],
        header_values: Default::default(),
    }
}

fn config() -> gatehouse::Config {
    gatehouse::install_crypto_providers();
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$aMsvpcdBj9/VlZHRnVgc4w$2L336nOpRY5KVoyYdI5CsWbXOcev6vwRpDlrlZ4vSyo";
    let yaml = format!(
        r#"server:
  listen: "127.0.0.1:0"
tokens:
  algorithm: HS256
  secret: "0123456789abcdef0123456789abcdef"
cookies:
  secure: false
users:
  - username: alice
    password_hash: "{hash}"
    roles: [admin]
routes:
  - name: static
    path_prefix: /static
    upstream: "http://127.0.0.1:1"
  - name: api
    host: api.example.com
    upstream: "http://127.0.0.1:2"
  - name: app
    upstream: "http://127.0.0.1:3"
    public: ["/public/"]
    rules:
      - path_prefix: /admin
        allow_roles: [admin]
"#
    );
    gatehouse::config::parse(&yaml, Path::new("bench.yaml"), |_| None).expect("bench config")
}

fn tokens(c: &mut Criterion) {
    gatehouse::install_crypto_providers();
    let expect = Expectations {
        issuer: "gatehouse",
        audience: "gatehouse",
        leeway: 30,
    };
    let sets = [
        (
            "HS256",
            KeySet::symmetric(Algorithm::HS256, &[7u8; 32]).unwrap(),
        ),
        (
            "EdDSA",
            KeySet::asymmetric(
                Algorithm::EdDSA,
                generate(Algorithm::EdDSA).unwrap().as_bytes(),
                &[],
            )
            .unwrap(),
        ),
        (
            "ES256",
            KeySet::asymmetric(
                Algorithm::ES256,
                generate(Algorithm::ES256).unwrap().as_bytes(),
                &[],
            )
            .unwrap(),
        ),
        (
            "RS256",
            KeySet::asymmetric(
                Algorithm::RS256,
                generate(Algorithm::RS256).unwrap().as_bytes(),
                &[],
            )
            .unwrap(),
        ),
    ];
    let mut group = c.benchmark_group("verify_cold");
    for (name, keys) in &sets {
        let token = keys.sign(ACCESS_TOKEN_TYP, &claims()).unwrap();
        group.bench_function(*name, |b| {
            b.iter(|| keys.verify(black_box(&token), &expect, NOW).unwrap())
        });
    }
    group.finish();

    // The path requests take: TokenSettings::verify on a token seen before (the cache).
    let now = gatehouse::clock::now();
    let mut live = claims();
    (live.iat, live.nbf, live.exp) = (now, now, now + 300);
    let mut group = c.benchmark_group("verify_cached");
    for (name, keys) in sets {
        let token = keys.sign(ACCESS_TOKEN_TYP, &live).unwrap();
        let settings = TokenSettings {
            keys,
            issuer: "gatehouse".into(),
            audience: "gatehouse".into(),
            access_ttl: 300,
            refresh_ttl: 3600,
            session_max_age: 86_400,
            reuse_grace: 10,
            leeway: 30,
            cache: Default::default(),
            seal: gatehouse::seal::SealKey::derive(b"bench"),
        };
        settings
            .verify(&token, now)
            .expect("first verification fills the cache");
        group.bench_function(name, |b| {
            b.iter(|| settings.verify(black_box(&token), now).unwrap())
        });
    }
    group.finish();
}

fn request_phases(c: &mut Criterion) {
    let cfg = config();
    c.bench_function("canonicalize", |b| {
        b.iter(|| {
            canonicalize(
                black_box(Some("App.Example.com:8443")),
                black_box("/a/./b/../reports/q3%20x"),
                Some("year=2026"),
            )
            .unwrap()
        })
    });
    let req = canonicalize(Some("app.example.com"), "/admin/users/42", None).unwrap();
    c.bench_function("route_lookup", |b| {
        b.iter(|| {
            cfg.routes
                .lookup(black_box(&req), &Method::GET)
                .unwrap()
                .route
                .name
                .len()
        })
    });

    let store = MemoryStore::new();
    for i in 0..100_000 {
        store.revoke_session(&format!("sid{i}"), NOW, 300);
    }
    c.bench_function("revocation_lookup_100k", |b| {
        b.iter(|| store.is_revoked(black_box("f3ZgW0Sx2mGq1L9m7m7mZw")))
    });

    let mut base = HeaderMap::new();
    for (k, v) in [
        ("host", "app.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
        ),
        ("accept", "text/html,application/xhtml+xml"),
        ("accept-language", "en-GB,en;q=0.9"),
        (
            "cookie",
            "gatehouse_access=eyJ0eXAiOiJhdCtqd3QifQ.e30.sig; theme=dark; app_session=abc",
        ),
        ("x-forwarded-user", "mallory"),
        ("connection", "keep-alive"),
    ] {
        base.insert(
            http::HeaderName::from_static(k),
            HeaderValue::from_static(v),
        );
    }
    let origin = gatehouse::forward::headers::Origin {
        client_ip: "203.0.113.9".parse().unwrap(),
        peer_ip: "203.0.113.9".parse().unwrap(),
        peer_trusted: false,
        proto: "http",
        request_id: "req-1234",
    };
    c.bench_function("header_rewrite", |b| {
        b.iter_batched(
            || base.clone(),
            |mut h| {
                gatehouse::forward::headers::remove_hop_by_hop(&mut h);
                let values = h.get_all(http::header::COOKIE).iter().map(|v| v.as_bytes());
                let scan = gatehouse::authenticate::credentials::scan_cookies(values, &cfg.cookies);
                let rewrite = gatehouse::forward::headers::cookie_rewrite(&scan);
                let host = h.get(http::header::HOST).cloned();
                gatehouse::forward::headers::rewrite_request(
                    &mut h,
                    &cfg.identity,
                    &cfg.cookies,
                    rewrite,
                    &cfg.tokens.seal,
                    &origin,
                    host,
                    None,
                )
                .unwrap();
                h
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

fn fragment_tracker(c: &mut Criterion) {
    // What the tracker reads per request: a browser-sized head with an access cookie.
    let head = format!(
        "GET /reports/q3?year=2026 HTTP/1.1\r\nhost: app.example.com\r\n\
         user-agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\n\
         accept: text/html,application/xhtml+xml\r\naccept-language: en-GB,en;q=0.9\r\n\
         upgrade-insecure-requests: 1\r\ncookie: gatehouse_access={}; theme=dark\r\n\r\n",
        "x".repeat(300)
    );
    assert_eq!(gatehouse::accept::heads::count_heads(head.as_bytes()), 1);
    c.bench_function("fragment_tracker_head", |b| {
        b.iter(|| gatehouse::accept::heads::count_heads(black_box(head.as_bytes())))
    });
}

criterion_group!(benches, tokens, request_phases, fragment_tracker);
criterion_main!(benches);
