//! Why a request was allowed or denied: a stable code for audit, metrics and responses.

use jitgate_token::dpop::DpopError;
use jitgate_token::Error as TokenError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Allowed: the rule is public.
    Public,
    /// Allowed: a valid token with every required scope.
    Verified,
    /// Allowed: no rule matched and `default` is `allow`.
    DefaultAllow,
    /// Answered by the filter itself: a protected resource metadata document (RFC 9728).
    ResourceMetadata,
    MissingCredential,
    DuplicateAuthorization,
    MalformedAuthorization,
    UnsupportedScheme,
    UnnormalizedPath,
    NoMatchingRule,
    InsufficientScope,
    /// A claim that would be forwarded as a header holds characters a header cannot carry.
    UnsafeClaim,
    /// The nonce (single-use `jti`) was already used as often as allowed.
    Replayed,
    /// The replay ledger has no room for a live entry: fail closed.
    LedgerFull,
    /// Shared data failed: the ledger cannot answer, so nothing passes.
    LedgerUnavailable,
    /// The rule needs DPoP and the token is an unbound bearer token.
    DpopRequired,
    /// `Authorization: DPoP` with a token that has no `cnf.jkt`.
    DpopUnboundToken,
    /// The rule requires a server nonce and the proof has no valid one.
    UseDpopNonce,
    /// The token (its jti, grant or subject) is in the revocation feed.
    Revoked,
    /// No revocation poll succeeded within `fail_closed_after_s`.
    RevocationStale,
    /// The keys come from the sidecar and none have been fetched yet.
    KeysUnavailable,
    /// Exchange: an access request waits for approval.
    ApprovalPending,
    /// Exchange: policy or grants do not allow the route's scopes.
    ExchangeRefused,
    /// Exchange: the sidecar did not accept the subject token.
    SubjectRejected,
    /// A sidecar call timed out, failed or answered something unusable.
    SidecarUnavailable,
    Dpop(DpopError),
    Token(TokenError),
}

/// Deny codes other than the DPoP proof codes (those are `DpopError::code`; see `deny_codes`).
pub const DENY_CODES: [&str; 41] = [
    "missing_credential",
    "duplicate_authorization",
    "malformed_authorization",
    "unsupported_scheme",
    "unnormalized_path",
    "no_matching_rule",
    "insufficient_scope",
    "unsafe_claim",
    "token_too_large",
    "malformed_token",
    "unsupported_alg",
    "forbidden_header",
    "unknown_kid",
    "kid_required",
    "alg_mismatch",
    "bad_signature",
    "bad_typ",
    "bad_issuer",
    "bad_audience",
    "missing_claim",
    "invalid_claim",
    "expired",
    "not_yet_valid",
    "iat_in_future",
    "ttl_exceeds_cap",
    "dpop_bound_token",
    "bad_key",
    // reserved for the replay and exchange features, defined now so dashboards stay stable
    "replayed",
    "ledger_full",
    "upstream_unavailable",
    "ledger_unavailable",
    "dpop_required",
    "dpop_unbound_token",
    "use_dpop_nonce",
    "revoked",
    "revocation_stale",
    "keys_unavailable",
    "approval_pending",
    "exchange_refused",
    "subject_token_rejected",
    "sidecar_unavailable",
];

/// Every deny code: `DENY_CODES` and the DPoP proof codes (`DpopError::code`).
pub fn deny_codes() -> impl Iterator<Item = &'static str> {
    DENY_CODES.iter().copied().chain(DpopError::ALL.iter().map(|e| e.code()))
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::Public => "public",
            Reason::Verified => "verified",
            Reason::DefaultAllow => "default_allow",
            Reason::ResourceMetadata => "resource_metadata",
            Reason::MissingCredential => "missing_credential",
            Reason::DuplicateAuthorization => "duplicate_authorization",
            Reason::MalformedAuthorization => "malformed_authorization",
            Reason::UnsupportedScheme => "unsupported_scheme",
            Reason::UnnormalizedPath => "unnormalized_path",
            Reason::NoMatchingRule => "no_matching_rule",
            Reason::InsufficientScope => "insufficient_scope",
            Reason::UnsafeClaim => "unsafe_claim",
            Reason::Replayed => "replayed",
            Reason::LedgerFull => "ledger_full",
            Reason::LedgerUnavailable => "ledger_unavailable",
            Reason::DpopRequired => "dpop_required",
            Reason::DpopUnboundToken => "dpop_unbound_token",
            Reason::UseDpopNonce => "use_dpop_nonce",
            Reason::Revoked => "revoked",
            Reason::RevocationStale => "revocation_stale",
            Reason::KeysUnavailable => "keys_unavailable",
            Reason::ApprovalPending => "approval_pending",
            Reason::ExchangeRefused => "exchange_refused",
            Reason::SubjectRejected => "subject_token_rejected",
            Reason::SidecarUnavailable => "sidecar_unavailable",
            Reason::Dpop(e) => e.code(),
            Reason::Token(e) => e.reason(),
        }
    }

    pub fn is_allow(self) -> bool {
        matches!(self, Reason::Public | Reason::Verified | Reason::DefaultAllow | Reason::ResourceMetadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_deny_reason_has_a_metric() {
        let token_errors = [
            TokenError::TooLarge,
            TokenError::Malformed(""),
            TokenError::UnsupportedAlg,
            TokenError::ForbiddenHeader(""),
            TokenError::UnknownKid,
            TokenError::KidRequired,
            TokenError::AlgMismatch,
            TokenError::BadSignature,
            TokenError::BadTyp,
            TokenError::BadIssuer,
            TokenError::BadAudience,
            TokenError::MissingClaim(""),
            TokenError::InvalidClaim(""),
            TokenError::Expired,
            TokenError::NotYetValid,
            TokenError::IssuedInFuture,
            TokenError::TtlExceedsCap,
            TokenError::DpopBoundToken,
            TokenError::BadKey(""),
        ];
        let mut all = vec![
            Reason::MissingCredential,
            Reason::DuplicateAuthorization,
            Reason::MalformedAuthorization,
            Reason::UnsupportedScheme,
            Reason::UnnormalizedPath,
            Reason::NoMatchingRule,
            Reason::InsufficientScope,
            Reason::UnsafeClaim,
            Reason::Replayed,
            Reason::LedgerFull,
            Reason::LedgerUnavailable,
            Reason::DpopRequired,
            Reason::DpopUnboundToken,
            Reason::UseDpopNonce,
            Reason::Revoked,
            Reason::RevocationStale,
            Reason::KeysUnavailable,
            Reason::ApprovalPending,
            Reason::ExchangeRefused,
            Reason::SubjectRejected,
            Reason::SidecarUnavailable,
        ];
        all.extend(DpopError::ALL.into_iter().map(Reason::Dpop));
        all.extend(token_errors.into_iter().map(Reason::Token));
        for r in all {
            assert!(!r.is_allow());
            assert!(deny_codes().any(|c| c == r.code()), "{} has no counter", r.code());
        }
    }
}
