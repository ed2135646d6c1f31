//! Every Wycheproof ES256 and RS256 vector through both signature paths of jitgate-token: pure
//! Rust in the module, and the host's `verify_signature` (as Envoy's, reached with the same
//! protobuf the filter sends). The verdicts must be identical, vector by vector.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use jitgate_harness::foreign;
use jitgate_token::alg::{host_signature, HostVerifier};
use jitgate_token::Jwk;
use serde_json::Value;

struct HarnessHost;

impl HostVerifier for HarnessHost {
    fn verify(&self, hash: &str, public_key: &[u8], signature: &[u8], text: &[u8]) -> Option<bool> {
        let args = jitgate_token::verify_signature::encode_args(hash, public_key, signature, text);
        let out = foreign::call("verify_signature", &args).ok()?;
        jitgate_token::verify_signature::decode_result(&out).map(|(ok, _)| ok)
    }
}

fn vectors(file: &str) -> Value {
    let path = format!("{}/../token/tests/vectors/wycheproof/{file}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Runs every vector of `file` whose key loads; returns (compared, accepted by both).
fn compare(file: &str, key_of: impl Fn(&Value) -> Value) -> (usize, usize) {
    let doc = vectors(file);
    let (mut compared, mut accepted) = (0, 0);
    for group in doc["testGroups"].as_array().unwrap() {
        let Ok(jwk) = Jwk::from_json(key_of(group).to_string().as_bytes()) else { continue };
        let der = jwk.spki_der.clone().expect("ES256 and RS256 keys have a DER form");
        for t in group["tests"].as_array().unwrap() {
            let (msg, sig) =
                (hex::decode(t["msg"].as_str().unwrap()).unwrap(), hex::decode(t["sig"].as_str().unwrap()).unwrap());
            let wasm = jwk.key.verify(&msg, &sig).is_ok();
            let host = match host_signature(&jwk.key, &sig) {
                Some(s) => HarnessHost.verify("sha256", &der, &s, &msg).expect("the host answers"),
                None => false,
            };
            assert_eq!(wasm, host, "{file} tcId {} ({}): wasm {wasm}, host {host}", t["tcId"], t["comment"]);
            compared += 1;
            accepted += usize::from(wasm);
        }
    }
    eprintln!("{file}: {compared} vectors, identical verdicts, {accepted} accepted by both");
    (compared, accepted)
}

#[test]
fn es256_vectors_agree_between_wasm_and_host() {
    let (n, ok) = compare("ecdsa_secp256r1_sha256_p1363_test.json", |g| {
        let coord = |name: &str| {
            let raw = hex::decode(g["publicKey"][name].as_str().unwrap()).unwrap();
            let mut out = [0u8; 32];
            let tail = &raw[raw.len().saturating_sub(32)..];
            out[32 - tail.len()..].copy_from_slice(tail);
            jitgate_token::encoding::b64_encode(&out)
        };
        if g["jwk"].is_object() {
            g["jwk"].clone()
        } else {
            serde_json::json!({"kty": "EC", "crv": "P-256", "x": coord("wx"), "y": coord("wy")})
        }
    });
    assert!(n > 250 && ok > 150, "{n} compared, {ok} accepted");
}

#[test]
fn rs256_vectors_agree_between_wasm_and_host() {
    let (n, ok) = compare("rsa_signature_2048_sha256_test.json", |g| g["keyJwk"].clone());
    assert!(n > 250 && ok >= 9, "{n} compared, {ok} accepted");
}

#[test]
fn the_start_up_self_test_accepts_a_correct_host_and_refuses_a_yes_man() {
    struct YesMan;
    impl HostVerifier for YesMan {
        fn verify(&self, _: &str, _: &[u8], _: &[u8], _: &[u8]) -> Option<bool> {
            Some(true)
        }
    }
    struct Absent;
    impl HostVerifier for Absent {
        fn verify(&self, _: &str, _: &[u8], _: &[u8], _: &[u8]) -> Option<bool> {
            None
        }
    }
    assert!(jitgate_token::alg::host_self_test(&HarnessHost));
    assert!(!jitgate_token::alg::host_self_test(&YesMan));
    assert!(!jitgate_token::alg::host_self_test(&Absent));
}

#[test]
fn a_jws_signed_with_es256_is_verified_by_the_host_path() {
    use jitgate_token::mint::{mint, SigningKey};
    use jitgate_token::{Alg, CryptoPath, KeySet};
    let key = SigningKey::from_seed(Alg::ES256, Some("k1"), &[3; 32]).unwrap();
    let keys = KeySet::from_jwks(serde_json::json!({"keys": [key.public_jwk()]}).to_string().as_bytes()).unwrap();
    let token = mint(&key, "at+jwt", &serde_json::json!({"sub": "a"})).unwrap();
    let host_path = jitgate_token::jws::parse(&token, 8192).unwrap().verify_with(&keys, Some(&HarnessHost));
    assert_eq!(host_path.map(|(_, p)| p).ok(), Some(CryptoPath::Host));
}
