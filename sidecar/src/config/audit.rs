//! The `audit` section: the chain's segments and retention, its checks, ingest back-pressure, and
//! where it is exported.

use super::export::{self, ExportSink, RawSink};
use crate::policy::{number_or_text, Seconds};
use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};

/// A size in bytes, written as an integer or `<n>KiB|MiB|GiB|TiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        number_or_text(d, parse_bytes, "a size (use bytes or <n>KiB, MiB, GiB, TiB)").map(Bytes)
    }
}

fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = (t.get(..split)?, t.get(split..)?.trim());
    let scale: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSegment {
    max_bytes: Bytes,
    max_age: Seconds,
}

impl Default for RawSegment {
    fn default() -> Self {
        RawSegment { max_bytes: Bytes(64 << 20), max_age: Seconds(86_400) }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRetention {
    max_age: Option<Seconds>,
    max_bytes: Option<Bytes>,
    archive_dir: Option<PathBuf>,
}

impl Default for RawRetention {
    fn default() -> Self {
        RawRetention { max_age: Some(Seconds(90 * 86_400)), max_bytes: Some(Bytes(16 << 30)), archive_dir: None }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawIngest {
    max_pending_events: u64,
}

impl Default for RawIngest {
    fn default() -> Self {
        RawIngest { max_pending_events: 50_000 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAudit {
    /// Events kept in the Redis stream (`XADD MAXLEN ~`); the audit chain is the record.
    stream_max: u64,
    /// Every `anchor_every` events the chain head is appended here (and logged), as is every
    /// checkpoint, so a truncated tail is caught by `audit verify --anchors`.
    anchor_file: Option<PathBuf>,
    anchor_every: u64,
    segment: RawSegment,
    retention: RawRetention,
    /// How often the sidecar verifies the whole chain in the background (`0`: never).
    verify_every: Seconds,
    /// Bytes a second the background verification reads at most, so it leaves the writer room.
    verify_rate: Bytes,
    ingest: RawIngest,
    export: Vec<RawSink>,
}

impl Default for RawAudit {
    fn default() -> Self {
        RawAudit {
            stream_max: 100_000,
            anchor_file: None,
            anchor_every: 1000,
            segment: RawSegment::default(),
            retention: RawRetention::default(),
            verify_every: Seconds(6 * 3600),
            verify_rate: Bytes(64 << 20),
            ingest: RawIngest::default(),
            export: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub stream_max: u64,
    pub anchor_file: Option<PathBuf>,
    pub anchor_every: u64,
    pub segment_max_bytes: u64,
    pub segment_max_age_s: u64,
    pub retention_max_age_s: Option<u64>,
    pub retention_max_bytes: Option<u64>,
    pub archive_dir: Option<PathBuf>,
    pub verify_every_s: u64,
    pub verify_bytes_per_s: u64,
    /// Access events accepted but not yet on disk beyond which `POST /v1/audit` answers 503.
    pub max_pending_events: u64,
    pub export: Vec<ExportSink>,
}

impl RawAudit {
    pub(super) fn compile(self, base: &Path) -> Result<AuditConfig, String> {
        if !(1_000..=100_000_000).contains(&self.stream_max) || !(1..=1_000_000).contains(&self.anchor_every) {
            return Err("stream_max 1000-100000000, anchor_every 1-1000000".to_owned());
        }
        let s = &self.segment;
        if !((1 << 20)..=(16u64 << 30)).contains(&s.max_bytes.0) || !(60..=30 * 86_400).contains(&s.max_age.0) {
            return Err("segment: max_bytes 1MiB-16GiB, max_age 1m-30d".to_owned());
        }
        let r = &self.retention;
        if r.max_age.is_some_and(|a| a.0 < 3600) || r.max_bytes.is_some_and(|b| b.0 < 2 * s.max_bytes.0) {
            return Err("retention: max_age at least 1h, max_bytes at least two segments".to_owned());
        }
        if self.verify_every.0 != 0 && self.verify_every.0 < 60 {
            return Err("verify_every: 0 (never) or at least 1m".to_owned());
        }
        if !((1 << 20)..=(16u64 << 30)).contains(&self.verify_rate.0) {
            return Err("verify_rate: 1MiB to 16GiB (a second)".to_owned());
        }
        if !(1_000..=10_000_000).contains(&self.ingest.max_pending_events) {
            return Err("ingest.max_pending_events 1000-10000000".to_owned());
        }
        Ok(AuditConfig {
            stream_max: self.stream_max,
            anchor_file: self.anchor_file.map(|f| base.join(f)),
            anchor_every: self.anchor_every,
            segment_max_bytes: s.max_bytes.0,
            segment_max_age_s: s.max_age.0,
            retention_max_age_s: r.max_age.map(|a| a.0),
            retention_max_bytes: r.max_bytes.map(|b| b.0),
            archive_dir: self.retention.archive_dir.map(|d| base.join(d)),
            verify_every_s: self.verify_every.0,
            verify_bytes_per_s: self.verify_rate.0,
            max_pending_events: self.ingest.max_pending_events,
            export: export::compile(self.export, base)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("64MiB"), Some(64 << 20));
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes("2 GiB"), Some(2 << 30));
        assert_eq!(parse_bytes("1MB"), None);
        assert_eq!(parse_bytes("99999999999TiB"), None);
    }
}
