//! The decision's own compute, natively and without a proxy: what the wasm code costs before any
//! host boundary (the Envoy side-by-side in scripts/bench.py measures both together).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use jitgate_engine::config::Config;
use jitgate_engine::{Engine, Host, Level, Metric};
use jitgate_token::mint::{mint, SigningKey};
use jitgate_token::Alg;
use std::hint::black_box;

const NOW: u64 = 1_800_000_000;

/// A host that answers at once and keeps nothing: only the engine's work is timed.
struct QuietHost;

impl Host for QuietHost {
    fn now_nanos(&self) -> u64 {
        NOW * 1_000_000_000
    }
    fn log(&self, _level: Level, _message: &str) {}
    fn log_enabled(&self, level: Level) -> bool {
        level != Level::Info
    }
    fn add(&self, _metric: Metric, _n: u64) {}
    fn set_filter_state(&self, _key: &str, _value: &str) {}
    fn property(&self, _path: &[&str]) -> Option<Vec<u8>> {
        None
    }
}

fn engine(keys: serde_json::Value) -> Engine {
    let mut config = serde_json::json!({
        "issuer": "https://jitgate.local", "audience": "demo-api", "max_ttl_s": 3600,
        "rules": [{"name": "orders", "path": {"prefix": "/orders"}, "scopes": ["orders:read"]}]
    });
    config.as_object_mut().unwrap().extend(keys.as_object().unwrap().clone());
    Engine::new(Config::parse(config.to_string().as_bytes()).unwrap())
}

/// The engine's borrowed view of a request's header pairs, as an adapter hands them over.
fn view(h: &[(String, Vec<u8>)]) -> impl Iterator<Item = jitgate_engine::Header<'_>> {
    h.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
}

fn request(token: &str) -> Vec<(String, Vec<u8>)> {
    [
        (":method", "GET"),
        (":path", "/orders/1"),
        (":authority", "127.0.0.1:10000"),
        (":scheme", "http"),
        ("user-agent", "wrk"),
        ("x-request-id", "5d1f0c7e-8a3b-4f2e-9c1d-2b7a6e4f8d90"),
        ("x-forwarded-proto", "http"),
        ("authorization", &format!("Bearer {token}")),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
    .collect()
}

fn claims(jti: u64) -> serde_json::Value {
    serde_json::json!({"iss": "https://jitgate.local", "aud": "demo-api", "sub": "alice", "iat": NOW,
        "exp": NOW + 3600, "jti": jti.to_string(), "scope": "orders:read",
        "jit": {"grant": "grant-7", "reason": "INC-1234 disk full"}})
}

fn decisions(c: &mut Criterion) {
    let es = SigningKey::from_seed(Alg::ES256, Some("k1"), &[7; 32]).unwrap();
    let cached = engine(serde_json::json!({"jwks": {"keys": [es.public_jwk()]}}));
    let repeated = request(&mint(&es, "at+jwt", &claims(1)).unwrap());
    assert!(matches!(cached.on_request_headers(&QuietHost, view(&repeated)), jitgate_engine::Action::Continue { .. }));
    c.bench_function("engine: ES256 bearer, cache hit (f)", |b| {
        b.iter(|| black_box(cached.on_request_headers(&QuietHost, view(black_box(&repeated)))));
    });

    let hs = SigningKey::hs256(Some("h1"), &[9; 32]);
    let secret = jitgate_token::encoding::b64_encode(&[9; 32]);
    let hmac =
        engine(serde_json::json!({"hs256_secrets": [{"kid": "h1", "secret": secret}], "token_cache_entries": 0}));
    let fresh = request(&mint(&hs, "at+jwt", &claims(2)).unwrap());
    assert!(matches!(hmac.on_request_headers(&QuietHost, view(&fresh)), jitgate_engine::Action::Continue { .. }));
    c.bench_function("engine: HS256 bearer, verified every time (h)", |b| {
        b.iter(|| black_box(hmac.on_request_headers(&QuietHost, view(black_box(&fresh)))));
    });

    // Envoy's configuration h: the cache is on and every token is new, so each request is a miss
    // that inserts (and, once the cache is full, evicts).
    let missing = engine(serde_json::json!({"hs256_secrets": [{"kid": "h1", "secret": secret}]}));
    let pool: Vec<_> = (10..4106).map(|jti| request(&mint(&hs, "at+jwt", &claims(jti)).unwrap())).collect();
    let mut i = 0;
    c.bench_function("engine: HS256 bearer, a new token each time, cache on (h)", |b| {
        b.iter(|| {
            i = (i + 1) % pool.len();
            black_box(missing.on_request_headers(&QuietHost, view(black_box(&pool[i]))))
        });
    });
}

criterion_group!(benches, decisions);
criterion_main!(benches);
