//! The audit event (DESIGN §7): one JSON line per decision, never the raw token.

pub use jitgate_token::claims::jti_hash;
use serde::Serialize;

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
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm for the proleptic
/// Gregorian calendar, restricted to dates after the epoch.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
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
    fn clip_respects_char_boundaries() {
        let s = "é".repeat(400);
        let c = clip(&s);
        assert!(c.len() <= 512 && c.chars().all(|ch| ch == 'é'));
    }
}
