//! Signed calls from filters to jitgate-sidecar: a per-deployment shared secret signs
//! each request with HMAC-SHA256 over its method, path, a timestamp, a one-time nonce and the
//! SHA-256 of its body. The secret never crosses the wire, a captured request is good for one
//! use within the clock window, and a changed body or path breaks the signature.
//!
//! `Authorization: JITGATE-HMAC-SHA256 id=<key id>, ts=<unix s>, nonce=<base64url>, sig=<base64url>`

use crate::encoding::{b64_decode, b64_encode, hex};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub const SCHEME: &str = "JITGATE-HMAC-SHA256";
const DOMAIN: &[u8] = b"jitgate-sidecar-call-v1";
/// Nonces are 16 to 48 random bytes (22 to 64 base64url characters).
const MIN_NONCE_CHARS: usize = 22;
const MAX_NONCE_CHARS: usize = 64;
const MAX_ID_BYTES: usize = 64;

/// The parsed `Authorization` value of a signed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed<'a> {
    pub id: &'a str,
    pub ts: u64,
    pub nonce: &'a str,
    sig: Vec<u8>,
}

/// What the signature covers.
fn mac(secret: &[u8], id: &str, ts: u64, nonce: &str, method: &str, path: &str, body: &[u8]) -> Option<Hmac<Sha256>> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    for part in [DOMAIN, id.as_bytes(), ts.to_string().as_bytes(), nonce.as_bytes(), method.as_bytes(), path.as_bytes()]
    {
        m.update(part);
        m.update(b"\n");
    }
    m.update(hex(&Sha256::digest(body)).as_bytes());
    Some(m)
}

/// A key id as the header carries it: 1-64 of `[A-Za-z0-9._-]`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_BYTES && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The `Authorization` value for a call; `nonce` must be fresh random bytes (16 or more).
pub fn authorization(
    id: &str,
    secret: &[u8],
    ts: u64,
    nonce: &[u8],
    method: &str,
    path: &str,
    body: &[u8],
) -> Option<String> {
    let nonce = b64_encode(nonce);
    let sig = mac(secret, id, ts, &nonce, method, path, body)?.finalize().into_bytes();
    Some(format!("{SCHEME} id={id}, ts={ts}, nonce={nonce}, sig={}", b64_encode(&sig)))
}

/// Parses the header; `None` for anything but exactly the four parameters, well formed, in the
/// one spelling `authorization` writes: a re-spelled header (fields reordered, other spacing, a
/// `ts` with leading zeros, non-canonical base64) is a different string for the same signature,
/// so accepting it would let one captured call pass the one-use check again.
pub fn parse(value: &str) -> Option<Signed<'_>> {
    let params = value.strip_prefix(SCHEME)?.strip_prefix(' ')?;
    let (mut id, mut ts, mut nonce, mut sig) = (None, None, None, None);
    for p in params.split(',') {
        let (k, v) = p.trim_start_matches(' ').split_once('=')?;
        let slot = match k {
            "id" => &mut id,
            "ts" => &mut ts,
            "nonce" => &mut nonce,
            "sig" => &mut sig,
            _ => return None,
        };
        if slot.replace(v).is_some() {
            return None;
        }
    }
    let (id, nonce) = (id.filter(|i| valid_id(i))?, nonce?);
    let ts = ts.filter(|t| !t.is_empty() && t.len() <= 20 && t.bytes().all(|b| b.is_ascii_digit()))?.parse().ok()?;
    if !(MIN_NONCE_CHARS..=MAX_NONCE_CHARS).contains(&nonce.len()) || b64_decode(nonce.as_bytes()).is_err() {
        return None;
    }
    let sig_text = sig?;
    let sig = b64_decode(sig_text.as_bytes()).ok().filter(|s| s.len() == 32)?;
    let canonical = format!("{SCHEME} id={id}, ts={ts}, nonce={nonce}, sig={}", b64_encode(&sig));
    (canonical == value && b64_encode(&b64_decode(nonce.as_bytes()).ok()?) == nonce).then_some(Signed {
        id,
        ts,
        nonce,
        sig,
    })
}

impl Signed<'_> {
    /// What a signed call is remembered by in a one-use store: its key id and nonce, both covered
    /// by the MAC (a store keyed on the header text is fooled by a re-spelling).
    pub fn replay_key(&self) -> [u8; 32] {
        Sha256::new()
            .chain_update(self.id.as_bytes())
            .chain_update(b"\n")
            .chain_update(self.nonce.as_bytes())
            .finalize()
            .into()
    }

    /// Whether the signature is right for this secret and request (constant-time comparison).
    pub fn verify(&self, secret: &[u8], method: &str, path: &str, body: &[u8]) -> bool {
        mac(secret, self.id, self.ts, self.nonce, method, path, body).is_some_and(|m| m.verify_slice(&self.sig).is_ok())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const SECRET: &[u8] = &[7u8; 32];

    #[test]
    fn a_signed_call_verifies_and_any_change_breaks_it() {
        let h = authorization("proxies-1", SECRET, 1_800_000_000, &[1u8; 16], "POST", "/v1/audit", b"[{}]").unwrap();
        assert!(h.starts_with("JITGATE-HMAC-SHA256 id=proxies-1, ts=1800000000, nonce=AQEBAQEBAQEBAQEBAQEBAQ, sig="));
        let s = parse(&h).unwrap();
        assert_eq!((s.id, s.ts), ("proxies-1", 1_800_000_000));
        assert!(s.verify(SECRET, "POST", "/v1/audit", b"[{}]"));
        assert!(!s.verify(&[8u8; 32], "POST", "/v1/audit", b"[{}]"), "another secret");
        assert!(!s.verify(SECRET, "GET", "/v1/audit", b"[{}]"), "method");
        assert!(!s.verify(SECRET, "POST", "/v1/replay", b"[{}]"), "path");
        assert!(!s.verify(SECRET, "POST", "/v1/audit", b"[{},{}]"), "body");
        let later = h.replace("ts=1800000000", "ts=1800000001");
        assert!(!parse(&later).unwrap().verify(SECRET, "POST", "/v1/audit", b"[{}]"), "timestamp");
    }

    #[test]
    fn the_replay_key_is_what_the_mac_covers() {
        let a = authorization("k", SECRET, 5, &[1u8; 16], "GET", "/", b"").unwrap();
        let b = authorization("k", SECRET, 6, &[1u8; 16], "GET", "/x", b"").unwrap();
        let c = authorization("k", SECRET, 5, &[2u8; 16], "GET", "/", b"").unwrap();
        let key = |h: &str| parse(h).unwrap().replay_key();
        assert_eq!(key(&a), key(&b), "one nonce of one key id is used once, whatever else was signed");
        assert_ne!(key(&a), key(&c));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let h = authorization("k", SECRET, 5, &[1u8; 16], "GET", "/", b"").unwrap();
        assert!(parse(&h).is_some());
        for bad in [
            h.replace("JITGATE-HMAC-SHA256 ", "Bearer "),
            h.replace("id=k", "id=k k"),
            h.replace("ts=5", "ts=-5"),
            h.replace("ts=5", "ts=5, ts=6"),
            h.replace("nonce=AQEBAQEBAQEBAQEBAQEBAQ", "nonce=short"),
            format!("{h}, extra=1"),
            h.replace(", sig=", ", sag="),
            h[..h.len() - 2].to_owned(),
            // The same fields in another spelling: each verifies as the original would.
            h.replace("ts=5", "ts=05"),
            h.replace(", ", ","),
            h.replace(", ", ",  "),
            h.replace("JITGATE-HMAC-SHA256 ", "JITGATE-HMAC-SHA256  "),
            {
                let (head, sig) = h.split_once(", sig=").unwrap();
                let (scheme, fields) = head.split_once(' ').unwrap();
                format!("{scheme} sig={sig}, {fields}")
            },
            format!("{h} "),
        ] {
            assert!(parse(&bad).is_none(), "{bad}");
        }
    }
}
