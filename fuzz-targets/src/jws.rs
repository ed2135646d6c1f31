//! JWS parsing and verification of access tokens, and the caller-signature header parser.
use crate::fixtures::{verifier, NOW};

/// One input, as the fuzzer and the corpus replay give it.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(token) = verifier().verify(text, NOW, None) {
        // Accepted: the claims must be the ones the verifier promises.
        let c = &token.claims;
        assert_eq!(c.iss, crate::fixtures::ISSUER);
        assert!(c.exp > c.iat && c.exp - c.iat <= 900, "TTL cap");
        assert!(c.exp + 30 > NOW, "expired");
        assert!(c.jit.is_some(), "jit required");
    }
    let _ = jitgate_token::jws::parse(text, 16_384);
    if let Some(signed) = jitgate_token::caller_auth::parse(text) {
        assert!(jitgate_token::caller_auth::valid_id(signed.id));
        let _ = signed.verify(&[1; 32], "GET", "/", data);
    }
}
