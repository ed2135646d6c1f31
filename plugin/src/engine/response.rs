//! Local responses (DESIGN §4): RFC 6750 challenges and a JSON body that never echoes the token.

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
}

/// Builds the response for a deny `reason`. `missing_scopes` is space-separated (403 only).
pub fn deny(reason: Reason, realm: &str, request_id: &str, missing_scopes: &str) -> LocalResponse {
    let code = reason.code();
    // (status, OAuth error code, whether a Bearer challenge carries that code)
    let (status, error, challenge_error) = match reason {
        Reason::MissingCredential | Reason::UnsupportedScheme => (401, "unauthorized", false),
        Reason::DuplicateAuthorization | Reason::MalformedAuthorization => (400, "invalid_request", true),
        Reason::UnnormalizedPath => (400, "invalid_request", false),
        Reason::NoMatchingRule => (403, "access_denied", false),
        Reason::InsufficientScope => (403, "insufficient_scope", true),
        Reason::Token(_) | Reason::UnsafeClaim | Reason::Replayed => (401, "invalid_token", true),
        Reason::LedgerFull | Reason::LedgerUnavailable => (503, "temporarily_unavailable", false),
        Reason::Public | Reason::Verified | Reason::DefaultAllow => (500, "server_error", false),
    };
    let mut headers = vec![("content-type", "application/json".to_owned()), ("cache-control", "no-store".to_owned())];
    if status == 503 {
        headers.push(("retry-after", "1".to_owned()));
    }
    if status == 401 || challenge_error {
        let mut c = format!("Bearer realm=\"{realm}\"");
        if challenge_error {
            c.push_str(&format!(", error=\"{error}\", error_description=\"{code}\""));
        }
        if reason == Reason::InsufficientScope {
            c.push_str(&format!(", scope=\"{missing_scopes}\""));
        }
        headers.push(("www-authenticate", c));
    }
    let body = serde_json::to_string(&Body { error, error_description: code, request_id }).unwrap_or_default();
    LocalResponse { status, headers, body }
}
