//! Local responses (docs/architecture.md §4): RFC 6750 challenges and a JSON body that never echoes the token.

use super::reason::Reason;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    error_description: &'a str,
    request_id: &'a str,
    /// Exchange refused until an approver decides: the access request to approve.
    #[serde(skip_serializing_if = "Option::is_none")]
    access_request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    approval_required: bool,
}

/// What the challenge of a deny needs besides the reason.
#[derive(Debug, Clone, Copy, Default)]
pub struct Challenge<'a> {
    /// Space-separated scopes the token lacks (403 only).
    pub missing_scopes: &'a str,
    /// The rule wants DPoP: challenge with the `DPoP` scheme (RFC 9449 §7.1).
    pub dpop: bool,
    /// A fresh server nonce for `use_dpop_nonce` (sent as the one `DPoP-Nonce` header).
    pub nonce: Option<&'a str>,
    /// The pending access request of `approval_pending`.
    pub access_request: Option<&'a str>,
    /// Where the protected resource metadata of the route is (RFC 9728 §5.1).
    pub resource_metadata: Option<&'a str>,
}

/// A protected resource metadata document (RFC 9728 §3.2): public, cacheable, readable from any
/// origin (browser-based clients discover it too).
pub fn metadata(body: &str) -> LocalResponse {
    let headers = vec![
        ("content-type", "application/json".to_owned()),
        ("cache-control", "public, max-age=300".to_owned()),
        ("access-control-allow-origin", "*".to_owned()),
    ];
    LocalResponse { status: 200, headers, body: body.to_owned() }
}

/// Builds the response for a deny `reason`.
pub fn deny(reason: Reason, realm: &str, request_id: &str, c: Challenge<'_>) -> LocalResponse {
    let code = reason.code();
    // (status, OAuth error code, whether the challenge carries that code)
    let (status, error, challenge_error) = match reason {
        Reason::MissingCredential | Reason::UnsupportedScheme => (401, "unauthorized", false),
        Reason::DuplicateAuthorization | Reason::MalformedAuthorization => (400, "invalid_request", true),
        Reason::UnnormalizedPath => (400, "invalid_request", false),
        Reason::NoMatchingRule => (403, "access_denied", false),
        Reason::InsufficientScope | Reason::ApprovalPending | Reason::ExchangeRefused => {
            (403, "insufficient_scope", true)
        }
        Reason::Token(_)
        | Reason::UnsafeClaim
        | Reason::Replayed
        | Reason::DpopRequired
        | Reason::DpopUnboundToken
        | Reason::Revoked
        | Reason::SubjectRejected => (401, "invalid_token", true),
        Reason::Dpop(_) => (401, "invalid_dpop_proof", true),
        Reason::UseDpopNonce => (401, "use_dpop_nonce", true),
        Reason::LedgerFull
        | Reason::LedgerUnavailable
        | Reason::RevocationStale
        | Reason::KeysUnavailable
        | Reason::SidecarUnavailable => (503, "temporarily_unavailable", false),
        Reason::Public | Reason::Verified | Reason::DefaultAllow | Reason::ResourceMetadata => {
            (500, "server_error", false)
        }
    };
    let mut headers = vec![("content-type", "application/json".to_owned()), ("cache-control", "no-store".to_owned())];
    if status == 503 {
        headers.push(("retry-after", "1".to_owned()));
    }
    let dpop = c.dpop || matches!(reason, Reason::Dpop(_) | Reason::UseDpopNonce | Reason::DpopUnboundToken);
    if status == 401 || challenge_error {
        let mut ch = if dpop { format!("DPoP realm=\"{realm}\"") } else { format!("Bearer realm=\"{realm}\"") };
        if challenge_error {
            ch.push_str(&format!(", error=\"{error}\", error_description=\"{code}\""));
        }
        if matches!(reason, Reason::InsufficientScope | Reason::ApprovalPending | Reason::ExchangeRefused) {
            ch.push_str(&format!(", scope=\"{}\"", c.missing_scopes));
        }
        if dpop {
            ch.push_str(&format!(", algs=\"{}\"", jitgate_token::dpop::PROOF_ALGS));
        }
        if let Some(url) = c.resource_metadata {
            ch.push_str(&format!(", resource_metadata=\"{url}\""));
        }
        headers.push(("www-authenticate", ch));
    }
    if let (Reason::UseDpopNonce, Some(n)) = (reason, c.nonce) {
        headers.push(("dpop-nonce", n.to_owned()));
    }
    let access_request_id = c.access_request.filter(|_| reason == Reason::ApprovalPending);
    let approval_required = access_request_id.is_some();
    let body = serde_json::to_string(&Body {
        error,
        error_description: code,
        request_id,
        access_request_id,
        approval_required,
    })
    .unwrap_or_default();
    LocalResponse { status, headers, body }
}
