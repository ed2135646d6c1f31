//! The events filters ship to `POST /v1/audit`: exactly the `access.*` schema of docs/architecture.md §7 (plus
//! `rule`), every field typed and bounded, unknown members refused. What is stored is this
//! struct serialized again with the authenticated caller added, never the caller's bytes, and
//! the only metric label taken from it is the event kind (one of two).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;

/// A string of an event, borrowed from the request body when it has no escapes (most do not):
/// a batch of 200 events is read without an allocation per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

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
pub struct AccessEvent<'a> {
    #[serde(borrow)]
    pub ts: Text<'a>,
    pub event: AccessKind,
    #[serde(borrow)]
    pub request_id: Text<'a>,
    #[serde(borrow)]
    pub reason: Text<'a>,
    pub status: u16,
    #[serde(borrow)]
    pub rule: Option<Text<'a>>,
    #[serde(borrow)]
    pub sub: Option<Text<'a>>,
    #[serde(borrow)]
    pub jti_hash: Option<Text<'a>>,
    #[serde(borrow)]
    pub grant: Option<Text<'a>>,
    #[serde(borrow)]
    pub scopes_required: Vec<Text<'a>>,
    #[serde(borrow)]
    pub scopes_granted: Option<Text<'a>>,
    #[serde(borrow)]
    pub method: Text<'a>,
    #[serde(borrow)]
    pub authority: Text<'a>,
    #[serde(borrow)]
    pub path: Text<'a>,
    #[serde(borrow)]
    pub client: Option<Text<'a>>,
    pub token_exp: Option<u64>,
    pub replay: ReplayMode,
    pub break_glass: bool,
    pub latency_us: u64,
}

/// What the audit trail stores: the event and who shipped it.
#[derive(Debug, Serialize)]
pub struct Stored<'a> {
    #[serde(flatten)]
    pub event: &'a AccessEvent<'a>,
    pub caller: &'a str,
}

/// Whether `v` holds a control character (C0, DEL or C1), scanning bytes: C1 characters are
/// U+0080-U+009F, encoded 0xC2 0x80-0x9F.
fn has_control(v: &str) -> bool {
    let b = v.as_bytes();
    b.iter().enumerate().any(|(i, &c)| {
        c < 0x20 || c == 0x7f || (c == 0xc2 && b.get(i.saturating_add(1)).is_some_and(|n| (0x80..=0x9f).contains(n)))
    })
}

fn opt<'t>(t: &'t Option<Text<'_>>) -> Option<&'t str> {
    t.as_ref().map(|t| &*t.0)
}

fn text(name: &str, v: &str, max: usize) -> Result<(), String> {
    if v.len() > max || has_control(v) {
        return Err(format!("`{name}`: at most {max} bytes, no control characters"));
    }
    Ok(())
}

impl AccessEvent<'_> {
    /// The bounds serde cannot say.
    pub fn validate(&self) -> Result<(), String> {
        if rfc3339_secs(&self.ts).is_none() || self.ts.len() > 40 {
            return Err("`ts`: an RFC 3339 UTC time".to_owned());
        }
        let id_ok = &*self.request_id == "-"
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
            ("rule", opt(&self.rule), 64),
            ("sub", opt(&self.sub), MAX_FIELD),
            ("grant", opt(&self.grant), MAX_FIELD),
            ("scopes_granted", opt(&self.scopes_granted), 4096),
            ("method", Some(&*self.method), MAX_FIELD),
            ("authority", Some(&*self.authority), MAX_FIELD),
            ("path", Some(&*self.path), MAX_FIELD),
            ("client", opt(&self.client), MAX_FIELD),
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

    fn parse(v: serde_json::Value) -> Result<(), String> {
        let text = v.to_string();
        let e: AccessEvent = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        e.validate()
    }

    #[test]
    fn strings_are_borrowed_unless_escaped_and_stored_the_same_either_way() {
        let mut v = good();
        v["path"] = json!("/a\"b");
        let text = v.to_string();
        let e: AccessEvent = serde_json::from_str(&text).unwrap();
        assert!(matches!(e.sub.as_ref().unwrap().0, Cow::Borrowed("alice")));
        assert!(matches!(&e.path.0, Cow::Owned(p) if p == "/a\"b"));
        let stored: serde_json::Value = serde_json::to_value(Stored { event: &e, caller: "secret:f" }).unwrap();
        let mut expected = v;
        expected["caller"] = json!("secret:f");
        assert_eq!(stored, expected);
    }

    #[test]
    fn the_byte_scan_finds_exactly_the_control_characters() {
        let cases = [
            "a\u{0}b",
            "\u{1f}",
            "x\u{7f}",
            "\u{80}",
            "ok\u{9f}",
            "plain",
            "\u{a0}caf\u{e9}",
            "\u{c2}\u{a0}",
            "\u{2028}",
        ];
        for s in cases {
            assert_eq!(has_control(s), s.chars().any(char::is_control), "{s:?}");
        }
        assert!(has_control("ok\u{9f}") && !has_control("\u{a0}"));
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
