//! JIT access token claims (docs/architecture.md §2) and their validation. Time is passed in, never read.

use crate::encoding::check_json_object;
use crate::error::{Error, Result};
use serde::Deserialize;

pub const MAX_JTI_BYTES: usize = 128;
const MAX_SUB_BYTES: usize = 256;
const MAX_SCOPE_BYTES: usize = 4096;
const MAX_SCOPES: usize = 64;
const MAX_AUDIENCES: usize = 32;
const MAX_GRANT_BYTES: usize = 128;
const MAX_REASON_BYTES: usize = 1024;
const MAX_IDP_BYTES: usize = 512;
const MAX_CLIENT_ID_BYTES: usize = 256;

/// What a token must satisfy, besides its signature.
#[derive(Debug, Clone)]
pub struct Validation {
    pub issuer: String,
    pub audience: String,
    /// Accepted `typ` values, compared case-insensitively, `application/` prefix optional; an
    /// empty entry also accepts a token without `typ` (OpenID ID tokens need not carry one).
    pub accepted_typ: Vec<String>,
    pub clock_skew_s: u64,
    /// Largest allowed `exp - iat`.
    pub max_ttl_s: u64,
    /// Whether a token without the `jit` object is refused.
    pub require_jit: bool,
    /// Whether a token without `jti` is accepted (OpenID ID tokens need not carry one; JIT
    /// tokens must, for replay and revocation). Its `jti` then reads as empty.
    pub jti_optional: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Cnf {
    jkt: Option<String>,
}

/// The `jit` object: which grant this token was issued under, and why.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JitClaim {
    pub grant: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub approver: Option<String>,
    #[serde(default)]
    pub break_glass: bool,
    #[serde(default)]
    pub uses: Option<u32>,
    /// The identity issuer of `sub` (a subject is `(idp, sub)`): subject revocations match both.
    #[serde(default)]
    pub idp: Option<String>,
}

#[derive(Deserialize)]
struct RawClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<serde_json::Number>,
    nbf: Option<serde_json::Number>,
    iat: Option<serde_json::Number>,
    jti: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    cnf: Option<Cnf>,
    act: Option<serde_json::Value>,
    jit: Option<JitClaim>,
}

/// Claims of a token that passed every check of `Validation`.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub jti: String,
    pub iat: u64,
    pub exp: u64,
    pub nbf: Option<u64>,
    /// Space-delimited scope, as sent (validated syntax, may be empty).
    pub scope: String,
    pub client_id: Option<String>,
    /// Thumbprint the token is bound to (RFC 9449 §6.1), base64url.
    pub cnf_jkt: Option<String>,
    /// Delegation chain: logged, never trusted for authorization.
    pub act: Option<serde_json::Value>,
    pub jit: Option<JitClaim>,
}

impl AccessClaims {
    pub fn times(&self) -> Times {
        Times { iat: self.iat, exp: self.exp, nbf: self.nbf }
    }
}

/// Correlates audit events for one token without revealing its `jti`: hex of the first 16 bytes
/// of SHA-256(iss, 0, jti). The filter and the sidecar both log it.
pub fn jti_hash(iss: &str, jti: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new().chain_update(iss).chain_update([0u8]).chain_update(jti).finalize();
    crate::encoding::hex(digest.get(..16).unwrap_or_default())
}

impl AccessClaims {
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split(' ').filter(|s| !s.is_empty())
    }

    pub fn has_scope(&self, wanted: &str) -> bool {
        self.scopes().any(|s| s == wanted)
    }
}

/// NumericDate (RFC 7519 §2): non-negative; fractional seconds are truncated.
fn numeric_date(n: &serde_json::Number, name: &'static str) -> Result<u64> {
    if let Some(v) = n.as_u64() {
        return Ok(v);
    }
    match n.as_f64() {
        Some(f) if (0.0..1e15).contains(&f) => Ok(f as u64),
        _ => Err(Error::InvalidClaim(name)),
    }
}

fn bounded(v: Option<String>, name: &'static str, max: usize) -> Result<Option<String>> {
    match v {
        Some(s) if s.is_empty() || s.len() > max => Err(Error::InvalidClaim(name)),
        other => Ok(other),
    }
}

fn required(v: Option<String>, name: &'static str, max: usize) -> Result<String> {
    bounded(v, name, max)?.ok_or(Error::MissingClaim(name))
}

/// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), separated by single spaces.
fn valid_scope(scope: &str) -> bool {
    scope.len() <= MAX_SCOPE_BYTES
        && (scope.is_empty()
            || scope.split(' ').count() <= MAX_SCOPES
                && scope.split(' ').all(|t| {
                    !t.is_empty()
                        && t.bytes().all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
                }))
}

/// Whether a `typ` header value is in the accepted set (RFC 7515 §4.1.9 comparison rules).
pub fn typ_accepted(typ: Option<&str>, accepted: &[String]) -> bool {
    let Some(typ) = typ else { return accepted.iter().any(String::is_empty) };
    let bare = match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => typ.get(12..).unwrap_or(""),
        _ => typ,
    };
    accepted.iter().any(|a| a.eq_ignore_ascii_case(bare))
}

/// The claims whose verdict depends on the clock or the route.
#[derive(Debug, Clone, Copy)]
pub struct Times {
    pub iat: u64,
    pub exp: u64,
    pub nbf: Option<u64>,
}

impl Validation {
    /// The clock- and route-dependent checks: all a cached, already validated token needs again.
    pub fn check_times(&self, t: Times, now: u64, max_ttl_s: Option<u64>) -> Result<()> {
        let skew = self.clock_skew_s;
        if now >= t.exp.saturating_add(skew) {
            return Err(Error::Expired);
        }
        if t.iat > now.saturating_add(skew) {
            return Err(Error::IssuedInFuture);
        }
        if t.nbf.is_some_and(|nbf| nbf > now.saturating_add(skew)) {
            return Err(Error::NotYetValid);
        }
        let cap = max_ttl_s.map_or(self.max_ttl_s, |route| route.min(self.max_ttl_s));
        if t.exp.saturating_sub(t.iat) > cap {
            return Err(Error::TtlExceedsCap);
        }
        Ok(())
    }

    /// Parses and validates a verified payload. `now` is Unix seconds from the host.
    /// `max_ttl_s` overrides the global cap when a route has a tighter one.
    pub fn validate(&self, payload: &[u8], now: u64, max_ttl_s: Option<u64>) -> Result<AccessClaims> {
        check_json_object(payload)?;
        let raw: RawClaims =
            serde_json::from_slice(payload).map_err(|_| Error::Malformed("claims have wrong types"))?;

        let iss = required(raw.iss, "iss", 512)?;
        if iss != self.issuer {
            return Err(Error::BadIssuer);
        }
        let aud_ok = match &raw.aud {
            None => return Err(Error::MissingClaim("aud")),
            Some(Audience::One(a)) => *a == self.audience,
            Some(Audience::Many(list)) => {
                if list.len() > MAX_AUDIENCES {
                    return Err(Error::InvalidClaim("aud"));
                }
                list.contains(&self.audience)
            }
        };
        if !aud_ok {
            return Err(Error::BadAudience);
        }
        let sub = required(raw.sub, "sub", MAX_SUB_BYTES)?;
        let jti = match bounded(raw.jti, "jti", MAX_JTI_BYTES)? {
            Some(jti) => jti,
            None if self.jti_optional => String::new(),
            None => return Err(Error::MissingClaim("jti")),
        };

        let exp = numeric_date(raw.exp.as_ref().ok_or(Error::MissingClaim("exp"))?, "exp")?;
        let iat = numeric_date(raw.iat.as_ref().ok_or(Error::MissingClaim("iat"))?, "iat")?;
        let nbf = raw.nbf.as_ref().map(|n| numeric_date(n, "nbf")).transpose()?;
        if exp <= iat {
            return Err(Error::InvalidClaim("exp"));
        }
        self.check_times(Times { iat, exp, nbf }, now, max_ttl_s)?;

        let scope = raw.scope.unwrap_or_default();
        if !valid_scope(&scope) {
            return Err(Error::InvalidClaim("scope"));
        }
        let client_id = bounded(raw.client_id, "client_id", MAX_CLIENT_ID_BYTES)?;
        let cnf_jkt = match raw.cnf {
            Some(Cnf { jkt: Some(jkt) }) if jkt.len() == 43 => Some(jkt),
            Some(_) => return Err(Error::InvalidClaim("cnf")),
            None => None,
        };
        if let Some(jit) = &raw.jit {
            let reason_ok = jit.reason.as_ref().is_none_or(|r| r.len() <= MAX_REASON_BYTES);
            let approver_ok = jit.approver.as_ref().is_none_or(|a| !a.is_empty() && a.len() <= MAX_SUB_BYTES);
            let idp_ok = jit.idp.as_ref().is_none_or(|i| !i.is_empty() && i.len() <= MAX_IDP_BYTES);
            if jit.grant.is_empty()
                || jit.grant.len() > MAX_GRANT_BYTES
                || !reason_ok
                || !approver_ok
                || !idp_ok
                || jit.uses == Some(0)
            {
                return Err(Error::InvalidClaim("jit"));
            }
        } else if self.require_jit {
            return Err(Error::MissingClaim("jit"));
        }
        Ok(AccessClaims { iss, sub, jti, iat, exp, nbf, scope, client_id, cnf_jkt, act: raw.act, jit: raw.jit })
    }
}
