//! Per-request time in the wasm harness with the real jitgate filter: what a scenario case costs.
//! Build the filter first: `cargo build --release --target wasm32-wasip1 -p jitgate-filter`.
//! `JITGATE_BASELINE_WASM=old.wasm` runs only an A/B: per-request cases for that module and the
//! current one, alternating in the same run (before/after comparisons on a noisy machine).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use jitgate_harness::{Harness, Plugin, PluginOptions, Request};
use jitgate_token::mint::{mint, SigningKey};
use jitgate_token::Alg;
use std::path::Path;

const NOW: u64 = 1_800_000_000;

fn setup() -> (Harness, std::path::PathBuf, SigningKey) {
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip1/release/jitgate_filter.wasm");
    assert!(wasm.exists(), "build the filter first: cargo build --release --target wasm32-wasip1 -p jitgate-filter");
    (Harness::new().unwrap(), wasm, SigningKey::from_seed(Alg::ES256, Some("k1"), &[7; 32]).unwrap())
}

fn config(key: &SigningKey, crypto: &str, cache: usize) -> String {
    serde_json::json!({
        "issuer": "https://jitgate.local", "audience": "demo-api", "jwks": {"keys": [key.public_jwk()]},
        "crypto": crypto, "token_cache_entries": cache,
        "rules": [{"name": "orders", "path": {"prefix": "/orders"}, "scopes": ["orders:read"]}]
    })
    .to_string()
}

fn token(key: &SigningKey, jti: u64) -> String {
    let claims = serde_json::json!({"iss": "https://jitgate.local", "aud": "demo-api", "sub": "alice", "iat": NOW,
        "exp": NOW + 300, "jti": jti.to_string(), "scope": "orders:read", "jit": {"grant": "g"}});
    mint(key, "at+jwt", &claims).unwrap()
}

fn start(h: &Harness, wasm: &Path, config: &str) -> Plugin {
    let pre = h.load_file(wasm).unwrap();
    let options = PluginOptions {
        plugin_config: config.as_bytes().to_vec(),
        start_unix_ns: NOW * 1_000_000_000,
        ..Default::default()
    };
    let p = Plugin::start(&pre, &options).unwrap();
    assert_eq!(p.start_error(), None);
    p
}

fn authorized(t: &str) -> Request {
    Request::new("GET", "/orders/1").header("authorization", &format!("Bearer {t}"))
}

fn bench(c: &mut Criterion) {
    let (h, wasm, key) = setup();
    // A pool of distinct tokens: "fresh token per request" without minting inside the timing.
    let pool: Vec<String> = (0..512).map(|i| token(&key, i)).collect();
    let mut g = c.benchmark_group("harness");
    let plugin = start(&h, &wasm, &config(&key, "auto", 1024));
    let repeated = authorized(&pool[0]);
    if let Some(baseline) = std::env::var_os("JITGATE_BASELINE_WASM") {
        let modules = [("current", wasm.clone()), ("baseline", std::path::PathBuf::from(baseline))];
        for round in 0..2 {
            for (name, module) in &modules {
                let p = start(&h, module, &config(&key, "auto", 1024));
                assert_eq!(p.send(0, repeated.clone()).status(), 200);
                g.bench_function(format!("A/B round {round} {name}: cached token"), |b| {
                    b.iter(|| p.send(0, repeated.clone()))
                });
                let mut i = 0usize;
                g.bench_function(format!("A/B round {round} {name}: fresh ES256 token, host crypto"), |b| {
                    b.iter(|| {
                        i = (i + 1) % pool.len();
                        p.send(0, authorized(&pool[i]))
                    })
                });
            }
        }
        g.finish();
        return;
    }
    g.bench_function("request: deny, no token", |b| b.iter(|| plugin.send(0, Request::new("GET", "/orders/1"))));
    assert_eq!(plugin.send(0, repeated.clone()).status(), 200);
    g.bench_function("request: allow, cached token (cache hit)", |b| b.iter(|| plugin.send(0, repeated.clone())));
    for crypto in ["wasm", "host"] {
        let p = start(&h, &wasm, &config(&key, crypto, 0));
        let mut i = 0usize;
        g.bench_function(format!("request: allow, fresh ES256 token, crypto {crypto}"), |b| {
            b.iter(|| {
                i = (i + 1) % pool.len();
                let o = p.send(0, authorized(&pool[i]));
                assert_eq!(o.status(), 200);
            })
        });
        let path = if crypto == "host" { "jitgate.crypto.host" } else { "jitgate.crypto.wasm" };
        assert!(p.metric(path).unwrap_or(0) > 0, "{crypto}: the intended path verified");
    }
    let cfg = config(&key, "auto", 1024);
    g.bench_function("start plugin (module cached) + one request", |b| {
        b.iter(|| start(&h, &wasm, &cfg).send(0, Request::new("GET", "/orders/1")))
    });
    g.sample_size(10).bench_function("compile module (cold) + start + one request", |b| {
        b.iter(|| start(&Harness::new().unwrap(), &wasm, &cfg).send(0, Request::new("GET", "/orders/1")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
