//! JWS compact serialization (RFC 7515 §7.1), strictly: three parts, canonical unpadded
//! base64url, a JSON-object header without duplicates, no `crit`, no key material in the header.

use crate::alg::{Alg, CryptoPath, HostVerifier};
use crate::encoding::{b64_decode, check_json_object, present};
use crate::error::{Error, Result};
use crate::jwk::{KeySet, MAX_KID_BYTES};
use serde::Deserialize;

/// Default ceiling for a whole compact token.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    /// Registered members jitgate does not use are still held to their types (found by the
    /// differential fuzz target: `"cty": false` passed here and failed in `jsonwebtoken`).
    cty: Option<String>,
    x5t: Option<String>,
    #[serde(rename = "x5t#S256")]
    x5t_s256: Option<String>,
    #[serde(default, deserialize_with = "present")]
    jwk: bool,
    #[serde(default, deserialize_with = "present")]
    jku: bool,
    #[serde(default, deserialize_with = "present")]
    x5u: bool,
    #[serde(default, deserialize_with = "present")]
    x5c: bool,
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

/// The protected header members jitgate uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub alg: Alg,
    pub kid: Option<String>,
    pub typ: Option<String>,
}

/// A JWS whose structure is valid but whose signature is not yet checked.
#[derive(Debug)]
pub struct UnverifiedJws<'a> {
    pub header: Header,
    /// `BASE64URL(header) '.' BASE64URL(payload)`, the bytes the signature covers.
    pub signing_input: &'a [u8],
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Parses a compact JWS. `max_bytes` bounds the whole token before any decoding work.
pub fn parse(token: &str, max_bytes: usize) -> Result<UnverifiedJws<'_>> {
    let bytes = token.as_bytes();
    if bytes.len() > max_bytes {
        return Err(Error::TooLarge);
    }
    let mut parts = bytes.split(|&b| b == b'.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(Error::Malformed("a JWS has exactly three parts"));
    };
    if h.is_empty() || s.is_empty() {
        return Err(Error::Malformed("empty header or signature"));
    }
    let header_json = b64_decode(h)?;
    check_json_object(&header_json)?;
    let raw: RawHeader =
        serde_json::from_slice(&header_json).map_err(|_| Error::Malformed("header members have wrong types"))?;
    for (set, name) in [(raw.jwk, "jwk"), (raw.jku, "jku"), (raw.x5u, "x5u"), (raw.x5c, "x5c"), (raw.crit, "crit")] {
        if set {
            return Err(Error::ForbiddenHeader(name));
        }
    }
    // A nested JWT (RFC 7519 §5.2) is not an access token: its claims are another token's.
    let nested = raw.cty.as_deref().is_some_and(|c| {
        let c = c.to_ascii_lowercase();
        c == "jwt" || c == "application/jwt"
    });
    if nested {
        return Err(Error::Malformed("nested JWTs (cty JWT) are not accepted"));
    }
    let _ = (raw.x5t, raw.x5t_s256);
    let alg = Alg::parse(&raw.alg)?;
    let payload = b64_decode(p)?;
    let signature = b64_decode(s)?;
    // h and p are ASCII slices of `bytes`, so this length is in bounds.
    let signing_input = bytes.get(..h.len().saturating_add(p.len()).saturating_add(1)).unwrap_or(bytes);
    Ok(UnverifiedJws { header: Header { alg, kid: raw.kid, typ: raw.typ }, signing_input, payload, signature })
}

impl UnverifiedJws<'_> {
    /// Verifies the signature with the key the header selects from `keys`.
    pub fn verify(self, keys: &KeySet) -> Result<VerifiedJws> {
        self.verify_with(keys, None).map(|(jws, _)| jws)
    }

    /// Like `verify`, using `host` for the algorithms it handles (see `Jwk::verify_with`).
    pub fn verify_with(self, keys: &KeySet, host: Option<&dyn HostVerifier>) -> Result<(VerifiedJws, CryptoPath)> {
        // An oversized kid cannot name a configured key: treat it as the miss it is.
        let kid = self.header.kid.as_deref().filter(|k| k.len() <= MAX_KID_BYTES);
        if self.header.kid.is_some() && kid.is_none() {
            return Err(Error::UnknownKid);
        }
        let path = keys.select(kid, self.header.alg)?.verify_with(self.signing_input, &self.signature, host)?;
        Ok((VerifiedJws { header: self.header, payload: self.payload }, path))
    }
}

/// A JWS whose signature verified against a trusted key.
#[derive(Debug, Clone)]
pub struct VerifiedJws {
    pub header: Header,
    pub payload: Vec<u8>,
}

/// Parses and verifies in one step.
pub fn verify(token: &str, keys: &KeySet, max_bytes: usize) -> Result<VerifiedJws> {
    parse(token, max_bytes)?.verify(keys)
}
