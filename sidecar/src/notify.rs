//! Approval notifications: webhooks when a request is created, approved or denied, when access is
//! revoked and when break-glass is used. A Slack-compatible incoming-webhook payload (blocks with a
//! link to the approval page) or a generic JSON payload, either signed with HMAC-SHA256
//! (`X-Jitgate-Signature: t=<unix>,v1=<hex>` over `"<t>.<body>"`).
//!
//! Delivery is off the request path: the API only offers the event to a bounded queue (a full
//! queue drops the notice and counts it; the decision itself is already in the store and the audit
//! chain), and one thread sends, retrying with exponential backoff. A receiver that is down or slow
//! delays nothing but other notices.

use crate::config::notifications::{Format, Kind, Notifications, Webhook};
use crate::metrics::NotificationCounters;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The notices an audit event gives rise to (a break-glass request is also a request).
fn kinds_of(event: &Value) -> Vec<Kind> {
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

const MAX_BACKOFF: Duration = Duration::from_secs(300);

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
        for kind in kinds_of(event) {
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
