//! jitgate-token: everything about JIT access tokens that needs no I/O and no clock.
//!
//! Why not `jsonwebtoken`'s decode path: it keeps the last of duplicate JSON members, binds the
//! algorithm per call instead of per key, re-parses key material on every verification, and has no
//! place for a host-provided verifier. So the JOSE layer here is hand-written and small,
//! and every primitive comes from RustCrypto (`p256`, `ed25519-dalek`, `rsa`, `hmac`, `sha2`).

pub mod alg;
pub mod caller_auth;
pub mod civil;
pub mod claims;
pub mod dpop;
pub mod encoding;
pub mod error;
pub mod jwk;
pub mod jws;
#[cfg(feature = "mint")]
pub mod mint;
pub mod verify_signature;

pub use alg::{Alg, CryptoPath, HostVerifier, KeyMaterial};
pub use claims::{AccessClaims, JitClaim, Validation};
pub use error::{Error, Result};
pub use jwk::{Jwk, KeySet};
pub use jws::{Header, VerifiedJws, DEFAULT_MAX_TOKEN_BYTES};

/// A token that passed signature and claim validation.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub header: Header,
    pub claims: AccessClaims,
}

/// Everything needed to verify a JIT access token: trusted keys and the rules for its claims.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// Asymmetric keys (ES256, EdDSA, RS256, PS256).
    keys: KeySet,
    /// HS256 secrets, configured explicitly and kept apart from the asymmetric keys.
    secrets: KeySet,
    pub validation: Validation,
    pub max_token_bytes: usize,
}

impl Verifier {
    pub fn new(keys: KeySet, secrets: KeySet, validation: Validation, max_token_bytes: usize) -> Result<Verifier> {
        if keys.keys().iter().any(|k| k.alg().is_symmetric()) {
            return Err(Error::BadKey("HS256 secrets must be configured apart from the JWKS"));
        }
        if secrets.keys().iter().any(|k| !k.alg().is_symmetric()) {
            return Err(Error::BadKey("only HS256 keys belong with the secrets"));
        }
        let clash = secrets.keys().iter().any(|s| keys.keys().iter().any(|k| k.kid.is_some() && k.kid == s.kid));
        if clash {
            return Err(Error::BadKey("an HS256 secret shares a kid with an asymmetric key"));
        }
        if keys.is_empty() && secrets.is_empty() {
            return Err(Error::BadKey("no trusted keys"));
        }
        Ok(Verifier { keys, secrets, validation, max_token_bytes })
    }

    /// Verifies a compact token at `now` (Unix seconds). `route_max_ttl_s` tightens the TTL cap.
    /// Order: structure, signature, typ, then claims; the first failure is the answer.
    pub fn verify(&self, token: &str, now: u64, route_max_ttl_s: Option<u64>) -> Result<AccessToken> {
        let (jws, _) = self.check_signature(token, None)?;
        self.check_claims(&jws, now, route_max_ttl_s)
    }

    /// Structure and signature only: no clock involved, so the result may be cached until `exp`.
    /// `host` verifies the algorithms it handles (see `HostVerifier`).
    pub fn check_signature(&self, token: &str, host: Option<&dyn HostVerifier>) -> Result<(VerifiedJws, CryptoPath)> {
        let jws = jws::parse(token, self.max_token_bytes)?;
        let keys = if jws.header.alg.is_symmetric() { &self.secrets } else { &self.keys };
        jws.verify_with(keys, host)
    }

    /// A token that passed `check_claims` before, at `now` on a route capped at `route_max_ttl_s`:
    /// only the clock and the route can change its verdict.
    pub fn recheck(&self, token: &AccessToken, now: u64, route_max_ttl_s: Option<u64>) -> Result<()> {
        self.validation.check_times(token.claims.times(), now, route_max_ttl_s)
    }

    /// `typ` and claims of a signature-checked token at `now`.
    pub fn check_claims(&self, jws: &VerifiedJws, now: u64, route_max_ttl_s: Option<u64>) -> Result<AccessToken> {
        if !claims::typ_accepted(jws.header.typ.as_deref(), &self.validation.accepted_typ) {
            return Err(Error::BadTyp);
        }
        let claims = self.validation.validate(&jws.payload, now, route_max_ttl_s)?;
        Ok(AccessToken { header: jws.header.clone(), claims })
    }
}
