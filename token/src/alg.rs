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

    /// Whether Envoy's `verify_signature` takes it: ES256 and RS256 (it uses the key's default
    /// padding, and has no Ed25519). The default of every host verifier.
    pub fn envoy_verifies(self) -> bool {
        matches!(self, Alg::ES256 | Alg::RS256)
    }

    /// The `hash` argument a host verifier gets: `"sha256"` for ES256 (DER signature) and RS256,
    /// as Envoy's `verify_signature` takes them; the other schemes by name, for hosts that
    /// declare them (`HostVerifier::handles`).
    pub fn host_scheme(self) -> &'static str {
        match self {
            Alg::ES256 | Alg::RS256 => "sha256",
            Alg::PS256 => "rsa-pss-sha256",
            Alg::EdDSA => "ed25519",
            Alg::HS256 => "hmac-sha256",
        }
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

impl KeyMaterial {
    /// DER SubjectPublicKeyInfo of an asymmetric key, the form host verifiers take.
    pub fn spki_der(&self) -> Option<Vec<u8>> {
        let rsa_der = |k: &rsa::RsaPublicKey| {
            rsa::pkcs8::EncodePublicKey::to_public_key_der(k).ok().map(|d| d.as_bytes().to_vec())
        };
        match self {
            KeyMaterial::Es256(k) => {
                let mut der = P256_SPKI_PREFIX.to_vec();
                der.extend_from_slice(k.to_encoded_point(false).as_bytes());
                Some(der)
            }
            KeyMaterial::Rs256(k) => rsa_der(k.as_ref()),
            KeyMaterial::Ps256(k) => rsa_der(k),
            KeyMaterial::Ed25519(k) => Some([&ED25519_SPKI_PREFIX[..], k.as_bytes()].concat()),
            KeyMaterial::Hs256(_) => None,
        }
    }
}

/// DER SubjectPublicKeyInfo header of an Ed25519 key (id-Ed25519, RFC 8410).
pub const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// DER SubjectPublicKeyInfo header for an uncompressed P-256 point (id-ecPublicKey, prime256v1).
pub const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Which implementation checked a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CryptoPath {
    /// The proxy's own crypto (Envoy: BoringSSL behind the `verify_signature` foreign function).
    Host,
    /// Pure Rust inside the module.
    Wasm,
}

/// A signature verifier the host provides (Envoy's `verify_signature`).
pub trait HostVerifier {
    /// Verifies `signature` over `text` with the DER `public_key` and `hash`, the algorithm's
    /// `host_scheme`. `None` when the host could not answer; the caller then verifies in Rust.
    fn verify(&self, hash: &str, public_key: &[u8], signature: &[u8], text: &[u8]) -> Option<bool>;

    /// Whether this host is asked about `alg` at all (by default what Envoy's takes).
    fn handles(&self, alg: Alg) -> bool {
        alg.envoy_verifies()
    }
}

/// Known answer for `host_self_test`: Wycheproof ecdsa_secp256r1_sha256_p1363 tcId 60.
const KAT_SPKI_TAIL: &str = "042927b10512bae3eddcfe467828128bad2903269919f7086069c8c4df6c732838c7787964eaac00e5921fb1498a60f4606766b3d9685001558d1a974e7341513e";
const KAT_SIG: &str = "64a1aab5000d0e804f3e2fc02bdee9be8ff312334e2ba16d11547c97711c898e6af015971cc30be6d1a206d4e013e0997772a2f91d73286ffd683b9bb2cf4f1b";
const KAT_MSG: &[u8] = b"69819";

fn unhex(s: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16);
    s.as_bytes().chunks(2).map(|p| Some((digit(*p.first()?)? * 16 + digit(*p.get(1)?)?) as u8)).collect()
}

/// Whether `host` verifies ES256 correctly: a known-good signature must pass and the same
/// signature over another message must fail (a host that says yes to everything fails this).
pub fn host_self_test(host: &dyn HostVerifier) -> bool {
    // Through the same key and signature conversions the requests use.
    let (Some(point), Some(raw)) = (unhex(KAT_SPKI_TAIL), unhex(KAT_SIG)) else { return false };
    let Ok(key) = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).map(KeyMaterial::Es256) else { return false };
    let (Some(der), Some(sig)) = (key.spki_der(), host_signature(&key, &raw)) else { return false };
    host.verify("sha256", &der, &sig, KAT_MSG) == Some(true)
        && host.verify("sha256", &der, &sig, b"69818") == Some(false)
}

/// The signature in the form a host verifier takes, after the checks the host may not do:
/// ES256 r||s becomes DER with r and s in [1, n-1]; RSA signatures must be exactly the modulus
/// length; an Ed25519 signature is 64 bytes, under a key that is not of small order.
/// `None`: not host-verifiable (HS256) or malformed (the Rust path then rejects it).
pub fn host_signature(key: &KeyMaterial, sig: &[u8]) -> Option<Vec<u8>> {
    use rsa::traits::PublicKeyParts;
    match key {
        KeyMaterial::Es256(_) if sig.len() == 64 => {
            p256::ecdsa::Signature::from_slice(sig).ok().map(|s| s.to_der().as_bytes().to_vec())
        }
        KeyMaterial::Rs256(k) if sig.len() == k.as_ref().size() => Some(sig.to_vec()),
        KeyMaterial::Ps256(k) if sig.len() == k.size() => Some(sig.to_vec()),
        KeyMaterial::Ed25519(k) if sig.len() == 64 && !k.is_weak() => Some(sig.to_vec()),
        _ => None,
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
