//! The signature algorithms we accept, and the primitive verification for each.

use crate::error::{Error, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// JWS algorithms jitgate accepts. Anything else, `none` included, is `UnsupportedAlg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    ES256,
    EdDSA,
    RS256,
    PS256,
    HS256,
}

impl Alg {
    pub fn parse(name: &str) -> Result<Alg> {
        Ok(match name {
            "ES256" => Alg::ES256,
            "EdDSA" => Alg::EdDSA,
            "RS256" => Alg::RS256,
            "PS256" => Alg::PS256,
            "HS256" => Alg::HS256,
            _ => return Err(Error::UnsupportedAlg),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::ES256 => "ES256",
            Alg::EdDSA => "EdDSA",
            Alg::RS256 => "RS256",
            Alg::PS256 => "PS256",
            Alg::HS256 => "HS256",
        }
    }

    pub fn is_symmetric(self) -> bool {
        self == Alg::HS256
    }
}

/// Smallest HS256 secret we accept: RFC 7518 §3.2 requires at least the hash size.
pub const MIN_HMAC_KEY_BYTES: usize = 32;

/// Parsed verification key, pinned by its variant to exactly one algorithm and ready to verify
/// without re-parsing on the hot path.
#[derive(Clone)]
pub enum KeyMaterial {
    Es256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    Rs256(rsa::pkcs1v15::VerifyingKey<Sha256>),
    Ps256(rsa::RsaPublicKey),
    Hs256(Vec<u8>),
}

impl KeyMaterial {
    pub fn alg(&self) -> Alg {
        match self {
            KeyMaterial::Es256(_) => Alg::ES256,
            KeyMaterial::Ed25519(_) => Alg::EdDSA,
            KeyMaterial::Rs256(_) => Alg::RS256,
            KeyMaterial::Ps256(_) => Alg::PS256,
            KeyMaterial::Hs256(_) => Alg::HS256,
        }
    }

    /// Verifies `sig` over `msg`. The caller has checked the token's `alg` against `self.alg()`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<()> {
        let ok = match self {
            KeyMaterial::Es256(k) => verify_es256(k, msg, sig),
            KeyMaterial::Ed25519(k) => verify_ed25519(k, msg, sig),
            KeyMaterial::Rs256(k) => verify_rs256(k, msg, sig),
            KeyMaterial::Ps256(k) => verify_ps256(k, msg, sig),
            KeyMaterial::Hs256(k) => verify_hs256(k, msg, sig),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::BadSignature)
        }
    }
}

impl std::fmt::Debug for KeyMaterial {
    // Never print secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyMaterial({})", self.alg().name())
    }
}

/// ES256 per RFC 7518 §3.4: the 64-byte r||s form only (no DER); r and s in [1, n-1].
pub fn verify_es256(key: &p256::ecdsa::VerifyingKey, msg: &[u8], sig: &[u8]) -> bool {
    use p256::ecdsa::signature::Verifier;
    if sig.len() != 64 {
        return false;
    }
    match p256::ecdsa::Signature::from_slice(sig) {
        Ok(s) => key.verify(msg, &s).is_ok(),
        Err(_) => false,
    }
}

/// Ed25519 with the strict checks (canonical S, no small-order keys or R).
pub fn verify_ed25519(key: &ed25519_dalek::VerifyingKey, msg: &[u8], sig: &[u8]) -> bool {
    let Ok(bytes) = <[u8; 64]>::try_from(sig) else {
        return false;
    };
    let s = ed25519_dalek::Signature::from_bytes(&bytes);
    key.verify_strict(msg, &s).is_ok()
}

/// RSASSA-PKCS1-v1_5 with SHA-256; the signature must be exactly the modulus length.
pub fn verify_rs256(key: &rsa::pkcs1v15::VerifyingKey<Sha256>, msg: &[u8], sig: &[u8]) -> bool {
    use rsa::signature::Verifier;
    use rsa::traits::PublicKeyParts;
    if sig.len() != key.as_ref().size() {
        return false;
    }
    match rsa::pkcs1v15::Signature::try_from(sig) {
        Ok(s) => key.verify(msg, &s).is_ok(),
        Err(_) => false,
    }
}

/// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt (RFC 7518 §3.5).
pub fn verify_ps256(key: &rsa::RsaPublicKey, msg: &[u8], sig: &[u8]) -> bool {
    use rsa::traits::PublicKeyParts;
    use sha2::Digest;
    if sig.len() != key.size() {
        return false;
    }
    let digest = Sha256::digest(msg);
    key.verify(rsa::Pss::new_with_salt::<Sha256>(32), &digest, sig).is_ok()
}

/// HMAC-SHA-256; the full 32-byte tag only, compared in constant time.
pub fn verify_hs256(key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    if sig.len() != 32 {
        return false;
    }
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return false;
    };
    mac.update(msg);
    mac.verify_slice(sig).is_ok()
}
