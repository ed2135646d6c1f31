//! Project Wycheproof vectors for the test suites of several crates (each includes this file with
//! `#[path]`): loading, hex fields, raw-point keys as JWKs, and the differential check of a host
//! signature path against the Rust one.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use jitgate_token::alg::{host_signature, HostVerifier};
use jitgate_token::Jwk;
use serde_json::Value;

/// A vector file of `token/tests/vectors/wycheproof` (the path works from any workspace crate).
pub fn load(file: &str) -> Value {
    let path = format!("{}/../token/tests/vectors/wycheproof/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn hex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap_or_default()).unwrap_or_else(|e| panic!("bad hex {v}: {e}"))
}

/// A group's key: its JWK in `key_field`, or the raw point that some ECDSA groups carry only,
/// as a JWK (coordinates are 32 bytes).
pub fn group_jwk(group: &Value, key_field: &str) -> Value {
    if group[key_field].is_object() {
        return group[key_field].clone();
    }
    let coord = |name: &str| {
        let raw = hex(&group["publicKey"][name]);
        let mut out = [0u8; 32];
        let tail = &raw[raw.len().saturating_sub(32)..];
        out[32 - tail.len()..].copy_from_slice(tail);
        jitgate_token::encoding::b64_encode(&out)
    };
    serde_json::json!({"kty": "EC", "crv": "P-256", "x": coord("wx"), "y": coord("wy")})
}

/// Every vector of `file` whose key loads, judged by the Rust path and by `host` after the
/// conversions the engine applies before it asks a host (DER key, DER ECDSA signature, RSA length
/// check; a signature that fails them is a rejection). The verdicts must be identical and every
/// `valid` vector accepted. Returns (compared, accepted by both).
pub fn compare_host_path(file: &str, key_field: &str, host: &dyn HostVerifier) -> (usize, usize) {
    let doc = load(file);
    let (mut compared, mut accepted) = (0, 0);
    for group in doc["testGroups"].as_array().unwrap() {
        let Ok(jwk) = Jwk::from_json(group_jwk(group, key_field).to_string().as_bytes()) else { continue };
        let der = jwk.spki_der.clone().expect("ES256 and RS256 keys have a DER form");
        for t in group["tests"].as_array().unwrap() {
            let (msg, sig) = (hex(&t["msg"]), hex(&t["sig"]));
            let rust = jwk.key.verify(&msg, &sig).is_ok();
            let on_host = match host_signature(&jwk.key, &sig) {
                Some(s) => host.verify("sha256", &der, &s, &msg).expect("the host answers"),
                None => false,
            };
            assert_eq!(rust, on_host, "{file} tcId {} ({}): rust {rust}, host {on_host}", t["tcId"], t["comment"]);
            if t["result"] == "valid" {
                assert!(rust, "{file} tcId {} must verify", t["tcId"]);
            }
            compared += 1;
            accepted += usize::from(rust);
        }
    }
    eprintln!("{file}: {compared} vectors, identical verdicts, {accepted} accepted by both");
    (compared, accepted)
}
