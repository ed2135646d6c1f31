//! The `notifications` block: which webhooks hear about which approval events, how they are
//! reached and signed. `notify` delivers.

use crate::outbound::outbound_url_allowed;
use crate::policy::Seconds;
use crate::secret::read_secret;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a webhook can be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Kind {
    #[serde(rename = "request.created")]
    RequestCreated,
    #[serde(rename = "request.approved")]
    RequestApproved,
    #[serde(rename = "request.denied")]
    RequestDenied,
    /// Undecided past the policy's `pending_ttl`, or an approved grant's time is up.
    #[serde(rename = "request.expired")]
    RequestExpired,
    #[serde(rename = "access.revoked")]
    AccessRevoked,
    #[serde(rename = "break_glass.used")]
    BreakGlassUsed,
}

pub const ALL_KINDS: [Kind; 6] = [
    Kind::RequestCreated,
    Kind::RequestApproved,
    Kind::RequestDenied,
    Kind::RequestExpired,
    Kind::AccessRevoked,
    Kind::BreakGlassUsed,
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::RequestCreated => "request.created",
            Kind::RequestApproved => "request.approved",
            Kind::RequestDenied => "request.denied",
            Kind::RequestExpired => "request.expired",
            Kind::AccessRevoked => "access.revoked",
            Kind::BreakGlassUsed => "break_glass.used",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Slack incoming-webhook payload (`text` and `blocks`).
    Slack,
    /// `{"type", "id", "ts", "event", "link"}`; requires a secret.
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotifications {
    /// Base URL of the console: notices link to `<console_url>/requests/<id>`.
    #[serde(default)]
    console_url: Option<String>,
    /// Notices waiting at most (beyond: dropped and counted).
    #[serde(default = "default_queue")]
    queue: usize,
    #[serde(default = "default_timeout")]
    timeout: Seconds,
    /// Attempts after the first, each after twice the previous wait.
    #[serde(default = "default_retries")]
    retries: u32,
    #[serde(default = "default_backoff_ms")]
    backoff_ms: u64,
    webhooks: Vec<RawWebhook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    /// Names the webhook in metrics and logs: `[a-z0-9_-]{1,32}`, unique.
    name: String,
    url: String,
    format: Format,
    /// HMAC-SHA256 key (base64url, at least 32 bytes), relative to the configuration file.
    #[serde(default)]
    secret_file: Option<PathBuf>,
    /// Which notices this webhook gets (default: all).
    #[serde(default)]
    events: Option<Vec<Kind>>,
}

fn default_queue() -> usize {
    1000
}
fn default_timeout() -> Seconds {
    Seconds(5)
}
fn default_retries() -> u32 {
    5
}
fn default_backoff_ms() -> u64 {
    500
}

const MAX_WEBHOOKS: usize = 16;
const MAX_QUEUE: usize = 100_000;

/// The checked `notifications` block.
#[derive(Debug, Clone)]
pub struct Notifications {
    pub console_url: Option<String>,
    pub queue: usize,
    pub timeout: Duration,
    pub retries: u32,
    pub backoff: Duration,
    pub webhooks: Vec<Webhook>,
}

#[derive(Clone)]
pub struct Webhook {
    pub name: String,
    pub url: String,
    pub format: Format,
    /// The HMAC-SHA256 key notices are signed with.
    pub secret: Option<Vec<u8>>,
    pub events: Vec<Kind>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("signed", &self.secret.is_some())
            .field("events", &self.events)
            .finish()
    }
}

impl RawNotifications {
    /// Checks the block; paths are relative to `base`, the configuration file's directory.
    pub fn compile(self, base: &Path) -> Result<Notifications, String> {
        let problem = |m: String| format!("notifications: {m}");
        if self.webhooks.is_empty() || self.webhooks.len() > MAX_WEBHOOKS {
            return Err(problem(format!("give 1 to {MAX_WEBHOOKS} webhooks")));
        }
        if !(1..=MAX_QUEUE).contains(&self.queue) {
            return Err(problem(format!("queue must be 1..={MAX_QUEUE}")));
        }
        if !(1..=60).contains(&self.timeout.0) || self.retries > 20 || !(10..=60_000).contains(&self.backoff_ms) {
            return Err(problem("timeout 1..=60 s, retries 0..=20, backoff_ms 10..=60000".to_owned()));
        }
        if let Some(u) = &self.console_url {
            if !outbound_url_allowed(u) || u.len() > 512 {
                return Err(problem("console_url must be https (plain http only to this machine)".to_owned()));
            }
        }
        let mut webhooks = Vec::new();
        for w in self.webhooks {
            let named = !w.name.is_empty()
                && w.name.len() <= 32
                && w.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
            if !named || webhooks.iter().any(|o: &Webhook| o.name == w.name) {
                return Err(problem(format!("webhook name `{}`: [a-z0-9_-]{{1,32}}, unique", w.name)));
            }
            if !outbound_url_allowed(&w.url) || w.url.len() > 2048 {
                return Err(problem(format!(
                    "webhook `{}`: url must be https (plain http only to 127.0.0.1, ::1 or localhost)",
                    w.name
                )));
            }
            let secret = w.secret_file.map(|f| read_secret(&base.join(f))).transpose()?;
            if w.format == Format::Json && secret.is_none() {
                return Err(problem(format!("webhook `{}`: format json needs a secret_file (it is signed)", w.name)));
            }
            let events = w.events.unwrap_or_else(|| ALL_KINDS.to_vec());
            webhooks.push(Webhook { name: w.name, url: w.url, format: w.format, secret, events });
        }
        Ok(Notifications {
            console_url: self.console_url.map(|u| u.trim_end_matches('/').to_owned()),
            queue: self.queue,
            timeout: Duration::from_secs(self.timeout.0),
            retries: self.retries,
            backoff: Duration::from_millis(self.backoff_ms),
            webhooks,
        })
    }
}
