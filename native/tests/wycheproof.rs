#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The native module's `ring` path gives the same verdict as the Rust path (the wasm filter's) on
//! every Wycheproof ES256 and RS256 vector, through the same key and signature conversions the
//! engine applies before it asks the host.

use jitgate::crypto::verify_signature;
use jitgate_token::alg::{self, KeyMaterial};
use jitgate_token::verify_signature::{decode_result, encode_args};
use jitgate_token::Jwk;
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/../token/tests/vectors/wycheproof/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn hex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap_or_default()).unwrap()
}

fn ec_jwk(public_key: &Value) -> Value {
    let coord = |name: &str| {
        let raw = hex(&public_key[name]);
        let mut out = [0u8; 32];
        let tail = &raw[raw.len().saturating_sub(32)..];
        out[32 - tail.len()..].copy_from_slice(tail);
        jitgate_token::encoding::b64_encode(&out)
    };
    serde_json::json!({"kty": "EC", "crv": "P-256", "x": coord("wx"), "y": coord("wy")})
}

/// The native verdict: the ring path when the engine would ask the host, else the Rust path.
fn native(key: &KeyMaterial, msg: &[u8], sig: &[u8]) -> bool {
    match (key.spki_der(), alg::host_signature(key, sig)) {
        (Some(der), Some(host_sig)) => {
            let answer = verify_signature(&encode_args("sha256", &der, &host_sig, msg)).expect("key imports");
            decode_result(&answer).unwrap().0
        }
        _ => key.verify(msg, sig).is_ok(),
    }
}

fn run(file: &str, key_field: &str) -> usize {
    let doc = load(file);
    let mut checked = 0;
    for group in doc["testGroups"].as_array().unwrap() {
        let key_json =
            if group[key_field].is_object() { group[key_field].clone() } else { ec_jwk(&group["publicKey"]) };
        let Ok(jwk) = Jwk::from_json(key_json.to_string().as_bytes()) else { continue };
        for t in group["tests"].as_array().unwrap() {
            let (msg, sig) = (hex(&t["msg"]), hex(&t["sig"]));
            let rust = jwk.key.verify(&msg, &sig).is_ok();
            assert_eq!(native(&jwk.key, &msg, &sig), rust, "{file} tcId {} ({})", t["tcId"], t["comment"]);
            if t["result"] == "valid" {
                assert!(rust, "{file} tcId {} must verify", t["tcId"]);
            }
            checked += 1;
        }
    }
    checked
}

#[test]
fn ring_and_rust_agree_on_every_es256_vector() {
    assert!(run("ecdsa_secp256r1_sha256_p1363_test.json", "publicKeyJwk") >= 250);
}

#[test]
fn ring_and_rust_agree_on_every_rs256_vector() {
    assert!(run("rsa_signature_2048_sha256_test.json", "keyJwk") >= 250);
}

#[test]
fn the_engine_self_test_passes_on_the_ring_path() {
    struct Ring;
    impl jitgate_token::HostVerifier for Ring {
        fn verify(&self, hash: &str, key: &[u8], sig: &[u8], text: &[u8]) -> Option<bool> {
            decode_result(&verify_signature(&encode_args(hash, key, sig, text))?).map(|(ok, _)| ok)
        }
    }
    assert!(alg::host_self_test(&Ring));
    assert_eq!(verify_signature(&encode_args("sha256", b"not a key", b"", b"")), None, "an unusable key");
}
