//! Native signature checks for the engine's host path (`Host::verify_signature`): ES256 and RS256
//! through `ring`, where the wasm filter uses BoringSSL behind Envoy's foreign function. The other
//! algorithms verify in the engine's own Rust code, natively compiled.

use jitgate_token::alg::P256_SPKI_PREFIX;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, RSA_PKCS1_2048_8192_SHA256};

/// DER AlgorithmIdentifier of rsaEncryption with NULL parameters.
const RSA_ALGORITHM: [u8; 15] =
    [0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];

enum Key<'a> {
    P256Point(&'a [u8]),
    RsaPublicKey(&'a [u8]),
}

/// Verifies as Envoy's `verify_signature` does: `None` for a key it cannot import, `false` for a
/// hash other than SHA-256 or a signature (DER for ECDSA) that does not verify.
pub fn verify(hash: &str, public_key: &[u8], signature: &[u8], text: &[u8]) -> Option<bool> {
    let key = spki_key(public_key)?;
    if hash != "sha256" {
        return Some(false);
    }
    Some(match key {
        Key::P256Point(p) => UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, p).verify(text, signature).is_ok(),
        Key::RsaPublicKey(k) => UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, k).verify(text, signature).is_ok(),
    })
}

/// The key inside a DER SubjectPublicKeyInfo of a P-256 or RSA key.
fn spki_key(der: &[u8]) -> Option<Key<'_>> {
    if let Some(point) = der.strip_prefix(&P256_SPKI_PREFIX[..]) {
        return (point.len() == 65).then_some(Key::P256Point(point));
    }
    let (body, rest) = tlv(der, 0x30)?;
    let algorithm = body.get(..RSA_ALGORITHM.len())?;
    let (bits, tail) = tlv(body.get(RSA_ALGORITHM.len()..)?, 0x03)?;
    if !rest.is_empty() || !tail.is_empty() || algorithm != RSA_ALGORITHM {
        return None;
    }
    // A BIT STRING of whole bytes: no unused bits.
    bits.strip_prefix(&[0u8][..]).map(Key::RsaPublicKey)
}

/// One DER element with tag `tag`: its content and what follows it.
fn tlv(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, der) = der.split_first()?;
    let (&first, der) = der.split_first()?;
    if t != tag {
        return None;
    }
    let (len, der) = match first {
        0..=0x7f => (usize::from(first), der),
        0x81 => (usize::from(*der.first()?), der.get(1..)?),
        0x82 => (usize::from(u16::from_be_bytes([*der.first()?, *der.get(1)?])), der.get(2..)?),
        _ => return None,
    };
    Some((der.get(..len)?, der.get(len..)?))
}
