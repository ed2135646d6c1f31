//! JWK and JWKS parsing: strict (the filter's trusted keys) and lenient (identity providers).
use jitgate_token::{Jwk, KeySet};

/// One input, as the fuzzer and the corpus replay give it.
pub fn run(data: &[u8]) {
    let strict = KeySet::from_jwks(data);
    let lenient = KeySet::from_jwks_skipping_unusable(data);
    if let Ok(set) = &strict {
        // Whatever the strict parser accepts, the lenient one accepts whole.
        let (same, skipped) = lenient.as_ref().expect("lenient accepts what strict accepts");
        assert_eq!((same.len(), skipped.len()), (set.len(), 0));
    }
    if let Ok(key) = Jwk::from_json(data) {
        let _ = key.verify_with(b"message", b"signature", None);
    }
}
