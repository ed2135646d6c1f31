//! Every Wycheproof ES256 and RS256 vector through both signature paths of jitgate-token: pure
//! Rust in the module, and the host's `verify_signature` (as Envoy's, reached with the same
//! protobuf the filter sends). The verdicts must be identical, vector by vector.

#[path = "../../../token/tests/support/wycheproof.rs"]
mod wycheproof;

use crate::support::key;
use jitgate_harness::foreign;
use jitgate_token::alg::HostVerifier;
use wycheproof::compare_host_path;

struct HarnessHost;

impl HostVerifier for HarnessHost {
    fn verify(&self, hash: &str, public_key: &[u8], signature: &[u8], text: &[u8]) -> Option<bool> {
        let args = jitgate_token::verify_signature::encode_args(hash, public_key, signature, text);
        let out = foreign::call("verify_signature", &args).ok()?;
        jitgate_token::verify_signature::decode_result(&out).map(|(ok, _)| ok)
    }
}

#[test]
fn es256_vectors_agree_between_wasm_and_host() {
    let (n, ok) = compare_host_path("ecdsa_secp256r1_sha256_p1363_test.json", "publicKeyJwk", &HarnessHost);
    assert!(n > 250 && ok > 150, "{n} compared, {ok} accepted");
}

#[test]
fn rs256_vectors_agree_between_wasm_and_host() {
    let (n, ok) = compare_host_path("rsa_signature_2048_sha256_test.json", "keyJwk", &HarnessHost);
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
    use jitgate_token::mint::mint;
    use jitgate_token::{CryptoPath, KeySet};
    let key = key("k1", 3);
    let keys = KeySet::from_jwks(serde_json::json!({"keys": [key.public_jwk()]}).to_string().as_bytes()).unwrap();
    let token = mint(&key, "at+jwt", &serde_json::json!({"sub": "a"})).unwrap();
    let host_path = jitgate_token::jws::parse(&token, 8192).unwrap().verify_with(&keys, Some(&HarnessHost));
    assert_eq!(host_path.map(|(_, p)| p).ok(), Some(CryptoPath::Host));
}
