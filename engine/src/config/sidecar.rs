//! The `sidecar` block of the plugin configuration: which of the sidecar's services the filter
//! uses, with every value bounded and every secret resolved at start.

use super::error::ConfigError;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSidecar {
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
pub(crate) fn resolve_secret(
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
    pub(crate) fn compile(self, env: &dyn Fn(&str) -> Option<String>) -> Result<Sidecar, ConfigError> {
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
