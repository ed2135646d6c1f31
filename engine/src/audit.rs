//! The audit event (docs/architecture.md §7): one JSON line per decision, never the raw token.

pub use jitgate_token::claims::jti_hash;
use serde::Serialize;
use std::collections::VecDeque;

/// Prefix of every audit line in the proxy log.
pub const AUDIT_PREFIX: &str = "jitgate.audit ";

/// Longest request-derived string copied into an event.
const MAX_FIELD_BYTES: usize = 512;

#[derive(Debug, Serialize, Default)]
pub struct AuditEvent<'a> {
    pub ts: String,
    pub event: &'static str,
    pub request_id: &'a str,
    pub reason: &'static str,
    pub status: u32,
    pub rule: Option<&'a str>,
    pub sub: Option<&'a str>,
    pub jti_hash: Option<String>,
    pub grant: Option<&'a str>,
    pub scopes_required: &'a [String],
    pub scopes_granted: Option<&'a str>,
    pub method: &'a str,
    pub authority: &'a str,
    /// Without the query string: queries can carry secrets.
    pub path: &'a str,
    pub client: Option<&'a str>,
    pub token_exp: Option<u64>,
    pub replay: &'static str,
    pub break_glass: bool,
    pub latency_us: u64,
}

impl AuditEvent<'_> {
    /// Serialized once into one buffer: this runs on every request.
    pub fn to_line(&self) -> String {
        let mut line = Vec::with_capacity(640);
        line.extend_from_slice(AUDIT_PREFIX.as_bytes());
        if serde_json::to_writer(&mut line, self).is_err() {
            line.truncate(AUDIT_PREFIX.len());
            line.extend_from_slice(b"{}");
        }
        // serde_json writes UTF-8 only; the fallback is never taken.
        String::from_utf8(line).unwrap_or_default()
    }
}

/// Audit lines waiting to be shipped to the sidecar (prefix included: the line written to the log
/// is moved here, not copied). Bounded: when full, the newest event is refused and the caller
/// counts it as dropped.
#[derive(Debug)]
pub struct AuditQueue {
    lines: VecDeque<String>,
    capacity: usize,
}

impl AuditQueue {
    pub fn new(capacity: usize) -> AuditQueue {
        AuditQueue { lines: VecDeque::new(), capacity }
    }

    /// False when the queue is full and `line` was dropped.
    pub fn push(&mut self, line: String) -> bool {
        if self.lines.len() >= self.capacity {
            return false;
        }
        self.lines.push_back(line);
        true
    }

    /// The oldest events, at most `max` of them and about `max_bytes` in all, as JSON objects.
    pub fn take(&mut self, max: usize, max_bytes: usize) -> Vec<String> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while batch.len() < max && bytes < max_bytes {
            let Some(mut line) = self.lines.pop_front() else { break };
            if line.starts_with(AUDIT_PREFIX) {
                line.drain(..AUDIT_PREFIX.len());
            }
            bytes += line.len();
            batch.push(line);
        }
        batch
    }

    /// A batch that could not be shipped goes back in front, in order; returns how many events
    /// no longer fit and were dropped.
    pub fn put_back(&mut self, batch: Vec<String>) -> usize {
        let room = self.capacity.saturating_sub(self.lines.len());
        let dropped = batch.len().saturating_sub(room);
        // Keep the oldest: they are the ones a reader of the trail would miss first.
        for line in batch.into_iter().take(room).rev() {
            self.lines.push_front(line);
        }
        dropped
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// Truncates to at most `MAX_FIELD_BYTES` on a character boundary.
pub fn clip(s: &str) -> &str {
    if s.len() <= MAX_FIELD_BYTES {
        return s;
    }
    let mut end = MAX_FIELD_BYTES;
    while !s.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    s.get(..end).unwrap_or_default()
}

/// RFC 3339 UTC timestamp with milliseconds, from Unix nanoseconds.
pub fn rfc3339(unix_nanos: u64) -> String {
    let secs = unix_nanos / 1_000_000_000;
    let millis = (unix_nanos / 1_000_000) % 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = jitgate_token::civil::from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123_000_000), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_795_305_600_000_000_000), "2026-11-22T00:00:00.000Z");
    }

    #[test]
    fn audit_queue_is_bounded_and_keeps_order_across_a_retry() {
        let mut q = AuditQueue::new(3);
        for i in 0..4 {
            let kept = q.push(format!("{AUDIT_PREFIX}{{\"n\":{i}}}"));
            assert_eq!(kept, i < 3, "event {i}");
        }
        let batch = q.take(2, usize::MAX);
        assert_eq!(batch, vec![r#"{"n":0}"#.to_owned(), r#"{"n":1}"#.to_owned()], "prefix stripped");
        assert!(q.push("x".into()));
        assert_eq!(q.put_back(batch), 1, "one slot free: the second event no longer fits");
        assert_eq!(q.take(9, usize::MAX), vec![r#"{"n":0}"#.to_owned(), r#"{"n":2}"#.to_owned(), "x".to_owned()]);
        assert!(q.is_empty());
    }

    #[test]
    fn clip_respects_char_boundaries() {
        let s = "é".repeat(400);
        let c = clip(&s);
        assert!(c.len() <= 512 && c.chars().all(|ch| ch == 'é'));
    }
}
