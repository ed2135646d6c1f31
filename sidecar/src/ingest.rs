//! The events filters ship to `POST /v1/audit`: exactly the `access.*` schema of docs/architecture.md §7 (plus
//! `rule`), every field typed and bounded, unknown members refused. What is stored is this
//! struct serialized again with the authenticated caller added, never the caller's bytes, and
//! the only metric label taken from it is the event kind (one of two).

use serde::{Deserialize, Serialize};

/// Longest string field (the filter clips request-derived fields to 512 bytes).
const MAX_FIELD: usize = 512;
const MAX_SCOPES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessKind {
    #[serde(rename = "access.allow")]
    Allow,
    #[serde(rename = "access.deny")]
    Deny,
}

impl AccessKind {
    pub fn name(self) -> &'static str {
        match self {
            AccessKind::Allow => "access.allow",
            AccessKind::Deny => "access.deny",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayMode {
    None,
    SingleUse,
    Dpop,
}

/// One decision of a filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessEvent {
    pub ts: String,
    pub event: AccessKind,
    pub request_id: String,
    pub reason: String,
    pub status: u16,
    pub rule: Option<String>,
    pub sub: Option<String>,
    pub jti_hash: Option<String>,
    pub grant: Option<String>,
    pub scopes_required: Vec<String>,
    pub scopes_granted: Option<String>,
    pub method: String,
    pub authority: String,
    pub path: String,
    pub client: Option<String>,
    pub token_exp: Option<u64>,
    pub replay: ReplayMode,
    pub break_glass: bool,
    pub latency_us: u64,
}

/// What the audit trail stores: the event and who shipped it.
#[derive(Debug, Serialize)]
pub struct Stored<'a> {
    #[serde(flatten)]
    pub event: &'a AccessEvent,
    pub caller: &'a str,
}

fn text(name: &str, v: &str, max: usize) -> Result<(), String> {
    if v.len() > max || v.chars().any(char::is_control) {
        return Err(format!("`{name}`: at most {max} bytes, no control characters"));
    }
    Ok(())
}

impl AccessEvent {
    /// The bounds serde cannot say.
    pub fn validate(&self) -> Result<(), String> {
        if rfc3339_secs(&self.ts).is_none() || self.ts.len() > 40 {
            return Err("`ts`: an RFC 3339 UTC time".to_owned());
        }
        let id_ok = self.request_id == "-"
            || (!self.request_id.is_empty()
                && self.request_id.len() <= 128
                && self.request_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)));
        if !id_ok {
            return Err("`request_id`: [A-Za-z0-9._:-]{1,128} or -".to_owned());
        }
        if self.reason.is_empty()
            || self.reason.len() > 64
            || !self.reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            return Err("`reason`: a reason code, [a-z_]{1,64}".to_owned());
        }
        if !(100..=599).contains(&self.status) {
            return Err("`status`: an HTTP status".to_owned());
        }
        if self.jti_hash.as_ref().is_some_and(|h| h.len() != 32 || !h.bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err("`jti_hash`: 32 hex digits".to_owned());
        }
        if self.scopes_required.len() > MAX_SCOPES {
            return Err(format!("`scopes_required`: at most {MAX_SCOPES}"));
        }
        for s in &self.scopes_required {
            text("scopes_required", s, 128)?;
        }
        for (name, v, max) in [
            ("rule", self.rule.as_deref(), 64),
            ("sub", self.sub.as_deref(), MAX_FIELD),
            ("grant", self.grant.as_deref(), MAX_FIELD),
            ("scopes_granted", self.scopes_granted.as_deref(), 4096),
            ("method", Some(self.method.as_str()), MAX_FIELD),
            ("authority", Some(self.authority.as_str()), MAX_FIELD),
            ("path", Some(self.path.as_str()), MAX_FIELD),
            ("client", self.client.as_deref(), MAX_FIELD),
        ] {
            text(name, v.unwrap_or_default(), max)?;
        }
        Ok(())
    }
}

/// Seconds of an RFC 3339 UTC timestamp as the filter writes it (`2026-11-22T10:00:00.123Z`).
pub fn rfc3339_secs(ts: &str) -> Option<u64> {
    let num = |r: std::ops::Range<usize>| ts.get(r).and_then(|s| s.parse::<u64>().ok());
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant), the inverse of the filter's conversion.
    let y = if m <= 2 { y.checked_sub(1)? } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d.checked_sub(1)?;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use serde_json::json;

    fn good() -> serde_json::Value {
        json!({"ts": "2026-11-22T10:00:00.123Z", "event": "access.allow", "request_id": "r-1", "reason": "verified",
            "status": 200, "rule": "orders", "sub": "alice", "jti_hash": "0123456789abcdef0123456789abcdef",
            "grant": "g-1", "scopes_required": ["orders:read"], "scopes_granted": "orders:read", "method": "GET",
            "authority": "api", "path": "/orders/1", "client": "127.0.0.1:5555", "token_exp": 1, "replay": "none",
            "break_glass": false, "latency_us": 12})
    }

    fn parse(v: serde_json::Value) -> Result<AccessEvent, String> {
        let e: AccessEvent = serde_json::from_value(v).map_err(|e| e.to_string())?;
        e.validate().map(|()| e)
    }

    #[test]
    fn only_the_access_schema_is_accepted() {
        assert!(parse(good()).is_ok());
        let with = |k: &str, v: serde_json::Value| {
            let mut e = good();
            e[k] = v;
            e
        };
        for bad in [
            with("event", json!("grant.approved")),
            with("event", json!("access.whatever")),
            with("extra", json!(1)),
            with("reason", json!("Robert'); DROP")),
            with("status", json!(42)),
            with("ts", json!("yesterday")),
            with("path", json!("x".repeat(513))),
            with("sub", json!("a\nb")),
            with("jti_hash", json!("zz")),
            with("replay", json!("twice")),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_round_trip() {
        assert_eq!(rfc3339_secs("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(rfc3339_secs("2000-02-29T00:00:00.123Z"), Some(951_782_400));
        assert_eq!(rfc3339_secs("2026-11-22T00:00:00Z"), Some(1_795_305_600));
        assert_eq!(rfc3339_secs("garbage"), None);
        assert_eq!(rfc3339_secs("2026-13-22T00:00:00Z"), None);
    }
}
