//! Foreign functions Envoy registers that jitgate may call; `verify_signature` takes and returns
//! the same protobuf messages as Envoy's (`source/extensions/common/wasm/ext/verify_signature.proto`).

use crate::abi::Status;

/// `VerifySignatureArguments`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct VerifyArgs {
    pub hash_function: String,
    pub public_key: Vec<u8>,
    pub signature: Vec<u8>,
    pub text: Vec<u8>,
    pub public_key_pem: String,
}

pub fn call(name: &str, args: &[u8]) -> Result<Vec<u8>, Status> {
    match name {
        "verify_signature" => {
            let a = decode_verify_args(args).ok_or(Status::BadArgument)?;
            let (ok, error) = verify_signature(&a)?;
            Ok(encode_verify_result(ok, &error))
        }
        _ => Err(Status::NotFound),
    }
}

enum Key {
    Ec(p256::ecdsa::VerifyingKey),
    Rsa(rsa::RsaPublicKey),
}

/// Envoy: a key that fails to import (or both / neither of DER and PEM) is `BadArgument`;
/// otherwise the answer is `Ok` with `result` and an `error` text.
fn verify_signature(a: &VerifyArgs) -> Result<(bool, String), Status> {
    use p256::pkcs8::DecodePublicKey;
    let key = match (a.public_key.is_empty(), a.public_key_pem.is_empty()) {
        (false, true) => p256::PublicKey::from_public_key_der(&a.public_key)
            .map(|k| Key::Ec(k.into()))
            .or_else(|_| rsa::RsaPublicKey::from_public_key_der(&a.public_key).map(Key::Rsa)),
        (true, false) => p256::PublicKey::from_public_key_pem(&a.public_key_pem)
            .map(|k| Key::Ec(k.into()))
            .or_else(|_| rsa::RsaPublicKey::from_public_key_pem(&a.public_key_pem).map(Key::Rsa)),
        _ => return Err(Status::BadArgument),
    }
    .map_err(|_| Status::BadArgument)?;
    if a.hash_function != "sha256" {
        return Ok((false, format!("{} is not supported.", a.hash_function)));
    }
    let ok = match key {
        Key::Ec(k) => {
            use p256::ecdsa::signature::Verifier;
            p256::ecdsa::Signature::from_der(&a.signature).is_ok_and(|s| k.verify(&a.text, &s).is_ok())
        }
        Key::Rsa(k) => {
            use rsa::signature::Verifier;
            let vk = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(k);
            rsa::pkcs1v15::Signature::try_from(a.signature.as_slice()).is_ok_and(|s| vk.verify(&a.text, &s).is_ok())
        }
    };
    Ok(if ok { (true, String::new()) } else { (false, "Failed to verify digest. Error code: 0".to_owned()) })
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Decodes the protobuf wire format of `VerifySignatureArguments`; unknown fields are skipped.
pub fn decode_verify_args(buf: &[u8]) -> Option<VerifyArgs> {
    let mut a = VerifyArgs::default();
    let mut pos = 0;
    while pos < buf.len() {
        let tag = varint(buf, &mut pos)?;
        match tag & 7 {
            0 => {
                varint(buf, &mut pos)?;
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                let bytes = buf.get(pos..pos.checked_add(len)?)?.to_vec();
                pos += len;
                match tag >> 3 {
                    1 => a.hash_function = String::from_utf8(bytes).ok()?,
                    2 => a.public_key = bytes,
                    3 => a.signature = bytes,
                    4 => a.text = bytes,
                    5 => a.public_key_pem = String::from_utf8(bytes).ok()?,
                    _ => {}
                }
            }
            5 => pos = pos.checked_add(4)?,
            1 => pos = pos.checked_add(8)?,
            _ => return None,
        }
    }
    Some(a)
}

fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, field << 3 | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Encodes `VerifySignatureResult { bool result = 1; string error = 2; }` (proto3: defaults omitted).
pub fn encode_verify_result(ok: bool, error: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if ok {
        out.extend_from_slice(&[0x08, 0x01]);
    }
    if !error.is_empty() {
        put_bytes(&mut out, 2, error.as_bytes());
    }
    out
}

/// Encodes `VerifySignatureArguments` (for tests and for filters written against this host).
pub fn encode_verify_args(a: &VerifyArgs) -> Vec<u8> {
    let mut out = Vec::new();
    for (field, bytes) in [
        (1, a.hash_function.as_bytes()),
        (2, a.public_key.as_slice()),
        (3, a.signature.as_slice()),
        (4, a.text.as_slice()),
        (5, a.public_key_pem.as_bytes()),
    ] {
        if !bytes.is_empty() {
            put_bytes(&mut out, field, bytes);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::EncodePublicKey;

    #[test]
    fn verify_signature_like_envoy() {
        let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let der = p256::PublicKey::from(sk.verifying_key())
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        let sig: p256::ecdsa::Signature = sk.sign(b"hello");
        let args = |text: &[u8], hash: &str| VerifyArgs {
            hash_function: hash.into(),
            public_key: der.clone(),
            signature: sig.to_der().as_bytes().to_vec(),
            text: text.to_vec(),
            public_key_pem: String::new(),
        };
        let ok = call("verify_signature", &encode_verify_args(&args(b"hello", "sha256")));
        assert_eq!(ok, Ok(vec![0x08, 0x01]));
        let bad = call("verify_signature", &encode_verify_args(&args(b"hellO", "sha256"))).unwrap_or_default();
        assert!(bad.first() == Some(&0x12), "result false is omitted, error present: {bad:?}");
        let no_key = VerifyArgs { public_key: vec![], ..args(b"hello", "sha256") };
        assert_eq!(call("verify_signature", &encode_verify_args(&no_key)), Err(Status::BadArgument));
        assert_eq!(call("nope", b""), Err(Status::NotFound));
        assert_eq!(decode_verify_args(&encode_verify_args(&args(b"x", "sha256"))), Some(args(b"x", "sha256")));
    }
}
