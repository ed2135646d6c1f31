//! The audit file open for appending: each append is linked, synced, and its heads published.

use crate::anchor::Anchor;
use crate::files::{recover_torn_tail, DurableAppend};
use crate::line::{link_hash, Line, GENESIS};
use crate::verify::verify;
use serde_json::value::RawValue;
use std::path::Path;

/// Where and how often the chain head is published, so that a removed tail can be detected.
#[derive(Debug)]
pub struct Anchoring {
    pub file: DurableAppend,
    pub every: u64,
    /// The program named on the stderr line that also publishes each head.
    pub log_as: &'static str,
}

/// The audit file, open for appending. Not thread-safe by itself: the caller holds a lock.
#[derive(Debug)]
pub struct AuditLog {
    file: DurableAppend,
    seq: u64,
    head: String,
    anchoring: Option<Anchoring>,
}

impl AuditLog {
    /// Opens (or creates) the file. A torn last line (a crash in the middle of an append) is
    /// truncated and reported; any other break refuses to extend the chain.
    pub fn open(path: &Path) -> Result<(AuditLog, Option<String>), String> {
        let torn = recover_torn_tail(path)?;
        let (seq, head) = if path.exists() {
            let report = verify(path)?;
            if let Some(problem) = report.problem {
                return Err(format!("{}: {problem}; refusing to extend a broken chain", path.display()));
            }
            (report.lines, report.head)
        } else {
            (0, GENESIS.to_owned())
        };
        Ok((AuditLog { file: DurableAppend::open(path)?, seq, head, anchoring: None }, torn))
    }

    /// Publishes the head every `every` events to `file` (and the log).
    pub fn anchor_to(&mut self, anchoring: Anchoring) {
        self.anchoring = Some(anchoring);
    }

    /// Appends events (each one JSON object, serialized) and syncs them to disk before returning.
    pub fn append(&mut self, events: &[String], now: u64) -> Result<u64, String> {
        let mut buf = Vec::new();
        let (mut seq, mut head) = (self.seq, self.head.clone());
        let mut anchors = Vec::new();
        for text in events {
            let text = text.clone();
            seq = seq.saturating_add(1);
            let hash = link_hash(&head, seq, &text);
            let raw = RawValue::from_string(text).map_err(|e| e.to_string())?;
            let line = Line { seq, prev: head, hash: hash.clone(), event: &raw };
            serde_json::to_writer(&mut buf, &line).map_err(|e| e.to_string())?;
            buf.push(b'\n');
            if self.anchoring.as_ref().is_some_and(|a| seq % a.every == 0) {
                anchors.push(Anchor { ts: now, seq, hash: hash.clone() });
            }
            head = hash;
        }
        self.file.append(&buf)?;
        self.seq = seq;
        self.head = head;
        if let Some(a) = &mut self.anchoring {
            for anchor in anchors {
                eprintln!("{}: audit head seq={} hash={}", a.log_as, anchor.seq, anchor.hash);
                let mut line = serde_json::to_vec(&anchor).map_err(|e| e.to_string())?;
                line.push(b'\n');
                a.file.append(&line)?;
            }
        }
        Ok(seq)
    }

    /// The head now: how many events, and the last hash.
    pub fn head(&self) -> (u64, &str) {
        (self.seq, &self.head)
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }
}
