//! The filter's side of jitgate-sidecar (docs/architecture.md §5, §6): the calls the filter makes and the
//! parsing of their answers. Every answer is untrusted input: bounded, and a malformed one is an
//! error the caller fails closed on.

use crate::config::sidecar::{CallerKey, Sidecar};
use serde::Deserialize;
use std::borrow::Cow;

/// Largest answer body the filter reads from the sidecar.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

pub const PATH_TOKEN: &str = "/v1/token";
pub const PATH_JWKS: &str = "/.well-known/jwks.json";
pub const PATH_REPLAY: &str = "/v1/replay";
pub const PATH_AUDIT: &str = "/v1/audit";
pub const PATH_REVOCATIONS: &str = "/v1/revocations";
pub const PATH_NONCE_KEY: &str = "/v1/dpop-nonce-key";

/// An HTTP call to the sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: &'static str,
    pub path: String,
    pub content_type: Option<&'static str>,
    pub body: Vec<u8>,
}

impl Call {
    pub fn get(path: impl Into<String>) -> Call {
        Call { method: "GET", path: path.into(), content_type: None, body: Vec::new() }
    }
    fn post(path: &str, content_type: &'static str, body: Vec<u8>) -> Call {
        Call { method: "POST", path: path.to_owned(), content_type: Some(content_type), body }
    }
}

/// What came back from a call: the status (`None` for a reset with no response) and the body.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub status: Option<u16>,
    pub body: &'a [u8],
}

impl Answer<'_> {
    fn ok(&self) -> bool {
        self.status == Some(200) && self.body.len() <= MAX_ANSWER_BYTES
    }
}

/// The RFC 8693 request for a route's scopes. A rule without scopes asks for none (the grant's
/// scopes are issued): an empty `scope` parameter is an invalid scope to the sidecar.
pub fn exchange_call(subject_token: &str, audience: &str, scopes: &[String], resource: &str) -> Call {
    let scope = scopes.join(" ");
    let mut pairs = vec![
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("subject_token", subject_token),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ("requested_token_type", "urn:ietf:params:oauth:token-type:access_token"),
        ("audience", audience),
    ];
    if !scope.is_empty() {
        pairs.push(("scope", &scope));
    }
    pairs.push(("resource", resource));
    Call::post(PATH_TOKEN, "application/x-www-form-urlencoded", form_urlencoded(&pairs))
}

fn form_urlencoded(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum::<usize>() * 2);
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        percent_encode(&mut out, k);
        out.push(b'=');
        percent_encode(&mut out, v);
    }
    out
}

fn percent_encode(out: &mut Vec<u8>, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else {
            out.push(b'%');
            out.extend_from_slice(jitgate_token::encoding::hex(&[b]).to_ascii_uppercase().as_bytes());
        }
    }
}

/// How the sidecar answered an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exchanged {
    Token(String),
    /// An access request exists and waits for approval: its id.
    Pending(String),
    /// Policy or grants do not allow it (RFC 8693 `invalid_scope` / `invalid_target`).
    Refused,
    /// The subject token itself was not accepted.
    SubjectRejected,
    /// No usable answer: timeout, reset, 5xx, malformed.
    Unavailable,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
    #[serde(default)]
    request_id: Option<String>,
}

pub fn parse_exchange(answer: Answer<'_>, max_token_bytes: usize) -> Exchanged {
    match answer.status {
        Some(200) if answer.ok() => match serde_json::from_slice::<TokenAnswer>(answer.body) {
            Ok(t) if !t.access_token.is_empty() && t.access_token.len() <= max_token_bytes => {
                Exchanged::Token(t.access_token)
            }
            _ => Exchanged::Unavailable,
        },
        Some(400) if answer.body.len() <= MAX_ANSWER_BYTES => {
            match serde_json::from_slice::<ErrorAnswer>(answer.body) {
                Ok(e) if e.error == "invalid_scope" || e.error == "invalid_target" => match e.request_id {
                    Some(id) if is_request_id(&id) => Exchanged::Pending(id),
                    Some(_) => Exchanged::Unavailable,
                    None => Exchanged::Refused,
                },
                // The sidecar answers invalid_request for a subject token it cannot verify.
                Ok(e) if e.error == "invalid_request" => Exchanged::SubjectRejected,
                _ => Exchanged::Unavailable,
            }
        }
        _ => Exchanged::Unavailable,
    }
}

/// Access request ids are echoed to clients: keep them short and plain.
fn is_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The cluster-mode replay check: `key` (hex) may pass once until `until`.
pub fn replay_call(key_hex: &str, until: u64) -> Call {
    let body = format!("{{\"key\":\"{key_hex}\",\"until\":{until}}}");
    Call::post(PATH_REPLAY, "application/json", body.into_bytes())
}

/// What the sidecar's replay ledger said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayAnswer {
    Fresh,
    Seen,
    /// Full of live keys (503 `ledger_full`).
    Full,
    /// No usable answer.
    Failed,
}

pub fn parse_replay(answer: Answer<'_>) -> ReplayAnswer {
    #[derive(Deserialize)]
    struct Fresh {
        fresh: bool,
    }
    #[derive(Deserialize)]
    struct Refused {
        error: String,
    }
    match answer.status {
        Some(200) if answer.ok() => match serde_json::from_slice::<Fresh>(answer.body) {
            Ok(Fresh { fresh: true }) => ReplayAnswer::Fresh,
            Ok(Fresh { fresh: false }) => ReplayAnswer::Seen,
            Err(_) => ReplayAnswer::Failed,
        },
        Some(503) if serde_json::from_slice::<Refused>(answer.body).is_ok_and(|r| r.error == "ledger_full") => {
            ReplayAnswer::Full
        }
        _ => ReplayAnswer::Failed,
    }
}

/// A batch of audit events (each already one JSON object) as a JSON array.
pub fn audit_call(events: &[String]) -> Call {
    let mut body = Vec::with_capacity(events.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
    body.push(b'[');
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(e.as_bytes());
    }
    body.push(b']');
    Call::post(PATH_AUDIT, "application/json", body)
}

/// What became of a shipped audit batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shipped {
    Accepted,
    /// The sidecar refused the batch as such (400, 413): retrying cannot help; it is dropped
    /// and counted.
    Refused,
    /// Not now (no answer, 5xx, 401 while a caller secret rotates, 429): retried.
    Retry,
}

pub fn shipped(answer: Answer<'_>) -> Shipped {
    match answer.status {
        Some(200) => Shipped::Accepted,
        Some(400 | 413 | 422) => Shipped::Refused,
        _ => Shipped::Retry,
    }
}

/// The fleet's DPoP nonce key from `GET /v1/dpop-nonce-key`.
pub fn parse_nonce_key(answer: Answer<'_>) -> Option<[u8; 32]> {
    #[derive(Deserialize)]
    struct Key {
        key: String,
    }
    let key: Key = serde_json::from_slice(answer.body).ok().filter(|_| answer.ok())?;
    let bytes = jitgate_token::encoding::b64_decode(key.key.as_bytes()).ok()?;
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

/// The `Authorization` value signing `call` as this filter, at `now_s` with a fresh `nonce`.
pub fn authorization(key: &CallerKey, call: &Call, now_s: u64, nonce: &[u8]) -> Option<String> {
    jitgate_token::caller_auth::authorization(
        &key.key_id,
        &key.secret,
        now_s,
        nonce,
        call.method,
        &call.path,
        &call.body,
    )
}

/// The request headers of `call`: pseudo-headers, content type and, when the filter signs its
/// calls, `authorization` at `now_s` with a fresh `nonce`. `None` if the signature cannot be
/// made (the sidecar would refuse the call, so it is not sent).
pub fn call_headers<'a>(
    sidecar: &'a Sidecar,
    call: &'a Call,
    now_s: u64,
    nonce: &[u8],
) -> Option<Vec<(&'static str, Cow<'a, str>)>> {
    let mut headers = vec![
        (":method", Cow::Borrowed(call.method)),
        (":path", Cow::Borrowed(call.path.as_str())),
        (":authority", Cow::Borrowed(sidecar.authority.as_str())),
    ];
    if let Some(ct) = call.content_type {
        headers.push(("content-type", Cow::Borrowed(ct)));
    }
    if let Some(key) = &sidecar.auth {
        headers.push(("authorization", Cow::Owned(authorization(key, call, now_s, nonce)?)));
    }
    Some(headers)
}

/// The JWKS body, if the answer carries one (parsed and checked by the caller).
pub fn jwks_body(answer: Answer<'_>) -> Option<&[u8]> {
    answer.ok().then_some(answer.body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn answer(status: u16, body: &str) -> Answer<'_> {
        Answer { status: Some(status), body: body.as_bytes() }
    }

    #[test]
    fn exchange_form_is_percent_encoded() {
        let call = exchange_call("a.b+c", "orders api", &["orders:write".into(), "x".into()], "http://h/p?q=1");
        let body = String::from_utf8(call.body).unwrap();
        assert!(body.contains("subject_token=a.b%2Bc"), "{body}");
        assert!(body.contains("audience=orders%20api"), "{body}");
        assert!(body.contains("scope=orders%3Awrite%20x"), "{body}");
        assert!(body.contains("resource=http%3A%2F%2Fh%2Fp%3Fq%3D1"), "{body}");
        assert_eq!(call.path, "/v1/token");
    }

    #[test]
    fn exchange_answers_map_to_outcomes() {
        assert_eq!(parse_exchange(answer(200, r#"{"access_token":"t.t.t"}"#), 100), Exchanged::Token("t.t.t".into()));
        assert_eq!(parse_exchange(answer(200, r#"{"access_token":""}"#), 100), Exchanged::Unavailable);
        assert_eq!(parse_exchange(answer(200, "not json"), 100), Exchanged::Unavailable);
        let pending = r#"{"error":"invalid_scope","request_id":"req-1","request_status":"pending"}"#;
        assert_eq!(parse_exchange(answer(400, pending), 100), Exchanged::Pending("req-1".into()));
        let odd_id = r#"{"error":"invalid_scope","request_id":"<script>"}"#;
        assert_eq!(parse_exchange(answer(400, odd_id), 100), Exchanged::Unavailable);
        assert_eq!(parse_exchange(answer(400, r#"{"error":"invalid_scope"}"#), 100), Exchanged::Refused);
        assert_eq!(parse_exchange(answer(400, r#"{"error":"invalid_request"}"#), 100), Exchanged::SubjectRejected);
        assert_eq!(parse_exchange(answer(503, "{}"), 100), Exchanged::Unavailable);
        assert_eq!(parse_exchange(Answer { status: None, body: b"" }, 100), Exchanged::Unavailable);
    }

    #[test]
    fn replay_answers() {
        assert_eq!(parse_replay(answer(200, r#"{"fresh":true}"#)), ReplayAnswer::Fresh);
        assert_eq!(parse_replay(answer(200, r#"{"fresh":false}"#)), ReplayAnswer::Seen);
        assert_eq!(parse_replay(answer(200, r#"{"fresh":"yes"}"#)), ReplayAnswer::Failed);
        assert_eq!(parse_replay(answer(504, "upstream request timeout")), ReplayAnswer::Failed);
        assert_eq!(parse_replay(answer(503, r#"{"error":"ledger_full"}"#)), ReplayAnswer::Full);
        assert_eq!(parse_replay(answer(503, r#"{"error":"temporarily_unavailable"}"#)), ReplayAnswer::Failed);
    }

    #[test]
    fn an_exchange_for_a_rule_without_scopes_asks_for_none() {
        let body = String::from_utf8(exchange_call("t", "api", &[], "http://h/p").body).unwrap();
        assert!(!body.contains("scope="), "{body}");
    }

    #[test]
    fn signed_calls_verify_with_the_shared_secret() {
        let key = CallerKey { key_id: "proxies".into(), secret: vec![3; 32] };
        let call = replay_call("ab", 99);
        let auth = authorization(&key, &call, 1000, &[1; 16]).unwrap();
        let signed = jitgate_token::caller_auth::parse(&auth).unwrap();
        assert!(signed.verify(&[3; 32], "POST", "/v1/replay", &call.body));
    }

    #[test]
    fn audit_batch_is_a_json_array() {
        let call = audit_call(&[r#"{"a":1}"#.into(), r#"{"b":2}"#.into()]);
        let v: serde_json::Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
    }
}
