//! Per-request time in the wasm harness with the real jitgate filter: what a scenario case costs.
//! Build the filter first: `cargo build --release --target wasm32-wasip1 -p jitgate-filter`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use jitgate_harness::{Harness, Plugin, PluginOptions, Request};
use jitgate_token::mint::{mint, SigningKey};
use jitgate_token::Alg;
use std::path::Path;

const NOW: u64 = 1_800_000_000;

fn setup() -> (Harness, std::path::PathBuf, String, String) {
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip1/release/jitgate_filter.wasm");
    assert!(wasm.exists(), "build the filter first: cargo build --release --target wasm32-wasip1 -p jitgate-filter");
    let key = SigningKey::from_seed(Alg::ES256, Some("k1"), &[7; 32]).unwrap();
    let config = serde_json::json!({
        "issuer": "https://jitgate.local", "audience": "demo-api", "jwks": {"keys": [key.public_jwk()]},
        "rules": [{"name": "orders", "path": {"prefix": "/orders"}, "scopes": ["orders:read"]}]
    })
    .to_string();
    let claims = serde_json::json!({"iss": "https://jitgate.local", "aud": "demo-api", "sub": "alice", "iat": NOW,
        "exp": NOW + 300, "jti": "j1", "scope": "orders:read", "jit": {"grant": "g"}});
    let token = mint(&key, "at+jwt", &claims).unwrap();
    (Harness::new().unwrap(), wasm, config, token)
}

fn start(h: &Harness, wasm: &Path, config: &str) -> Plugin {
    let pre = h.load_file(wasm).unwrap();
    let options = PluginOptions {
        plugin_config: config.as_bytes().to_vec(),
        start_unix_ns: NOW * 1_000_000_000,
        ..Default::default()
    };
    Plugin::start(&pre, &options).unwrap()
}

fn bench(c: &mut Criterion) {
    let (h, wasm, config, token) = setup();
    let plugin = start(&h, &wasm, &config);
    let authorized = Request::new("GET", "/orders/1").header("authorization", &format!("Bearer {token}"));
    assert_eq!(plugin.send(0, authorized.clone()).status(), 200);
    let mut g = c.benchmark_group("harness");
    g.bench_function("request: deny, no token", |b| b.iter(|| plugin.send(0, Request::new("GET", "/orders/1"))));
    g.bench_function("request: allow, ES256 token verified in wasm", |b| b.iter(|| plugin.send(0, authorized.clone())));
    g.bench_function("start plugin (module cached) + one request", |b| {
        b.iter(|| start(&h, &wasm, &config).send(0, Request::new("GET", "/orders/1")))
    });
    g.sample_size(10).bench_function("compile module (cold) + start + one request", |b| {
        b.iter(|| start(&Harness::new().unwrap(), &wasm, &config).send(0, Request::new("GET", "/orders/1")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
