//! Foreign functions Envoy registers that jitgate may call; `verify_signature` takes and returns
//! the same protobuf messages as Envoy's (`source/extensions/common/wasm/ext/verify_signature.proto`).

use crate::abi::Status;

use jitgate_token::verify_signature::encode_result;
pub use jitgate_token::verify_signature::VerifyArgs;

pub fn call(name: &str, args: &[u8]) -> Result<Vec<u8>, Status> {
    match name {
        "verify_signature" => {
            let a = VerifyArgs::decode(args).ok_or(Status::BadArgument)?;
            let (ok, error) = verify_signature(&a)?;
            Ok(encode_result(ok, &error))
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
        let ok = call("verify_signature", &args(b"hello", "sha256").encode());
        assert_eq!(ok, Ok(vec![0x08, 0x01]));
        let bad = call("verify_signature", &args(b"hellO", "sha256").encode()).unwrap_or_default();
        assert!(bad.first() == Some(&0x12), "result false is omitted, error present: {bad:?}");
        let no_key = VerifyArgs { public_key: vec![], ..args(b"hello", "sha256") };
        assert_eq!(call("verify_signature", &no_key.encode()), Err(Status::BadArgument));
        assert_eq!(call("nope", b""), Err(Status::NotFound));
    }
}
