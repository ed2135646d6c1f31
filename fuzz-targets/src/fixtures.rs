//! What the fuzz targets share: fixed keys and a fixed clock, so that every crash reproduces.

use jitgate_token::mint::{mint, SigningKey};
use jitgate_token::{Alg, KeySet, Validation, Verifier};
use serde_json::{json, Value};
use std::sync::OnceLock;

/// The fuzz targets' clock (Unix seconds); tokens are minted relative to it.
pub const NOW: u64 = 1_800_000_000;
pub const ISSUER: &str = "https://jit.fuzz";
pub const AUDIENCE: &str = "orders";
/// A 32-byte HS256 secret (base64url of [7; 32]).
pub const HS_SECRET: [u8; 32] = [7; 32];

#[allow(missing_debug_implementations)] // signing keys: nothing to print
pub struct Keys {
    pub es: SigningKey,
    pub ed: SigningKey,
    pub hs: SigningKey,
    pub client: SigningKey,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        es: SigningKey::from_seed(Alg::ES256, Some("es"), &[1; 32]).expect("seed"),
        ed: SigningKey::from_seed(Alg::EdDSA, Some("ed"), &[2; 32]).expect("seed"),
        hs: SigningKey::hs256(Some("hs"), &HS_SECRET),
        client: SigningKey::from_seed(Alg::ES256, None, &[3; 32]).expect("seed"),
    })
}

/// The public JWKS of the asymmetric keys.
pub fn jwks() -> Value {
    let k = keys();
    json!({"keys": [k.es.public_jwk(), k.ed.public_jwk()]})
}

pub fn validation() -> Validation {
    Validation {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        accepted_typ: vec!["at+jwt".into()],
        clock_skew_s: 30,
        max_ttl_s: 900,
        require_jit: true,
        jti_optional: false,
    }
}

pub fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let k = keys();
        let keys =
            KeySet::new(vec![k.es.verifying_jwk().expect("jwk"), k.ed.verifying_jwk().expect("jwk")]).expect("set");
        let secrets = KeySet::new(vec![k.hs.verifying_jwk().expect("jwk")]).expect("set");
        Verifier::new(keys, secrets, validation(), 8192).expect("verifier")
    })
}

/// Claims of a valid token at `now`, with `scope`.
pub fn claims(now: u64, jti: &str, scope: &str) -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300, "jti": jti,
           "scope": scope, "jit": {"grant": "g-1", "idp": "https://idp"}})
}

/// A valid token signed by `key`.
pub fn token(key: &SigningKey, now: u64, jti: &str, scope: &str) -> String {
    mint(key, "at+jwt", &claims(now, jti, scope)).expect("mint")
}
