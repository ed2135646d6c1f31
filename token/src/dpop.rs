//! DPoP proofs (RFC 9449): parsing and verifying the `DPoP` header JWT, checking it against the
//! request and the access token (§4.3), `htu` normalization (RFC 3986 §6.2.2-6.2.3), and
//! stateless server nonces (a MAC over a time step). No clock of its own: time is passed in.

use crate::alg::{Alg, CryptoPath, HostVerifier};
use crate::encoding::{b64_decode, b64_encode, check_json_object, present};
use crate::jwk::{thumbprint_b64, Jwk};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Largest proof accepted (an RSA-4096 jwk plus claims fits well within).
pub const MAX_PROOF_BYTES: usize = 4096;
/// Longest proof `jti` (longer ones are rejected, not truncated).
pub const MAX_JTI_BYTES: usize = 128;
const MAX_HTU_BYTES: usize = 2048;
const MAX_NONCE_BYTES: usize = 256;

/// Why a proof was refused; `code()` is stable (responses, audit, metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpopError {
    Missing,
    Multiple,
    Malformed,
    BadTyp,
    BadAlg,
    BadKey,
    PrivateKey,
    BadSignature,
    JtiTooLong,
    HtmMismatch,
    HtuMismatch,
    Stale,
    Future,
    AthMismatch,
    JktMismatch,
    Replayed,
}

impl DpopError {
    pub fn code(self) -> &'static str {
        match self {
            DpopError::Missing => "dpop_missing",
            DpopError::Multiple => "dpop_multiple",
            DpopError::Malformed => "dpop_malformed",
            DpopError::BadTyp => "dpop_bad_typ",
            DpopError::BadAlg => "dpop_bad_alg",
            DpopError::BadKey => "dpop_bad_key",
            DpopError::PrivateKey => "dpop_private_key",
            DpopError::BadSignature => "dpop_bad_signature",
            DpopError::JtiTooLong => "dpop_jti_too_long",
            DpopError::HtmMismatch => "dpop_htm_mismatch",
            DpopError::HtuMismatch => "dpop_htu_mismatch",
            DpopError::Stale => "dpop_stale",
            DpopError::Future => "dpop_iat_in_future",
            DpopError::AthMismatch => "dpop_ath_mismatch",
            DpopError::JktMismatch => "dpop_jkt_mismatch",
            DpopError::Replayed => "dpop_replayed",
        }
    }

    pub const ALL: [DpopError; 16] = [
        DpopError::Missing,
        DpopError::Multiple,
        DpopError::Malformed,
        DpopError::BadTyp,
        DpopError::BadAlg,
        DpopError::BadKey,
        DpopError::PrivateKey,
        DpopError::BadSignature,
        DpopError::JtiTooLong,
        DpopError::HtmMismatch,
        DpopError::HtuMismatch,
        DpopError::Stale,
        DpopError::Future,
        DpopError::AthMismatch,
        DpopError::JktMismatch,
        DpopError::Replayed,
    ];
}

#[derive(Deserialize)]
struct RawHeader {
    typ: Option<String>,
    alg: String,
    jwk: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    jku: bool,
    #[serde(default, deserialize_with = "present")]
    x5u: bool,
    #[serde(default, deserialize_with = "present")]
    x5c: bool,
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

#[derive(Deserialize)]
struct RawClaims {
    jti: String,
    htm: String,
    htu: String,
    iat: u64,
    ath: Option<String>,
    nonce: Option<String>,
}

/// A proof whose signature verified with the key in its own header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub jti: String,
    pub htm: String,
    pub htu: String,
    pub iat: u64,
    pub ath: Option<String>,
    pub nonce: Option<String>,
    /// RFC 7638 thumbprint of the header `jwk`, base64url: what `cnf.jkt` must equal.
    pub jkt: String,
}

/// Algorithms a proof may use: asymmetric only.
pub const PROOF_ALGS: &str = "ES256 EdDSA RS256 PS256";

/// Parses and verifies a proof (checks 2-7 and the `jti` size of RFC 9449 §4.3).
pub fn verify_proof(proof: &str, host: Option<&dyn HostVerifier>) -> Result<(Proof, CryptoPath), DpopError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(DpopError::Malformed);
    }
    let mut parts = proof.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(DpopError::Malformed);
    };
    let header_json = b64_decode(h.as_bytes()).map_err(|_| DpopError::Malformed)?;
    check_json_object(&header_json).map_err(|_| DpopError::Malformed)?;
    let header: RawHeader = serde_json::from_slice(&header_json).map_err(|_| DpopError::Malformed)?;
    if !header.typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt")) {
        return Err(DpopError::BadTyp);
    }
    if header.jku || header.x5u || header.x5c || header.crit {
        return Err(DpopError::Malformed);
    }
    let alg = Alg::parse(&header.alg).map_err(|_| DpopError::BadAlg)?;
    if alg.is_symmetric() {
        return Err(DpopError::BadAlg);
    }
    let jwk_json = header.jwk.ok_or(DpopError::BadKey)?;
    let private = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"].iter().any(|m| jwk_json.get(m).is_some());
    if private {
        return Err(DpopError::PrivateKey);
    }
    let key = Jwk::proof_key(jwk_json, alg).map_err(|e| match e {
        crate::Error::AlgMismatch => DpopError::BadAlg,
        _ => DpopError::BadKey,
    })?;
    let signature = b64_decode(s.as_bytes()).map_err(|_| DpopError::Malformed)?;
    let signing_input = proof.get(..h.len() + 1 + p.len()).ok_or(DpopError::Malformed)?.as_bytes();
    let path = key.verify_with(signing_input, &signature, host).map_err(|_| DpopError::BadSignature)?;
    let payload = b64_decode(p.as_bytes()).map_err(|_| DpopError::Malformed)?;
    check_json_object(&payload).map_err(|_| DpopError::Malformed)?;
    let c: RawClaims = serde_json::from_slice(&payload).map_err(|_| DpopError::Malformed)?;
    if c.jti.len() > MAX_JTI_BYTES {
        return Err(DpopError::JtiTooLong);
    }
    let bounded = |v: &Option<String>, max: usize| v.as_ref().is_none_or(|v| v.len() <= max);
    if c.jti.is_empty()
        || c.htm.len() > 16
        || c.htu.len() > MAX_HTU_BYTES
        || !bounded(&c.ath, 64)
        || !bounded(&c.nonce, MAX_NONCE_BYTES)
    {
        return Err(DpopError::Malformed);
    }
    let jkt = thumbprint_b64(&key);
    Ok((Proof { jti: c.jti, htm: c.htm, htu: c.htu, iat: c.iat, ath: c.ath, nonce: c.nonce, jkt }, path))
}

/// What a proof is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub method: &'a str,
    /// The request's URI, normalized with `normalize_htu`.
    pub htu: &'a str,
    /// The access token the proof must be bound to (for `ath`).
    pub token: &'a str,
    /// `cnf.jkt` of that token.
    pub jkt: &'a str,
    pub now: u64,
    pub max_age_s: u64,
    pub skew_s: u64,
}

impl Proof {
    /// Checks 8-12 of RFC 9449 §4.3 (the replay check, 11's `jti`, is the ledger's).
    pub fn check(&self, e: &Expected<'_>) -> Result<(), DpopError> {
        self.check_request(e.method, e.htu, e.now, e.max_age_s, e.skew_s)?;
        let ath = b64_encode(&Sha256::digest(e.token.as_bytes()));
        if !self.ath.as_deref().is_some_and(|a| bool::from(a.as_bytes().ct_eq(ath.as_bytes()))) {
            return Err(DpopError::AthMismatch);
        }
        if !bool::from(self.jkt.as_bytes().ct_eq(e.jkt.as_bytes())) {
            return Err(DpopError::JktMismatch);
        }
        Ok(())
    }
}

impl Proof {
    /// Checks 8-10 of RFC 9449 §4.3, all a proof with no access token (one sent to a token
    /// endpoint, §5) is checked for before its replay check: `htm`, `htu` (the request's URI
    /// normalized with `normalize_htu`) and the age of `iat`.
    pub fn check_request(
        &self,
        method: &str,
        htu: &str,
        now: u64,
        max_age_s: u64,
        skew_s: u64,
    ) -> Result<(), DpopError> {
        if self.htm != method {
            return Err(DpopError::HtmMismatch);
        }
        // RFC 9449 §4.2: htu carries no query or fragment; one that does was built wrongly.
        if self.htu.contains(['?', '#']) || normalize_htu(&self.htu).as_deref() != Some(htu) {
            return Err(DpopError::HtuMismatch);
        }
        if self.iat > now.saturating_add(skew_s) {
            return Err(DpopError::Future);
        }
        if self.iat.saturating_add(max_age_s).saturating_add(skew_s) < now {
            return Err(DpopError::Stale);
        }
        Ok(())
    }

    /// The first second this proof is stale: a replay ledger keeps its `jti` until then.
    pub fn stale_from(&self, max_age_s: u64, skew_s: u64) -> u64 {
        self.iat.saturating_add(max_age_s).saturating_add(skew_s).saturating_add(1)
    }
}

/// `scheme://authority/path` normalized per RFC 3986 §6.2.2-6.2.3, without query and fragment:
/// lower-case scheme and host, default port dropped, percent-encodings upper-cased and decoded
/// where unreserved, dot segments removed. `None` for anything that is not an http(s) URI.
pub fn normalize_htu(uri: &str) -> Option<String> {
    // A URI is printable ASCII (RFC 3986 §2); anything else is not one (found by the dpop fuzz
    // target: a byte-wise pass over UTF-8 mangled it, so normalizing twice gave two answers).
    if !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let uri = uri.split(['?', '#']).next()?;
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port: u16 = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    Some(format!("{scheme}://{}{}", normalize_authority(authority, default_port)?, normalize_path(path)?))
}

/// `host[:port]` (or `[v6]:port`) lower-cased, an empty or default port dropped, the port as a
/// plain number; `None` for anything else (found by the dpop fuzz target: `h:80:` kept `h:80`,
/// which the next pass turned into `h`).
fn normalize_authority(authority: &str, default_port: u16) -> Option<String> {
    let authority = authority.to_ascii_lowercase();
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (inside, after) = v6.split_once(']')?;
            (format!("[{inside}]"), after.strip_prefix(':').or_else(|| after.is_empty().then_some(""))?)
        }
        None => match authority.split_once(':') {
            Some((h, p)) => (h.to_owned(), p),
            None => (authority.clone(), ""),
        },
    };
    if host.is_empty() || (!host.starts_with('[') && host.contains(':')) {
        return None;
    }
    if port.is_empty() {
        return Some(host);
    }
    if port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match port.parse::<u16>().ok()? {
        p if p == default_port => Some(host),
        p => Some(format!("{host}:{p}")),
    }
}

fn normalize_path(path: &str) -> Option<String> {
    // Percent-encodings: upper-case hex; decode unreserved characters (RFC 3986 §2.3).
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = path.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(hex, 16).ok()?;
            if v.is_ascii_alphanumeric() || b"-._~".contains(&v) {
                decoded.push(char::from(v));
            } else {
                decoded.push('%');
                decoded.push_str(&hex.to_ascii_uppercase());
            }
            i += 3;
        } else {
            decoded.push(char::from(b));
            i += 1;
        }
    }
    // Dot segments (RFC 3986 §5.2.4).
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (n, seg) in segments.iter().enumerate() {
        match *seg {
            "." | ".." => {
                if *seg == ".." {
                    out.pop();
                }
                if n == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    Some(format!("/{}", out.join("/")))
}

/// Seconds of a server nonce's time step: a nonce is good in its step and the next.
pub const NONCE_STEP_S: u64 = 60;

/// Server nonces: `base64url(step || HMAC-SHA256(key, "jitgate dpop nonce" || step)[..16])`,
/// valid during their time step and the next one. Stateless: any worker with the key checks it.
pub fn issue_nonce(key: &[u8; 32], step: u64) -> String {
    let mut out = step.to_be_bytes().to_vec();
    out.extend_from_slice(nonce_mac(key, step).get(..16).unwrap_or_default());
    b64_encode(&out)
}

pub fn nonce_valid(key: &[u8; 32], nonce: &str, current_step: u64) -> bool {
    let Ok(raw) = b64_decode(nonce.as_bytes()) else { return false };
    let (Some(step), Some(tag)) = (raw.get(..8), raw.get(8..)) else { return false };
    let Ok(step) = <[u8; 8]>::try_from(step).map(u64::from_be_bytes) else { return false };
    let fresh = step == current_step || step.saturating_add(1) == current_step;
    let expected = nonce_mac(key, step);
    fresh && tag.len() == 16 && bool::from(expected.get(..16).unwrap_or_default().ct_eq(tag))
}

fn nonce_mac(key: &[u8; 32], step: u64) -> Vec<u8> {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else { return Vec::new() };
    mac.update(b"jitgate dpop nonce");
    mac.update(&step.to_be_bytes());
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rfc9449_known_answers() {
        // §7.1: ath of the example access token; §6.1: jkt of the example proof key.
        let ath = b64_encode(&Sha256::digest(b"Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"));
        assert_eq!(ath, "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo");
        let jwk = serde_json::json!({"kty": "EC", "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
            "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA", "crv": "P-256"});
        let key = Jwk::proof_key(jwk, Alg::ES256).map_err(|e| e.to_string());
        assert_eq!(key.map(|k| thumbprint_b64(&k)), Ok("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".to_owned()));
    }

    #[test]
    fn htu_normalization() {
        let n = |u: &str| normalize_htu(u);
        assert_eq!(
            n("https://Server.Example.COM:443/a/./b/../c?x=1#f").as_deref(),
            Some("https://server.example.com/a/c")
        );
        assert_eq!(n("HTTP://h:80/%7euser/%2f").as_deref(), Some("http://h/~user/%2F"));
        assert_eq!(n("http://h:8080/p").as_deref(), Some("http://h:8080/p"));
        assert_eq!(n("http://h").as_deref(), Some("http://h/"));
        assert_eq!(n("http://h/Orders"), Some("http://h/Orders".to_owned()), "paths stay case-sensitive");
        assert_eq!(n("ftp://h/p"), None);
        assert_eq!(n("http://user@h/p"), None);
        assert_eq!(n("http://h/%zz"), None);
        // Found by the dpop fuzz target: non-ASCII was mangled byte by byte, differently each pass.
        assert_eq!(n("https://h/Ø/orders"), None, "not a URI");
        assert_eq!(n("https://h/a b"), None);
        assert_eq!(n("https://h/a\u{6}"), None);
        assert_eq!(n("http://h:80:/p"), None, "two colons");
        assert_eq!(n("http://h:/p").as_deref(), Some("http://h/p"), "an empty port is the default");
        assert_eq!(n("http://h:0080/p").as_deref(), Some("http://h/p"));
        assert_eq!(n("http://[::1]:8080/p").as_deref(), Some("http://[::1]:8080/p"));
        assert_eq!(n("http://[::1]:80/p").as_deref(), Some("http://[::1]/p"));
        assert_eq!(n("http://h:99999/p"), None);
        for uri in ["HTTP://H:80/%7e/./a/../b", "https://h/%2f%41", "http://h:/x", "http://[::1]:8080/"] {
            let once = n(uri).unwrap();
            assert_eq!(n(&once).as_deref(), Some(once.as_str()), "idempotent: {uri}");
        }
    }

    #[test]
    fn nonces_are_valid_for_two_steps_and_keyed() {
        let (k, other) = ([7u8; 32], [8u8; 32]);
        let n = issue_nonce(&k, 100);
        assert!(nonce_valid(&k, &n, 100) && nonce_valid(&k, &n, 101));
        assert!(!nonce_valid(&k, &n, 102), "expired");
        assert!(!nonce_valid(&k, &n, 99), "from the future");
        assert!(!nonce_valid(&other, &n, 100), "another key");
        assert!(!nonce_valid(&k, "AAAA", 100));
        assert_ne!(issue_nonce(&k, 100), issue_nonce(&k, 101));
    }
}
