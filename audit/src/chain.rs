//! Checking a whole segmented chain: every kept segment, every line, each closed segment against
//! its checkpoint (and that checkpoint's signature, given the JWKS), the published heads.

use crate::anchor::Anchor;
use crate::checkpoint::{self, Checkpoint};
use crate::line::GENESIS;
use crate::segment::{self, SegmentFile, CHECKPOINTS};
use crate::verify::removed_tail;
use crate::walk::{anchors_by_seq, walk_segment, Anchors, Pacer};
use jitgate_token::encoding::hex;
use jitgate_token::jwk::KeySet;
use sha2::Digest;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// What to check beyond the lines themselves.
#[derive(Debug, Default)]
pub struct ChainCheck<'a> {
    /// Checkpoint signatures are checked against these keys (the sidecar's JWKS); without them
    /// the report says they were not.
    pub keys: Option<&'a KeySet>,
    pub anchors: &'a [Anchor],
    /// Stop at the writer's head, read once the segments are listed (a check beside a writer:
    /// what it appends later is not looked at).
    pub until: Option<&'a AtomicU64>,
    /// Read at most this many bytes a second (a background check); `None`: as fast as it can.
    pub max_bytes_per_s: Option<u64>,
}

/// What a check proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// The events proved: `first..=last` (none when `last < first`).
    pub first: u64,
    pub last: u64,
    pub head: String,
    pub segments: usize,
    /// Closed segments matched to their checkpoint, and how many signatures were checked.
    pub checkpoints: usize,
    /// `None`: no keys were given to check signatures with.
    pub signatures_checked: Option<usize>,
    /// How the oldest kept event was trusted: from the start of the chain, or from the
    /// checkpoint of an expired segment.
    pub trusted_start: String,
    pub problem: Option<String>,
}

impl ChainReport {
    /// How many events were proved.
    pub fn events(&self) -> u64 {
        if self.last >= self.first {
            self.last - self.first + 1
        } else {
            0
        }
    }

    /// One line for people: what was proved and how.
    pub fn summary(&self) -> String {
        let range = if self.last >= self.first {
            format!("events {}..={} verified", self.first, self.last)
        } else {
            "no events".to_owned()
        };
        let sigs = match self.signatures_checked {
            Some(n) => format!("{n} checkpoint signatures checked"),
            None => "checkpoint signatures not checked (no JWKS given)".to_owned(),
        };
        format!(
            "{range} in {} segments, head {}; {} closed segments match their checkpoints, {sigs}; start: {}",
            self.segments, self.head, self.checkpoints, self.trusted_start
        )
    }
}

/// Checks the chain in `dir` from its oldest kept segment to its head.
pub fn verify_chain(dir: &Path, check: &ChainCheck<'_>) -> Result<ChainReport, String> {
    // Checkpoints before segments, the head after: retention between the reads cannot make a
    // kept segment look uncovered, nor an expiry look unrecorded.
    let checkpoints = checkpoint::read(&dir.join(CHECKPOINTS))?;
    let segments = segment::list(dir)?;
    let until = check.until.map(|h| h.load(Ordering::Acquire));
    let anchors = anchors_by_seq(check.anchors);
    let mut report = ChainReport {
        first: segments.first().map_or(1, |s| s.first_seq),
        last: 0,
        head: GENESIS.to_owned(),
        segments: segments.len(),
        checkpoints: 0,
        signatures_checked: check.keys.map(|_| 0),
        trusted_start: "the first event".to_owned(),
        problem: None,
    };
    report.last = report.first.saturating_sub(1);
    let fail = |mut r: ChainReport, what: String| {
        r.problem = Some(what);
        Ok(r)
    };
    let by_seq = |seq: u64| checkpoints.iter().find(|c| c.head.seq == seq);
    if let Some(first) = segments.first() {
        if first.first_seq > 1 {
            let Some(cp) = by_seq(first.first_seq - 1) else {
                let what = format!(
                    "{}: starts at event {} and no checkpoint covers the {} events before it",
                    first.name(),
                    first.first_seq,
                    first.first_seq - 1
                );
                return fail(report, what);
            };
            if let Err(e) = check_signature(cp, check.keys, &mut report) {
                return fail(report, format!("checkpoint of {}: {e}", cp.head.segment));
            }
            report.head = cp.head.hash.clone();
            report.trusted_start =
                format!("events 1..={} expired, trusted from the checkpoint of {}", cp.head.seq, cp.head.segment);
        }
    }
    let mut pacer = Pacer::new(check.max_bytes_per_s);
    let mut walk = Walked { anchors: &anchors, until, pacer: &mut pacer, expired_through: None };
    for (i, seg) in segments.iter().enumerate() {
        let closed = i + 1 < segments.len();
        if let Err(what) = check_segment(seg, closed, &checkpoints, check.keys, &mut walk, &mut report)? {
            return fail(report, what);
        }
        if until.is_some_and(|u| report.last >= u) {
            break;
        }
    }
    // Retention records what it removes: a chain starting later than that lost segments.
    if report.first > 1 && walk.expired_through.is_none_or(|t| t.saturating_add(1) < report.first) {
        let what = format!(
            "events 1..={} are not kept and no audit.expired event in the chain records their expiry (segments removed)",
            report.first - 1
        );
        return fail(report, what);
    }
    if until.is_none() {
        if let Some(cp) = checkpoints.iter().filter(|c| c.head.seq > report.last).max_by_key(|c| c.head.seq) {
            let what = format!(
                "the chain ends at event {} but {} was checkpointed up to event {}: segments were removed",
                report.last, cp.head.segment, cp.head.seq
            );
            return fail(report, what);
        }
    }
    if let Some(what) = removed_tail(report.last, check.anchors) {
        return fail(report, what);
    }
    Ok(report)
}

/// What walking the segments carries from one to the next.
struct Walked<'w> {
    anchors: &'w Anchors,
    until: Option<u64>,
    pacer: &'w mut Pacer,
    expired_through: Option<u64>,
}

/// Walks one segment on from the report's head; `Ok(Err(problem))` when it does not fit.
fn check_segment(
    seg: &SegmentFile,
    closed: bool,
    checkpoints: &[Checkpoint],
    keys: Option<&KeySet>,
    walk: &mut Walked<'_>,
    report: &mut ChainReport,
) -> Result<Result<(), String>, String> {
    let name = seg.name();
    if seg.first_seq != report.last.saturating_add(1) {
        return Ok(Err(format!(
            "{name}: starts at event {} where {} was due (a segment is missing)",
            seg.first_seq,
            report.last.saturating_add(1)
        )));
    }
    let start_prev = report.head.clone();
    let w = walk_segment(&seg.path, report.last, &start_prev, walk.anchors, walk.until, Some(&mut *walk.pacer))?;
    report.last = w.last_seq;
    report.head = w.head.clone();
    walk.expired_through = w.expired_through.or(walk.expired_through);
    if let Some(p) = w.problem {
        return Ok(Err(format!("{name} {p}")));
    }
    // A segment closed after the head was read is checked up to the head, like the open one.
    let cut_short = walk.until.is_some_and(|u| w.last_seq >= u);
    if !closed || cut_short {
        return Ok(Ok(()));
    }
    let Some(cp) = checkpoints.iter().find(|c| c.head.segment == name) else {
        return Ok(Err(format!("{name}: closed but has no checkpoint")));
    };
    let sha = hex(&w.sha.finalize());
    let h = &cp.head;
    let stated = (h.first_seq, h.first_prev.as_str(), h.seq, h.hash.as_str(), h.events, h.bytes, h.sha256.as_str());
    if stated != (seg.first_seq, start_prev.as_str(), w.last_seq, w.head.as_str(), w.events, w.bytes, sha.as_str()) {
        return Ok(Err(format!(
            "{name}: differs from its checkpoint (events {}..={} hash {} sha256 {sha}; checkpoint says {}..={} hash {} \
             sha256 {})",
            seg.first_seq, w.last_seq, w.head, h.first_seq, h.seq, h.hash, h.sha256
        )));
    }
    if let Err(e) = check_signature(cp, keys, report) {
        return Ok(Err(format!("checkpoint of {name}: {e}")));
    }
    report.checkpoints += 1;
    Ok(Ok(()))
}

fn check_signature(cp: &Checkpoint, keys: Option<&KeySet>, report: &mut ChainReport) -> Result<(), String> {
    if let Some(keys) = keys {
        cp.verify(keys)?;
        report.signatures_checked = Some(report.signatures_checked.unwrap_or(0).saturating_add(1));
    }
    Ok(())
}

/// One event with its proof of place: its line, the lines either side (its `prev` is the line
/// before's `hash`, its `hash` the next line's `prev`), and how its segment was proved: walked
/// from the checkpoint before it (or the first event) to its own checkpoint when closed.
pub fn show_event(dir: &Path, seq: u64, keys: Option<&KeySet>) -> Result<serde_json::Value, String> {
    let segments = segment::list(dir)?;
    let checkpoints = checkpoint::read(&dir.join(CHECKPOINTS))?;
    let oldest = segments.first().map_or(1, |s| s.first_seq);
    let Some(i) = segments.iter().rposition(|s| s.first_seq <= seq).filter(|_| seq >= oldest) else {
        return Err(format!("event {seq} is not kept (the oldest kept event is {oldest})"));
    };
    let seg = segments.get(i).ok_or("no segment")?;
    let mut report = ChainReport {
        first: seg.first_seq,
        last: seg.first_seq.saturating_sub(1),
        head: GENESIS.to_owned(),
        segments: 1,
        checkpoints: 0,
        signatures_checked: keys.map(|_| 0),
        trusted_start: "the first event".to_owned(),
        problem: None,
    };
    if seg.first_seq > 1 {
        let cp = checkpoints
            .iter()
            .find(|c| c.head.seq.saturating_add(1) == seg.first_seq)
            .ok_or_else(|| format!("{}: no checkpoint covers the event before it", seg.name()))?;
        check_signature(cp, keys, &mut report).map_err(|e| format!("checkpoint of {}: {e}", cp.head.segment))?;
        report.head = cp.head.hash.clone();
        report.trusted_start = format!("the checkpoint of {} (event {})", cp.head.segment, cp.head.seq);
    }
    let closed = i + 1 < segments.len();
    let (anchors, mut pacer) = (Anchors::new(), Pacer::new(None));
    let mut walk = Walked { anchors: &anchors, until: None, pacer: &mut pacer, expired_through: None };
    if let Err(p) = check_segment(seg, closed, &checkpoints, keys, &mut walk, &mut report)? {
        return Err(format!("the segment holding event {seq} does not verify: {p}"));
    }
    if seq > report.last {
        return Err(format!("event {seq} is not in the chain yet (head {})", report.last));
    }
    let (mut before, mut this, mut after) = (None, None, None);
    let text = std::fs::read_to_string(&seg.path).map_err(crate::files::at(&seg.path))?;
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).map_err(|e| e.to_string())?;
        match v.get("seq").and_then(serde_json::Value::as_u64) {
            Some(s) if s.saturating_add(1) == seq => before = Some(v),
            Some(s) if s == seq => this = Some(v),
            Some(s) if s == seq.saturating_add(1) => {
                after = Some(v);
                break;
            }
            _ => {}
        }
    }
    let checkpoint = checkpoints.iter().find(|c| c.head.segment == seg.name()).map(|c| c.to_line()).transpose()?;
    let checkpoint = match checkpoint {
        Some(line) => serde_json::from_str(&line).map_err(|e| e.to_string())?,
        None => serde_json::Value::String(format!("in the open segment: not checkpointed yet (head {})", report.last)),
    };
    Ok(serde_json::json!({
        "event": this,
        "previous": before.map(|b| serde_json::json!({"seq": b.get("seq"), "hash": b.get("hash")})),
        "next": after.map(|a| serde_json::json!({"seq": a.get("seq"), "prev": a.get("prev")})),
        "segment": seg.name(),
        "segment_proved": format!("events {}..={} linked from {}", seg.first_seq, report.last, report.trusted_start),
        "checkpoint_signature": if report.signatures_checked.is_some() { "checked" } else { "not checked (no JWKS given)" },
        "checkpoint": checkpoint,
    }))
}
