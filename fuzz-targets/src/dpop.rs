//! DPoP proofs: parsing, verification with the key in the proof, the request checks, htu
//! normalization and server nonces.
use crate::fixtures::NOW;
use jitgate_token::dpop::{nonce_valid, normalize_htu, verify_proof, Expected};

/// One input, as the fuzzer and the corpus replay give it.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok((proof, _)) = verify_proof(text, None) {
        assert!(!proof.jti.is_empty() && proof.jti.len() <= 128);
        let htu = "https://api.example/orders/1";
        let expected =
            Expected { method: "GET", htu, token: "t", jkt: &proof.jkt, now: NOW, max_age_s: 60, skew_s: 30 };
        if proof.check(&expected).is_ok() {
            assert!(!proof.htu.contains(['?', '#']), "htu with a query or fragment passed");
            assert!(proof.iat <= NOW + 30 && proof.iat + 90 >= NOW);
        }
    }
    if let Some(n) = normalize_htu(text) {
        assert_eq!(normalize_htu(&n).as_deref(), Some(n.as_str()), "normalization is idempotent");
    }
    let _ = nonce_valid(&[9; 32], text, NOW / 60);
}
