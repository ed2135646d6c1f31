//! Approval notifications: webhooks when a request is created, approved or denied, when access is
//! revoked and when break-glass is used. A Slack-compatible incoming-webhook payload (blocks with a
//! link to the approval page) or a generic JSON payload, either signed with HMAC-SHA256
//! (`X-Jitgate-Signature: t=<unix>,v1=<hex>` over `"<t>.<body>"`).
//!
//! Delivery is off the request path: the API only offers the event to a bounded queue (a full
//! queue drops the notice and counts it; the decision itself is already in the store and the audit
//! chain), and one thread sends, retrying with exponential backoff. A receiver that is down or slow
//! delays nothing but other notices.

use crate::config::outbound_url_allowed;
use crate::metrics::NotificationCounters;
use crate::policy::Seconds;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

const ALL_KINDS: [Kind; 6] = [
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

    /// The notices an audit event gives rise to (a break-glass request is also a request).
    pub fn of_audit_event(event: &Value) -> Vec<Kind> {
        let break_glass = event.get("break_glass").and_then(Value::as_bool) == Some(true);
        match event.get("event").and_then(Value::as_str) {
            Some("grant.requested") if break_glass => vec![Kind::RequestCreated, Kind::BreakGlassUsed],
            Some("grant.requested") => vec![Kind::RequestCreated],
            Some("grant.approved") => vec![Kind::RequestApproved],
            Some("grant.denied") => vec![Kind::RequestDenied],
            Some("grant.expired") => vec![Kind::RequestExpired],
            Some("token.revoked") => vec![Kind::AccessRevoked],
            _ => Vec::new(),
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
const MAX_BACKOFF: Duration = Duration::from_secs(300);

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
    secret: Option<Vec<u8>>,
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
            let secret = w.secret_file.map(|f| crate::config::read_secret(&base.join(f))).transpose()?;
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

/// One notice: what happened, when, and the audit event that says so.
struct Notice {
    kind: Kind,
    ts: u64,
    event: Value,
}

/// Hands notices to the delivery thread.
pub struct Notifier {
    queue: Option<SyncSender<Notice>>,
    thread: Option<JoinHandle<()>>,
    counters: NotificationCounters,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").field("running", &self.queue.is_some()).finish()
    }
}

impl Notifier {
    /// No webhooks: every notice is ignored.
    pub fn off(counters: NotificationCounters) -> Notifier {
        Notifier { queue: None, thread: None, counters }
    }

    pub fn start(config: Notifications, counters: NotificationCounters) -> Result<Notifier, String> {
        let (queue, notices) = mpsc::sync_channel(config.queue);
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("jitgate-notify".to_owned())
            .spawn(move || Delivery::new(config, c).run(&notices))
            .map_err(|e| format!("notifications: cannot start the delivery thread: {e}"))?;
        Ok(Notifier { queue: Some(queue), thread: Some(thread), counters })
    }

    /// Offers the notices `event` gives rise to; never blocks.
    pub fn audit_event(&self, event: &Value, ts: u64) {
        let Some(queue) = &self.queue else { return };
        for kind in Kind::of_audit_event(event) {
            match queue.try_send(Notice { kind, ts, event: event.clone() }) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.counters.count("*", "dropped"),
            }
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        // The thread ends once the queue is closed and what is due now has been tried.
        drop(self.queue.take());
        if let Some(t) = self.thread.take() {
            drop(t.join());
        }
    }
}

/// A payload on its way to one webhook.
struct Attempt {
    hook: usize,
    body: Vec<u8>,
    id: String,
    tries: u32,
    due: Instant,
}

struct Delivery {
    config: Notifications,
    counters: NotificationCounters,
    agent: ureq::Agent,
    pending: VecDeque<Attempt>,
    next_id: u64,
}

/// Outcome of one HTTP attempt.
enum Sent {
    Delivered,
    /// A 4xx other than 408 and 429: sending it again would not help.
    Refused(u16),
    Failed(String),
}

impl Delivery {
    fn new(config: Notifications, counters: NotificationCounters) -> Delivery {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .new_agent();
        Delivery { config, counters, agent, pending: VecDeque::new(), next_id: 0 }
    }

    fn run(mut self, notices: &Receiver<Notice>) {
        loop {
            let wait = self.pending.iter().map(|a| a.due.saturating_duration_since(Instant::now())).min();
            let received = match wait {
                Some(w) => notices.recv_timeout(w),
                None => notices.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match received {
                Ok(notice) => self.accept(&notice),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // Closing down: what is due now gets its attempt, retries are abandoned.
                    self.send_due();
                    return;
                }
            }
            self.send_due();
        }
    }

    /// One attempt per webhook that wants the notice; waiting attempts are bounded by `queue`.
    fn accept(&mut self, notice: &Notice) {
        for (hook, w) in self.config.webhooks.iter().enumerate() {
            if !w.events.contains(&notice.kind) {
                continue;
            }
            if self.pending.len() >= self.config.queue {
                self.counters.count(&w.name, "dropped");
                continue;
            }
            self.next_id += 1;
            let id = format!("n-{}-{}", notice.ts, self.next_id);
            let body = payload(w.format, notice, &id, self.config.console_url.as_deref()).to_string().into_bytes();
            self.pending.push_back(Attempt { hook, body, id, tries: 0, due: Instant::now() });
        }
    }

    fn send_due(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<Attempt>, Vec<Attempt>) = self.pending.drain(..).partition(|a| a.due <= now);
        self.pending.extend(later);
        for mut a in due {
            let Some(w) = self.config.webhooks.get(a.hook) else { continue };
            let name = w.name.clone();
            match self.send(w, &a) {
                Sent::Delivered => self.counters.count(&name, "delivered"),
                Sent::Refused(status) => {
                    self.counters.count(&name, "refused");
                    eprintln!("jitgate-sidecar: webhook `{name}` refused notice {} with {status}; not retried", a.id);
                }
                Sent::Failed(why) if a.tries < self.config.retries => {
                    self.counters.count(&name, "retried");
                    let wait = self.config.backoff.saturating_mul(2u32.saturating_pow(a.tries)).min(MAX_BACKOFF);
                    eprintln!("jitgate-sidecar: webhook `{name}`: {why}; notice {} again in {wait:?}", a.id);
                    a.tries += 1;
                    a.due = Instant::now() + wait;
                    self.pending.push_back(a);
                }
                Sent::Failed(why) => {
                    self.counters.count(&name, "failed");
                    eprintln!("jitgate-sidecar: webhook `{name}`: {why}; notice {} given up", a.id);
                }
            }
        }
    }

    fn send(&self, w: &Webhook, a: &Attempt) -> Sent {
        let mut req = self
            .agent
            .post(&w.url)
            .header("content-type", "application/json")
            .header("user-agent", "jitgate-sidecar")
            .header("x-jitgate-delivery", &a.id);
        if let Some(secret) = &w.secret {
            let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
            req = req.header("x-jitgate-signature", &signature(secret, ts, &a.body));
        }
        match req.send(&a.body[..]) {
            Ok(resp) => {
                let status = resp.status().as_u16();
                match status {
                    200..=299 => Sent::Delivered,
                    408 | 429 => Sent::Failed(format!("status {status}")),
                    400..=499 => Sent::Refused(status),
                    _ => Sent::Failed(format!("status {status}")),
                }
            }
            Err(e) => Sent::Failed(e.to_string()),
        }
    }
}

/// `t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>." + body)>`.
pub fn signature(secret: &[u8], ts: u64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return String::new() };
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={ts},v1={hex}")
}

fn payload(format: Format, n: &Notice, id: &str, console: Option<&str>) -> Value {
    let grant = n.event.get("grant").and_then(Value::as_str);
    let link = console.map(|c| match grant {
        Some(g) => format!("{c}/requests/{g}"),
        None => format!("{c}/audit"),
    });
    match format {
        Format::Json => json!({"type": n.kind.name(), "id": id, "ts": n.ts, "event": n.event, "link": link}),
        Format::Slack => {
            let text = summary(n);
            let mut blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})];
            if let Some(url) = link {
                blocks.push(json!({"type": "actions", "elements": [{"type": "button",
                    "text": {"type": "plain_text", "text": "Open in the jitgate console"}, "url": url}]}));
            }
            json!({"text": text, "blocks": blocks})
        }
    }
}

/// One line a person reads in a chat channel. Slack's mrkdwn control characters in values are
/// replaced, so a justification cannot inject links or mentions.
fn summary(n: &Notice) -> String {
    let field = |k: &str| n.event.get(k).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
    let clean = |s: Option<String>| -> String {
        let s = s.unwrap_or_else(|| "?".to_owned());
        s.chars()
            .take(200)
            .map(|c| if matches!(c, '<' | '>' | '&' | '*' | '_' | '`' | '~') { ' ' } else { c })
            .collect()
    };
    let scopes = n
        .event
        .get("scopes")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "));
    let (sub, grant) = (clean(field("sub")), clean(field("grant")));
    match n.kind {
        Kind::RequestCreated => format!(
            "{sub} asks for {} for {} s: {} (request {grant})",
            clean(scopes),
            clean(field("duration_s")),
            clean(field("justification"))
        ),
        Kind::RequestApproved => {
            format!("{} approved request {grant} of {sub} ({})", clean(field("approver")), clean(scopes))
        }
        Kind::RequestDenied => {
            format!("{} denied request {grant} of {sub} ({})", clean(field("approver")), clean(scopes))
        }
        Kind::RequestExpired if field("stage").as_deref() == Some("pending") => {
            format!("request {grant} of {sub} ({}) expired undecided", clean(scopes))
        }
        Kind::RequestExpired => format!("the access of {sub} to {} ended (request {grant})", clean(scopes)),
        Kind::AccessRevoked => {
            format!("{} revoked {} {}", clean(field("by")), clean(field("kind")), clean(field("value")))
        }
        Kind::BreakGlassUsed => format!(":rotating_light: BREAK-GLASS: {sub} took {} (request {grant})", clean(scopes)),
    }
}
