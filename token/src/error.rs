//! One error type for everything that can go wrong with a token or a key.
//!
//! `reason()` is a stable code: it appears in responses, audit records and metric names, so never
//! rename one. `Display` adds a human description that never contains token material.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The token is larger than the configured limit.
    TooLarge,
    /// Not a JWS compact serialization we accept (parts, base64url, JSON, UTF-8, duplicate keys).
    Malformed(&'static str),
    /// `alg` is `none`, unknown, or not one we accept.
    UnsupportedAlg,
    /// The header carries key material or extensions we refuse (`jwk`, `jku`, `x5u`, `x5c`, `crit`).
    ForbiddenHeader(&'static str),
    /// No key with the token's `kid` (or in the algorithm's key family).
    UnknownKid,
    /// The key set has several keys and the token names none.
    KidRequired,
    /// The key pinned to this `kid` is for another algorithm.
    AlgMismatch,
    /// The signature does not verify.
    BadSignature,
    /// `typ` is missing or not in the accepted set.
    BadTyp,
    /// `iss` is not the configured issuer.
    BadIssuer,
    /// `aud` does not contain the configured audience.
    BadAudience,
    /// A required claim is absent.
    MissingClaim(&'static str),
    /// A claim has the wrong type, size or syntax.
    InvalidClaim(&'static str),
    /// `exp` has passed (clock skew included).
    Expired,
    /// `nbf` is still in the future (clock skew included).
    NotYetValid,
    /// `iat` is in the future (clock skew included).
    IssuedInFuture,
    /// `exp - iat` exceeds the TTL cap: the token is not ephemeral.
    TtlExceedsCap,
    /// A DPoP-bound token (`cnf.jkt`) was presented as a bearer token (RFC 9449 §7.2).
    DpopBoundToken,
    /// A key in configuration or a JWKS is unusable; the text names why.
    BadKey(&'static str),
}

impl Error {
    /// Stable machine-readable code.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::TooLarge => "token_too_large",
            Error::Malformed(_) => "malformed_token",
            Error::UnsupportedAlg => "unsupported_alg",
            Error::ForbiddenHeader(_) => "forbidden_header",
            Error::UnknownKid => "unknown_kid",
            Error::KidRequired => "kid_required",
            Error::AlgMismatch => "alg_mismatch",
            Error::BadSignature => "bad_signature",
            Error::BadTyp => "bad_typ",
            Error::BadIssuer => "bad_issuer",
            Error::BadAudience => "bad_audience",
            Error::MissingClaim(_) => "missing_claim",
            Error::InvalidClaim(_) => "invalid_claim",
            Error::Expired => "expired",
            Error::NotYetValid => "not_yet_valid",
            Error::IssuedInFuture => "iat_in_future",
            Error::TtlExceedsCap => "ttl_exceeds_cap",
            Error::DpopBoundToken => "dpop_bound_token",
            Error::BadKey(_) => "bad_key",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooLarge => f.write_str("token exceeds the size limit"),
            Error::Malformed(what) => write!(f, "malformed token: {what}"),
            Error::UnsupportedAlg => f.write_str("algorithm not accepted"),
            Error::ForbiddenHeader(name) => write!(f, "header parameter `{name}` is not accepted"),
            Error::UnknownKid => f.write_str("no trusted key for this token"),
            Error::KidRequired => f.write_str("token has no kid and several keys are trusted"),
            Error::AlgMismatch => f.write_str("token alg differs from the key's pinned algorithm"),
            Error::BadSignature => f.write_str("signature does not verify"),
            Error::BadTyp => f.write_str("token typ not accepted"),
            Error::BadIssuer => f.write_str("issuer not trusted"),
            Error::BadAudience => f.write_str("audience does not match"),
            Error::MissingClaim(name) => write!(f, "required claim `{name}` is missing"),
            Error::InvalidClaim(name) => write!(f, "claim `{name}` is invalid"),
            Error::Expired => f.write_str("token has expired"),
            Error::NotYetValid => f.write_str("token is not yet valid"),
            Error::IssuedInFuture => f.write_str("token issued in the future"),
            Error::TtlExceedsCap => f.write_str("token lifetime exceeds the cap"),
            Error::DpopBoundToken => f.write_str("DPoP-bound token presented as a bearer token"),
            Error::BadKey(why) => write!(f, "unusable key: {why}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
