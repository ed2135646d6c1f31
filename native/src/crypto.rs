//! Native signature checks for the engine's host path (`Host::verify_signature`, the same
//! protobuf arguments Envoy's wasm foreign function takes): ES256 and RS256 through `ring`, where
//! the wasm filter would use BoringSSL via Envoy. The other algorithms verify in the engine's own
//! Rust code, natively compiled.

use jitgate_token::verify_signature::{encode_result, VerifyArgs};
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, RSA_PKCS1_2048_8192_SHA256};

/// DER SubjectPublicKeyInfo prefix of an uncompressed P-256 point (id-ecPublicKey, prime256v1).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// DER AlgorithmIdentifier of rsaEncryption with NULL parameters.
const RSA_ALGORITHM: [u8; 15] =
    [0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];

enum Key<'a> {
    P256Point(&'a [u8]),
    RsaPublicKey(&'a [u8]),
}

/// Answers a serialized `VerifySignatureArguments` as Envoy does: `None` for arguments or a key
/// it cannot import, else the result message (`false` with an error text for other hashes).
pub fn verify_signature(args: &[u8]) -> Option<Vec<u8>> {
    let a = VerifyArgs::decode(args)?;
    if !a.public_key_pem.is_empty() {
        return None;
    }
    let key = spki_key(&a.public_key)?;
    if a.hash_function != "sha256" {
        return Some(encode_result(false, &format!("{} is not supported.", a.hash_function)));
    }
    let ok = match key {
        Key::P256Point(p) => UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, p).verify(&a.text, &a.signature).is_ok(),
        Key::RsaPublicKey(k) => {
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, k).verify(&a.text, &a.signature).is_ok()
        }
    };
    Some(encode_result(ok, if ok { "" } else { "Failed to verify digest." }))
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
