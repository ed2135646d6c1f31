//! What the test modules share: the built filter, the virtual clock's start, the keys they sign
//! with, and a filter started in a harness of its own.

use jitgate_harness::{Harness, Plugin, PluginOptions};
use jitgate_token::mint::SigningKey;
use jitgate_token::Alg;
use std::path::PathBuf;

/// Where every test's virtual clock starts (Unix seconds).
pub const NOW: u64 = 1_800_000_000;

/// The filter as `cargo build --release --target wasm32-wasip1 -p jitgate-filter` leaves it.
pub fn filter_wasm() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip1/release/jitgate_filter.wasm")
}

/// An ES256 issuer key named `kid`, the same for the same seed in every run.
pub fn key(kid: &str, seed: u8) -> SigningKey {
    SigningKey::from_seed(Alg::ES256, Some(kid), &[seed; 32]).unwrap()
}

/// The DPoP client's key (no kid: a proof carries the key itself).
pub fn client_key() -> SigningKey {
    SigningKey::from_seed(Alg::ES256, None, &[2; 32]).unwrap()
}

/// The filter started with `options` in a harness of its own (the start may still have failed).
pub fn start_filter(options: &PluginOptions) -> Plugin {
    Plugin::start(&Harness::new().unwrap().load_file(&filter_wasm()).unwrap(), options).unwrap()
}

/// The filter with `config`, its clock at `NOW`; other options default.
pub fn options_at_now(config: &serde_json::Value) -> PluginOptions {
    PluginOptions {
        plugin_config: config.to_string().into_bytes(),
        start_unix_ns: NOW * 1_000_000_000,
        ..Default::default()
    }
}

/// A filter that started and configured without error.
pub fn started(options: &PluginOptions) -> Plugin {
    let p = start_filter(options);
    assert_eq!(p.start_error(), None, "{:?}", p.logs());
    p
}
