//! JWK and JWKS parsing (RFC 7517/7518), RFC 7638 thumbprints, and key selection by `kid`.

use crate::alg::{host_signature, Alg, CryptoPath, HostVerifier, KeyMaterial, MIN_HMAC_KEY_BYTES};
use crate::encoding::{b64_decode, b64_encode, check_json_object, present};
use crate::error::{Error, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Limits for keys we will parse at all.
pub const MAX_KEYS: usize = 64;
pub const MAX_KID_BYTES: usize = 256;
const MIN_RSA_BITS: usize = 2048;
/// The `rsa` crate verifies moduli up to 4096 bits; a larger key would pass configuration and
/// then fail every verification, so it is refused here.
const MAX_RSA_BITS: usize = 4096;

/// A trusted verification key: optional `kid`, pinned algorithm, RFC 7638 thumbprint.
#[derive(Debug, Clone)]
pub struct Jwk {
    pub kid: Option<String>,
    pub key: KeyMaterial,
    /// SHA-256 RFC 7638 thumbprint (for `oct` keys it is computed too but never published).
    pub thumbprint: [u8; 32],
    /// DER SubjectPublicKeyInfo for keys a host verifier can take (ES256, RS256), built once.
    pub spki_der: Option<Vec<u8>>,
}

/// The members we read. Certificates (`x5c`, ...) and other extras are ignored: trust comes from
/// configuration, never from a chain inside a key.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
    k: Option<String>,
    #[serde(default, deserialize_with = "present")]
    d: bool,
    #[serde(default, deserialize_with = "present")]
    p: bool,
    #[serde(default, deserialize_with = "present")]
    q: bool,
    #[serde(default, deserialize_with = "present")]
    dp: bool,
    #[serde(default, deserialize_with = "present")]
    dq: bool,
    #[serde(default, deserialize_with = "present")]
    qi: bool,
    #[serde(default, deserialize_with = "present")]
    oth: bool,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

fn member<'a>(v: &'a Option<String>, what: &'static str) -> Result<&'a str> {
    v.as_deref().ok_or(Error::BadKey(what))
}

fn fixed32(v: &Option<String>, what: &'static str) -> Result<[u8; 32]> {
    let bytes = b64_decode(member(v, what)?.as_bytes()).map_err(|_| Error::BadKey(what))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| Error::BadKey(what))
}

fn strip_leading_zeros(mut b: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = b {
        b = rest;
    }
    b
}

impl Jwk {
    /// Parses one public JWK (a JSON object). Private members are refused: the edge never holds
    /// signing keys. `oct` keys are the exception by nature and must be HS256 with >= 32 bytes.
    pub fn from_json(json: &[u8]) -> Result<Jwk> {
        check_json_object(json).map_err(|_| Error::BadKey("not a JSON object without duplicates"))?;
        let raw: RawJwk = serde_json::from_slice(json).map_err(|_| Error::BadKey("invalid JWK members"))?;
        Jwk::from_raw(raw)
    }

    /// The public key of a DPoP proof header for algorithm `alg`: never symmetric, never with
    /// private members; an RSA key without `alg` takes the proof's.
    pub fn proof_key(mut v: serde_json::Value, alg: Alg) -> Result<Jwk> {
        let obj = v.as_object_mut().ok_or(Error::BadKey("jwk is not an object"))?;
        if obj.get("kty").and_then(serde_json::Value::as_str) == Some("oct") {
            return Err(Error::BadKey("a proof key must be asymmetric"));
        }
        if obj.get("kty").and_then(serde_json::Value::as_str) == Some("RSA") && !obj.contains_key("alg") {
            obj.insert("alg".into(), alg.name().into());
        }
        let key = Jwk::from_value(v)?;
        if key.alg() != alg {
            return Err(Error::AlgMismatch);
        }
        Ok(key)
    }

    fn from_value(v: serde_json::Value) -> Result<Jwk> {
        let raw: RawJwk = serde_json::from_value(v).map_err(|_| Error::BadKey("invalid JWK members"))?;
        Jwk::from_raw(raw)
    }

    fn from_raw(raw: RawJwk) -> Result<Jwk> {
        if let Some(kid) = &raw.kid {
            if kid.is_empty() || kid.len() > MAX_KID_BYTES {
                return Err(Error::BadKey("kid is empty or too long"));
            }
        }
        if raw.use_.as_deref().is_some_and(|u| u != "sig") {
            return Err(Error::BadKey("use is not sig"));
        }
        if let Some(ops) = &raw.key_ops {
            if !ops.iter().any(|o| o == "verify") {
                return Err(Error::BadKey("key_ops does not allow verify"));
            }
        }
        let private = raw.d || raw.p || raw.q || raw.dp || raw.dq || raw.qi || raw.oth;
        if private && raw.kty != "oct" {
            return Err(Error::BadKey("private key members in a verification key"));
        }
        let alg = raw.alg.as_deref();
        let (key, canonical) = match raw.kty.as_str() {
            "EC" => {
                if raw.crv.as_deref() != Some("P-256") {
                    return Err(Error::BadKey("EC keys must be P-256"));
                }
                if !matches!(alg, None | Some("ES256")) {
                    return Err(Error::BadKey("EC P-256 key with an alg other than ES256"));
                }
                let (x, y) = (fixed32(&raw.x, "EC x")?, fixed32(&raw.y, "EC y")?);
                let mut sec1 = [0u8; 65];
                sec1[0] = 4;
                sec1[1..33].copy_from_slice(&x);
                sec1[33..].copy_from_slice(&y);
                let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                    .map_err(|_| Error::BadKey("EC point is not on P-256"))?;
                let canonical =
                    format!(r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#, b64_encode(&x), b64_encode(&y));
                (KeyMaterial::Es256(vk), canonical)
            }
            "OKP" => {
                if raw.crv.as_deref() != Some("Ed25519") {
                    return Err(Error::BadKey("OKP keys must be Ed25519"));
                }
                if !matches!(alg, None | Some("EdDSA") | Some("Ed25519")) {
                    return Err(Error::BadKey("Ed25519 key with an alg other than EdDSA"));
                }
                let x = fixed32(&raw.x, "OKP x")?;
                let vk = ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map_err(|_| Error::BadKey("Ed25519 point is invalid"))?;
                if vk.is_weak() {
                    return Err(Error::BadKey("Ed25519 key has small order"));
                }
                let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64_encode(&x));
                (KeyMaterial::Ed25519(vk), canonical)
            }
            "RSA" => {
                let n = b64_decode(member(&raw.n, "RSA n")?.as_bytes()).map_err(|_| Error::BadKey("RSA n"))?;
                let e = b64_decode(member(&raw.e, "RSA e")?.as_bytes()).map_err(|_| Error::BadKey("RSA e"))?;
                let (n, e) = (strip_leading_zeros(&n), strip_leading_zeros(&e));
                // Exact bit length: 256 bytes with a small top byte is under 2048 bits.
                let top_bits = n.first().map_or(0, |b| 8 - b.leading_zeros() as usize);
                let bits = n.len().saturating_sub(1).saturating_mul(8).saturating_add(top_bits);
                if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                    return Err(Error::BadKey("RSA modulus must be 2048 to 4096 bits"));
                }
                if roca_fingerprint(n) {
                    return Err(Error::BadKey("RSA modulus has the ROCA fingerprint (CVE-2017-15361)"));
                }
                let pk = rsa::RsaPublicKey::new(rsa::BigUint::from_bytes_be(n), rsa::BigUint::from_bytes_be(e))
                    .map_err(|_| Error::BadKey("RSA public exponent out of range"))?;
                let canonical = format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64_encode(e), b64_encode(n));
                let key = match alg {
                    Some("RS256") => KeyMaterial::Rs256(rsa::pkcs1v15::VerifyingKey::new(pk)),
                    Some("PS256") => KeyMaterial::Ps256(pk),
                    // RS256 and PS256 share key material, so the key must say which one it serves.
                    None => return Err(Error::BadKey("RSA keys must name their alg (RS256 or PS256)")),
                    Some(_) => return Err(Error::BadKey("RSA key with an alg other than RS256/PS256")),
                };
                (key, canonical)
            }
            "oct" => {
                if alg != Some("HS256") {
                    return Err(Error::BadKey("oct keys must have alg HS256"));
                }
                let k = b64_decode(member(&raw.k, "oct k")?.as_bytes()).map_err(|_| Error::BadKey("oct k"))?;
                if k.len() < MIN_HMAC_KEY_BYTES {
                    return Err(Error::BadKey("HS256 secret shorter than 32 bytes"));
                }
                let canonical = format!(r#"{{"k":"{}","kty":"oct"}}"#, b64_encode(&k));
                (KeyMaterial::Hs256(k), canonical)
            }
            _ => return Err(Error::BadKey("unsupported kty")),
        };
        let thumbprint = Sha256::digest(canonical.as_bytes()).into();
        let spki_der = key.spki_der();
        Ok(Jwk { kid: raw.kid, key, thumbprint, spki_der })
    }

    pub fn alg(&self) -> Alg {
        self.key.alg()
    }

    /// Verifies `sig` over `msg`, through `host` for the algorithms it handles (Envoy: ES256,
    /// RS256) and in pure Rust otherwise; reports which path decided. A host that cannot answer
    /// falls back to pure Rust, never to "valid".
    pub fn verify_with(&self, msg: &[u8], sig: &[u8], host: Option<&dyn HostVerifier>) -> Result<CryptoPath> {
        let alg = self.key.alg();
        let host = host.filter(|h| h.handles(alg));
        let host_answer = host.zip(self.spki_der.as_deref()).and_then(|(host, der)| {
            let Some(sig) = host_signature(&self.key, sig) else { return Some(false) };
            host.verify(alg.host_scheme(), der, &sig, msg)
        });
        match host_answer {
            Some(true) => Ok(CryptoPath::Host),
            Some(false) => Err(Error::BadSignature),
            None => self.key.verify(msg, sig).map(|()| CryptoPath::Wasm),
        }
    }
}

/// RFC 7638 thumbprint of a public JWK given as JSON, base64url-encoded (for `cnf.jkt`).
pub fn thumbprint_b64(jwk: &Jwk) -> String {
    b64_encode(&jwk.thumbprint)
}

/// A set of trusted keys, all symmetric or all asymmetric, with unique `kid`s.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Jwk>,
}

impl KeySet {
    /// Parses a JWKS document (`{"keys": [...]}`); every key must be usable.
    pub fn from_jwks(json: &[u8]) -> Result<KeySet> {
        check_json_object(json).map_err(|_| Error::BadKey("JWKS is not a JSON object without duplicates"))?;
        let raw: RawJwks = serde_json::from_slice(json).map_err(|_| Error::BadKey("JWKS has no keys array"))?;
        if raw.keys.len() > MAX_KEYS {
            return Err(Error::BadKey("JWKS has more than 64 keys"));
        }
        KeySet::new(raw.keys.into_iter().map(Jwk::from_value).collect::<Result<Vec<_>>>()?)
    }

    /// Parses an identity provider's JWKS, skipping keys this library cannot use (`use: enc`, an
    /// unsupported `kty` or curve, a short RSA modulus, ...) instead of refusing the whole set:
    /// a provider publishing one encryption key must not lock out its users. Returns the usable
    /// keys and why each other one was skipped. The document itself must still be well formed.
    pub fn from_jwks_skipping_unusable(json: &[u8]) -> Result<(KeySet, Vec<&'static str>)> {
        check_json_object(json).map_err(|_| Error::BadKey("JWKS is not a JSON object without duplicates"))?;
        let raw: RawJwks = serde_json::from_slice(json).map_err(|_| Error::BadKey("JWKS has no keys array"))?;
        if raw.keys.len() > MAX_KEYS {
            return Err(Error::BadKey("JWKS has more than 64 keys"));
        }
        let mut usable = Vec::new();
        let mut skipped = Vec::new();
        for v in raw.keys {
            match Jwk::from_value(v) {
                Ok(k) if k.alg().is_symmetric() => skipped.push("a symmetric key in a public JWKS"),
                Ok(k) => usable.push(k),
                Err(Error::BadKey(why)) => skipped.push(why),
                Err(_) => skipped.push("invalid key"),
            }
        }
        Ok((KeySet::new(usable)?, skipped))
    }

    /// Builds a set, refusing ambiguity: duplicate `kid`s, a key without `kid` among several,
    /// or symmetric and asymmetric keys mixed (a confusion waiting to happen).
    pub fn new(keys: Vec<Jwk>) -> Result<KeySet> {
        if keys.len() > MAX_KEYS {
            return Err(Error::BadKey("more than 64 keys"));
        }
        if keys.len() > 1 && keys.iter().any(|k| k.kid.is_none()) {
            return Err(Error::BadKey("every key needs a kid when there are several"));
        }
        for (i, k) in keys.iter().enumerate() {
            if keys.iter().skip(i.saturating_add(1)).any(|o| o.kid == k.kid) {
                return Err(Error::BadKey("duplicate kid"));
            }
        }
        if let Some(first) = keys.first() {
            let sym = first.alg().is_symmetric();
            if keys.iter().any(|k| k.alg().is_symmetric() != sym) {
                return Err(Error::BadKey("symmetric and asymmetric keys in one set"));
            }
        }
        Ok(KeySet { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }

    /// Finds the key for a token. `kid` is only a lookup key: an unknown one is a miss.
    pub fn select(&self, kid: Option<&str>, alg: Alg) -> Result<&Jwk> {
        let key = match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)).ok_or(Error::UnknownKid)?,
            None => match self.keys.as_slice() {
                [only] => only,
                [] => return Err(Error::UnknownKid),
                _ => return Err(Error::KidRequired),
            },
        };
        if key.alg() != alg {
            return Err(Error::AlgMismatch);
        }
        Ok(key)
    }
}

/// ROCA (CVE-2017-15361) detection: a vulnerable modulus lies, modulo each of these small primes,
/// in the subgroup generated by 65537. A random modulus essentially never does for all of them.
fn roca_fingerprint(n_be: &[u8]) -> bool {
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101, 103, 107,
        109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    PRIMES.iter().all(|&p| {
        let residue = n_be.iter().fold(0u32, |r, &b| (r * 256 + u32::from(b)) % p);
        let g = 65537 % p;
        let mut x = 1u32;
        // Walk the cyclic subgroup <g> mod p; it has at most p - 1 elements.
        for _ in 0..p {
            if x == residue {
                return true;
            }
            x = x * g % p;
            if x == 1 {
                break;
            }
        }
        false
    })
}
