//! Signing (minting) for the sidecar and for tests. Not compiled into the filter.

use crate::alg::Alg;
use crate::encoding::{b64_decode, b64_encode};
use crate::error::{Error, Result};
use crate::jwk::Jwk;
use rand_core::OsRng;
use serde_json::{json, Value};
use sha2::Sha256;

enum Signer {
    Es256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
    Rs256(rsa::RsaPrivateKey),
    Ps256(rsa::RsaPrivateKey),
    Hs256(Vec<u8>),
}

/// A private key with an optional `kid`, pinned to one algorithm like its public half.
pub struct SigningKey {
    pub kid: Option<String>,
    signer: Signer,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, kid={:?})", self.alg().name(), self.kid)
    }
}

impl SigningKey {
    /// A fresh random key (RSA keys are 2048 bits).
    pub fn generate(alg: Alg, kid: Option<&str>) -> Result<SigningKey> {
        let signer = match alg {
            Alg::ES256 => Signer::Es256(p256::ecdsa::SigningKey::random(&mut OsRng)),
            Alg::EdDSA => Signer::Ed25519(ed25519_dalek::SigningKey::generate(&mut OsRng)),
            Alg::RS256 | Alg::PS256 => {
                let k = rsa::RsaPrivateKey::new(&mut OsRng, 2048)
                    .map_err(|_| Error::BadKey("RSA key generation failed"))?;
                if alg == Alg::RS256 {
                    Signer::Rs256(k)
                } else {
                    Signer::Ps256(k)
                }
            }
            Alg::HS256 => {
                let mut k = vec![0u8; 32];
                rand_core::RngCore::fill_bytes(&mut OsRng, &mut k);
                Signer::Hs256(k)
            }
        };
        Ok(SigningKey { kid: kid.map(str::to_owned), signer })
    }

    /// A key derived from 32 seed bytes (ES256, EdDSA, HS256): reproducible test keys.
    pub fn from_seed(alg: Alg, kid: Option<&str>, seed: &[u8; 32]) -> Result<SigningKey> {
        let signer = match alg {
            Alg::ES256 => Signer::Es256(p256::ecdsa::SigningKey::from_slice(seed).map_err(|_| Error::BadKey("seed"))?),
            Alg::EdDSA => Signer::Ed25519(ed25519_dalek::SigningKey::from_bytes(seed)),
            Alg::HS256 => Signer::Hs256(seed.to_vec()),
            Alg::RS256 | Alg::PS256 => return Err(Error::BadKey("RSA keys cannot be derived from a seed")),
        };
        Ok(SigningKey { kid: kid.map(str::to_owned), signer })
    }

    pub fn hs256(kid: Option<&str>, secret: &[u8]) -> SigningKey {
        SigningKey { kid: kid.map(str::to_owned), signer: Signer::Hs256(secret.to_vec()) }
    }

    /// Loads an ES256 or EdDSA key from a private JWK (`d` present).
    pub fn from_private_jwk(jwk: &Value) -> Result<SigningKey> {
        let d = jwk
            .get("d")
            .and_then(Value::as_str)
            .ok_or(Error::BadKey("private JWK needs d"))
            .and_then(|d| b64_decode(d.as_bytes()).map_err(|_| Error::BadKey("d")))?;
        let kid = jwk.get("kid").and_then(Value::as_str);
        let signer = match (jwk.get("kty").and_then(Value::as_str), jwk.get("crv").and_then(Value::as_str)) {
            (Some("EC"), Some("P-256")) => {
                Signer::Es256(p256::ecdsa::SigningKey::from_slice(&d).map_err(|_| Error::BadKey("EC d"))?)
            }
            (Some("OKP"), Some("Ed25519")) => {
                let d: [u8; 32] = d.as_slice().try_into().map_err(|_| Error::BadKey("OKP d"))?;
                Signer::Ed25519(ed25519_dalek::SigningKey::from_bytes(&d))
            }
            _ => return Err(Error::BadKey("only EC P-256 and Ed25519 private JWKs are supported")),
        };
        let key = SigningKey { kid: kid.map(str::to_owned), signer };
        // The stored public half must match the private half.
        if jwk.get("x") != key.public_jwk().get("x") {
            return Err(Error::BadKey("private JWK's x does not match d"));
        }
        Ok(key)
    }

    /// Private JWK for storage (ES256 and EdDSA only).
    pub fn private_jwk(&self) -> Result<Value> {
        let mut jwk = self.public_jwk();
        let d = match &self.signer {
            Signer::Es256(k) => b64_encode(&k.to_bytes()),
            Signer::Ed25519(k) => b64_encode(k.as_bytes()),
            _ => return Err(Error::BadKey("only EC and OKP keys export as private JWK")),
        };
        if let Some(obj) = jwk.as_object_mut() {
            obj.insert("d".into(), Value::String(d));
        }
        Ok(jwk)
    }

    pub fn alg(&self) -> Alg {
        match self.signer {
            Signer::Es256(_) => Alg::ES256,
            Signer::Ed25519(_) => Alg::EdDSA,
            Signer::Rs256(_) => Alg::RS256,
            Signer::Ps256(_) => Alg::PS256,
            Signer::Hs256(_) => Alg::HS256,
        }
    }

    /// The public JWK (`kty`, key members, `alg`, `use`, `kid`) as published in a JWKS.
    /// For HS256 this is the secret itself: only for configuring a verifier in tests.
    pub fn public_jwk(&self) -> Value {
        use rsa::traits::PublicKeyParts;
        let mut jwk = match &self.signer {
            Signer::Es256(k) => {
                let point = k.verifying_key().to_encoded_point(false);
                json!({"kty": "EC", "crv": "P-256",
                       "x": point.x().map(|x| b64_encode(x)).unwrap_or_default(),
                       "y": point.y().map(|y| b64_encode(y)).unwrap_or_default()})
            }
            Signer::Ed25519(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64_encode(k.verifying_key().as_bytes())})
            }
            Signer::Rs256(k) | Signer::Ps256(k) => {
                json!({"kty": "RSA", "n": b64_encode(&k.n().to_bytes_be()), "e": b64_encode(&k.e().to_bytes_be())})
            }
            Signer::Hs256(k) => json!({"kty": "oct", "k": b64_encode(k)}),
        };
        if let Some(obj) = jwk.as_object_mut() {
            obj.insert("alg".into(), Value::String(self.alg().name().into()));
            obj.insert("use".into(), Value::String("sig".into()));
            if let Some(kid) = &self.kid {
                obj.insert("kid".into(), Value::String(kid.clone()));
            }
        }
        jwk
    }

    /// The verification key matching this signing key.
    pub fn verifying_jwk(&self) -> Result<Jwk> {
        Jwk::from_json(self.public_jwk().to_string().as_bytes())
    }

    /// Signs raw bytes with this key's algorithm.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>> {
        use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer as _};
        Ok(match &self.signer {
            Signer::Es256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(msg);
                sig.to_bytes().to_vec()
            }
            Signer::Ed25519(k) => k.sign(msg).to_bytes().to_vec(),
            Signer::Rs256(k) => rsa::pkcs1v15::SigningKey::<Sha256>::new(k.clone()).sign(msg).to_vec(),
            Signer::Ps256(k) => {
                rsa::pss::BlindedSigningKey::<Sha256>::new(k.clone()).sign_with_rng(&mut OsRng, msg).to_vec()
            }
            Signer::Hs256(k) => {
                use hmac::Mac;
                let mut mac = hmac::Hmac::<Sha256>::new_from_slice(k).map_err(|_| Error::BadKey("HMAC key"))?;
                mac.update(msg);
                mac.finalize().into_bytes().to_vec()
            }
        })
    }
}

/// Signs `payload` under an arbitrary `header` (tests use this to forge hostile tokens).
pub fn sign_compact(key: &SigningKey, header: &Value, payload: &[u8]) -> Result<String> {
    let signing_input = format!("{}.{}", b64_encode(header.to_string().as_bytes()), b64_encode(payload));
    let sig = key.sign(signing_input.as_bytes())?;
    Ok(format!("{signing_input}.{}", b64_encode(&sig)))
}

/// Mints a token: header `{alg, typ, kid?}` and the given claims object.
pub fn mint(key: &SigningKey, typ: &str, claims: &Value) -> Result<String> {
    sign_typed(key, typ, claims.to_string().as_bytes())
}

/// Signs `payload` (already serialized) under the header `{alg, typ, kid?}`.
pub fn sign_typed(key: &SigningKey, typ: &str, payload: &[u8]) -> Result<String> {
    let mut header = json!({"alg": key.alg().name(), "typ": typ});
    if let (Some(obj), Some(kid)) = (header.as_object_mut(), &key.kid) {
        obj.insert("kid".into(), Value::String(kid.clone()));
    }
    sign_compact(key, &header, payload)
}

/// A DPoP proof (RFC 9449 §4.2) by `key` with these claims: header `{typ: dpop+jwt, alg, jwk}`.
pub fn dpop_proof(key: &SigningKey, claims: &Value) -> Result<String> {
    let mut jwk = key.public_jwk();
    if let Some(obj) = jwk.as_object_mut() {
        for member in ["alg", "use", "kid"] {
            obj.remove(member);
        }
    }
    sign_compact(key, &json!({"typ": "dpop+jwt", "alg": key.alg().name(), "jwk": jwk}), claims.to_string().as_bytes())
}

/// `cnf.jkt` for tokens bound to `key`: the RFC 7638 thumbprint of its public JWK.
pub fn jkt(key: &SigningKey) -> Result<String> {
    Ok(crate::jwk::thumbprint_b64(&key.verifying_jwk()?))
}
