//! Why the JIT loop said no (requests, approvals, token exchange, revocation), in its own terms;
//! `error` says it over HTTP.

use crate::unavailable::Unavailable;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The request is malformed or asks for what this issuer does not serve: an OAuth error code
    /// (RFC 6749 §5.2, RFC 8693 §2.2.2: `invalid_request`, `invalid_scope`, ...) and why.
    Invalid(&'static str, String),
    /// Policy or ownership does not allow it.
    Forbidden(String),
    NotFound(String),
    /// The request was already decided or has expired.
    NotPending(String),
    /// This approver has approved the request already.
    AlreadyApproved,
    /// Another writer (a replica) changed it first; retry.
    ChangedConcurrently,
    /// No active grant yet: the access request `request_id` waits for approval.
    AwaitingApproval {
        request_id: String,
    },
    /// Over the per-minute limit on revoking one's own access.
    RateLimited(String),
    /// The store, the audit file or the keys failed; retry.
    Unavailable(String),
}

impl Refusal {
    pub fn invalid(code: &'static str, why: impl Into<String>) -> Refusal {
        Refusal::Invalid(code, why.into())
    }

    /// The error code said to the client and written to the audit trail.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Invalid(code, _) => code,
            Refusal::Forbidden(_) => "forbidden",
            Refusal::NotFound(_) => "not_found",
            Refusal::NotPending(_) => "not_pending",
            Refusal::AlreadyApproved => "already_approved",
            Refusal::ChangedConcurrently => "conflict",
            Refusal::AwaitingApproval { .. } => "invalid_scope",
            Refusal::RateLimited(_) => "rate_limited",
            Refusal::Unavailable(_) => "temporarily_unavailable",
        }
    }

    /// Why, as the client is told.
    pub fn description(&self) -> &str {
        match self {
            Refusal::Invalid(_, why)
            | Refusal::Forbidden(why)
            | Refusal::NotFound(why)
            | Refusal::NotPending(why)
            | Refusal::RateLimited(why)
            | Refusal::Unavailable(why) => why,
            Refusal::AlreadyApproved => "one approval per approver",
            Refusal::ChangedConcurrently => "changed concurrently; retry",
            Refusal::AwaitingApproval { .. } => "the access request is waiting for approval",
        }
    }
}

impl From<Unavailable> for Refusal {
    fn from(e: Unavailable) -> Refusal {
        Refusal::Unavailable(e.0)
    }
}
