#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The native module's `ring` path gives the same verdict as the Rust path (the wasm filter's) on
//! every Wycheproof ES256 and RS256 vector, through the same key and signature conversions the
//! engine applies before it asks the host.

#[path = "../../token/tests/support/wycheproof.rs"]
mod wycheproof;

use jitgate::crypto::verify;
use jitgate_token::alg::{self, HostVerifier};
use wycheproof::compare_host_path;

/// The module's host crypto, as the engine reaches it.
struct Ring;

impl HostVerifier for Ring {
    fn verify(&self, hash: &str, key: &[u8], sig: &[u8], text: &[u8]) -> Option<bool> {
        verify(hash, key, sig, text)
    }
}

#[test]
fn ring_and_rust_agree_on_every_es256_vector() {
    let (n, _) = compare_host_path("ecdsa_secp256r1_sha256_p1363_test.json", "publicKeyJwk", &Ring);
    assert!(n >= 250);
}

#[test]
fn ring_and_rust_agree_on_every_rs256_vector() {
    let (n, _) = compare_host_path("rsa_signature_2048_sha256_test.json", "keyJwk", &Ring);
    assert!(n >= 250);
}

#[test]
fn the_engine_self_test_passes_on_the_ring_path() {
    assert!(alg::host_self_test(&Ring));
    assert_eq!(verify("sha256", b"not a key", b"", b""), None, "an unusable key");
}
