//! The filter's side of jitgate-sidecar (DESIGN §5, §6): configuration, the calls the filter makes
//! and the parsing of their answers. Every answer is untrusted input: bounded, and a malformed one
//! is an error the caller fails closed on.

use super::config::ConfigError;
use serde::Deserialize;

/// Largest answer body the filter reads from the sidecar.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

pub const PATH_TOKEN: &str = "/v1/token";
pub const PATH_JWKS: &str = "/.well-known/jwks.json";
pub const PATH_REPLAY: &str = "/v1/replay";
pub const PATH_AUDIT: &str = "/v1/audit";
pub const PATH_REVOCATIONS: &str = "/v1/revocations";
pub const PATH_NONCE_KEY: &str = "/v1/dpop-nonce-key";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSidecar {
    cluster: String,
    #[serde(default = "default_authority")]
    authority: String,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u32,
    #[serde(default)]
    jwks: Option<RawJwks>,
    #[serde(default)]
    revocations: Option<RawRevocations>,
    #[serde(default)]
    exchange: Option<RawExchange>,
    #[serde(default)]
    audit: Option<RawAudit>,
    /// How the filter proves to the sidecar that it is one of this deployment's filters.
    #[serde(default)]
    auth: Option<RawAuth>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    key_id: String,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    secret_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwks {
    #[serde(default = "default_refresh_s")]
    refresh_s: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRevocations {
    #[serde(default = "default_poll_ms")]
    poll_ms: u64,
    #[serde(default = "default_fail_closed_after_s")]
    fail_closed_after_s: u64,
    #[serde(default = "default_max_revocations")]
    max_entries: usize,
    #[serde(default = "default_page_size")]
    page_size: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExchange {
    #[serde(default = "default_subject_header")]
    subject_header: String,
    #[serde(default)]
    return_token: bool,
    #[serde(default = "default_exchange_cache")]
    cache_entries: usize,
    #[serde(default = "default_refresh_before_s")]
    refresh_before_s: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    #[serde(default = "default_batch")]
    batch_events: usize,
    #[serde(default = "default_buffer")]
    buffer_events: usize,
    #[serde(default = "default_flush_ms")]
    flush_ms: u64,
}

fn default_authority() -> String {
    "jitgate-sidecar".into()
}
fn default_timeout_ms() -> u32 {
    1000
}
fn default_refresh_s() -> u64 {
    60
}
fn default_poll_ms() -> u64 {
    1000
}
fn default_fail_closed_after_s() -> u64 {
    10
}
fn default_max_revocations() -> usize {
    1_000_000
}
fn default_page_size() -> usize {
    2000
}
fn default_subject_header() -> String {
    "x-jit-subject-token".into()
}
fn default_exchange_cache() -> usize {
    1024
}
fn default_refresh_before_s() -> u64 {
    30
}
fn default_batch() -> usize {
    200
}
fn default_buffer() -> usize {
    10_000
}
fn default_flush_ms() -> u64 {
    1000
}

/// The compiled `sidecar` block: which of the sidecar's services the filter uses.
#[derive(Debug, Clone)]
pub struct Sidecar {
    /// Envoy cluster the calls go to.
    pub cluster: String,
    pub authority: String,
    pub timeout_ms: u32,
    /// Fetch the JWKS from the sidecar every this many seconds (instead of an inline `jwks`).
    pub jwks_refresh_s: Option<u64>,
    pub revocations: Option<RevocationPolling>,
    pub exchange: Option<Exchange>,
    pub audit: Option<AuditShipping>,
    pub auth: Option<CallerKey>,
}

/// The caller secret this filter signs its sidecar calls with (`jitgate_token::caller_auth`).
#[derive(Clone)]
pub struct CallerKey {
    pub key_id: String,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for CallerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerKey").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RevocationPolling {
    pub poll_ms: u64,
    /// Protected routes answer 503 once no poll has reached the feed's head for this long.
    pub fail_closed_after_s: u64,
    /// Most revocations this VM holds; a feed beyond it fails closed (nothing is forgotten).
    pub max_entries: usize,
    /// Entries asked for per poll; more pages are fetched at once.
    pub page_size: usize,
}

#[derive(Debug, Clone)]
pub struct Exchange {
    /// Lower-case name of the header carrying the subject (identity) token.
    pub subject_header: String,
    /// Send the issued token back to the client in `x-jit-token`.
    pub return_token: bool,
    pub cache_entries: usize,
    /// An issued token is reused until this many seconds before its `exp`.
    pub refresh_before_s: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct AuditShipping {
    pub batch_events: usize,
    /// Events waiting to be shipped; beyond it new events are dropped and counted.
    pub buffer_events: usize,
    pub flush_ms: u64,
}

fn err(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { field: format!("sidecar.{field}"), message: message.into() }
}

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(field: &str, v: T, lo: T, hi: T) -> Result<T, ConfigError> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(err(field, format!("must be {lo} to {hi}")))
    }
}

/// Envoy cluster names and authorities: printable ASCII without spaces.
fn check_name(field: &str, v: &str) -> Result<(), ConfigError> {
    if v.is_empty() || v.len() > 255 || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(err(field, "must be 1 to 255 printable characters without spaces"));
    }
    Ok(())
}

/// A secret given inline (`secret`, base64url) or by the name of an environment variable of the
/// VM (`secret_env`, e.g. Envoy's `vm_config.environment_variables`), exactly one, >= 32 bytes.
pub(super) fn resolve_secret(
    field: &str,
    secret: Option<String>,
    secret_env: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<u8>, ConfigError> {
    let problem = |m: &str| ConfigError { field: field.to_owned(), message: m.to_owned() };
    let text = match (secret, secret_env) {
        (Some(s), None) => s,
        (None, Some(name)) => {
            let name_ok =
                !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !name_ok {
                return Err(problem("secret_env: an environment variable name"));
            }
            env(&name).ok_or_else(|| problem(&format!("secret_env: `{name}` is not set in the VM's environment")))?
        }
        _ => return Err(problem("give exactly one of secret and secret_env")),
    };
    let bytes = jitgate_token::encoding::b64_decode(text.trim().as_bytes())
        .map_err(|_| problem("the secret is not unpadded base64url"))?;
    if bytes.len() < 32 || bytes.len() > 1024 {
        return Err(problem("the secret must be 32 to 1024 bytes"));
    }
    Ok(bytes)
}

impl RawSidecar {
    pub(super) fn compile(self, env: &dyn Fn(&str) -> Option<String>) -> Result<Sidecar, ConfigError> {
        check_name("cluster", &self.cluster)?;
        check_name("authority", &self.authority)?;
        let timeout_ms = in_range("timeout_ms", self.timeout_ms, 10, 30_000)?;
        let jwks_refresh_s = match self.jwks {
            Some(j) => Some(in_range("jwks.refresh_s", j.refresh_s, 1, 86_400)?),
            None => None,
        };
        let revocations = match self.revocations {
            Some(r) => {
                let poll_ms = in_range("revocations.poll_ms", r.poll_ms, 100, 60_000)?;
                let fail_closed_after_s =
                    in_range("revocations.fail_closed_after_s", r.fail_closed_after_s, 1, 86_400)?;
                if fail_closed_after_s.saturating_mul(1000) < poll_ms.saturating_mul(2) {
                    return Err(err("revocations.fail_closed_after_s", "must cover at least two polls"));
                }
                let max_entries = in_range("revocations.max_entries", r.max_entries, 1, 4_000_000)?;
                let page_size = in_range("revocations.page_size", r.page_size, 1, 4000)?;
                Some(RevocationPolling { poll_ms, fail_closed_after_s, max_entries, page_size })
            }
            None => None,
        };
        let exchange = match self.exchange {
            Some(x) => {
                let h = x.subject_header.to_ascii_lowercase();
                if h.is_empty()
                    || h.len() > 64
                    || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    || h == "authorization"
                {
                    return Err(err(
                        "exchange.subject_header",
                        "a header name (letters, digits, '-'), not authorization",
                    ));
                }
                Some(Exchange {
                    subject_header: h,
                    return_token: x.return_token,
                    cache_entries: in_range("exchange.cache_entries", x.cache_entries, 0, 65_536)?,
                    refresh_before_s: in_range("exchange.refresh_before_s", x.refresh_before_s, 0, 3600)?,
                })
            }
            None => None,
        };
        let audit = match self.audit {
            Some(a) => Some(AuditShipping {
                batch_events: in_range("audit.batch_events", a.batch_events, 1, 1000)?,
                buffer_events: in_range("audit.buffer_events", a.buffer_events, 1, 1_000_000)?,
                flush_ms: in_range("audit.flush_ms", a.flush_ms, 100, 60_000)?,
            }),
            None => None,
        };
        let auth = match self.auth {
            Some(a) => {
                if !jitgate_token::caller_auth::valid_id(&a.key_id) {
                    return Err(err("auth.key_id", "1 to 64 of [A-Za-z0-9._-]"));
                }
                Some(CallerKey {
                    key_id: a.key_id,
                    secret: resolve_secret("sidecar.auth", a.secret, a.secret_env, env)?,
                })
            }
            None => None,
        };
        Ok(Sidecar {
            cluster: self.cluster,
            authority: self.authority,
            timeout_ms,
            jwks_refresh_s,
            revocations,
            exchange,
            audit,
            auth,
        })
    }
}

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
